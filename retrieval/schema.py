"""The one collection schema both store backends are built from."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from retrieval.bm25 import SparseVector
from retrieval.dense import DENSE_DIM

DENSE = "dense"  # all-MiniLM-L6-v2, cosine
SPARSE = "sparse"  # BM25 term-frequency weights; Qdrant applies IDF
DENSE_SIZE = DENSE_DIM

PAYLOAD_FIELDS = (
    "doc_id", "source", "title", "heading_path", "page", "chunk_index", "text",
    "content_hash", "ingested_at", "tags",
)
# Keyword indexes: the fields that filters and per-document deletes use.
INDEXED_FIELDS = ("doc_id", "source", "tags")
FILTER_FIELDS = ("doc_id", "source", "tags")

_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class InvalidCollectionName(ValueError):
    pass


def check_collection_name(name: str) -> str:
    if not _COLLECTION_NAME.match(name):
        raise InvalidCollectionName(
            f"invalid collection name {name!r}: use 1-64 letters, digits, '-' or '_', starting with a letter or digit"
        )
    return name


@dataclass
class ChunkPoint:
    """One chunk as stored: its id, both vectors, and the payload (see PAYLOAD_FIELDS)."""

    id: str
    dense: list[float]
    sparse: SparseVector
    payload: dict


@dataclass
class StoredHit:
    id: str
    score: float
    payload: dict = field(default_factory=dict)


Filters = dict[str, list[str]]


def check_filters(filters: Filters | None) -> Filters:
    """Filters are {field: [allowed values]} on doc_id, source or tags; values are ORed, fields ANDed."""
    clean: Filters = {}
    for key, values in (filters or {}).items():
        if key not in FILTER_FIELDS:
            raise ValueError(f"cannot filter on {key!r}: filterable fields are {', '.join(FILTER_FIELDS)}")
        if isinstance(values, str):
            values = [values]
        if values:
            clean[key] = [str(v) for v in values]
    return clean
