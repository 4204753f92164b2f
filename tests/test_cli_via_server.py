"""``attest search`` and ``attest ask`` while ``attest serve`` holds the data directory: sent to the server over
HTTP (a line on stderr says so), with the same hits as the in-process path once the server has stopped; a
server that wants keys without ATTEST_API_CLIENT_KEY is explained; a recorded server that does not answer is
passed over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

from tests.conftest import ROOT, make_settings, run_cli
from tests.test_answer_pipeline import fake_llm_server  # noqa: F401  (the fake OpenAI-wire server fixture)
from tests.test_api_support import wait_until

NOTE = "# Lens care\n\nClean the K2 lens with a dry microfibre cloth only. Never use window cleaner on the coating.\n"


@pytest.fixture
def served_with_fake_llm(tmp_path, fake_llm_server):  # noqa: F811
    data = tmp_path / "data"
    env = {**os.environ, "ATTEST_DATA_DIR": str(data), "ATTEST_API_AUTH_MODE": "open", "ATTEST_LOG_JSON": "false",
           "ATTEST_ANSWER_PROVIDERS": '["openai"]', "ATTEST_OPENAI_BASE_URL": fake_llm_server.url + "/v1",
           "ATTEST_OPENAI_API_KEY": "sk-test", "ATTEST_CACHE_ENABLED": "false"}
    process = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", "0"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield process, make_settings(data), env
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)


def test_search_and_ask_go_through_the_running_server(served_with_fake_llm, tmp_path, fake_llm_server):  # noqa: F811
    from api.server_lock import find_running_server, handle_locked_store

    process, settings, env = served_with_fake_llm
    server = wait_until(lambda: find_running_server(settings) or process.poll() is not None, 180,
                        "attest serve to write its lock file")
    assert server is not True and process.poll() is None, "attest serve exited early"
    note = tmp_path / "notes" / "lens.md"
    note.parent.mkdir()
    note.write_text(NOTE)
    lines: list[str] = []
    assert handle_locked_store(settings, "ingest", [note.parent], echo=lines.append) == 0, lines

    extra = {k: v for k, v in env.items() if k.startswith("ATTEST_")}
    via = run_cli("search", "how to clean the lens", "--json", data_dir=settings.data_dir, env_extra=extra)
    assert f"via attest serve at {server.url} (pid {process.pid})" in via.stderr
    served_hits = json.loads(via.stdout)["hits"]
    assert served_hits and served_hits[0]["doc_id"] == "lens.md"

    table = run_cli("search", "how to clean the lens", data_dir=settings.data_dir, env_extra=extra)
    assert "via attest serve" in table.stderr and "lens.md" in table.stdout

    bad = run_cli("search", "lens", "--mode", "sideways", data_dir=settings.data_dir, env_extra=extra, check=False)
    assert bad.returncode == 2 and "422" in bad.stderr and "mode" in bad.stderr

    fake_llm_server.reset()
    asked = run_cli("ask", "How should I clean the K2 lens?", "--json", data_dir=settings.data_dir, env_extra=extra)
    assert f"via attest serve at {server.url}" in asked.stderr
    answer = json.loads(asked.stdout)
    assert answer["provider"] == "openai"
    assert answer["sources"] and answer["sources"][0]["doc_id"] == "lens.md"
    assert len(fake_llm_server.calls("openai")) >= 1, "the server's provider was not asked"
    printed = run_cli("ask", "How should I clean the K2 lens?", data_dir=settings.data_dir, env_extra=extra)
    assert "via attest serve" in printed.stderr and f"status {answer['status']}" in printed.stdout

    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    here = run_cli("search", "how to clean the lens", "--json", data_dir=settings.data_dir, env_extra=extra)
    assert "via attest serve" not in here.stderr
    local_hits = json.loads(here.stdout)["hits"]
    assert [(h["id"], h["score"]) for h in local_hits] == [(h["id"], h["score"]) for h in served_hits]


def test_a_server_wanting_keys_without_a_client_key_is_explained(tmp_path):
    """This test process plays the server (a live pid) with a real /healthz on loopback; with nothing answering
    there, the same lock file is treated as not holding the index."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from api.cli_remote import server_for
    from api.server_lock import write_lock

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    settings = make_settings(tmp_path / "data", api_auth_mode="keys")
    health = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=health.serve_forever, daemon=True).start()
    try:
        write_lock(settings, "127.0.0.1", health.server_address[1])
        lines: list[str] = []
        with pytest.raises(SystemExit) as exit_info:
            server_for(settings, "search", lines.append)
        assert exit_info.value.code == 3
        assert "held by `attest serve`" in lines[0] and "ATTEST_API_CLIENT_KEY" in lines[0] and "/v1/search" in lines[0]
    finally:
        health.shutdown()
        health.server_close()
    assert server_for(settings, "search", lines.append) is None  # nothing answers /healthz any more


def test_a_recorded_server_that_does_not_answer_is_passed_over(tmp_path):
    from api.server_lock import write_lock

    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = make_settings(tmp_path / "data", api_auth_mode="open")
    write_lock(settings, "127.0.0.1", port)
    proc = run_cli("search", "anything", data_dir=settings.data_dir, env_extra={"ATTEST_API_AUTH_MODE": "open"})
    assert "via attest serve" not in proc.stderr
    assert f"http://127.0.0.1:{port}" in proc.stderr and "did not answer" in proc.stderr
    assert "searching in this process" in proc.stderr
    assert "no results" in proc.stderr
