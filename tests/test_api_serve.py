"""``attest serve`` as a process: it says which auth mode it is in, writes a lock file naming its address while
it runs (what the CLI reads when the embedded store is locked), takes work over HTTP, and removes the lock
file when it stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import ROOT, make_settings
from tests.test_api_support import wait_until


@pytest.fixture
def served(tmp_path):
    data = tmp_path / "data"
    env = {**os.environ, "ATTEST_DATA_DIR": str(data), "ATTEST_API_AUTH_MODE": "open", "ATTEST_LOG_JSON": "false"}
    process = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", "0"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield process, make_settings(data)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)


def test_serve_announces_open_mode_writes_a_lock_file_and_removes_it_on_stop(served, tmp_path):
    from api.server_lock import find_running_server, handle_locked_store, lock_path, store_held_message

    process, settings = served
    server = wait_until(lambda: find_running_server(settings) or process.poll() is not None, 180,
                        "attest serve to write its lock file")
    assert server is not True and process.poll() is None, "attest serve exited early"
    assert server.pid == process.pid and server.url.startswith("http://127.0.0.1:")
    assert server.auth_mode == "open"

    message = store_held_message(settings, server, "ingest")
    assert str(process.pid) in message and f"{server.url}/v1/documents" in message

    note = tmp_path / "notes" / "lens.md"
    note.parent.mkdir()
    note.write_text("# Lens care\n\nClean the K2 lens with a dry microfibre cloth only.\n")
    lines: list[str] = []
    assert handle_locked_store(settings, "ingest", [note.parent], echo=lines.append) == 0, lines
    assert any("ingested" in line and "lens.md" in line for line in lines), lines
    assert lines[-1].endswith("succeeded")
    lines.clear()
    assert handle_locked_store(settings, "search", echo=lines.append) == 3
    assert f"pid {process.pid}" in lines[0] and "/v1/search" in lines[0]

    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert "auth: OPEN" in output and "local use only" in output
    assert not lock_path(settings).exists(), output[-2000:]
    assert find_running_server(settings) is None
