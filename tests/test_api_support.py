"""Helpers for the HTTP API tests (no tests here): a real uvicorn server on 127.0.0.1 in a thread, SSE parsing."""

from __future__ import annotations

import json
import threading
import time

import httpx


def wait_until(condition, deadline_s: float, what: str, every_s: float = 0.1):
    """Poll ``condition`` until it returns something truthy or the deadline passes (no fixed sleeps)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {deadline_s:.0f} s waiting for {what}")


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 (a free port chosen by the OS) in a background thread."""

    def __init__(self, app):
        import uvicorn

        self.app = app
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="on",
                                timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)
        self.url = ""

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), 120, "uvicorn to start")
        assert self.server.started, "uvicorn did not start"
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def openai_chat_reply(body: dict, text: str, piece: int = 16):
    """A reply in OpenAI's chat-completions wire format to the request ``body``, carrying ``text``: one JSON
    completion, or (``"stream": true``) SSE chunks of ``piece`` characters, usage in the last chunk and
    ``[DONE]``. For the fake model servers of the tests (a remote paid API cannot be reached from here)."""
    from starlette.responses import JSONResponse, StreamingResponse

    usage = {"prompt_tokens": 200, "completion_tokens": 20, "total_tokens": 220}
    if not body.get("stream"):
        return JSONResponse({"id": "c1", "object": "chat.completion", "model": body["model"], "usage": usage,
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                          "finish_reason": "stop"}]})

    async def chunks():
        for start in range(0, len(text), piece):
            chunk = {"id": "c1", "object": "chat.completion.chunk", "model": body["model"],
                     "choices": [{"index": 0, "delta": {"content": text[start:start + piece]}, "finish_reason": None}]}
            yield f"data: {json.dumps(chunk)}\n\n"
        done = {"id": "c1", "object": "chat.completion.chunk", "model": body["model"], "usage": usage,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        yield f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n"

    return StreamingResponse(chunks(), media_type="text/event-stream")


def sse_events(response: httpx.Response):
    """(event, data) pairs of a text/event-stream response, as they arrive; comments are skipped."""
    event, data = None, []
    for line in response.iter_lines():
        if line == "":
            if event is not None or data:
                yield event or "message", json.loads("\n".join(data)) if data else None
            event, data = None, []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def metric_value(text: str, name: str, **labels) -> float:
    """The value of one Prometheus sample (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return 0.0


def is_problem(response: httpx.Response, status: int) -> dict:
    """Assert ``response`` is an RFC 9457 problem with ``status``; returns its body."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    for field in ("type", "title", "status", "detail", "instance", "request_id"):
        assert field in body, (field, body)
    assert body["status"] == status
    assert body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return body
