"""Hybrid retrieval: fusion, filters, edge cases, and the evaluation metrics against hand-computed values."""

from __future__ import annotations

import math
import uuid

import pytest

from retrieval.schema import ChunkPoint
from retrieval.search import Fusion, Mode, Retriever
from retrieval.store import EdgeStore, ServerStore

CORPUS = {
    "codes.md": "The Veltrano package is signed by the build server before release.",
    "car.md": "When the automobile refuses to start in winter, check the battery terminals and the starter motor.",
    "lens.md": "The lens mount accepts all K-series lenses and the KA adapter.",
    "wifi.md": "Wi-Fi pairing requires the Halden Link app and Bluetooth enabled.",
    "warranty.md": "The warranty covers manufacturing defects for two years from the date of purchase.",
    "sensor.md": "Clean the sensor with a blower; never touch it with your fingers.",
    "video.md": "Video recording stops after 30 minutes to protect the sensor from heat.",
    "menu.md": "The My Menu page holds up to 30 favourite settings.",
    "flash.md": "High-speed sync works with TTL flashes up to 1/8000 s.",
    "card.md": "Format every new memory card in the camera before the first use.",
    "cold.md": "Low temperatures reduce how many shots you get per charge.",
    "snow.md": "In snow and frost, keep the camera in an insulated bag between shots.",
    "dash.md": "Mount the camera on a car dashboard with the suction bracket.",
}


def _points(encoder, bm25, tags_for=lambda doc: []):
    points = []
    vectors = encoder.encode(list(CORPUS.values()))
    for (doc, text), vector in zip(CORPUS.items(), vectors):
        points.append(ChunkPoint(str(uuid.uuid5(uuid.NAMESPACE_URL, doc)), vector.tolist(), bm25.encode_document(text),
                                 {"doc_id": doc, "source": f"/docs/{doc}", "text": text, "tags": tags_for(doc),
                                  "chunk_index": 0, "title": doc, "heading_path": [], "page": None}))
    return points


@pytest.fixture(params=["edge", "server"])
def retriever(request, settings, encoder, tmp_path):
    store = EdgeStore(tmp_path / "edge") if request.param == "edge" else ServerStore.connect(":memory:")
    retriever = Retriever(settings, store, encoder)
    store.ensure_collection("docs")
    store.upsert("docs", _points(encoder, retriever.bm25, lambda d: ["hardware"] if d in ("lens.md", "flash.md") else []))
    yield retriever
    store.close()


# Shares one rare word (Veltrano) with codes.md and no word at all with car.md, which it paraphrases.
QUERY = "Veltrano: ignition failure of a vehicle in freezing weather"


@pytest.mark.parametrize("fusion", list(Fusion))
def test_fusion_returns_a_bm25_only_hit_and_a_dense_only_hit(retriever, fusion):
    dense = [h.doc_id for h in retriever.search(QUERY, "docs", 2, Mode.DENSE).hits]
    bm25 = [h.doc_id for h in retriever.search(QUERY, "docs", 10, Mode.BM25).hits]
    # Preconditions: only BM25 ranks codes.md in its top 2; only dense finds car.md at all.
    assert bm25 == ["codes.md"] and "codes.md" not in dense
    assert dense[0] == "car.md"
    hits = retriever.search(QUERY, "docs", 2, Mode.HYBRID, fusion=fusion).hits
    found = [h.doc_id for h in hits]
    assert {"codes.md", "car.md"} <= set(found)
    by_doc = {h.doc_id: h for h in hits}
    assert by_doc["codes.md"].channels["bm25"]["rank"] == 1
    assert "bm25" not in by_doc["car.md"].channels and by_doc["car.md"].channels["dense"]["rank"] >= 1
    assert all(hits[i].score >= hits[i + 1].score for i in range(len(hits) - 1))


@pytest.mark.parametrize("mode", [Mode.DENSE, Mode.BM25, Mode.HYBRID])
def test_filters_exclude_everything_else(retriever, mode):
    hits = retriever.search("lens flash sync adapter", "docs", 10, mode, filters={"tags": ["hardware"]}).hits
    assert {h.doc_id for h in hits} == {"lens.md", "flash.md"}
    only = retriever.search("memory card", "docs", 10, mode, filters={"source": ["/docs/card.md"]}).hits
    assert [h.doc_id for h in only] == ["card.md"]
    assert retriever.search("memory card", "docs", 10, mode, filters={"doc_id": ["nope.md"]}).hits == []


def test_unknown_filter_field_is_refused_with_the_valid_fields(retriever):
    with pytest.raises(ValueError, match="filterable fields are doc_id, source, tags"):
        retriever.search("x", "docs", 5, filters={"colour": ["red"]})


