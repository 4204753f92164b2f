"""Flagging after delivery over real HTTP: a served answer is returned at once, while the quality judge (an
OpenAI-compatible endpoint on 127.0.0.1 returning log-probabilities, the real wire format) is still
deciding; when it scores the answer low, the answer appears in the review queue as a ``flagged`` item, the
score is a metric and is in ``attest eval history``."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import pytest

from tests.conftest import make_settings, run_cli
from tests.test_api_support import ServerThread, metric_value, openai_chat_reply, wait_until

COVERS = "The warranty covers defects in materials and workmanship."
COVERS_Q = "What does the K2 warranty cover?"
DOC = ("# Warranty\n\nThe K2 camera body has a two-year limited warranty. It covers defects in materials and "
       "workmanship.\n")
KEYS = {"asker": {"tenant": "acme", "collections": ["acme"]},
        "reviewer": {"tenant": "ops", "roles": ["reviewer"], "review_tenants": ["acme"]}}


class ModelAndJudge:
    """Answers from the document; as the judge (a 1-token call asking for logprobs), waits until the test
    lets it go, then says No (P(yes) about 0.1)."""

    def __init__(self):
        self.release = threading.Event()
        self.judge_prompts: list[str] = []

    def app(self):
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def chat(request):
            body = await request.json()
            if body.get("logprobs"):
                self.judge_prompts.append(body["messages"][-1]["content"])
                await asyncio.to_thread(self.release.wait, 120)
                top = [{"token": "No", "logprob": -0.1}, {"token": "Yes", "logprob": -2.3}]
                return JSONResponse({"id": "j1", "object": "chat.completion", "model": body["model"],
                                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "No"},
                                                  "logprobs": {"content": [{"token": "No", "logprob": -0.1,
                                                                            "top_logprobs": top}]},
                                                  "finish_reason": "length"}]})
            return openai_chat_reply(body, json.dumps({"answerable": True,
                                                       "sentences": [{"text": COVERS, "passages": [1]}]}))

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


@pytest.fixture(scope="module")
def flagging(tmp_path_factory, encoder):
    from api.app import create_app
    from api.services import Services
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester
    from retrieval.store import EdgeStore

    model = ModelAndJudge()
    with ServerThread(model.app()) as llm:
        settings = make_settings(tmp_path_factory.mktemp("flag-data"), api_keys=KEYS, cache_enabled=False,
                                 answer_providers=["openai"], openai_base_url=f"{llm.url}/v1",
                                 openai_api_key="sk-test", openai_model="gpt-4o-mini", grounding_judge="openai",
                                 review_judge_share=1.0, review_judge_threshold=0.5,
                                 grounding_answer_judge_risks=["high"])  # the quality judge's prompt comes first
        docs = tmp_path_factory.mktemp("flag-docs")
        (docs / "warranty.md").write_text(DOC)
        store = EdgeStore(settings.edge_dir)
        manifest = Manifest(settings.manifest_path)
        Ingester(settings, store, manifest, encoder).run([docs], "acme")
        manifest.close()
        services = Services.build(settings, store=store, encoder=encoder)
        try:
            with ServerThread(create_app(settings, services=services, configure_logs=False)) as server:
                with httpx.Client(base_url=server.url, timeout=300) as client:
                    yield client, model, settings, services
        finally:
            model.release.set()


def test_a_served_answer_is_judged_after_delivery_and_a_low_score_is_flagged_for_review(flagging):
    client, model, settings, services = flagging
    asker, reviewer = {"Authorization": "Bearer asker"}, {"Authorization": "Bearer reviewer"}
    answered = client.post("/v1/query", json={"question": COVERS_Q}, headers=asker)
    assert answered.status_code == 200, answered.text
    body = answered.json()
    assert body["decision"] == "served" and body["review"] is None
    # The answer came back while the judge is still holding its verdict: judging never delays an answer.
    wait_until(lambda: model.judge_prompts, 60, "the quality judge to be asked")
    assert not model.release.is_set()
    assert body["question"] in model.judge_prompts[0] and COVERS in model.judge_prompts[0]
    assert "complete" in model.judge_prompts[0]  # the rubric of review/prompts/quality@1.txt

    model.release.set()
    services.reviews.flagger.join()
    items = client.get("/v1/review/items", params={"kind": "flagged"}, headers=reviewer).json()["items"]
    [item] = [i for i in items if i["request_id"] == body["request_id"]]
    full = client.get(f"/v1/review/items/{item['id']}", headers=reviewer).json()
    assert full["draft"]["answer"] == body["answer"] and full["decision"] == "served"
    polled = client.get(f"/v1/queries/{body['request_id']}", headers=asker).json()
    assert polled["answer"] == body["answer"] and polled["review"]["status"] == "pending"

    text = client.get("/metrics").text
    assert metric_value(text, "attest_answer_quality_count") == 1
    assert metric_value(text, "attest_review_flagged_total", reason="quality") == 1
    history = run_cli("eval", "history", data_dir=settings.data_dir)
    assert "quality" in history.stdout and "0.100" in history.stdout  # P(yes) = e^-2.3 / (e^-2.3 + e^-0.1)
