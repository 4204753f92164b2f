"""Hybrid query latency on SciFact and on a 100k-chunk collection (embedded backend).

    python benchmarks/retrieval.py [--beir ../shared/data/beir-scifact] [--data /tmp/attest-bench]
                                   [--points 100000] [--queries 300]

Reports p50/p95 of the hybrid query with the query embedding included and excluded, per mode, and the
second stage apart. The 100k collection replicates SciFact's chunks (vectors copied with a little noise,
ids and doc ids made unique), so building it costs no embedding. Quality is measured by
`attest eval retrieval --beir`, not here.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def build_replica(store, source: str, target: str, points: int, bm25) -> int:
    """Copy ``source``'s chunks (with their vectors) until ``target`` holds ``points`` points."""
    from qdrant_edge import ScrollRequest

    from retrieval.bm25 import tokenize
    from retrieval.schema import ChunkPoint

    if store.count(target) >= points:
        return store.count(target)
    store.drop_collection(target)
    store.ensure_collection(target)
    shard = store._open(source, create=False)  # the benchmark reads raw vectors, which the interface hides
    records, offset = [], None
    while True:
        batch, offset = shard.scroll(ScrollRequest(offset=offset, limit=1000, with_payload=True, with_vector=["dense"]))
        records.extend(batch)
        if offset is None:
            break
    rng = np.random.default_rng(7)
    sparse = {str(r.id): bm25.encode_tokens(tokenize(r.payload["text"])) for r in records}
    written, replica = 0, 0
    while written < points:
        batch = []
        for r in records:
            if written + len(batch) >= points:
                break
            dense = np.asarray(r.vector["dense"], dtype=np.float32)
            if replica:
                dense = dense + rng.normal(scale=0.02, size=dense.shape).astype(np.float32)
                dense /= np.linalg.norm(dense)
            payload = dict(r.payload, doc_id=f"{r.payload['doc_id']}#{replica}")
            batch.append(ChunkPoint(str(uuid.uuid5(uuid.UUID(str(r.id)), str(replica))), dense.tolist(),
                                    sparse[str(r.id)], payload))
        for start in range(0, len(batch), 1000):
            store.upsert(target, batch[start:start + 1000])
        written += len(batch)
        replica += 1
    store.flush(target)
    return store.count(target)


def measure(retriever, collection, queries, vectors, mode, fusion=None):
    included, excluded = [], []
    for text, vector in zip(queries, vectors):
        t0 = time.perf_counter()
        retriever.search(text, collection, 10, mode, fusion=fusion)
        included.append((time.perf_counter() - t0) * 1000)
        t1 = time.perf_counter()
        retriever.search(text, collection, 10, mode, fusion=fusion, dense_vector=vector)
        excluded.append((time.perf_counter() - t1) * 1000)
    return included, excluded


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beir", default=str(ROOT.parent / "shared" / "data" / "beir-scifact"))
    parser.add_argument("--data", default="/tmp/attest-bench", help="data folder (reused between runs)")
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()

    from attest_settings import Settings
    from evaluation.retrieval_eval import ensure_beir_collection
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester
    from retrieval.search import Retriever
    from retrieval.store import EdgeStore

    settings = Settings(data_dir=Path(args.data))
    store, manifest = EdgeStore(settings.edge_dir), Manifest(settings.manifest_url)
    ingester = Ingester(settings, store, manifest)
    dataset, _ = ensure_beir_collection(ingester, Path(args.beir), "beir-scifact")
    big = f"scifact-x{args.points // 1000}k"
    t0 = time.perf_counter()
    total = build_replica(store, "beir-scifact", big, args.points, ingester.bm25)
    print(f"{big}: {total} points ({time.perf_counter() - t0:.0f} s to build or reuse)")
    retriever = Retriever(settings, store, ingester.encoder)
    queries = [dataset.queries[q] for q in sorted(dataset.queries)][: args.queries]
    vectors = [ingester.encoder.encode_query(q) for q in queries]
    retriever.search(queries[0], "beir-scifact", 10)  # warm-up

    rows = []
    for collection in ("beir-scifact", big):
        n = store.count(collection)
        for mode, fusion in (("dense", None), ("bm25", None), ("hybrid", "weighted"), ("hybrid", "rrf"), ("hybrid", "dbsf")):
            included, excluded = measure(retriever, collection, queries, vectors, mode, fusion)
            rows.append((collection, n, mode + (f"/{fusion}" if fusion else ""), included, excluded))
    second_stage = {}
    for collection in ("beir-scifact", big):
        values = []
        for text, vector in zip(queries, vectors):
            result = retriever.search(text, collection, 10, "rerank", dense_vector=vector)
            values.append(result.timings_ms.get("rerank_ms", 0.0))
        second_stage[collection] = values
    embed = []
    for q in queries:
        t0 = time.perf_counter()
        ingester.encoder.encode_query(q, threads=settings.query_threads)
        embed.append((time.perf_counter() - t0) * 1000)

    print(f"\n{len(queries)} queries, top 10, prefetch {settings.prefetch_k} per channel, 1 torch thread for the query")
    header = f"{'collection':18} {'points':>7} {'mode':16} {'p50 incl':>9} {'p95 incl':>9} {'p50 excl':>9} {'p95 excl':>9}"
    print(header)
    print("-" * len(header))
    for collection, n, mode, inc, exc in rows:
        print(f"{collection:18} {n:7d} {mode:16} {statistics.median(inc):9.1f} {pct(inc, .95):9.1f} "
              f"{statistics.median(exc):9.1f} {pct(exc, .95):9.1f}")
    for collection, values in second_stage.items():
        print(f"second stage (dense PRF rerank) alone on {collection}: p50 {statistics.median(values):.1f} ms, "
              f"p95 {pct(values, .95):.1f} ms")
    print(f"query embedding alone: p50 {statistics.median(embed):.1f} ms, p95 {pct(embed, .95):.1f} ms")
    store.close()
    manifest.close()


if __name__ == "__main__":
    main()
