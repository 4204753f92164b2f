"""The question path, wired once for the HTTP app and the CLI: retrieve -> answer -> verify -> decide.

    path = QuestionPath(settings, store)
    response = path.ask("How long is the warranty?", risk="high")
    print(response.decision, response.answer, response.claims, response.timings_ms)
    path.close()

``ask`` returns the answer contract of DESIGN.md (``api.schemas.QueryResponse``) and never raises for a
failure of a stage: a store, model or verifier failure becomes an answer that says so plainly and carries
the request id. It raises only ``ValueError`` (a bad request: empty question, unknown filter field) and
``GenerationCancelled`` (the caller asked it to stop).

Events, for streaming callers (``on_event(name, data)``), in this order:
- risk ``low``: ``retrieval`` (the sources), ``token`` (answer text as the model writes it), ``claim`` (one
  verdict per claim), ``final`` (the whole response; ``retracted`` lists sentences that were streamed but
  did not hold up, and ``answer`` is the text that did);
- risk ``high``: ``retrieval``, then nothing until the answer is verified (and repaired where it can be),
  then ``claim`` per claim, then ``token`` with only the verified text, then ``final``.

Claim verification is the grounding stage's ``verify_answer``; where it is turned off, claims are
listed as ``unverified``, a low-risk answer is served with a notice saying so, and a high-risk answer is
withheld (decision ``rejected``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Callable, Sequence

from answer.result import AnswerResult
from answer.usage import Principal
from api.schemas import CitationOut, ClaimVerdict, QueryResponse, SourceOut

log = logging.getLogger("attest.api.question")

EventSink = Callable[[str, dict], None]


class GenerationCancelled(BaseException):
    """Raised inside the model's token callback to stop generation (the client went away).

    A BaseException on purpose, like asyncio.CancelledError: the answer stage's ``except Exception``
    fallbacks must not count a cancellation as a provider failure (it would trip the circuit breaker);
    its ``finally`` blocks still close the model's stream and release the model.
    """


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex[:20]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


# ---- the answer's text, pulled out of the model's JSON as it streams -----------------------------------
class AnswerTextStream:
    """Feeds on raw model output (``{"answerable": ..., "sentences": [{"text": "...", "passages": [1]}]}``)
    and returns the readable text in it: sentence texts, each followed by its ``[n]`` markers.

        stream = AnswerTextStream()
        stream.feed('{"answerable": true, "sentences": [{"text": "It la')   # -> 'It la'
        stream.feed('sts two years.", "passages": [1]}]}')                    # -> 'sts two years. [1]'
    """

    _ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}

    def __init__(self):
        self.in_string = False
        self.escape = False
        self.unicode: str | None = None
        self.current = []           # characters of the string being read
        self.last_string = ""       # the last complete string (a key, when followed by ':')
        self.value_for: str | None = None  # the key whose value comes next
        self.string_is_text = False
        self.in_passages = False
        self.number = ""
        self.passages: list[str] = []
        self.sentences = 0
        self.text = []

    def feed(self, delta: str) -> str:
        out: list[str] = []
        for ch in delta:
            if self.in_string:
                self._string_char(ch, out)
            elif ch == '"':
                self.in_string = True
                self.current = []
                self.string_is_text = self.value_for == "text"
                if self.string_is_text:
                    if self.sentences:
                        out.append(" ")
                    self.sentences += 1
                self.value_for = None
            elif ch == ":":
                self.value_for = self.last_string
                if self.value_for == "passages":
                    self.in_passages, self.number, self.passages = False, "", []
            elif ch == "[" and self.value_for == "passages":
                self.in_passages = True
                self.value_for = None
            elif self.in_passages:
                if ch.isdigit():
                    self.number += ch
                elif ch in ",]":
                    if self.number:
                        self.passages.append(self.number)
                    self.number = ""
                    if ch == "]":
                        self.in_passages = False
                        if self.passages:
                            out.append(" " + "".join(f"[{n}]" for n in self.passages))
            elif not ch.isspace():
                if ch not in ",{}[]":
                    self.value_for = None  # a literal (true, 1, ...) was the value
        piece = "".join(out)
        self.text.append(piece)
        return piece

    def _string_char(self, ch: str, out: list[str]) -> None:
        if self.unicode is not None:
            self.unicode += ch
            if len(self.unicode) == 4:
                try:
                    decoded = chr(int(self.unicode, 16))
                except ValueError:
                    decoded = ""
                self.unicode = None
                self._emit(decoded, out)
            return
        if self.escape:
            self.escape = False
            if ch == "u":
                self.unicode = ""
            else:
                self._emit(self._ESCAPES.get(ch, ch), out)
            return
        if ch == "\\":
            self.escape = True
        elif ch == '"':
            self.in_string = False
            self.last_string = "".join(self.current)
        else:
            self._emit(ch, out)

    def _emit(self, decoded: str, out: list[str]) -> None:
        self.current.append(decoded)
        if self.string_is_text:
            out.append(decoded)


# ---- the grounding stage's result, as the API shows it ---------------------------------------------------
def _claim_out(claim, hits: Sequence) -> ClaimVerdict:
    """One ``grounding.decide.ClaimVerdict`` (passage numbers) as the API's (chunk ids)."""

    def chunk_ids_of(numbers) -> list[str]:
        return [hits[n - 1].id for n in numbers if 1 <= n <= len(hits)]

    return ClaimVerdict(
        text=claim.claim, sentence=claim.sentence, verdict="supported" if claim.supported else "unsupported",
        score=round(float(claim.score), 4), threshold=float(claim.threshold),
        citations=chunk_ids_of(claim.cited_passages), evidence=claim.evidence_ids,
        supporting=chunk_ids_of(claim.supporting_passages), signals=dict(claim.signals), vetoes=list(claim.vetoes),
        citation=claim.citation, corrected_citation=claim.citation in ("corrected", "added"))


