"""Cutting sections into chunks measured in the embedding model's own tokens.

Structure first (the reader's sections: Markdown headings, PDF pages), then llama-index's
SentenceSplitter inside a section that is too long, counting tokens with the MiniLM tokenizer so that
no chunk is silently truncated by the model. A chunk that still exceeds the limit (one enormous
"sentence") is cut at token boundaries.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from functools import cached_property

from ingest.reader import ReadDocument
from retrieval.dense import CONTENT_MAX_TOKENS

# UUID5 namespace for chunk point ids: uuid5(NAMESPACE, doc_id + NUL + content_hash).
CHUNK_NAMESPACE = uuid.UUID("6f1f1d4e-8a41-5b0e-9a57-0c1d2b7e9a11")


@dataclass
class Chunk:
    doc_id: str
    chunk_index: int
    text: str
    content_hash: str
    page: int | None = None
    heading_path: list[str] = field(default_factory=list)
    tokens: int = 0

    @property
    def point_id(self) -> str:
        return chunk_point_id(self.doc_id, self.content_hash)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chunk_point_id(doc_id: str, chash: str) -> str:
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{doc_id}\x00{chash}"))


class Chunker:
    def __init__(self, tokenizer, chunk_tokens: int = 256, overlap: int = 32):
        self.tokenizer = tokenizer
        # The model sees [CLS] + content + [SEP]: keep content within its window.
        self.chunk_tokens = min(chunk_tokens, CONTENT_MAX_TOKENS)
        self.overlap = min(overlap, self.chunk_tokens // 2)

    @cached_property
    def splitter(self):
        # Built on first need: importing llama_index.core takes ~1.7 s, and sections that fit in one chunk never need it.
        from llama_index.core.node_parser import SentenceSplitter

        return SentenceSplitter(
            chunk_size=self.chunk_tokens,
            chunk_overlap=self.overlap,
            tokenizer=self._encode,
            include_metadata=False,
            include_prev_next_rel=False,
        )

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False, verbose=False)

    def _hard_split(self, text: str) -> list[str]:
        """Cut text at token boundaries into windows of chunk_tokens with the configured overlap."""
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets = enc["offset_mapping"]
        pieces, step = [], self.chunk_tokens - self.overlap
        for start in range(0, len(offsets), step):
            window = offsets[start:start + self.chunk_tokens]
            pieces.append(text[window[0][0]:window[-1][1]])
            if start + self.chunk_tokens >= len(offsets):
                break
        return pieces

    def split(self, text: str) -> list[tuple[str, int]]:
        """Pieces of ``text`` with their token counts, each within the chunk size."""
        out = []
        count = len(self._encode(text))
        pieces = [text] if count <= self.chunk_tokens else self.splitter.split_text(text)
        for piece in pieces:
            piece = piece.strip()
            if not piece:
                continue
            n = count if len(pieces) == 1 else len(self._encode(piece))
            if n <= self.chunk_tokens:
                out.append((piece, n))
            else:
                out.extend((p, len(self._encode(p))) for p in self._hard_split(piece) if p.strip())
        return out

    def chunk(self, doc_id: str, document: ReadDocument) -> list[Chunk]:
        """All chunks of one document, in reading order; identical texts within a document are kept once."""
        chunks: list[Chunk] = []
        seen: set[str] = set()
        for section in document.sections:
            for text, tokens in self.split(section.text):
                chash = content_hash(text)
                if chash in seen:
                    continue
                seen.add(chash)
                chunks.append(Chunk(doc_id, len(chunks), text, chash, section.page, list(section.heading_path), tokens))
        return chunks
