"""Schemathesis over the app's own OpenAPI schema, against a real uvicorn on 127.0.0.1: a bounded number of
generated requests per operation, and not one may get a 5xx (or break the documented contract).

The fuzzed server answers with an OpenAI-compatible provider pointed at a closed loopback port, so every
generated question runs the whole question path (retrieval, routing, the provider failing fast, the
fallback message) without minutes of local generation per example."""

from __future__ import annotations

import socket

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.conftest import make_settings
from tests.test_api_support import ServerThread, metric_value

AUTH = {"Authorization": "Bearer fuzz-key"}
MAX_EXAMPLES = 40


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when this returns: connections are refused


@pytest.fixture(scope="session")
def fuzz_server(tmp_path_factory, encoder):
    from api.app import create_app
    from api.services import Services

    settings = make_settings(
        tmp_path_factory.mktemp("fuzz-data"), api_keys={"fuzz-key": {"tenant": "fuzz", "collections": ["*"]}},
        answer_providers=["openai"], openai_base_url=f"http://127.0.0.1:{_closed_port()}/v1",
        openai_api_key="not-a-real-key", api_max_upload_mb=0.1, api_max_upload_total_mb=1)
    services = Services.build(settings, encoder=encoder)
    with ServerThread(create_app(settings, services=services, configure_logs=False)) as server:
        yield server


@pytest.fixture(scope="session")
def fuzz_schema(fuzz_server):
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")


def _check(case, response) -> None:
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:500])
    headers = {k.lower(): v[0] if isinstance(v, list) else v for k, v in response.headers.items()}
    if response.status_code == 400 and response.text.startswith("Invalid HTTP request received"):
        return  # a request line uvicorn itself refuses (e.g. control characters in the query): never reaches the app
    assert headers.get("x-request-id")
    if response.status_code >= 400:
        assert headers["content-type"].startswith("application/problem+json"), response.text[:300]
        assert "Traceback" not in response.text


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_generated_request_gets_a_server_error(fuzz_schema, fuzz_server, mode):
    """Valid requests must also match the documented responses; invalid ones must get a 4xx problem."""
    failures: list[str] = []
    operations = [result.ok() for result in fuzz_schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis_settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                             suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def run(case):
            response = case.call(base_url=fuzz_server.url, headers=AUTH, timeout=60)
            _check(case, response)
            if mode is GenerationMode.POSITIVE:
                case.validate_response(response)

        try:
            run()
        except Unsatisfiable:  # no invalid request exists for an operation without inputs (GET /healthz)
            assert mode is GenerationMode.NEGATIVE, operation.path
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
    if mode is GenerationMode.POSITIVE:  # the generated questions did reach the question path
        text = httpx.get(f"{fuzz_server.url}/metrics").text
        assert metric_value(text, "attest_http_requests_total", route="/v1/query", status="200") > 0