class Verification:
    """What ``ask`` needs from the grounding stage's result (or from its absence)."""

    def __init__(self, decision: str, answer: str | None, claims: list[ClaimVerdict], retracted: list[str],
                 confidence: float | None, notice: str | None, verified: bool, citations=None, result=None):
        self.decision = decision
        self.answer = answer
        self.claims = claims
        self.retracted = retracted
        self.confidence = confidence
        self.notice = notice
        self.verified = verified
        self.citations = citations
        self.result = result  # an AnswerResult when the verifier regenerated the answer

    @classmethod
    def from_grounded(cls, grounded, hits: Sequence, original: AnswerResult) -> "Verification":
        """From ``grounding.decide.GroundedAnswer``: decision, text, sentences with corrected citations,
        claims, confidence, removed sentences, and the AnswerResult finally used."""
        used = grounded.answer
        result = used if isinstance(used, AnswerResult) and used is not original else None
        seen, citations = set(), []
        for sentence in grounded.sentences:
            for citation in sentence.citations:
                if citation.chunk_id not in seen:
                    seen.add(citation.chunk_id)
                    citations.append(citation)
        retracted = list(grounded.removed_sentences)
        notice = None
        if grounded.regenerated:
            notice = "The first answer did not hold up; this one was regenerated and verified again."
        elif grounded.decision == "repaired" and retracted:
            notice = f"{len(retracted)} sentence(s) were removed because your documents do not support them."
        return cls(grounded.decision, grounded.text, [_claim_out(c, hits) for c in grounded.claims], retracted,
                   float(grounded.confidence), notice, True, citations, result)


