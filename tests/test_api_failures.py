"""When stages fail, the API still answers plainly: a problem+json without a stack trace for an unexpected
error, and for a question a clear message carrying the request id, never a raw error or a blank answer.

The server here has a store whose searches fail in collection ``broken``, and an OpenAI-compatible
provider on a closed loopback port (every model call fails at once)."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.conftest import make_settings
from tests.test_api_support import ServerThread, is_problem


class FailingSearchStore:
    """The real embedded store, except that searching collection ``broken`` raises."""

    def __init__(self, store):
        self._store = store

    def __getattr__(self, name):
        return getattr(self._store, name)

    def search(self, name, *args, **kwargs):
        if name == "broken":
            raise RuntimeError("disk on fire at /very/secret/path")
        return self._store.search(name, *args, **kwargs)


@pytest.fixture(scope="module")
def failing(tmp_path_factory, encoder):
    from api.app import create_app
    from api.services import Services
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester
    from retrieval.store import EdgeStore

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    settings = make_settings(tmp_path_factory.mktemp("failing-data"), api_auth_mode="open",
                             answer_providers=["openai"], openai_base_url=f"http://127.0.0.1:{closed}/v1",
                             openai_api_key="not-a-real-key")
    docs = tmp_path_factory.mktemp("failing-docs")
    (docs / "warranty.md").write_text("# Warranty\n\nThe K2 camera body has a two-year limited warranty.\n")
    store = EdgeStore(settings.edge_dir)
    manifest = Manifest(settings.manifest_path)
    ingester = Ingester(settings, store, manifest, encoder)
    for collection in ("default", "broken"):
        ingester.run([docs], collection)
    manifest.close()
    services = Services.build(settings, store=FailingSearchStore(store), encoder=encoder, grounder=None)
    with ServerThread(create_app(settings, services=services, configure_logs=False)) as server:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            yield client


def test_an_unexpected_error_is_a_500_problem_without_internals(failing):
    response = failing.post("/v1/search", json={"query": "warranty", "collection": "broken"})
    body = is_problem(response, 500)
    assert "quote the request id" in body["detail"]
    assert "/very/secret/path" not in response.text and "disk on fire" not in response.text


def test_a_failing_store_gives_a_question_a_clear_message_with_the_request_id(failing):
    response = failing.post("/v1/query", json={"question": "How long is the warranty?", "collection": "broken"})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "unavailable" and body["decision"] == "rejected"
    assert body["request_id"] == response.headers["x-request-id"] and body["request_id"] in body["answer"]
    assert "disk on fire" not in response.text


def test_when_every_provider_fails_the_answer_says_so_with_the_request_id(failing):
    response = failing.post("/v1/query", json={"question": "How long is the warranty on the K2 camera body?"})
    assert response.status_code == 200
    body = response.json()
    assert body["sources"], "retrieval worked"
    assert body["status"] == "unavailable" and body["decision"] == "rejected" and not body["citations"]
    assert body["request_id"] == response.headers["x-request-id"] and body["request_id"] in body["answer"]
    assert "every model provider failed" in body["answer"]
    assert body["attempts"] and all(a["outcome"] != "ok" for a in body["attempts"])


def test_a_failing_stream_still_ends_with_a_final_event_carrying_the_request_id(failing):
    from tests.test_api_support import sse_events

    with failing.stream("POST", "/v1/query/stream", json={"question": "How long is the warranty?",
                                                          "collection": "broken"}) as response:
        events = list(sse_events(response))
        request_id = response.headers["x-request-id"]
    assert [name for name, _ in events] == ["final"]
    assert request_id in events[0][1]["answer"]
