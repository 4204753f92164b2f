"""Parts of the API that need no server: file-name sanitising, the answer text pulled out of streamed JSON,
admission control, JSON logs with request ids, and the server lock file the CLI reads."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys

import pytest

from api.admission import Admission
from api.errors import Problem
from api.jobs import sanitise_name
from answer.stream import AnswerTextStream
from api.question import Verification, _word_pieces
from tests.conftest import make_settings


@pytest.mark.parametrize("given, safe", [
    ("report.pdf", "report.pdf"),
    ("../../etc/passwd.txt", "etc/passwd.txt"),
    ("/abs/path/notes.md", "abs/path/notes.md"),
    ("C:\\Users\\me\\Report (final).pdf", "C:/Users/me/Report final.pdf".replace(":", "")),
    (".hidden.md", "hidden.md"),
    ("a/./b/../c.txt", "a/b/c.txt"),
    ("naïve café.md", "naïve café.md"),
    ("../..", ""),
    ("x" * 300 + ".txt", "x" * 110 + ".txt"),
])
def test_file_names_are_sanitised_into_safe_relative_paths(given, safe):
    assert sanitise_name(given) == safe


def test_sanitised_names_never_escape_the_upload_folder(tmp_path):
    for name in ("../../x.md", "/etc/x.md", "a/../../x.md", "..\\..\\x.md", "\u2025/x.md"):
        target = (tmp_path / sanitise_name(name)).resolve()
        assert target.is_relative_to(tmp_path), name


def test_answer_text_is_pulled_out_of_streamed_json_with_citation_markers():
    raw = ('{"answerable": true, "sentences": [{"text": "It lasts \\"two\\" years \\u2014 at most.", '
           '"passages": [1, 2]}, {"text": "Then it ends.", "passages": [3]}]}')
    for size in (1, 3, 7, len(raw)):
        stream = AnswerTextStream()
        text = "".join(stream.feed(raw[i:i + size]) for i in range(0, len(raw), size))
        assert text == 'It lasts "two" years \u2014 at most. [1][2] Then it ends. [3]', size


def test_a_sentence_is_complete_once_the_next_one_begins_or_the_object_ends():
    """The question path verifies the first sentence as soon as its text and passages are final."""
    stream = AnswerTextStream()
    stream.feed('{"answerable": true, "short_answer": "two years", "sentences": [{"text": "It lasts two years.", '
                '"passages": [1, 2')
    assert stream.complete == [], "the passage list may still grow: [1, 2] could become [1, 23]"
    stream.feed(']}, {"text": "Then it')
    assert stream.complete == [("It lasts two years.", [1, 2])]
    stream.feed(' ends.", "passages": [3]}]}')
    assert stream.complete == [("It lasts two years.", [1, 2]), ("Then it ends.", [3])]


def test_a_one_sentence_answer_is_complete_when_the_object_ends_whatever_the_key_order():
    """Its passage list is final only then (a later key may follow it): until then no markers, no check."""
    stream = AnswerTextStream()
    shown = stream.feed('{"short_answer": "two years", "sentences": [{"text": "It lasts two years.", "passages": [1]}], ')
    assert shown == "It lasts two years." and stream.complete == [] and not stream.finished
    assert stream.feed('"answerable": true}') == " [1]"
    assert stream.complete == [("It lasts two years.", [1])] and stream.finished


def test_a_decline_streams_its_sentence_and_nothing_else():
    stream = AnswerTextStream()
    assert stream.feed('{"answerable": false, "sentences": [{"text": "The documents do not say.", '
                       '"passages": []}]}') == "The documents do not say."


def test_high_risk_text_pieces_join_back_exactly():
    text = "The warranty lasts two years [1]. It covers  defects [2]."
    assert "".join(_word_pieces(text)) == text


def test_a_grounded_answer_is_shown_with_chunk_ids_and_a_notice_naming_what_was_removed():
    from types import SimpleNamespace

    from answer.result import AnswerSentence, Citation
    from grounding.decide import ClaimVerdict as Verdict, EvidenceRef, GroundedAnswer

    hits = [SimpleNamespace(id="c1", text="One year."), SimpleNamespace(id="c2", text="It is covered. Two years.")]
    kept = Verdict(claim="It lasts two years.", sentence=0, supported=True, score=0.97, threshold=0.5,
                   signals={"verifier_logit": 3.1}, cited_passages=[1], supporting_passages=[2], citation="corrected",
                   evidence=[EvidenceRef(passage=2, chunk_id="c2", text="Two years.", similarity=0.9)])
    removed = Verdict(claim="It is free.", sentence=1, supported=False, score=0.1, threshold=0.5, signals={},
                      cited_passages=[1], citation="unsupported")
    citation = Citation(passage=2, chunk_id="c2", doc_id="w.md", source="w.md", quote="Two years.")
    grounded = GroundedAnswer(request_id="req_1", question="How long?", decision="repaired",
                              text="It lasts two years. [2]", sentences=[AnswerSentence(text="It lasts two years.",
                                                                                       citations=[citation])],
                              claims=[kept, removed], confidence=0.97, risk="low", threshold=0.5, model="m",
                              removed_sentences=["It is free."],
                              timings_ms={"score_ms": 12.5, "answer_judge_ms": 700.0, "verify_ms": 800.0})
    v = Verification.from_grounded(grounded, hits, original=None)
    assert v.decision == "repaired" and v.answer == "It lasts two years. [2]" and v.retracted == ["It is free."]
    assert [c.verdict for c in v.claims] == ["supported", "unsupported"]
    assert v.claims[0].citations == ["c1"] and v.claims[0].supporting == ["c2"] and v.claims[0].corrected_citation
    assert v.claims[0].evidence == ["c2"] and [c.chunk_id for c in v.citations] == ["c2"]
    assert v.notice.startswith("1 sentence(s) were removed") and v.result is None
    # The evidence sentence, located in its passage (what a reviewer's page highlights).
    [span] = v.claims[0].evidence_spans
    assert (span.chunk_id, span.passage, span.start, span.end) == ("c2", 2, 15, 25)
    # The grounding steps inside verify_ms reach the response's timings (the path times verify_ms itself).
    assert v.timings_ms == {"score_ms": 12.5, "answer_judge_ms": 700.0}


# ---- admission ----------------------------------------------------------------------------------------
def test_admission_queues_then_refuses_with_503_and_retry_after():
    async def scenario():
        admission = Admission(max_concurrent=1, max_queue=1, queue_timeout_s=30, max_per_key=10)
        first = await admission.enter("a")
        waiting = asyncio.create_task(admission.enter("b"))
        await asyncio.sleep(0)  # let it join the queue
        assert admission.waiting == 1
        with pytest.raises(Problem) as refused:
            await admission.enter("c")
        assert refused.value.status == 503 and int(refused.value.headers["Retry-After"]) >= 1
        admission.leave(first)
        second = await asyncio.wait_for(waiting, 5)
        assert admission.running == 1 and admission.waiting == 0
        admission.leave(second)
        assert admission.running == 0

    asyncio.run(scenario())


def test_admission_times_out_a_queued_request_with_503():
    async def scenario():
        admission = Admission(max_concurrent=1, max_queue=5, queue_timeout_s=0.05, max_per_key=10)
        held = await admission.enter("a")
        with pytest.raises(Problem) as refused:
            await admission.enter("b")
        assert refused.value.status == 503 and "Retry-After" in refused.value.headers
        assert admission.waiting == 0 and admission.per_key == {"a": 1}
        admission.leave(held)

    asyncio.run(scenario())


def test_one_key_beyond_its_share_gets_429_with_retry_after():
    async def scenario():
        admission = Admission(max_concurrent=4, max_queue=4, queue_timeout_s=30, max_per_key=2)
        tickets = [await admission.enter("greedy"), await admission.enter("greedy")]
        with pytest.raises(Problem) as refused:
            await admission.enter("greedy")
        assert refused.value.status == 429 and "Retry-After" in refused.value.headers
        other = await admission.enter("polite")  # other keys are not affected
        for ticket in tickets + [other]:
            admission.leave(ticket)

    asyncio.run(scenario())


# ---- logs ---------------------------------------------------------------------------------------------
def test_log_lines_are_json_and_carry_the_request_id(tmp_path):
    from api.logs import ContextFilter, JsonFormatter, request_id_var

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("attest.test-json-logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    token = request_id_var.set("req_abc")
    try:
        logger.info("answered", extra={"decision": "served"})
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("failed")
    finally:
        request_id_var.reset(token)
        logger.removeHandler(handler)
    first, second = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert first["request_id"] == "req_abc" and first["msg"] == "answered" and first["decision"] == "served"
    assert second["level"] == "error" and "RuntimeError: boom" in second["exc"]


# ---- the server lock file -----------------------------------------------------------------------------
def test_the_lock_file_names_a_live_server_and_a_stale_one_is_ignored(tmp_path):
    from api.server_lock import find_running_server, lock_path, remove_lock, store_held_message, write_lock

    settings = make_settings(tmp_path / "data")
    info = write_lock(settings, "0.0.0.0", 8123)
    assert info.url == "http://127.0.0.1:8123" and info.pid == os.getpid()
    found = find_running_server(settings, probe=False)
    assert found is not None and found.port == 8123
    message = store_held_message(settings, found, "ingest")
    assert f"pid {os.getpid()}" in message and "http://127.0.0.1:8123/v1/documents" in message
    assert "Bearer" in message  # keys mode: the hint says how to authenticate
    # A lock file left by a process that is gone names nothing.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    data = json.loads(lock_path(settings).read_text())
    lock_path(settings).write_text(json.dumps({**data, "pid": int(dead.stdout)}))
    assert find_running_server(settings, probe=False) is None
    assert "no running `attest serve`" in store_held_message(settings, None, "ask")
    # Only the process that wrote the file removes it.
    remove_lock(settings)
    assert lock_path(settings).exists()
    write_lock(settings, "127.0.0.1", 8123)
    remove_lock(settings)
    assert not lock_path(settings).exists()


def test_open_mode_refuses_a_non_loopback_address(tmp_path):
    from api.serve import is_loopback, run_server

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    lines: list[str] = []
    settings = make_settings(tmp_path / "data", api_auth_mode="open")
    assert run_server(settings, "0.0.0.0", 8000, echo=lines.append) == 2
    assert "open mode" in lines[0] and "local use only" in lines[0]


# ---- OpenTelemetry ------------------------------------------------------------------------------------
def test_stage_spans_are_exported_over_otlp_when_an_endpoint_is_set(tmp_path, encoder):
    """A collector on 127.0.0.1 receives spans named retrieve, generate and verify for one question."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from api.question import QuestionPath
    from api.telemetry import setup_tracing
    from retrieval.store import EdgeStore

    received: list[tuple[str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server API
            received.append((self.path, self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args):
            pass

    collector = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=collector.serve_forever, daemon=True)
    thread.start()
    try:
        settings = make_settings(tmp_path / "data", otel_endpoint=f"http://127.0.0.1:{collector.server_port}")
        tracer, shutdown = setup_tracing(settings)
        store = EdgeStore(settings.edge_dir)
        path = QuestionPath.build(settings, store, encoder, grounder=None, tracer=tracer)
        try:
            response = path.ask("How long is the warranty?")  # an empty index: declined without a model
        finally:
            path.close()
            store.close()
        shutdown()  # flushes the batch
    finally:
        collector.shutdown()
    assert response.status == "declined" and response.decision == "served"
    assert received and received[0][0] == "/v1/traces"
    payload = b"".join(body for _, body in received)
    for stage in (b"retrieve", b"generate", b"verify"):
        assert stage in payload, stage