# ---- the path ------------------------------------------------------------------------------------------
class QuestionPath:
    """Holds the long-lived parts (retriever, answer pipeline, verifier); one per process."""

    def __init__(self, settings, store, encoder=None, retriever=None, pipeline=None, verifier="auto",
                 records=None, metrics=None, tracer=None):
        from retrieval.search import Retriever

        self.settings = settings
        self.store = store
        self.retriever = retriever or Retriever(settings, store, encoder)
        self.encoder = self.retriever.encoder
        self._pipeline = pipeline
        self._pipeline_lock = threading.Lock()
        if verifier == "auto":
            from grounding.decide import verify_answer

            verifier = verify_answer if settings.grounding_enabled else None
        self.verifier = verifier
        self.records = records    # api.records.Records: remembers verdicts of cached answers
        self.metrics = metrics
        if tracer is None:
            from opentelemetry import trace

            tracer = trace.get_tracer("attest.question")
        self.tracer = tracer

    @property
    def pipeline(self):
        with self._pipeline_lock:
            if self._pipeline is None:
                from answer import AnswerPipeline

                self._pipeline = AnswerPipeline(self.settings, self.store, encoder=self.encoder)
            return self._pipeline

    def close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.close()

    @contextmanager
    def _span(self, name: str, **attributes):
        with self.tracer.start_as_current_span(name) as span:
            for key, value in attributes.items():
                if value is not None:
                    span.set_attribute(f"attest.{key}", value)
            yield span

    # ---- one question ----------------------------------------------------------------------------------
    def ask(self, question: str, *, collection: str | None = None, filters: dict | None = None,
            top_k: int | None = None, risk: str = "low", providers: Sequence[str] | None = None,
            principal: Principal = Principal(), request_id: str | None = None, use_cache: bool = True,
            on_event: EventSink | None = None, cancel: threading.Event | None = None) -> QueryResponse:
        if risk not in ("low", "high"):
            raise ValueError(f"unknown risk {risk!r}: valid values are low, high")
        question = " ".join(question.split())
        if not question:
            raise ValueError("the question is empty")
        request_id = request_id or new_request_id()
        collection = collection or self.settings.collection
        emit = on_event or (lambda name, data: None)
        started = time.perf_counter()
        timings: dict[str, float] = {}

        def check_cancel():
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled()

        # 1. retrieve
        with self._span("retrieve", collection=collection, request_id=request_id):
            t = time.perf_counter()
            try:
                vector = self.encoder.encode_query(question, threads=self.settings.query_threads)
                search = self.retriever.search(question, collection, top_k or self.settings.answer_passages,
                                               "hybrid", filters, dense_vector=vector)
            except ValueError:
                raise
            except Exception as exc:
                log.error("retrieval failed", exc_info=exc)
                return self._failure(request_id, question, risk, timings, started, "retrieval",
                                     f"the document index could not be searched ({type(exc).__name__})", emit)
            timings["retrieve_ms"] = _ms(time.perf_counter() - t)
        hits = search.hits
        sources = [SourceOut(chunk_id=h.id, doc_id=h.doc_id, source=h.source, title=h.title, page=h.page,
                             score=round(float(h.score), 6), text=h.text) for h in hits]
        emit("retrieval", {"request_id": request_id, "sources": [s.model_dump() for s in sources]})
        check_cancel()

        # 2. answer
        text_stream = AnswerTextStream()

        def on_delta(delta: str) -> None:
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled()
            if risk == "low":
                piece = text_stream.feed(delta)
                if piece:
                    emit("token", {"text": piece})

        with self._span("generate", request_id=request_id) as span:
            t = time.perf_counter()
            try:
                result = self._answer(question, hits, collection, filters, principal, providers, vector,
                                      on_delta, use_cache, request_id)
            except GenerationCancelled:
                if self.metrics is not None:
                    self.metrics.cancelled.inc()
                log.info("generation cancelled: the client went away")
                raise
            except ValueError:
                raise
            except Exception as exc:
                log.error("the answer stage failed", exc_info=exc)
                return self._failure(request_id, question, risk, timings, started, "answer",
                                     f"the answer stage failed ({type(exc).__name__})", emit, sources)
            timings["generate_ms"] = _ms(time.perf_counter() - t)
            span.set_attribute("attest.served_from", result.served_from)
            if result.provider:
                span.set_attribute("attest.provider", result.provider)
        check_cancel()
        for key in ("cache_lookup_ms", "first_token_ms", "route_ms", "validate_ms"):
            if key in result.timings_ms:
                timings[key] = result.timings_ms[key]

        # 3. verify and decide
        with self._span("verify", request_id=request_id, risk=risk) as span:
            t = time.perf_counter()
            verification = self._verify(question, result, hits, risk, collection, filters, principal, providers,
                                        request_id)
            timings["verify_ms"] = _ms(time.perf_counter() - t)
            span.set_attribute("attest.decision", verification.decision)
        if verification.result is not None:
            result = verification.result
        if (verification.decision == "served" and verification.verified and use_cache
                and result.served_from == "model" and result.answerable):
            self._remember(result, vector, collection, filters, verification)

        response = self._response(request_id, question, risk, result, verification, sources, timings, started,
                                  use_cache)
        for claim in response.claims:
            emit("claim", claim.model_dump())
        if risk == "high":
            for piece in _word_pieces(response.answer):
                emit("token", {"text": piece})
        if self.metrics is not None:
            self.metrics.observe_answer(response)
        emit("final", response.model_dump(mode="json"))
        return response

    # ---- stages ----------------------------------------------------------------------------------------
    def _answer(self, question, hits, collection, filters, principal, providers, vector, on_delta, use_cache,
                request_id) -> AnswerResult:
        return self.pipeline.answer(question, hits, collection=collection, filters=filters or None,
                                    principal=principal, providers=list(providers) if providers else None,
                                    question_vector=vector, on_delta=on_delta, remember=False, use_cache=use_cache,
                                    request_id=request_id)

    def _verify(self, question, result: AnswerResult, hits, risk, collection, filters, principal, providers,
                request_id) -> Verification:
        if result.status in ("unavailable", "over_budget"):
            return Verification("rejected", None, [], [], None, None, False)
        if not result.answerable:  # a decline claims nothing: nothing to check
            return Verification("served", None, [], [], None, None, True)
        if result.served_from == "cache" and result.cache is not None and self.records is not None and risk == "low":
            stored = self.records.cached_verdicts(result.cache.entry_id)
            if stored is not None:
                claims = [ClaimVerdict.model_validate(c) for c in stored.get("claims", [])]
                return Verification("served", None, claims, [], stored.get("confidence"),
                                    "Verified when this answer was first given.", True)
        if self.verifier is None:
            claims = _unverified_claims(result)
            why = ("claim verification is turned off (ATTEST_GROUNDING_ENABLED=false)"
                   if not self.settings.grounding_enabled else "no claim verifier is configured")
            if risk == "high":
                return Verification("rejected", None, claims, [], None,
                                    f"Claim verification is not available ({why}), so a high-risk answer cannot be "
                                    f"served.", False)
            return Verification("served", None, claims, [], None,
                                f"The claims of this answer were not verified: {why}.", False)

        def regenerate(failing_claims: list[str], instruction: str) -> AnswerResult | None:
            """One more answer, told which claims failed (the grounding stage's repair step): the same prompt
            at temperature 0 would say the same again, so the instruction names them."""
            return self.pipeline.answer(question, hits, collection=collection, filters=filters or None,
                                        principal=principal, providers=list(providers) if providers else None,
                                        remember=False, use_cache=False, request_id=request_id,
                                        instruction=instruction)

        try:
            grounded = self.verifier(self.settings, question, result, hits, risk, regenerate)
        except Exception as exc:
            log.error("claim verification failed", exc_info=exc)
            claims = _unverified_claims(result)
            if risk == "high":
                return Verification("rejected", None, claims, [], None,
                                    f"Claim verification failed ({type(exc).__name__}), so this high-risk answer "
                                    f"is withheld.", False)
            return Verification("served", None, claims, [], None,
                                f"Claim verification failed ({type(exc).__name__}); the answer is shown unverified.",
                                False)
        return Verification.from_grounded(grounded, hits, result)

    def _remember(self, result, vector, collection, filters, verification: Verification) -> None:
        try:
            entry_id = self.pipeline.remember(result, vector, collection, filters or None)
            if entry_id and self.records is not None:
                self.records.store_cached_verdicts(entry_id, {
                    "claims": [c.model_dump() for c in verification.claims], "confidence": verification.confidence})
        except Exception as exc:  # a cache write must never cost the user the answer
            log.warning("could not cache the answer: %s", exc)

    def _response(self, request_id, question, risk, result: AnswerResult, verification: Verification, sources,
                  timings, started, use_cache) -> QueryResponse:
        decision = verification.decision
        answer = verification.answer if verification.answer is not None else result.answer
        notice = verification.notice or result.notice
        if decision == "rejected" and result.status not in ("unavailable", "over_budget"):
            answer = (verification.answer if verification.answer and verification.answer != result.answer else
                      "This answer is withheld: its claims could not be verified against your documents. "
                      f"Try rephrasing the question or adding sources; request id {request_id}.")
        elif decision == "queued_for_review":
            answer = (verification.answer if verification.answer and verification.answer != result.answer else
                      "This answer is waiting for a reviewer because its claims could not all be verified; "
                      f"request id {request_id}.")
        if not answer or not answer.strip():
            answer = f"Sorry, no answer could be produced. Request id {request_id}."
        citations = [CitationOut(**c.model_dump()) for c in result.citations]
        if decision in ("rejected", "queued_for_review"):
            citations = []
        elif verification.citations:
            try:
                citations = [CitationOut.model_validate(c if isinstance(c, dict) else c.model_dump())
                             for c in verification.citations]
            except Exception:  # an unexpected shape: keep the answer stage's citations
                pass
        timings = dict(timings)
        timings["total_ms"] = _ms(time.perf_counter() - started)
        return QueryResponse(
            request_id=request_id, question=question, answer=answer, decision=decision, risk=risk,
            verified=verification.verified, confidence=verification.confidence, citations=citations,
            claims=verification.claims, retracted=verification.retracted, status=result.status,
            served_from=result.served_from, route=result.route, tier=result.tier, provider=result.provider,
            model=result.model, prompt=result.prompt, tokens=result.tokens, cost_usd=result.cost_usd,
            timings_ms=timings, notice=notice, sources=sources, cache=result.cache, attempts=result.attempts,
            cache_lookup=use_cache and "cache_lookup_ms" in result.timings_ms)

    def _failure(self, request_id, question, risk, timings, started, stage, reason, emit,
                 sources=None) -> QueryResponse:
        message = (f"Sorry, no answer could be produced right now: {reason}. Please try again in a minute; if it "
                   f"keeps failing, quote request id {request_id}.")
        timings = dict(timings)
        timings["total_ms"] = _ms(time.perf_counter() - started)
        response = QueryResponse(request_id=request_id, question=question, answer=message, decision="rejected",
                                 risk=risk, verified=False, status="unavailable", served_from="none", tier="none",
                                 timings_ms=timings, notice=message, sources=sources or [])
        if self.metrics is not None:
            self.metrics.observe_answer(response)
        emit("final", response.model_dump(mode="json"))
        return response


def _unverified_claims(result: AnswerResult) -> list[ClaimVerdict]:
    from grounding.claims import split_claims

    split = split_claims(result)
    return [ClaimVerdict(text=c.text, sentence=c.sentence, verdict="unverified", citations=list(c.chunk_ids))
            for c in split.claims]


def _word_pieces(text: str, words: int = 4) -> list[str]:
    """Verified text, streamed a few words at a time (high risk: it is all known before the first piece)."""
    parts = text.split(" ")
    return [" ".join(parts[i:i + words]) + (" " if i + words < len(parts) else "") for i in range(0, len(parts), words)]


def ask_once(settings, question: str, store=None, **kwargs) -> QueryResponse:
    """One-shot for the CLI: open the store (unless given), answer, close."""
    own_store = store is None
    if own_store:
        from retrieval.store import open_store

        store = open_store(settings)
    path = QuestionPath(settings, store)
    try:
        return path.ask(question, **kwargs)
    finally:
        path.close()
        if own_store:
            store.close()
