"""The operator's view: a real Prometheus (Debian's package) scrapes a real uvicorn serving attest and
evaluates the shipped alert rules; the rules pass `promtool check rules` and their unit tests; every query
of the Grafana dashboard parses and names only metrics attest exports; OpenTelemetry spans per stage,
captured with the SDK's in-memory exporter."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from tests.conftest import DEMO, ROOT, make_settings
from tests.test_api_support import ServerThread, wait_until

DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "attest.json"
ALERT_NAMES = {"AttestHighErrorRate", "AttestOverloaded", "AttestSlowAnswers", "AttestRejectionRateJump",
               "AttestReviewQueueStale", "AttestBudgetExhausted"}
# Exported by the human-review store's metrics (a separate part of attest), not by the app built here.
REVIEW_METRICS = {"attest_review_oldest_pending_seconds", "attest_review_queue_depth"}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed: .ci/run installs Debian's prometheus package")
        pytest.skip(f"{name} is not installed (apt-get install prometheus)")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def _metric_names(expr: str) -> set[str]:
    return {name for name in re.findall(r"\b(attest_[a-z_]+?)(?:_bucket|_sum|_count)?\b(?=[\[{() ,]|$)", expr, flags=re.M)}


# ---- rules -------------------------------------------------------------------------------------------------
def test_alert_rules_pass_promtool_check_and_their_unit_tests():
    promtool = _tool("promtool")
    checked = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    # each alert fires on the series that should fire it and stays quiet on healthy ones
    tested = subprocess.run([promtool, "test", "rules", "alerts_test.yml"], cwd=ALERTS.parent,
                            capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    tests = (ALERTS.parent / "alerts_test.yml").read_text()
    assert {name for name in ALERT_NAMES if f"alertname: {name}" in tests} == ALERT_NAMES


# ---- a real Prometheus scraping a real server ------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory, encoder):
    """attest on uvicorn (open mode, no claim verifier: nothing here needs one) with two demo documents."""
    from api.app import create_app
    from api.services import Services
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester

    settings = make_settings(tmp_path_factory.mktemp("ops-data"), api_auth_mode="open")
    services = Services.build(settings, encoder=encoder, grounder=None)
    docs = tmp_path_factory.mktemp("ops-docs")
    for name in ("manual/battery-and-power.md", "support/faq.md"):
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEMO / name, docs / name)
    manifest = Manifest(settings.manifest_path)
    Ingester(settings, services.store, manifest, encoder).run([docs])
    manifest.close()
    app = create_app(settings, services=services, configure_logs=False)
    with ServerThread(app) as server:
        yield server.url, settings


def test_prometheus_scrapes_metrics_evaluates_the_rules_and_answers_every_dashboard_query(served, tmp_path):
    prometheus = _tool("prometheus")
    url, _ = served
    with httpx.Client(base_url=url, timeout=120) as http:
        for query in ("battery charging time", "warranty"):
            assert http.post("/v1/search", json={"query": query}).status_code == 200
        assert http.post("/v1/search", json={"query": ""}).status_code == 422
        exposition = http.get("/metrics").text
    exported = set(re.findall(r"^# TYPE (attest_[a-z_]+) ", exposition, flags=re.M))

    # every metric the dashboard and the rules read is one attest exports (a typo would plot nothing)
    referenced = set().union(*(_metric_names(q) for q in _dashboard_queries()),
                             _metric_names(ALERTS.read_text()))
    assert referenced and referenced - REVIEW_METRICS <= exported, referenced - REVIEW_METRICS - exported

    host, port = url.removeprefix("http://").split(":")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{ALERTS}']\n"
        "scrape_configs:\n"
        f"  - job_name: attest\n    static_configs: [{{targets: ['{host}:{port}']}}]\n")
    listen = f"127.0.0.1:{_free_port()}"
    process = subprocess.Popen([prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                f"--web.listen-address={listen}", "--log.level=warn"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    api = f"http://{listen}/api/v1"
    try:
        wait_until(lambda: _ok(f"http://{listen}/-/ready") or process.poll() is not None, 120, "prometheus to start")
        assert process.poll() is None, process.stderr.read()

        def query(expr: str) -> dict:
            return httpx.get(f"{api}/query", params={"query": expr}, timeout=30).json()

        target = wait_until(lambda: [t for t in httpx.get(f"{api}/targets").json()["data"]["activeTargets"]
                                     if t["health"] == "up"], 120, "the attest target to be up")
        assert target[0]["labels"]["job"] == "attest"
        searches = wait_until(lambda: query('attest_http_requests_total{route="/v1/search",status="200"}')
                              ["data"]["result"], 60, "the search requests to be scraped")
        assert float(searches[0]["value"][1]) >= 2
        invalid = query('attest_http_requests_total{route="/v1/search",status="422"}')["data"]["result"]
        assert float(invalid[0]["value"][1]) >= 1

        # every alert rule is loaded and evaluates without error against the live series
        def rules():
            groups = httpx.get(f"{api}/rules").json()["data"]["groups"]
            found = {r["name"]: r for g in groups for r in g["rules"]}
            return found if found and all(r["health"] == "ok" for r in found.values()) else None

        loaded = wait_until(rules, 60, "the rules to be evaluated")
        assert ALERT_NAMES <= set(loaded)
        assert all(loaded[name]["state"] == "inactive" for name in ALERT_NAMES)  # a healthy server alerts nothing

        # every dashboard query parses and runs (Grafana's $__rate_interval stands for a range)
        for expr in _dashboard_queries():
            answer = query(expr.replace("$__rate_interval", "1m"))
            assert answer["status"] == "success", (expr, answer)
        # and plots: a rate needs two scrapes of the series
        rates = wait_until(lambda: query("sum by (status) (rate(attest_http_requests_total[1m]))")["data"]["result"],
                           60, "a request rate")
        assert {r["metric"]["status"] for r in rates} >= {"200", "422"}
    finally:
        process.terminate()
        process.wait(30)


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# ---- OpenTelemetry --------------------------------------------------------------------------------------
def test_each_question_is_one_trace_with_a_span_per_stage(tmp_path, encoder):
    """A question answered by an OpenAI-compatible server on 127.0.0.1 (its real wire protocol) and checked by
    the claim verifier: one ``question`` span with ``retrieve``, ``generate`` and ``verify`` inside, in order."""
    import uvicorn
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from api.question import QuestionPath
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester
    from retrieval.store import EdgeStore
    from tests.test_answer_pipeline import FakeLLM

    fake = FakeLLM()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(fake.app(), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, "the fake OpenAI server to start")

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = make_settings(tmp_path / "data", answer_providers=["openai"], openai_base_url=fake.url + "/v1",
                             openai_api_key="sk-test", openai_model="gpt-4o-mini", cache_enabled=False)
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(DEMO / "support" / "faq.md", docs / "faq.md")
    store = EdgeStore(settings.edge_dir)
    manifest = Manifest(settings.manifest_path)
    Ingester(settings, store, manifest, encoder).run([docs])
    manifest.close()
    path = QuestionPath.build(settings, store, encoder, tracer=provider.get_tracer("attest.question"))
    try:
        response = path.ask("How do I reset the camera?", risk="low")
        fake.modes["openai"] = "500"
        failed = path.ask("How do I reset the camera?", risk="high")
    finally:
        path.close()
        store.close()
        server.should_exit = True
        thread.join(10)
        sock.close()

    assert fake.calls("openai"), "the answer came over HTTP from the fake provider"
    spans = exporter.get_finished_spans()
    for answered in (response, failed):
        root = next(s for s in spans if s.name == "question"
                    and s.attributes.get("attest.request_id") == answered.request_id)
        stages = sorted((s for s in spans if s.context.trace_id == root.context.trace_id and s is not root),
                        key=lambda s: s.start_time)
        assert [s.name for s in stages] == ["retrieve", "generate", "verify"]
        assert all(s.parent is not None and s.parent.span_id == root.context.span_id for s in stages)
        assert all(a.end_time <= b.start_time for a, b in zip(stages, stages[1:]))  # one after another
        assert stages[0].attributes["attest.collection"] == "default"
        assert stages[2].attributes["attest.decision"] == answered.decision == root.attributes["attest.decision"]
        assert root.attributes["attest.status"] == answered.status
    first_generate = next(s for s in spans if s.name == "generate"
                          and s.attributes.get("attest.request_id") == response.request_id)
    assert first_generate.attributes["attest.provider"] == "openai"
    assert first_generate.attributes["attest.served_from"] == "model"
    assert failed.status == "unavailable" and failed.decision == "rejected"


# ---- deploy/: the scale-out compose file -----------------------------------------------------------------
def test_the_compose_file_wires_a_three_node_cluster_workers_proxy_and_scrapes(tmp_path):
    import yaml

    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    nodes = sorted(name for name in services if name.startswith("qdrant-"))
    workers = sorted(name for name in services if name.startswith("attest-"))
    assert len(nodes) == 3 and len(workers) >= 2
    assert all(services[n]["environment"]["QDRANT__CLUSTER__ENABLED"] == "true" for n in nodes)
    assert all("--bootstrap" in services[n]["command"] for n in nodes[1:])  # peers join the first
    for worker in workers:
        env = services[worker]["environment"]
        assert int(env["ATTEST_QDRANT_SHARD_NUMBER"]) >= len(nodes) and int(env["ATTEST_QDRANT_REPLICATION_FACTOR"]) >= 2
        assert env["ATTEST_QDRANT_URL"].startswith("http://qdrant-")
        assert env["ATTEST_DATABASE_URL"].startswith("postgresql://") and "postgres" in services
        assert services[worker]["volumes"] == [f"{worker}:/data"]  # its own state until state is shared
    # the settings the workers are given are ones attest reads
    from attest_settings import Settings

    known = {f"ATTEST_{name.upper()}" for name in Settings.model_fields} | {"ATTEST_DATABASE_URL"}
    assert set(services[workers[0]]["environment"]) <= known
    # the proxy balances over every worker, and Prometheus scrapes every worker directly
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert all(f"server {w}:8000;" in nginx for w in workers)
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert scrape["scrape_configs"][0]["static_configs"][0]["targets"] == [f"{w}:8000" for w in workers]
    promtool = _tool("promtool")
    config = tmp_path / "prometheus.yml"
    config.write_text((DEPLOY / "prometheus" / "prometheus.yml").read_text()
                      .replace("/etc/prometheus/alerts.yml", str(ALERTS)))
    checked = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