def test_unknown_mode_lists_the_valid_ones(retriever):
    with pytest.raises(ValueError, match="valid values are dense, bm25, hybrid, rerank"):
        retriever.search("x", "docs", 5, mode="semantic")


@pytest.mark.parametrize("backend", ["edge", "server"])
def test_empty_or_missing_collection_returns_an_empty_list(backend, settings, encoder, tmp_path):
    store = EdgeStore(tmp_path / "e") if backend == "edge" else ServerStore.connect(":memory:")
    retriever = Retriever(settings, store, encoder)
    assert retriever.search("anything", "missing", 5).hits == []
    store.ensure_collection("empty")
    for mode in (Mode.DENSE, Mode.BM25, Mode.HYBRID):
        assert retriever.search("anything", "empty", 5, mode).hits == []
    store.close()


@pytest.mark.parametrize("query", ["the of and to", "?!... ;;"])
@pytest.mark.parametrize("mode", [Mode.HYBRID, Mode.BM25])
def test_stop_word_or_punctuation_query_returns_dense_results(retriever, query, mode):
    hits = retriever.search(query, "docs", 5, mode).hits
    assert len(hits) == 5
    assert all("dense" in h.channels and "bm25" not in h.channels for h in hits)


def test_ir_metrics_match_hand_computed_values():
    from evaluation.ir import ir_metrics

    qrels = {"q1": {"a": 1}, "q2": {"b": 1, "c": 1}, "q3": {"z": 1}}
    run = {"q1": {"a": 3.0, "x": 2.0}, "q2": {"x": 3.0, "c": 2.0, "y": 1.0, "b": 0.5}, "q3": {"x": 1.0}}
    scores = ir_metrics(qrels, run)
    # q1: relevant at rank 1. q2: relevant at ranks 2 and 4. q3: nothing relevant retrieved.
    dcg_q2 = 1 / math.log2(3) + 1 / math.log2(5)
    idcg_q2 = 1 + 1 / math.log2(3)
    assert scores["ndcg@10"] == pytest.approx((1 + dcg_q2 / idcg_q2 + 0) / 3)
    assert scores["recall@10"] == pytest.approx((1 + 1 + 0) / 3)
    assert scores["mrr@10"] == pytest.approx((1 + 1 / 2 + 0) / 3)


def test_ragas_context_metrics_match_hand_computed_values():
    from evaluation.retrieval_eval import ragas_context_scores

    samples = [
        {"retrieved_ids": ["a", "x"], "reference_ids": ["a"],
         "retrieved_contexts": ["the warranty lasts two years", "unrelated text"],
         "reference_contexts": ["the warranty lasts two years"]},
        {"retrieved_ids": ["x", "c", "y", "b"], "reference_ids": ["b", "c"],
         "retrieved_contexts": ["zzz", "battery life is 420 shots"],
         "reference_contexts": ["battery life is 420 shots", "format the card first"]},
        {"retrieved_ids": ["x"], "reference_ids": ["z"],
         "retrieved_contexts": ["qqq"], "reference_contexts": ["a sentence that is not there"]},
    ]
    scores = ragas_context_scores(samples)
    assert scores["id_context_precision"] == pytest.approx((1 / 2 + 2 / 4 + 0) / 3)
    assert scores["id_context_recall"] == pytest.approx((1 + 1 + 0) / 3)
    # Average precision over retrieved contexts that match a reference (Levenshtein similarity >= 0.5):
    # sample 1: [1, 0] -> 1; sample 2: [0, 1] -> 1/2; sample 3: [0] -> 0.
    assert scores["context_precision_with_reference"] == pytest.approx((1 + 0.5 + 0) / 3, abs=1e-6)
    # Share of references found among the retrieved contexts: 1/1, 1/2, 0/1.
    assert scores["context_recall"] == pytest.approx((1 + 0.5 + 0) / 3)


def test_rerank_mode_reorders_hybrid_hits_within_the_filters(retriever):
    hybrid = retriever.search("camera sensor heat and cleaning", "docs", 5, Mode.HYBRID).hits
    reranked = retriever.search("camera sensor heat and cleaning", "docs", 5, Mode.RERANK).hits
    assert len(reranked) == 5 and {h.doc_id for h in reranked} & {h.doc_id for h in hybrid}
    assert {"sensor.md", "video.md"} <= {h.doc_id for h in reranked[:3]}
    filtered = retriever.search("lens flash", "docs", 5, Mode.RERANK, filters={"tags": ["hardware"]}).hits
    assert {h.doc_id for h in filtered} == {"lens.md", "flash.md"}
