"""The vector store behind one small interface, with two backends built from one schema.

- ``EdgeStore`` (default): qdrant-edge, Qdrant's engine embedded in this process, one shard per
  collection under ``<data_dir>/qdrant/<collection>``. Only one process may open a shard.
- ``ServerStore``: a Qdrant server or cluster through qdrant-client (``ATTEST_QDRANT_URL``); also runs
  on ``QdrantClient(":memory:")``, which is how the tests exercise this code path.
"""

from __future__ import annotations

import functools
import json
import shutil
import threading
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Literal, Protocol

from retrieval.bm25 import SparseVector
from retrieval.schema import (
    DENSE, DENSE_SIZE, INDEXED_FIELDS, SPARSE, ChunkPoint, Filters, StoredHit,
    check_collection_name, check_filters,
)

Fusion = Literal["rrf", "dbsf"]


class StoreLockedError(RuntimeError):
    """The embedded shard is held by another process."""


class WriteGate:
    """Lets writes through until ``paused()``: then new writes wait, and the pause begins once the writes in
    flight have finished. Reads never wait. A backup pauses writes to copy a stable index while searches go on.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._writers = 0
        self._paused = 0
        self._local = threading.local()  # a write that calls another write (upsert -> ensure_collection)

    @contextmanager
    def writing(self):
        if getattr(self._local, "depth", 0):
            self._local.depth += 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        with self._cond:
            while self._paused:
                self._cond.wait()
            self._writers += 1
        self._local.depth = 1
        try:
            yield
        finally:
            self._local.depth = 0
            with self._cond:
                self._writers -= 1
                self._cond.notify_all()

    @contextmanager
    def paused(self):
        with self._cond:
            self._paused += 1
            while self._writers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._paused -= 1
                self._cond.notify_all()


def _gated(method):
    """A store method that changes the index: it waits while writes are paused."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._gate.writing():
            return method(self, *args, **kwargs)

    return wrapper


class VectorStore(Protocol):
    def has_collection(self, name: str) -> bool: ...
    def ensure_collection(self, name: str) -> None: ...
    def drop_collection(self, name: str) -> None: ...
    def list_collections(self) -> list[str]: ...
    def upsert(self, name: str, points: list[ChunkPoint]) -> None: ...
    def delete_ids(self, name: str, ids: list[str]) -> None: ...
    def delete_doc_except(self, name: str, doc_id: str, keep_ids: list[str]) -> None: ...
    def set_payload(self, name: str, ids: list[str], payload: dict) -> None: ...
    def count(self, name: str, filters: Filters | None = None) -> int: ...
    def scroll(self, name: str, filters: Filters | None = None) -> Iterator[StoredHit]: ...
    def search(self, name: str, channel: str, vector, limit: int, filters: Filters | None = None) -> list[StoredHit]: ...
    def fused(self, name: str, dense: list[float], sparse: SparseVector, limit: int, prefetch: int,
              fusion: Fusion, rrf_k: int, weights: list[float] | None, filters: Filters | None = None) -> list[StoredHit]: ...
    def dense_vectors(self, name: str, ids: list[str]) -> dict[str, list[float]]: ...
    def flush(self, name: str) -> None: ...
    def close(self) -> None: ...
    def writes_paused(self): ...
    def backup_collection(self, name: str, target: Path) -> int: ...
    def restore_collection(self, name: str, source: Path) -> int: ...


def _count_all():
    from qdrant_edge import CountRequest

    return CountRequest(exact=True)


def _hit(point) -> StoredHit:
    return StoredHit(id=str(point.id), score=float(point.score if hasattr(point, "score") else 0.0),
                     payload=dict(point.payload or {}))


