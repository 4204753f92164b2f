"""Grounding's one regeneration, through the whole HTTP path: an answer whose only claim the sources do not
support is not served; the model is asked once more with the failing claim named, and the new answer is
verified again before it is served.

The model is an OpenAI-compatible endpoint on 127.0.0.1 (the real wire format, non-streaming and SSE): its
first answer states a warranty the document does not give; asked again with the failing claim named, it
answers from the document. The verifier, store and server are the real ones.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import make_settings
from tests.test_api_support import ServerThread, openai_chat_reply, sse_events

FABRICATED = "The K2 camera body has a 5-year warranty."
CORRECT = "The K2 camera body has a two-year limited warranty."


class ScriptedOpenAI:
    """Answers with the fabricated claim, unless the prompt names failing claims (grounding's retry)."""

    def __init__(self):
        self.requests: list[dict] = []

    def reply(self, body: dict) -> dict:
        retry = "do not support" in body["messages"][-1]["content"]
        return {"answerable": True, "sentences": [{"text": CORRECT if retry else FABRICATED, "passages": [1]}]}

    def app(self):
        from starlette.applications import Starlette
        from starlette.routing import Route

        async def chat(request):
            body = await request.json()
            self.requests.append(body)
            return openai_chat_reply(body, json.dumps(self.reply(body)))

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


class FastDeclinesStrongAnswers(ScriptedOpenAI):
    """The fast model declines; the strong one answers from the document (escalation)."""

    def reply(self, body: dict) -> dict:
        if body["model"] == "gpt-4o":
            return {"answerable": True, "short_answer": None, "sentences": [{"text": CORRECT, "passages": [1]}]}
        return {"answerable": False, "short_answer": None,
                "sentences": [{"text": "The documents do not say.", "passages": []}]}


class FastDeclinesOneAndFabricatesAnother(FastDeclinesStrongAnswers):
    """The fast model declines the warranty's length, and fabricates when asked what the warranty covers."""

    def reply(self, body: dict) -> dict:
        if body["model"] != "gpt-4o" and "What does" in body["messages"][-1]["content"]:
            return ScriptedOpenAI.reply(self, body)
        return super().reply(body)


class TwoTrueSentences(ScriptedOpenAI):
    """Two sentences, both stated by the document."""

    def reply(self, body: dict) -> dict:
        return {"answerable": True, "short_answer": None,
                "sentences": [{"text": CORRECT, "passages": [1]},
                              {"text": "It covers defects in materials and workmanship.", "passages": [1]}]}


def _serve(tmp_path_factory, encoder, model: ScriptedOpenAI, **overrides):
    from api.app import create_app
    from api.services import Services
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester
    from retrieval.store import EdgeStore

    with ServerThread(model.app()) as llm:
        settings = make_settings(tmp_path_factory.mktemp("regen-data"), api_auth_mode="open", cache_enabled=False,
                                 answer_providers=["openai"], openai_base_url=f"{llm.url}/v1",
                                 openai_api_key="sk-test", openai_model="gpt-4o-mini", **overrides)
        docs = tmp_path_factory.mktemp("regen-docs")
        (docs / "warranty.md").write_text("# Warranty\n\nThe K2 camera body has a two-year limited warranty. "
                                          "It covers defects in materials and workmanship.\n")
        store = EdgeStore(settings.edge_dir)
        manifest = Manifest(settings.manifest_path)
        Ingester(settings, store, manifest, encoder).run([docs], "default")
        manifest.close()
        services = Services.build(settings, store=store, encoder=encoder)
        with ServerThread(create_app(settings, services=services, configure_logs=False)) as server:
            with httpx.Client(base_url=server.url, timeout=300) as client:
                yield client, model, settings


@pytest.fixture(scope="module")
def scripted(tmp_path_factory, encoder):
    yield from _serve(tmp_path_factory, encoder, ScriptedOpenAI())


@pytest.fixture(scope="module")
def escalating(tmp_path_factory, encoder):
    yield from _serve(tmp_path_factory, encoder, FastDeclinesStrongAnswers(), answer_escalate=True,
                      openai_strong_model="gpt-4o")


def test_a_decline_of_the_fast_model_is_escalated_to_the_strong_one_and_verified(escalating):
    client, model, _ = escalating
    model.requests.clear()
    body = client.post("/v1/query", json={"question": "How long is the warranty on the K2 camera body?"}).json()
    assert [r["model"] for r in model.requests] == ["gpt-4o-mini", "gpt-4o"]
    assert body["decision"] == "served" and "two-year" in body["answer"], body
    assert body["model"] == "gpt-4o" and body["claims"][0]["verdict"] == "supported"
    assert "escalate_ms" in body["timings_ms"]


@pytest.fixture(scope="module")
def escalating_declines(tmp_path_factory, encoder):
    yield from _serve(tmp_path_factory, encoder, FastDeclinesOneAndFabricatesAnother(),
                      answer_escalate_declines=True, openai_strong_model="gpt-4o")


def test_with_declines_escalated_only_the_fast_model_s_decline_goes_to_the_strong_one(escalating_declines):
    client, model, _ = escalating_declines
    model.requests.clear()
    declined = client.post("/v1/query", json={"question": "How long is the warranty on the K2 camera body?"}).json()
    assert [r["model"] for r in model.requests] == ["gpt-4o-mini", "gpt-4o"]
    assert declined["decision"] == "served" and declined["model"] == "gpt-4o" and "two-year" in declined["answer"]
    # A fast answer that fails its check is regenerated by the fast model, not escalated.
    model.requests.clear()
    failed = client.post("/v1/query", json={"question": "What does the K2 camera body warranty cover?"}).json()
    assert [r["model"] for r in model.requests] == ["gpt-4o-mini", "gpt-4o-mini"]
    assert failed["model"] == "gpt-4o-mini" and "5-year" not in failed["answer"]


def test_a_complex_question_goes_to_the_fast_model_first_only_where_configured(tmp_path_factory, encoder):
    """ATTEST_ANSWER_COMPLEX_TIER=fast: a two-part question is put to the fast model first, and its decline to
    the strong one (escalation); by default the strong model answers it at once."""
    question = "How long is the warranty on the K2 camera body, and what does it cover?"
    for complex_tier, models in (("fast", ["gpt-4o-mini", "gpt-4o"]), ("strong", ["gpt-4o"])):
        serving = _serve(tmp_path_factory, encoder, FastDeclinesStrongAnswers(), answer_escalate_declines=True,
                         openai_strong_model="gpt-4o", answer_complex_tier=complex_tier)
        client, model, _ = next(serving)
        try:
            body = client.post("/v1/query", json={"question": question}).json()
        finally:
            serving.close()  # stops both servers
        assert body["route"] == "complex" and [r["model"] for r in model.requests] == models, complex_tier
        assert body["decision"] == "served" and body["model"] == "gpt-4o" and "two-year" in body["answer"], body
        assert ("escalate_ms" in body["timings_ms"]) == (complex_tier == "fast")


def test_the_strong_model_s_answer_streams_after_a_restart_event_that_drops_the_fast_model_s_decline(
        escalating_declines):
    client, model, _ = escalating_declines
    model.requests.clear()
    with client.stream("POST", "/v1/query/stream", json={"question": "How long is the warranty on the K2 camera "
                                                                      "body?", "risk": "low"}) as response:
        events = list(sse_events(response))
    names = [name for name, _ in events]
    assert [r["model"] for r in model.requests] == ["gpt-4o-mini", "gpt-4o"]
    restart = names.index("restart")
    assert events[restart][1]["reason"] == "escalated"
    before = "".join(data["text"] for name, data in events[:restart] if name == "token")
    after = "".join(data["text"] for name, data in events[restart:] if name == "token")
    assert "do not say" in before and "do not say" not in after
    final = events[-1][1]
    assert names[-1] == "final" and final["model"] == "gpt-4o" and final["decision"] == "served"
    assert after.startswith(CORRECT) and final["answer"].startswith(CORRECT)


def test_an_unsupported_answer_is_regenerated_with_its_failing_claim_named_and_verified_again(scripted):
    client, model, settings = scripted
    model.requests.clear()
    response = client.post("/v1/query", json={"question": "How long is the warranty on the K2 camera body?"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["decision"] == "repaired" and "two-year" in body["answer"] and "5-year" not in body["answer"]
    assert "regenerated" in (body["notice"] or "")
    first, retry = model.requests
    assert FABRICATED in retry["messages"][-1]["content"] and FABRICATED not in first["messages"][-1]["content"]
    # The ledger rows of both model calls carry the request id the client got back.
    from answer.usage import UsageLedger

    ledger = UsageLedger(settings.database_path)
    try:
        assert len(ledger.rows_for_request(body["request_id"])) == 2
    finally:
        ledger.close()


@pytest.fixture(scope="module")
def two_sentences(tmp_path_factory, encoder):
    yield from _serve(tmp_path_factory, encoder, TwoTrueSentences())


def test_the_first_sentence_is_verified_while_the_rest_is_written_and_said_so_in_the_stream(two_sentences):
    client, _, _ = two_sentences
    with client.stream("POST", "/v1/query/stream", json={"question": "How long is the warranty on the K2 camera "
                                                                      "body?", "risk": "low"}) as response:
        events = list(sse_events(response))
    names = [name for name, _ in events]
    final = events[-1][1]
    assert final["decision"] == "served", final
    [verified] = [data for name, data in events if name == "verified"]
    assert verified["text"] == CORRECT and verified["passages"] == [1] and verified["score"] >= final["claims"][0]["threshold"]
    assert names.index("token") < names.index("verified") < names.index("claim")
    assert 0 < final["timings_ms"]["first_verified_ms"] <= final["timings_ms"]["total_ms"]
