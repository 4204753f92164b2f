"""Human review end to end over real HTTP: a uvicorn on 127.0.0.1 serving the app over a real embedded store,
the real claim verifier, and an OpenAI-compatible model server on 127.0.0.1 speaking the real wire format.

The model answers the warranty question with a warranty the document does not give, every time (also when
grounding regenerates), so with review on the answer is queued for a person; it answers the coverage
question from the document, so that answer is served (and can be marked down by its user).

Keys: ``acme-asker`` (tenant acme, may ask for review), ``acme-plain`` (tenant acme, may not),
``globex-asker`` (tenant globex); reviewers ``rev-a``, ``rev-b``, ``rev-c`` review acme, ``rev-globex`` globex.
The review store's clock is the test's (``Clock``): leases expire when the test moves it, without sleeping.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from tests.conftest import make_settings, run_cli
from tests.test_api_support import ServerThread, is_problem, metric_value, openai_chat_reply

FABRICATED = "The K2 camera body has a 5-year warranty."
CORRECT = "The K2 camera body has a two-year limited warranty."
COVERS = "The warranty covers defects in materials and workmanship."
WARRANTY_Q = "How long is the warranty on the K2 camera body?"
COVERS_Q = "What does the K2 warranty cover?"
DOC = ("# Warranty\n\nThe K2 camera body has a two-year limited warranty. It covers defects in materials and "
       "workmanship.\n")

KEYS = {
    "acme-asker": {"tenant": "acme", "collections": ["acme"], "roles": ["request_review"]},
    "acme-plain": {"tenant": "acme", "collections": ["acme"]},
    "globex-asker": {"tenant": "globex", "collections": ["globex"], "roles": ["request_review"]},
    "rev-a": {"tenant": "ops", "roles": ["reviewer"], "review_tenants": ["acme"]},
    "rev-b": {"tenant": "ops", "roles": ["reviewer"], "review_tenants": ["acme"]},
    "rev-c": {"tenant": "ops", "roles": ["reviewer"], "review_tenants": ["acme", "globex"]},
    "rev-globex": {"tenant": "ops", "roles": ["reviewer"], "review_tenants": ["globex"]},
}
ASKER = {"Authorization": "Bearer acme-asker"}
PLAIN = {"Authorization": "Bearer acme-plain"}
GLOBEX = {"Authorization": "Bearer globex-asker"}
A, B, C = ({"Authorization": f"Bearer rev-{x}"} for x in "abc")
REV_GLOBEX = {"Authorization": "Bearer rev-globex"}
LEASE_S = 300.0


class Clock:
    """The review store's clock: real time plus however far the test has moved it."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class ScriptedOpenAI:
    """An OpenAI-compatible chat endpoint: the fabricated warranty for the warranty question (first answer and
    retry alike), the document's coverage sentence for the coverage question."""

    def __init__(self):
        self.requests: list[dict] = []

    def app(self):
        from starlette.applications import Starlette
        from starlette.routing import Route

        async def chat(request):
            body = await request.json()
            self.requests.append(body)
            prompt = body["messages"][-1]["content"]
            sentence = COVERS if "cover?" in prompt else FABRICATED
            return openai_chat_reply(body, json.dumps({"answerable": True,
                                                       "sentences": [{"text": sentence, "passages": [1]}]}))

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


@pytest.fixture(scope="module")
def served(tmp_path_factory, encoder):
    from api.app import create_app
    from api.services import Services
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester
    from retrieval.store import EdgeStore

    model = ScriptedOpenAI()
    with ServerThread(model.app()) as llm:
        settings = make_settings(tmp_path_factory.mktemp("review-data"), api_keys=KEYS, cache_enabled=True,
                                 answer_providers=["openai"], openai_base_url=f"{llm.url}/v1",
                                 openai_api_key="sk-test", openai_model="gpt-4o-mini", review_lease_s=LEASE_S,
                                 review_double_share=0.5, grounding_judge="none")
        docs = tmp_path_factory.mktemp("review-docs")
        (docs / "warranty.md").write_text(DOC)
        store = EdgeStore(settings.edge_dir)
        manifest = Manifest(settings.manifest_path)
        for collection in ("acme", "globex"):
            Ingester(settings, store, manifest, encoder).run([docs], collection)
        manifest.close()
        services = Services.build(settings, store=store, encoder=encoder)
        clock = Clock()
        services.reviews.store.clock = clock
        with ServerThread(create_app(settings, services=services, configure_logs=False)) as server:
            with httpx.Client(base_url=server.url, timeout=300) as client:
                yield client, settings, clock, server.url