# ---------------------------------------------------------------------------------------------------
class EdgeStore:
    """qdrant-edge shards, one per collection. Thread-safe: calls into a shard are serialised.

    Updates go to the shard's write-ahead log at once (a killed process loses nothing it was told);
    ``flush`` makes them durable on disk and is called per batch of work, not per call (an fsync
    per point cost ingest a fifth of its time).
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._shards: dict[str, object] = {}
        self._lock = threading.RLock()
        self._gate = WriteGate()

    def writes_paused(self):
        """While held, every write of this store waits (see ``WriteGate``); searches go on."""
        return self._gate.paused()

    @staticmethod
    def _config():
        from qdrant_edge import Distance, EdgeConfig, EdgeSparseVectorParams, EdgeVectorParams, Modifier

        return EdgeConfig(
            vectors={DENSE: EdgeVectorParams(size=DENSE_SIZE, distance=Distance.Cosine)},
            sparse_vectors={SPARSE: EdgeSparseVectorParams(modifier=Modifier.Idf)},
        )

    def _path(self, name: str) -> Path:
        return self.root / check_collection_name(name)

    def has_collection(self, name: str) -> bool:
        return name in self._shards or (self._path(name) / "attest-collection").exists()

    def list_collections(self) -> list[str]:
        return sorted(p.parent.name for p in self.root.glob("*/attest-collection"))

    def _open(self, name: str, create: bool):
        from qdrant_edge import EdgeShard, PayloadSchemaType, UpdateOperation

        with self._lock:
            if name in self._shards:
                return self._shards[name]
            path = self._path(name)
            marker = path / "attest-collection"
            try:
                if marker.exists():
                    shard = EdgeShard.load(str(path / "shard"))
                elif create:
                    shutil.rmtree(path, ignore_errors=True)  # a half-created shard from a killed run
                    path.mkdir(parents=True)
                    shard = EdgeShard.create(str(path / "shard"), self._config())
                    for field in INDEXED_FIELDS:
                        shard.update(UpdateOperation.create_field_index(field, PayloadSchemaType.Keyword))
                    shard.flush()
                    marker.write_text("attest collection schema v1\n")
                else:
                    return None
            except Exception as exc:  # qdrant-edge raises a plain error when another process holds it
                if "lock" in str(exc).lower():
                    raise StoreLockedError(
                        f"the index at {path} is open in another process (is `attest serve` running?)"
                    ) from exc
                raise
            self._shards[name] = shard
            return shard

    @_gated
    def ensure_collection(self, name: str) -> None:
        self._open(name, create=True)

    @_gated
    def drop_collection(self, name: str) -> None:
        with self._lock:
            shard = self._shards.pop(name, None)
            if shard is not None:
                shard.close()
            shutil.rmtree(self._path(name), ignore_errors=True)

    @staticmethod
    def _filter(filters: Filters | None):
        from qdrant_edge import FieldCondition, Filter, MatchAny

        clean = check_filters(filters)
        if not clean:
            return None
        return Filter(must=[FieldCondition(key=k, match=MatchAny(any=v)) for k, v in clean.items()])

    @_gated
    def upsert(self, name: str, points: list[ChunkPoint]) -> None:
        from qdrant_edge import Point, SparseVector as EdgeSparse, UpdateOperation

        if not points:
            return
        shard = self._open(name, create=True)
        edge_points = [
            Point(
                uuid.UUID(p.id),
                {DENSE: list(map(float, p.dense)), SPARSE: EdgeSparse(p.sparse.indices, p.sparse.values)}
                if p.sparse else {DENSE: list(map(float, p.dense))},
                p.payload,
            )
            for p in points
        ]
        with self._lock:
            shard.update(UpdateOperation.upsert_points(edge_points))

    @_gated
    def delete_ids(self, name: str, ids: list[str]) -> None:
        from qdrant_edge import UpdateOperation

        shard = self._open(name, create=False)
        if shard is None or not ids:
            return
        with self._lock:
            shard.update(UpdateOperation.delete_points([uuid.UUID(i) for i in ids]))

    @_gated
    def delete_doc_except(self, name: str, doc_id: str, keep_ids: list[str]) -> None:
        from qdrant_edge import FieldCondition, Filter, HasIdCondition, MatchValue, UpdateOperation

        shard = self._open(name, create=False)
        if shard is None:
            return
        must_not = [HasIdCondition({uuid.UUID(i) for i in keep_ids})] if keep_ids else None
        flt = Filter(must=[FieldCondition(key="doc_id", match=MatchValue(doc_id))], must_not=must_not)
        with self._lock:
            shard.update(UpdateOperation.delete_points_by_filter(flt))

    @_gated
    def set_payload(self, name: str, ids: list[str], payload: dict) -> None:
        from qdrant_edge import UpdateOperation

        shard = self._open(name, create=False)
        if shard is None or not ids:
            return
        with self._lock:
            shard.update(UpdateOperation.set_payload([uuid.UUID(i) for i in ids], payload))

    def count(self, name: str, filters: Filters | None = None) -> int:
        from qdrant_edge import CountRequest

        shard = self._open(name, create=False)
        if shard is None:
            return 0
        with self._lock:
            return shard.count(CountRequest(exact=True, filter=self._filter(filters)))

    def scroll(self, name: str, filters: Filters | None = None) -> Iterator[StoredHit]:
        from qdrant_edge import ScrollRequest

        shard = self._open(name, create=False)
        if shard is None:
            return
        offset = None
        while True:
            with self._lock:
                records, offset = shard.scroll(
                    ScrollRequest(offset=offset, limit=512, filter=self._filter(filters), with_payload=True)
                )
            for record in records:
                yield StoredHit(id=str(record.id), score=0.0, payload=dict(record.payload or {}))
            if offset is None:
                return

    def search(self, name: str, channel: str, vector, limit: int, filters: Filters | None = None) -> list[StoredHit]:
        from qdrant_edge import Query, QueryRequest, SparseVector as EdgeSparse

        shard = self._open(name, create=False)
        if shard is None:
            return []
        if channel == SPARSE:
            if not vector:
                return []
            vector = EdgeSparse(vector.indices, vector.values)
        request = QueryRequest(limit=limit, query=Query.Nearest(vector, using=channel),
                               filter=self._filter(filters), with_payload=True)
        with self._lock:
            return [_hit(p) for p in shard.query(request)]

    def fused(self, name, dense, sparse, limit, prefetch, fusion, rrf_k, weights, filters=None) -> list[StoredHit]:
        from qdrant_edge import Fusion as EdgeFusion, Prefetch, Query, QueryRequest, SparseVector as EdgeSparse

        shard = self._open(name, create=False)
        if shard is None:
            return []
        flt = self._filter(filters)
        prefetches = [Prefetch(prefetch, query=Query.Nearest(dense, using=DENSE), filter=flt)]
        if sparse:
            prefetches.append(Prefetch(prefetch, query=Query.Nearest(EdgeSparse(sparse.indices, sparse.values),
                                                                     using=SPARSE), filter=flt))
            fuse_weights = weights
        else:
            fuse_weights = weights[:1] if weights else None
        query = EdgeFusion.Dbsf() if fusion == "dbsf" else EdgeFusion.Rrf(k=rrf_k, weights=fuse_weights)
        request = QueryRequest(limit=limit, prefetches=prefetches, query=query, filter=flt, with_payload=True)
        with self._lock:
            return [_hit(p) for p in shard.query(request)]

    def dense_vectors(self, name: str, ids: list[str]) -> dict[str, list[float]]:
        shard = self._open(name, create=False)
        if shard is None or not ids:
            return {}
        with self._lock:
            records = shard.retrieve([uuid.UUID(i) for i in ids], with_payload=False, with_vector=[DENSE])
        return {str(r.id): list(r.vector[DENSE]) for r in records}

    def flush(self, name: str) -> None:
        shard = self._open(name, create=False)
        if shard is not None:
            with self._lock:
                shard.flush()

    def backup_collection(self, name: str, target: Path) -> int:
        """Copy the collection's shard (flushed first) to ``target``; returns its point count. Call it with
        writes paused (``writes_paused``): the files are then stable while searches go on reading them."""
        shard = self._open(name, create=False)
        if shard is None:
            raise ValueError(f"no collection {name!r} in {self.root}")
        with self._lock:
            shard.flush()
            points = shard.count(_count_all())
        shutil.copytree(self._path(name), Path(target))
        return points

    def restore_collection(self, name: str, source: Path) -> int:
        """Put a shard copied by ``backup_collection`` in place (the collection must not exist here)."""
        path = self._path(name)
        if self.has_collection(name) or path.exists():
            raise ValueError(f"collection {name!r} already exists in {self.root}")
        staging = self.root.parent / f".restoring-{self.root.name}-{name}"  # outside root: not listed
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(Path(source), staging)
        staging.rename(path)
        return self.count(name)

    def close(self) -> None:
        with self._lock:
            for shard in self._shards.values():
                shard.flush()
                shard.close()
            self._shards.clear()


# ---------------------------------------------------------------------------------------------------
class ServerStore:
    """A Qdrant server or cluster through qdrant-client (or its in-memory mode, for tests)."""

    def __init__(self, client, shard_number: int = 1, replication_factor: int = 1):
        self.client = client
        self.shard_number = shard_number
        self.replication_factor = replication_factor
        self._gate = WriteGate()

    def writes_paused(self):
        """While held, this process's writes wait (other processes writing the same server do not)."""
        return self._gate.paused()

    @classmethod
    def connect(cls, url: str, api_key: str | None = None, shard_number: int = 1, replication_factor: int = 1):
        from qdrant_client import QdrantClient

        client = QdrantClient(location=url) if url == ":memory:" else QdrantClient(url=url, api_key=api_key)
        return cls(client, shard_number, replication_factor)

    def has_collection(self, name: str) -> bool:
        return self.client.collection_exists(check_collection_name(name))

    def list_collections(self) -> list[str]:
        return sorted(c.name for c in self.client.get_collections().collections)

    @_gated
    def ensure_collection(self, name: str) -> None:
        from qdrant_client import models

        if self.has_collection(name):
            return
        self.client.create_collection(
            name,
            vectors_config={DENSE: models.VectorParams(size=DENSE_SIZE, distance=models.Distance.COSINE)},
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            shard_number=self.shard_number,
            replication_factor=self.replication_factor,
        )
        with warnings.catch_warnings():
            # qdrant-client's local mode ignores payload indexes (and says so); a server uses them.
            warnings.simplefilter("ignore", UserWarning)
            for field in INDEXED_FIELDS:
                self.client.create_payload_index(name, field, models.PayloadSchemaType.KEYWORD)

    @_gated
    def drop_collection(self, name: str) -> None:
        if self.has_collection(name):
            self.client.delete_collection(name)

    @staticmethod
    def _filter(filters: Filters | None):
        from qdrant_client import models

        clean = check_filters(filters)
        if not clean:
            return None
        return models.Filter(must=[models.FieldCondition(key=k, match=models.MatchAny(any=v)) for k, v in clean.items()])

    @_gated
    def upsert(self, name: str, points: list[ChunkPoint]) -> None:
        from qdrant_client import models

        if not points:
            return
        self.ensure_collection(name)
        structs = []
        for p in points:
            vector = {DENSE: list(map(float, p.dense))}
            if p.sparse:
                vector[SPARSE] = models.SparseVector(indices=p.sparse.indices, values=p.sparse.values)
            structs.append(models.PointStruct(id=p.id, vector=vector, payload=p.payload))
        self.client.upsert(name, structs, wait=True)

    @_gated
    def delete_ids(self, name: str, ids: list[str]) -> None:
        from qdrant_client import models

        if ids and self.has_collection(name):
            self.client.delete(name, points_selector=models.PointIdsList(points=list(ids)), wait=True)

    @_gated
    def delete_doc_except(self, name: str, doc_id: str, keep_ids: list[str]) -> None:
        from qdrant_client import models

        if not self.has_collection(name):
            return
        must_not = [models.HasIdCondition(has_id=list(keep_ids))] if keep_ids else None
        flt = models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))],
                            must_not=must_not)
        self.client.delete(name, points_selector=models.FilterSelector(filter=flt), wait=True)

    @_gated
    def set_payload(self, name: str, ids: list[str], payload: dict) -> None:
        if ids and self.has_collection(name):
            self.client.set_payload(name, payload=payload, points=list(ids), wait=True)

    def count(self, name: str, filters: Filters | None = None) -> int:
        if not self.has_collection(name):
            return 0
        return self.client.count(name, count_filter=self._filter(filters), exact=True).count

    def scroll(self, name: str, filters: Filters | None = None) -> Iterator[StoredHit]:
        if not self.has_collection(name):
            return
        offset = None
        while True:
            records, offset = self.client.scroll(name, scroll_filter=self._filter(filters), limit=512,
                                                 offset=offset, with_payload=True)
            for record in records:
                yield StoredHit(id=str(record.id), score=0.0, payload=dict(record.payload or {}))
            if offset is None:
                return

    def search(self, name: str, channel: str, vector, limit: int, filters: Filters | None = None) -> list[StoredHit]:
        from qdrant_client import models

        if not self.has_collection(name):
            return []
        if channel == SPARSE:
            if not vector:
                return []
            vector = models.SparseVector(indices=vector.indices, values=vector.values)
        result = self.client.query_points(name, query=vector, using=channel, limit=limit,
                                          query_filter=self._filter(filters), with_payload=True)
        return [_hit(p) for p in result.points]

    def fused(self, name, dense, sparse, limit, prefetch, fusion, rrf_k, weights, filters=None) -> list[StoredHit]:
        from qdrant_client import models

        if not self.has_collection(name):
            return []
        flt = self._filter(filters)
        prefetches = [models.Prefetch(query=dense, using=DENSE, limit=prefetch, filter=flt)]
        if sparse:
            prefetches.append(models.Prefetch(query=models.SparseVector(indices=sparse.indices, values=sparse.values),
                                              using=SPARSE, limit=prefetch, filter=flt))
        elif weights:
            weights = weights[:1]
        if fusion == "dbsf":
            query = models.FusionQuery(fusion=models.Fusion.DBSF)
        else:
            query = models.RrfQuery(rrf=models.Rrf(k=rrf_k, weights=weights))
        result = self.client.query_points(name, prefetch=prefetches, query=query, limit=limit,
                                          query_filter=flt, with_payload=True)
        return [_hit(p) for p in result.points]

    def dense_vectors(self, name: str, ids: list[str]) -> dict[str, list[float]]:
        if not ids or not self.has_collection(name):
            return {}
        records = self.client.retrieve(name, ids=list(ids), with_payload=False, with_vectors=[DENSE])
        return {str(r.id): list(r.vector[DENSE]) for r in records}

    def flush(self, name: str) -> None:
        """Writes above wait for the server's acknowledgement (``wait=True``): nothing to do."""

    def backup_collection(self, name: str, target: Path) -> int:
        """Export every point (id, vectors, payload) to ``target/points.jsonl``; returns the count.

        A logical export rather than a Qdrant snapshot: on a cluster a collection snapshot holds only the
        shards of the node it was taken on, and its file stays on that node's disk; an export through the
        client is the whole collection whatever the topology, and restores into any shard layout."""
        if not self.has_collection(name):
            raise ValueError(f"no collection {name!r} on the Qdrant server")
        target = Path(target)
        target.mkdir(parents=True)
        points, offset = 0, None
        with open(target / "points.jsonl", "w", encoding="utf-8") as out:
            while True:
                records, offset = self.client.scroll(name, limit=256, offset=offset, with_payload=True,
                                                     with_vectors=True)
                for record in records:
                    vectors = {}
                    for channel, vector in (record.vector or {}).items():
                        vectors[channel] = ({"indices": list(vector.indices), "values": list(vector.values)}
                                            if hasattr(vector, "indices") else list(vector))
                    out.write(json.dumps({"id": str(record.id), "vector": vectors, "payload": record.payload or {}})
                              + "\n")
                    points += 1
                if offset is None:
                    break
        return points

    def restore_collection(self, name: str, source: Path) -> int:
        """Create the collection (this store's shard number and replication factor) and load an export."""
        from qdrant_client import models

        if self.has_collection(name):
            raise ValueError(f"collection {name!r} already exists on the Qdrant server")
        self.ensure_collection(name)
        batch: list = []
        with open(Path(source) / "points.jsonl", encoding="utf-8") as lines:
            for line in lines:
                row = json.loads(line)
                vector = {channel: (models.SparseVector(**v) if isinstance(v, dict) else v)
                          for channel, v in row["vector"].items()}
                batch.append(models.PointStruct(id=row["id"], vector=vector, payload=row["payload"]))
                if len(batch) == 256:
                    self.client.upsert(name, batch, wait=True)
                    batch = []
        if batch:
            self.client.upsert(name, batch, wait=True)
        return self.count(name)

    def close(self) -> None:
        self.client.close()


def open_store(settings) -> VectorStore:
    """The backend the settings ask for: a Qdrant URL selects the server, otherwise the embedded shard."""
    if settings.qdrant_url:
        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return ServerStore.connect(settings.qdrant_url, key, settings.qdrant_shard_number,
                                   settings.qdrant_replication_factor)
    return EdgeStore(settings.edge_dir)
