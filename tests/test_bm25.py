"""attest's BM25 (sparse vectors + Qdrant's IDF) ranks like rank-bm25's BM25Okapi on the same tokens."""

from __future__ import annotations

import uuid

import numpy as np
from rank_bm25 import BM25Okapi

from retrieval.bm25 import Bm25Encoder, tokenize
from retrieval.schema import SPARSE, ChunkPoint
from retrieval.store import EdgeStore, ServerStore

CORPUS = [
    "The autofocus system uses 425 phase-detection points across the sensor.",
    "Battery life is rated at 420 shots per charge with the LCD screen.",
    "Firmware 2.1 added bird eye detection and improved low-light autofocus.",
    "The warranty covers manufacturing defects for two years from purchase.",
    "Returns are accepted within 30 days if the camera is in original packaging.",
    "Video recording supports 4K at 60 frames per second for 30 minutes.",
    "The electronic viewfinder has 3.69 million dots and a 120 Hz refresh rate.",
    "Charging over USB-C takes about two and a half hours from empty.",
    "Weather sealing protects against dust and light rain but not submersion.",
    "The image stabiliser provides up to 7 stops of shake correction.",
    "Dual card slots accept SD UHS-II cards; slot 1 also takes CFexpress.",
    "Privacy policy: location data is stored only on the device unless shared.",
    "The lens mount is compatible with all K-series lenses and adapters.",
    "Firmware updates are installed from the Setup menu using a memory card.",
    "Customer support answers by email within two business days.",
    "The shutter is rated for 300,000 actuations under normal use.",
    "Silent shooting uses the electronic shutter and can cause rolling distortion.",
    "Face detection and eye detection work for humans and animals.",
    "Low-light autofocus works down to -6 EV with an f/1.2 lens.",
    "The hot shoe supports TTL flash and high-speed sync up to 1/8000 s.",
    "Wi-Fi transfer sends JPEG files to the phone app automatically.",
    "The menu can be customised with a My Menu page of up to 30 items.",
    "Repair service prices depend on the damage and are quoted before work.",
    "Time-lapse mode records intervals from 1 second to 24 hours.",
    "The top LCD shows shutter speed, aperture, ISO and battery level.",
    "Extended warranty plans add one or two years of accidental damage cover.",
    "The camera weighs 658 grams with a card inserted.",
    "Release notes list fixes for autofocus hunting in continuous mode.",
    "Raw files are 14-bit and can be compressed losslessly.",
    "HDMI output provides clean 10-bit video to an external recorder.",
]
QUERIES = [
    "autofocus points", "battery shots per charge", "firmware bird detection", "warranty years",
    "return within days", "4K video minutes", "viewfinder refresh rate", "USB-C charging time",
    "dust and rain sealing", "stabiliser stops", "card slots CFexpress", "location data privacy",
    "lens adapters mount", "install firmware update", "support email business days", "shutter actuations",
    "electronic shutter distortion", "eye detection animals", "low light autofocus EV", "flash sync speed",
]


def _ours(store_factory):
    tokens = [tokenize(t) for t in CORPUS]
    avg_len = sum(map(len, tokens)) / len(tokens)
    encoder = Bm25Encoder(k1=1.5, b=0.75, avg_len=avg_len)
    store = store_factory()
    store.ensure_collection("bm25")
    rng = np.random.default_rng(0)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(len(CORPUS))]
    points = []
    for pid, toks in zip(ids, tokens):
        dense = rng.normal(size=384)
        points.append(ChunkPoint(pid, (dense / np.linalg.norm(dense)).tolist(), encoder.encode_tokens(toks), {"doc_id": pid}))
    store.upsert("bm25", points)
    return store, encoder, ids


def _reference_top5(query):
    bm25 = BM25Okapi([tokenize(t) for t in CORPUS], k1=1.5, b=0.75)
    scores = bm25.get_scores(tokenize(query))
    order = sorted(range(len(CORPUS)), key=lambda i: (-scores[i], i))
    return [i for i in order[:5] if scores[i] > 0]


def test_tokenizer_lowercases_drops_stop_words_and_stems():
    assert tokenize("The Cameras are RUNNING, and it isn't 4K-ready!") == ["camera", "run", "isn", "4k", "readi"]
    assert tokenize("of the and") == [] and tokenize("?!...") == []


def test_document_weights_follow_bm25_term_frequency_saturation():
    encoder = Bm25Encoder(k1=1.2, b=0.75, avg_len=4)
    vector = encoder.encode_tokens(["lens", "lens", "mount", "cap"])
    weights = dict(zip(vector.indices, vector.values))
    norm = 1.2 * (1 - 0.75 + 0.75 * 4 / 4)
    assert sorted(weights.values()) == pytest_approx(sorted([2 * 2.2 / (2 + norm), 2.2 / (1 + norm), 2.2 / (1 + norm)]))


def pytest_approx(values):
    import pytest

    return pytest.approx(values, rel=1e-6)


def test_edge_bm25_ranks_like_bm25okapi(tmp_path):
    store, encoder, ids = _ours(lambda: EdgeStore(tmp_path / "edge"))
    try:
        for query in QUERIES:
            ours = [ids.index(h.id) for h in store.search("bm25", SPARSE, encoder.encode_query(query), 5)]
            assert set(ours) == set(_reference_top5(query)), query
    finally:
        store.close()


def test_server_backend_bm25_ranks_like_bm25okapi():
    store, encoder, ids = _ours(lambda: ServerStore.connect(":memory:"))
    for query in QUERIES:
        ours = [ids.index(h.id) for h in store.search("bm25", SPARSE, encoder.encode_query(query), 5)]
        assert set(ours) == set(_reference_top5(query)), query