def request_id(double: bool, tag: str) -> str:
    """A client request id that the 50% double-review draw sends to two reviewers (or to one)."""
    from api.review import _double

    for n in range(1000):
        rid = f"req-{tag}-{n}"
        if _double(rid, 0.5) == double:
            return rid
    raise AssertionError("no request id found")


def ask_queued(client, tag: str, double: bool = False, headers=ASKER, collection: str = "acme") -> dict:
    response = client.post("/v1/query", json={"question": WARRANTY_Q, "review": True, "cache": False,
                                              "collection": collection},
                           headers={**headers, "X-Request-ID": request_id(double, tag)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["decision"] == "queued_for_review", (body["decision"], body["answer"], body["claims"])
    return body


def claim(client, item_id: str, headers) -> httpx.Response:
    return client.post(f"/v1/review/items/{item_id}/claim", headers=headers)


# ---- the queue -----------------------------------------------------------------------------------------
def test_a_failing_answer_is_queued_with_everything_a_reviewer_needs(served):
    client, settings, _, _ = served
    body = ask_queued(client, "needs")
    assert "review by a person" in body["answer"] and FABRICATED not in body["answer"]
    assert body["review"]["status"] == "pending"
    assert body["review"]["poll_url"] == f"/v1/queries/{body['request_id']}"

    polled = client.get(body["review"]["poll_url"], headers=ASKER).json()
    assert polled["decision"] == "queued_for_review" and polled["review"]["status"] == "pending"

    listed = client.get("/v1/review/items", params={"status": "pending", "collection": "acme"}, headers=A).json()
    summary = next(i for i in listed["items"] if i["request_id"] == body["request_id"])
    assert summary["kind"] == "failed_check" and summary["failing_claims"] == 1 and summary["tenant"] == "acme"

    item = client.get(f"/v1/review/items/{summary['id']}", headers=A).json()
    assert item["question"] == WARRANTY_Q and item["risk"] == "low" and item["collection"] == "acme"
    assert item["draft"]["answer"].startswith(FABRICATED)
    assert item["draft"]["sentences"][0]["citations"][0]["doc_id"] == "warranty.md"
    assert (item["model"], item["prompt_version"]) == ("gpt-4o-mini", settings.answer_prompt)
    assert item["grounding_prompt"].startswith("grounding@") and item["created_at"]
    [claim_] = item["claims"]
    assert claim_["verdict"] == "unsupported" and claim_["score"] < claim_["threshold"]
    assert "number" in " ".join(claim_["vetoes"])  # "5-year" is not in the document
    source = item["sources"][0]
    assert source["doc_id"] == "warranty.md" and "two-year" in source["text"]
    span = claim_["evidence_spans"][0]
    assert source["text"][span["start"]:span["end"]] == span["text"]


def test_a_key_without_the_role_may_not_ask_for_review(served):
    client, *_ = served
    body = is_problem(client.post("/v1/query", json={"question": WARRANTY_Q, "review": True}, headers=PLAIN), 403)
    assert "request_review" in body["detail"]
    # Without "review" (the server's setting is off) the failing answer is rejected, and nothing is queued.
    answered = client.post("/v1/query", json={"question": WARRANTY_Q, "cache": False}, headers=PLAIN).json()
    assert answered["decision"] == "rejected" and answered["review"] is None


# ---- the whole lifecycle -------------------------------------------------------------------------------
def test_lifecycle_claim_edit_reverify_approve_poll_audit_and_cache(served):
    client, *_ = served
    asked = ask_queued(client, "life")
    item_id = asked["review"]["item_id"]

    is_problem(client.post(f"/v1/review/items/{item_id}/approve", headers=A), 409)  # not claimed yet
    lease = claim(client, item_id, A)
    assert lease.status_code == 200, lease.text
    assert lease.json()["reviewer"].startswith("key_") and lease.json()["slot"] == 0

    # An edit that still states the wrong number is verified and shown failing; the reviewer edits again.
    bad = client.post(f"/v1/review/items/{item_id}/edit", json={"text": FABRICATED + " [1]"}, headers=A).json()
    assert bad["verification"]["decision"] == "rejected"
    assert bad["verification"]["claims"][0]["verdict"] == "unsupported"
    good = client.post(f"/v1/review/items/{item_id}/edit", json={"text": CORRECT + " [1]"}, headers=A).json()
    assert good["verification"]["decision"] == "served"
    assert good["verification"]["claims"][0]["verdict"] == "supported"

    decided = client.post(f"/v1/review/items/{item_id}/approve", headers=A)
    assert decided.status_code == 200, decided.text
    item = decided.json()
    assert item["status"] == "edited" and item["final_text"] == CORRECT + " [1]"
    assert [e["verification"]["decision"] for e in item["edits"]] == ["rejected", "served"]
    assert item["decisions"][0]["verification"]["decision"] == "served"

    polled = client.get(asked["review"]["poll_url"], headers=ASKER).json()
    assert polled["decision"] == "served" and polled["answer"] == CORRECT + " [1]"
    assert polled["review"]["status"] == "edited" and "corrected" in polled["notice"]
    assert polled["citations"][0]["doc_id"] == "warranty.md"

    # Deciding again is a conflict, with the reason.
    again = is_problem(claim(client, item_id, B), 409)
    assert "already decided" in again["detail"]

    trail = client.get(f"/v1/review/items/{item_id}/audit", headers=A).json()["entries"]
    assert [e["action"] for e in trail] == ["queued", "claimed", "edit_verified", "edit_verified", "edited"]
    reviewer_id = lease.json()["reviewer"]
    assert all(e["actor"] == reviewer_id for e in trail[1:]) and all(e["at"] for e in trail)
    assert trail[1]["before"]["status"] == "pending" and trail[1]["after"]["leases"][0]["reviewer"] == reviewer_id
    assert trail[2]["before"]["text"].startswith(FABRICATED) and trail[3]["after"]["text"] == CORRECT + " [1]"
    assert trail[4]["before"]["final_text"] is None and trail[4]["after"]["status"] == "edited"

    # The corrected answer now comes from the semantic cache, marked as reviewed.
    again = client.post("/v1/query", json={"question": WARRANTY_Q}, headers=ASKER).json()
    assert again["served_from"] == "cache" and again["decision"] == "served"
    assert again["cache"]["reviewed"]["item_id"] == item_id and again["answer"] == CORRECT + " [1]"
    assert "Reviewed" in again["notice"]


def test_two_reviewers_racing_for_one_item_one_wins_the_other_gets_409(served):
    client, *_ = served
    item_id = ask_queued(client, "race")["review"]["item_id"]
    barrier = threading.Barrier(2)
    results: dict[str, httpx.Response] = {}

    def race(name, headers):
        with httpx.Client(base_url=str(client.base_url), timeout=60) as own:
            barrier.wait()
            results[name] = claim(own, item_id, headers)

    threads = [threading.Thread(target=race, args=(n, h)) for n, h in (("a", A), ("b", B))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results.values())
    assert codes == [200, 409], {k: (r.status_code, r.text) for k, r in results.items()}
    winner, loser = (A, B) if results["a"].status_code == 200 else (B, A)
    assert "claimed by" in is_problem(results["b" if winner is A else "a"], 409)["detail"]
    # The loser cannot decide it either; the winner rejects it with a reason.
    is_problem(client.post(f"/v1/review/items/{item_id}/reject", json={"reason": "x"}, headers=loser), 409)
    is_problem(client.post(f"/v1/review/items/{item_id}/reject", json={"reason": "  "}, headers=winner), 422)
    rejected = client.post(f"/v1/review/items/{item_id}/reject", json={"reason": "states 5 years; the document "
                                                                             "says two"}, headers=winner).json()
    assert rejected["status"] == "rejected" and rejected["final_reason"].startswith("states 5 years")
    asked_id = rejected["request_id"]
    polled = client.get(f"/v1/queries/{asked_id}", headers=ASKER).json()
    assert polled["decision"] == "rejected" and "did not approve" in polled["answer"] and not polled["citations"]


def test_a_lease_expires_and_another_reviewer_can_take_the_item(served):
    client, _, clock, _ = served
    item_id = ask_queued(client, "lease")["review"]["item_id"]
    assert claim(client, item_id, A).status_code == 200
    assert "claimed by" in is_problem(claim(client, item_id, B), 409)["detail"]
    listed = client.get("/v1/review/items", params={"status": "claimed"}, headers=B).json()["items"]
    assert item_id in [i["id"] for i in listed]

    clock.advance(LEASE_S + 1)
    assert item_id in [i["id"] for i in client.get("/v1/review/items", params={"status": "pending"},
                                                   headers=B).json()["items"]]
    taken = claim(client, item_id, B)
    assert taken.status_code == 200, taken.text
    late = is_problem(client.post(f"/v1/review/items/{item_id}/approve", headers=A), 409)
    assert "no lease" in late["detail"]
    assert client.post(f"/v1/review/items/{item_id}/approve", headers=B).json()["status"] == "approved"
    actions = [e["action"] for e in client.get(f"/v1/review/items/{item_id}/audit", headers=B).json()["entries"]]
    assert actions == ["queued", "claimed", "lease_expired", "claimed", "approved"]


def test_release_gives_the_item_back(served):
    client, *_ = served
    item_id = ask_queued(client, "release")["review"]["item_id"]
    assert claim(client, item_id, A).status_code == 200
    assert client.post(f"/v1/review/items/{item_id}/release", headers=A).json()["status"] == "pending"
    is_problem(client.post(f"/v1/review/items/{item_id}/release", headers=A), 409)
    assert claim(client, item_id, B).status_code == 200
    assert client.post(f"/v1/review/items/{item_id}/release", headers=B).status_code == 200


# ---- tenants -------------------------------------------------------------------------------------------
def test_a_reviewer_of_one_tenant_cannot_list_read_or_decide_anothers_items(served):
    client, *_ = served
    asked = ask_queued(client, "globex", headers=GLOBEX, collection="globex")
    item_id = asked["review"]["item_id"]
    for status in ("open", "all"):
        seen = client.get("/v1/review/items", params={"status": status}, headers=A).json()["items"]
        assert all(i["tenant"] == "acme" for i in seen) and item_id not in [i["id"] for i in seen]
    assert client.get("/v1/review/items", params={"tenant": "globex"}, headers=A).json()["items"] == []
    for response in (client.get(f"/v1/review/items/{item_id}", headers=A), claim(client, item_id, A),
                     client.post(f"/v1/review/items/{item_id}/approve", headers=A),
                     client.post(f"/v1/review/items/{item_id}/reject", json={"reason": "no"}, headers=A),
                     client.post(f"/v1/review/items/{item_id}/edit", json={"text": CORRECT}, headers=A),
                     client.get(f"/v1/review/items/{item_id}/audit", headers=A)):
        assert "no review item" in is_problem(response, 404)["detail"]
    # The asker of another tenant cannot poll it; an API key that is not a reviewer cannot use the queue.
    is_problem(client.get(asked["review"]["poll_url"], headers=ASKER), 404)
    is_problem(client.get("/v1/review/items", headers=ASKER), 403)
    # Its own tenant's reviewer decides it.
    assert claim(client, item_id, REV_GLOBEX).status_code == 200
    assert client.post(f"/v1/review/items/{item_id}/approve", headers=REV_GLOBEX).json()["status"] == "approved"
    polled = client.get(asked["review"]["poll_url"], headers=GLOBEX).json()
    assert polled["decision"] == "served" and polled["answer"].startswith(FABRICATED)  # a person vouched for it


# ---- feedback ------------------------------------------------------------------------------------------
def test_a_thumbs_down_lands_in_the_queue_and_a_rejection_takes_the_answer_out_of_the_cache(served):
    client, *_ = served
    answered = client.post("/v1/query", json={"question": COVERS_Q},
                           headers={**ASKER, "X-Request-ID": request_id(False, "covers")}).json()
    assert answered["decision"] == "served", answered
    stored = client.post("/v1/feedback", json={"request_id": answered["request_id"], "rating": "down",
                                               "comment": "it leaves out accidental damage"}, headers=ASKER)
    assert stored.status_code == 201, stored.text
    ref = stored.json()["review"]
    item = client.get(f"/v1/review/items/{ref['item_id']}", headers=A).json()
    assert item["kind"] == "feedback" and item["feedback"][0]["comment"] == "it leaves out accidental damage"
    assert item["draft"]["answer"] == answered["answer"] and item["claims"][0]["verdict"] == "supported"
    # A second thumbs down joins the same item.
    client.post("/v1/feedback", json={"request_id": answered["request_id"], "rating": "down"}, headers=ASKER)
    assert len(client.get(f"/v1/review/items/{ref['item_id']}", headers=A).json()["feedback"]) == 2
    assert client.post("/v1/query", json={"question": COVERS_Q}, headers=ASKER).json()["served_from"] == "cache"

    assert claim(client, ref["item_id"], B).status_code == 200
    rejected = client.post(f"/v1/review/items/{ref['item_id']}/reject", json={"reason": "incomplete"}, headers=B)
    assert rejected.json()["status"] == "rejected"
    again = client.post("/v1/query", json={"question": COVERS_Q}, headers=ASKER).json()
    assert again["served_from"] == "model"


# ---- two reviewers, agreement --------------------------------------------------------------------------
def test_double_reviewed_items_report_agreement_and_a_disagreement_goes_to_a_third_reviewer(served):
    client, *_ = served
    agreed = ask_queued(client, "agree", double=True)["review"]["item_id"]
    split = ask_queued(client, "split", double=True)["review"]["item_id"]
    for item_id in (agreed, split):
        assert client.get(f"/v1/review/items/{item_id}", headers=A).json()["reviews_required"] == 2

    # Both reviewers hold the item at once (independent reviews); a third cannot join.
    assert claim(client, agreed, A).status_code == 200 and claim(client, agreed, B).status_code == 200
    is_problem(claim(client, agreed, C), 409)
    assert client.post(f"/v1/review/items/{agreed}/approve", headers=A).json()["status"] == "claimed"
    is_problem(claim(client, agreed, A), 409)  # one review per person
    assert client.post(f"/v1/review/items/{agreed}/approve", headers=B).json()["status"] == "approved"

    for headers in (A, B):
        assert claim(client, split, headers).status_code == 200
    client.post(f"/v1/review/items/{split}/approve", headers=A)
    disputed = client.post(f"/v1/review/items/{split}/reject", json={"reason": "wrong number"}, headers=B).json()
    assert disputed["status"] == "disputed"
    is_problem(claim(client, split, A), 409)
    assert claim(client, split, C).status_code == 200
    final = client.post(f"/v1/review/items/{split}/reject", json={"reason": "5 years is wrong"}, headers=C).json()
    assert final["status"] == "rejected" and [d["slot"] for d in final["decisions"]] == [0, 1, 2]

    report = client.get("/v1/review/agreement", headers=A).json()
    assert report["overall"] == {"items": 2, "agreed": 1, "rate": 0.5, "exact_rate": 0.5}
    assert report["by_tenant"]["acme"]["items"] == 2 and report["by_kind"]["failed_check"]["rate"] == 0.5
    assert client.get("/v1/review/agreement", headers=REV_GLOBEX).json()["overall"]["items"] == 0


# ---- metrics, CLI, export ------------------------------------------------------------------------------
def test_metrics_show_queue_depth_oldest_age_and_decisions(served):
    client, _, clock, _ = served
    ask_queued(client, "metrics")
    text = client.get("/metrics").text
    assert metric_value(text, "attest_review_queue_depth", tenant="acme", kind="failed_check") >= 1
    assert metric_value(text, "attest_review_oldest_pending_seconds", tenant="acme", kind="failed_check") > 0
    assert metric_value(text, "attest_review_decisions_total", action="edited", kind="failed_check") >= 1
    assert metric_value(text, "attest_review_decisions_total", action="rejected", kind="feedback") >= 1


def test_the_cli_lists_shows_approves_and_rejects_through_the_api(served):
    client, settings, _, url = served
    first = ask_queued(client, "cli-1")["review"]["item_id"]
    second = ask_queued(client, "cli-2")["review"]["item_id"]
    env = {"ATTEST_API_CLIENT_KEY": "rev-c"}
    listed = json.loads(run_cli("review", "list", "--url", url, "--json", data_dir=settings.data_dir,
                                env_extra=env).stdout)
    assert {first, second} <= {i["id"] for i in listed["items"]}
    shown = run_cli("review", "show", first, "--url", url, data_dir=settings.data_dir, env_extra=env).stdout
    assert WARRANTY_Q in shown and "unsupported" in shown and "warranty.md" in shown
    run_cli("review", "approve", first, "--url", url, data_dir=settings.data_dir, env_extra=env)
    run_cli("review", "reject", second, "--reason", "not in the documents", "--unanswerable", "--url", url,
            data_dir=settings.data_dir, env_extra=env)
    assert client.get(f"/v1/review/items/{first}", headers=C).json()["status"] == "approved"
    assert client.get(f"/v1/review/items/{second}", headers=C).json()["status"] == "rejected"
    failed = run_cli("review", "approve", first, "--url", url, data_dir=settings.data_dir, env_extra=env,
                     check=False)
    assert failed.returncode == 1 and "already decided" in failed.stderr
    denied = run_cli("review", "list", "--url", url, data_dir=settings.data_dir,
                     env_extra={"ATTEST_API_CLIENT_KEY": "acme-asker"}, check=False)
    assert denied.returncode == 1 and "reviewer" in denied.stderr


def test_the_export_is_read_back_as_a_golden_set_and_as_verifier_training_pairs(served, tmp_path):
    from evaluation.golden import score_case
    from evaluation.retrieval_eval import load_golden

    client, settings, _, _ = served
    out = tmp_path / "reviewed.jsonl"
    run_cli("review", "export", "--out", str(out), data_dir=settings.data_dir)
    cases = load_golden(out)
    by_answer = {c["reference_answer"]: c for c in cases}
    edited = by_answer[CORRECT]
    assert edited["answerable"] and edited["doc_ids"] == ["warranty.md"] and edited["question"] == WARRANTY_Q
    assert any("two-year" in p for p in edited["passages"]) and all(p in DOC for p in edited["passages"])
    assert any(not c["answerable"] and c["reference_answer"] == "" for c in cases)  # the --unanswerable rejection
    # The golden scorer reads the cases: a correct answer scores, the fabricated one does not.
    good = score_case(edited, {"answer": CORRECT, "decision": "served",
                               "citations": [{"doc_id": "warranty.md", "quote": edited["passages"][0]}]}, None)
    bad = score_case(edited, {"answer": FABRICATED, "decision": "served", "citations": []}, None)
    assert good.answer_f1 == 1.0 and good.citation_recall == 1.0 and bad.answer_f1 < good.answer_f1

    pairs = [json.loads(line) for line in (tmp_path / "reviewed-claims.jsonl").read_text().splitlines()]
    assert {p["label"] for p in pairs} == {"supported", "unsupported"}
    for p in pairs:
        assert set(p) >= {"id", "claim", "context", "label", "kind"} and p["context"]
        assert len(p["id"].split("-")) == 4  # prepare groups folds by the third part (the item)
    labelled = {(p["claim"], p["label"]) for p in pairs}
    assert (CORRECT, "supported") in labelled and (FABRICATED, "unsupported") in labelled
