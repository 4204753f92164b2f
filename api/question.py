"""The question path: the one object that owns retrieve -> answer -> verify -> decide -> remember.

`attest ask`, ``POST /v1/query``, ``POST /v1/query/stream``, `attest eval golden` and the benchmark scripts
all call ``QuestionPath.ask``; none of them wires the stages itself.

    path = QuestionPath.build(settings, store)
    response = path.ask("How long is the warranty?", risk="high")
    print(response.decision, response.answer, response.claims, response.timings_ms)
    path.close()

``ask`` takes a request its edge (the HTTP schema, the CLI's options) has already validated, returns the
answer contract of DESIGN.md (``api.schemas.QueryResponse``) and never raises for a failure of a stage: a
store, model or verifier failure becomes an answer that says so plainly and carries the request id. It
raises only ``ValueError`` (a filter the store cannot apply) and ``GenerationCancelled`` (the caller asked
it to stop).

The passages retrieved are the passages the model reads (``top_k``, default ``ATTEST_ANSWER_PASSAGES``),
numbered once (answer/passages.py); grounding checks and re-cites claims against exactly those. Only an
answer grounding served or repaired enters the semantic cache, as the text that was served.

Events, for streaming callers (``on_event(name, data)``), in this order:
- risk ``low``: ``retrieval`` (the sources), ``token`` (answer text as the model writes it), ``verified``
  (the first sentence, once its claims hold: checked while the model writes the rest), ``claim`` (one
  verdict per claim), ``final`` (the whole response; ``retracted`` lists sentences that were streamed but
  did not hold up, and ``answer`` is the text that did);
- risk ``high``: ``retrieval``, then nothing until the answer is verified (and repaired where it can be),
  then ``claim`` per claim, then ``token`` with only the verified text, then ``final``.

A failing answer is ``queued_for_review`` (review on: ATTEST_GROUNDING_REVIEW, or ``review=True``) only where
a review queue is attached (``reviews``, api/review.py): it is stored there with everything a reviewer needs
and the response carries ``review.poll_url``; without a queue it is rejected.

Where claim verification is turned off (``ATTEST_GROUNDING_ENABLED=false``) or fails, claims are listed as
``unverified``: a low-risk answer is served with a notice saying so, a high-risk answer is withheld.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

from answer.passages import NumberedPassages
from answer.pipeline import AnswerPipeline, new_request_id
from answer.result import AnswerResult, AnswerSentence, unique_citations
from answer.stream import AnswerTextStream
from answer.usage import Principal
from api.schemas import ClaimVerdict, EvidenceSpan, QueryResponse, ReviewRef, SourceOut
from attest_settings import Settings
from grounding import decide
from grounding.decide import AnswerCheck, Grounder, GroundedAnswer
from retrieval.search import Retriever
from retrieval.store import VectorStore

log = logging.getLogger("attest.api.question")
REVIEWED_CACHE_NOTICE = "Reviewed and approved by a person when this answer was first given."

EventSink = Callable[[str, dict], None]


class GenerationCancelled(BaseException):
    """Raised inside the model's token callback to stop generation (the client went away).

    A BaseException on purpose, like asyncio.CancelledError: the answer stage's ``except Exception``
    fallbacks must not count a cancellation as a provider failure (it would trip the circuit breaker);
    its ``finally`` blocks still close the model's stream and release the model.
    """


def _question_span(ask):
    """One ``question`` span around a question's stage spans (retrieve, generate, verify): one trace each."""

    @functools.wraps(ask)
    def traced(self, question: str, **options):
        with self._span("question", risk=options.get("risk", "low")) as span:
            response = ask(self, question, **options)
            for key in ("request_id", "decision", "status", "served_from"):
                if getattr(response, key, None) is not None:
                    span.set_attribute(f"attest.{key}", getattr(response, key))
            return response

    return traced


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


# ---- the grounding stage's result, as the API shows it ---------------------------------------------------
def _claim_out(claim: decide.ClaimVerdict, passages: NumberedPassages) -> ClaimVerdict:
    """One ``grounding.decide.ClaimVerdict`` (passage numbers) as the API's (chunk ids)."""
    return ClaimVerdict(
        text=claim.claim, sentence=claim.sentence, verdict="supported" if claim.supported else "unsupported",
        score=round(float(claim.score), 4), threshold=float(claim.threshold),
        citations=passages.chunk_ids(claim.cited_passages), evidence=claim.evidence_ids,
        supporting=passages.chunk_ids(claim.supporting_passages), signals=dict(claim.signals),
        vetoes=list(claim.vetoes), evidence_spans=[_span(e, passages) for e in claim.evidence],
        citation=claim.citation, corrected_citation=claim.citation in ("corrected", "added"))


def _span(evidence: decide.EvidenceRef, passages: NumberedPassages) -> EvidenceSpan:
    """An evidence sentence with its offsets in the passage text (what a reviewer's page highlights)."""
    start = None
    if evidence.passage in passages:
        found = (getattr(passages.hit(evidence.passage), "text", "") or "").find(evidence.text)
        start = found if found >= 0 else None
    return EvidenceSpan(chunk_id=evidence.chunk_id, passage=evidence.passage, text=evidence.text,
                        similarity=float(evidence.similarity), start=start,
                        end=None if start is None else start + len(evidence.text))


# The grounding steps inside verify_ms that a response reports (of the attempt served, when one was regenerated).
GROUNDING_TIMINGS = ("evidence_ms", "score_ms", "citation_ms", "answer_judge_ms", "regenerate_ms")


@dataclass
class Verification:
    """What ``ask`` needs from the grounding stage's result (or from its absence)."""

    decision: Literal["served", "repaired", "rejected", "queued_for_review"]
    verified: bool
    answer: str | None = None                    # the text to show; None: the answer stage's own text
    sentences: list[AnswerSentence] | None = None  # the served sentences, citations corrected by grounding
    claims: list[ClaimVerdict] = field(default_factory=list)
    retracted: list[str] = field(default_factory=list)
    answer_check: AnswerCheck | None = None
    short_answer: str | None = None              # verified; None when absent, failed or withheld
    confidence: float | None = None
    notice: str | None = None
    result: AnswerResult | None = None           # the regenerated answer, when grounding asked for one
    prompt_version: str | None = None            # the grounding stage's (which rules judged the claims)
    timings_ms: dict[str, float] = field(default_factory=dict)  # the grounding steps worth reading per request

    @property
    def citations(self):
        return unique_citations(self.sentences or [])

    @classmethod
    def from_grounded(cls, grounded: GroundedAnswer, passages, original: AnswerResult | None) -> "Verification":
        passages = NumberedPassages.of(passages)
        used = grounded.answer
        retracted = list(grounded.removed_sentences)
        notices = []
        shown = grounded.decision in ("served", "repaired")  # a withheld answer's text says why on its own
        if grounded.regenerated and shown:
            notices.append(decide.REGENERATED_NOTICE)
        elif grounded.decision == "repaired" and retracted:
            notices.append(decide.REPAIRED_NOTICE.format(count=len(retracted)))
        missing = grounded.answer_check.unanswered_parts if grounded.answer_check and shown else []
        if missing:
            notices.append(decide.PARTIAL_NOTICE.format(parts=" and ".join(f"“{m}”" for m in missing)))
        notice = " ".join(notices) or None
        return cls(decision=grounded.decision, verified=True, answer=grounded.text,
                   sentences=list(grounded.sentences), claims=[_claim_out(c, passages) for c in grounded.claims],
                   retracted=retracted, answer_check=grounded.answer_check, short_answer=grounded.short_answer,
                   confidence=float(grounded.confidence), notice=notice, prompt_version=grounded.prompt_version,
                   result=used if isinstance(used, AnswerResult) and used is not original else None,
                   timings_ms={k: v for k, v in grounded.timings_ms.items() if k in GROUNDING_TIMINGS})

    @classmethod
    def unverified(cls, result: AnswerResult, risk: str, why: str, request_id: str) -> "Verification":
        """No verdicts (verification off, or it failed): served with a notice at low risk, withheld at high."""
        claims = _unverified_claims(result)
        if risk == "high":
            text = decide.UNVERIFIED_WITHHELD_TEXT.format(why=why, request_id=request_id)
            return cls("rejected", False, answer=text, claims=claims, notice=text)
        return cls("served", False, claims=claims, notice=decide.UNVERIFIED_NOTICE.format(why=why))


# ---- the path ------------------------------------------------------------------------------------------
class QuestionPath:
    """Holds the long-lived parts (retriever, answer pipeline, grounder); one per process."""

    def __init__(self, settings: Settings, retriever: Retriever, pipeline: AnswerPipeline,
                 grounder: Grounder | None, records=None, metrics=None, tracer=None, reviews=None):
        self.settings = settings
        self.retriever = retriever
        self.encoder = retriever.encoder
        self.pipeline = pipeline
        self.grounder = grounder
        self.records = records    # api.records.Records: remembers the verdicts of cached answers
        self.metrics = metrics
        # The human-review queue (api.review.ReviewDesk): where a ``queued_for_review`` answer is stored.
        self.reviews = reviews
        if tracer is None:
            from opentelemetry import trace

            tracer = trace.get_tracer("attest.question")
        self.tracer = tracer

    @classmethod
    def build(cls, settings: Settings, store: VectorStore, encoder=None, *,
              grounder: Grounder | None | Literal["auto"] = "auto", records=None, metrics=None,
              tracer=None, reviews=None) -> "QuestionPath":
        """Open every stage the settings name over ``store``. ``grounder="auto"``: the claim verifier unless
        ``ATTEST_GROUNDING_ENABLED=false``; ``None``: answers are served unverified (low risk) or withheld."""
        retriever = Retriever(settings, store, encoder)
        pipeline = AnswerPipeline(settings, store, encoder=retriever.encoder)
        if grounder == "auto":
            grounder = Grounder(settings, encoder=retriever.encoder) if settings.grounding_enabled else None
        return cls(settings, retriever, pipeline, grounder, records, metrics, tracer, reviews)

    def close(self) -> None:
        self.pipeline.close()
        if self.grounder is not None:
            self.grounder.close()

    @contextmanager
    def _span(self, name: str, **attributes):
        with self.tracer.start_as_current_span(name) as span:
            for key, value in attributes.items():
                if value is not None:
                    span.set_attribute(f"attest.{key}", value)
            yield span

    # ---- one question ----------------------------------------------------------------------------------
    @_question_span
    def ask(self, question: str, *, collection: str | None = None, filters: dict | None = None,
            top_k: int | None = None, risk: str = "low", providers: Sequence[str] | None = None,
            principal: Principal = Principal(), request_id: str | None = None, use_cache: bool = True,
            on_event: EventSink | None = None, cancel: threading.Event | None = None,
            review: bool | None = None) -> QueryResponse:
        """``review``: queue a failing answer for a person (default: ATTEST_GROUNDING_REVIEW)."""
        question = " ".join(question.split())
        request_id = request_id or new_request_id()
        collection = collection or self.settings.collection
        emit = on_event or (lambda name, data: None)
        started = time.perf_counter()
        timings: dict[str, float] = {}

        def check_cancel():
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled()

        # 1. retrieve: the hits are the passages the model reads
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
        passages = NumberedPassages(search.hits)
        sources = [SourceOut(chunk_id=h.id, doc_id=h.doc_id, source=h.source, title=h.title, page=h.page,
                             score=round(float(h.score), 6), text=h.text) for h in passages]
        emit("retrieval", {"request_id": request_id, "sources": [s.model_dump() for s in sources]})
        check_cancel()

        # 2. answer
        text_stream = AnswerTextStream()
        early = _EarlyCheck(self.grounder, question, passages, risk, emit, started) \
            if risk == "low" and self.grounder is not None and self._early_check_fits(providers) else None

        def on_delta(delta: str) -> None:
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled()
            if risk == "low":
                piece = text_stream.feed(delta)
                if piece:
                    emit("token", {"text": piece})
                # Only while the model is still writing: a one-sentence answer is verified with the rest.
                if early is not None and text_stream.complete and not text_stream.finished:
                    early.start(*text_stream.complete[0])

        with self._span("generate", request_id=request_id) as span:
            t = time.perf_counter()
            try:
                result = self.pipeline.answer(question, passages, collection=collection, filters=filters or None,
                                              principal=principal, providers=list(providers) if providers else None,
                                              question_vector=vector, on_delta=on_delta, use_cache=use_cache,
                                              request_id=request_id)
            except GenerationCancelled:
                if self.metrics is not None:
                    self.metrics.cancelled.inc()
                log.info("generation cancelled: the client went away")
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
        escalated = False
        if self._escalates_decline(result) and not result.answerable:
            # The fast model declined: the strong one gets one try. At low risk its answer streams too, after
            # a `restart` event that tells the client to drop the decline it was shown.
            t = time.perf_counter()
            if risk == "low":
                emit("restart", {"reason": "escalated",
                                 "detail": "the fast model declined; a stronger model answers instead"})
                text_stream = AnswerTextStream()  # on_delta reads the new one
            with self._span("escalate", request_id=request_id):
                try:
                    stronger = self.pipeline.answer(question, passages, collection=collection,
                                                    filters=filters or None, principal=principal,
                                                    providers=list(providers) if providers else None,
                                                    question_vector=vector, on_delta=on_delta, use_cache=False,
                                                    request_id=request_id, escalate=True)
                except GenerationCancelled:
                    raise
                except Exception as exc:  # the fast model's decline stands
                    log.warning("escalation failed: %s", exc)
                    stronger = None
            timings["escalate_ms"] = _ms(time.perf_counter() - t)
            if stronger is not None and stronger.status in ("answered", "declined"):
                result, escalated = stronger, True
        check_cancel()
        for key in ("cache_lookup_ms", "first_token_ms", "route_ms", "validate_ms", "condense_ms"):
            if key in result.timings_ms:
                timings[key] = result.timings_ms[key]

        # 3. verify and decide
        if early is not None:
            early.join()  # one verifier user at a time
            if early.verified_ms is not None:
                timings["first_verified_ms"] = early.verified_ms
        with self._span("verify", request_id=request_id, risk=risk) as span:
            t = time.perf_counter()
            verification = self._verify(question, result, passages, risk, collection, filters, principal,
                                        providers, request_id, review, escalated)
            timings["verify_ms"] = _ms(time.perf_counter() - t)
            timings.update(verification.timings_ms)  # parts of verify_ms
            span.set_attribute("attest.decision", verification.decision)
        if verification.result is not None:
            result = verification.result

        # 4. remember: only what was served, as it was served
        if use_cache:
            self._remember(result, vector, collection, filters, verification)

        if "first_verified_ms" not in timings and verification.verified \
                and verification.decision in ("served", "repaired") and result.answerable:
            timings["first_verified_ms"] = _ms(time.perf_counter() - started)  # verified with the whole answer
        response = self._response(request_id, question, risk, result, verification, sources, timings, started,
                                  use_cache)
        if response.decision == "queued_for_review":
            response = self._queue_for_review(response, result, verification, collection, filters, principal)
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
    def _verify(self, question: str, result: AnswerResult, passages: NumberedPassages, risk: str, collection,
                filters, principal, providers, request_id: str, review: bool | None = None,
                escalated: bool = False) -> Verification:
        if result.status in ("unavailable", "over_budget"):
            return Verification("rejected", False)
        if not result.answerable:  # a decline claims nothing: nothing to check
            return Verification("served", True)
        reviewed = result.cache.reviewed if result.cache is not None else None
        # A cached answer keeps the verdicts it was served with at low risk; one a person reviewed at high risk
        # is served on that review at high risk too (the person's decision is the stronger check).
        if result.served_from == "cache" and result.cache is not None and self.records is not None and (
                risk == "low" or (reviewed or {}).get("risk") == "high"):
            stored = self.records.cached_verdicts(result.cache.entry_id)
            if stored is not None:
                claims = [ClaimVerdict.model_validate(c) for c in stored.get("claims", [])]
                notice = REVIEWED_CACHE_NOTICE if reviewed else decide.CACHED_VERDICTS_NOTICE
                return Verification("served", True, claims=claims, confidence=stored.get("confidence"),
                                    notice=notice, short_answer=result.short_answer)  # cached as verified
        if self.grounder is None:
            why = ("claim verification is turned off (ATTEST_GROUNDING_ENABLED=false)"
                   if not self.settings.grounding_enabled else "no claim verifier is configured")
            return Verification.unverified(result, risk, why, request_id)

        def regenerate(failing_claims: list[str], instruction: str) -> AnswerResult | None:
            """One more answer, told which claims failed (the grounding stage's repair step): the same prompt
            at temperature 0 would say the same again, so the instruction names them."""
            return self.pipeline.answer(question, passages, collection=collection, filters=filters or None,
                                        principal=principal, providers=list(providers) if providers else None,
                                        use_cache=False, request_id=request_id, instruction=instruction,
                                        escalate=escalated or self._should_escalate(result))

        try:
            grounded = self.grounder.verify(question, result, passages, risk, regenerate,
                                            review=review if self.reviews is not None else False)
        except Exception as exc:
            log.error("claim verification failed", exc_info=exc)
            return Verification.unverified(result, risk, f"claim verification failed ({type(exc).__name__})",
                                           request_id)
        return Verification.from_grounded(grounded, passages, result)

    def _early_check_fits(self, providers) -> bool:
        """The first sentence is verified beside generation only where generation leaves a core free: on 2
        cores with the local model the two halve each other's speed and the check never finishes first
        (benchmarks/answers_dev.py on the demo golden set: p50 15.2 s with it, 11.2 s without; 0 of 50
        answers had a verified sentence before the end)."""
        return self.settings.grounding_stream_verified and _cores_left_by(self.settings, providers) >= 1

    def _should_escalate(self, result: AnswerResult) -> bool:
        """The fast model's own answer, with escalation on: its decline or its failed verification gets one
        more try from the strong model (ATTEST_ANSWER_ESCALATE)."""
        return self.settings.answer_escalate and _from_fast_model(result)

    def _escalates_decline(self, result: AnswerResult) -> bool:
        """The fast model's own decline gets the strong model's one try (ATTEST_ANSWER_ESCALATE_DECLINES, or
        ATTEST_ANSWER_ESCALATE, which also escalates a failed verification)."""
        settings = self.settings
        return (settings.answer_escalate_declines or settings.answer_escalate) and _from_fast_model(result)

    def _remember(self, result: AnswerResult, vector, collection, filters, verification: Verification) -> None:
        """A served or repaired answer, verified, fresh from a model, enters the cache as it was served."""
        if not (verification.decision in ("served", "repaired") and verification.verified
                and result.served_from == "model" and result.answerable and verification.sentences):
            return
        served = result.model_copy(update={"answer": verification.answer, "sentences": verification.sentences,
                                           "short_answer": verification.short_answer})
        try:
            entry_id = self.pipeline.remember(served, vector, collection, filters or None)
            if entry_id and self.records is not None:
                self.records.store_cached_verdicts(entry_id, {
                    "claims": [c.model_dump() for c in verification.claims if c.verdict == "supported"],
                    "confidence": verification.confidence})
        except Exception as exc:  # a cache write must never cost the user the answer
            log.warning("could not cache the answer: %s", exc)

    def _queue_for_review(self, response: QueryResponse, draft: AnswerResult, verification: Verification,
                          collection: str, filters, principal) -> QueryResponse:
        """Store the withheld answer for a reviewer; the user gets the poll URL. If it cannot be stored, the
        answer is rejected instead: telling the user a person will look at it would be untrue."""
        try:
            ref = self.reviews.queue_answer(response, draft, collection=collection, filters=filters or None,
                                            tenant=principal.org, api_key_id=principal.api_key_id,
                                            grounding_prompt=verification.prompt_version)
        except Exception as exc:  # noqa: BLE001 - the user still gets a plain answer
            log.error("could not queue the answer for review", exc_info=exc)
            text = decide.REJECTED_TEXT.format(request_id=response.request_id)
            return response.model_copy(update={"decision": "rejected", "answer": text, "notice": text})
        return response.model_copy(update={"review": ref})

    def _response(self, request_id, question, risk, result: AnswerResult, verification: Verification, sources,
                  timings, started, use_cache) -> QueryResponse:
        decision = verification.decision
        answer = verification.answer if verification.answer is not None else result.answer
        if not answer or not answer.strip():
            answer = f"Sorry, no answer could be produced. Request id {request_id}."
        if decision in ("rejected", "queued_for_review"):
            citations = []
        elif verification.sentences is not None:
            citations = verification.citations
        else:
            citations = result.citations
        timings = dict(timings)
        timings["total_ms"] = _ms(time.perf_counter() - started)
        return QueryResponse(
            request_id=request_id, question=question, answer=answer, decision=decision, risk=risk,
            short_answer=_short_answer(result, verification),
            verified=verification.verified, confidence=verification.confidence, citations=citations,
            claims=verification.claims, retracted=verification.retracted, answer_check=verification.answer_check,
            status=result.status,
            served_from=result.served_from, route=result.route, tier=result.tier, provider=result.provider,
            model=result.model, prompt=result.prompt, tokens=result.tokens, cost_usd=result.cost_usd,
            timings_ms=timings, notice=verification.notice or result.notice, sources=sources, cache=result.cache,
            attempts=result.attempts, cache_lookup=use_cache and "cache_lookup_ms" in result.timings_ms)

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


def _cores_left_by(settings, providers) -> int:
    """The CPU cores generation leaves free: all of them with a remote provider first in line, else the
    machine's cores less the local model's threads."""
    first = (list(providers) if providers else settings.answer_providers)[0]
    cores = os.cpu_count() or 1
    return cores if first != "local" else cores - settings.local_threads


class _EarlyCheck:
    """Risk low: the answer's first sentence is verified, in a thread, as soon as the model has finished
    writing it (its text and passage list are final), while the model writes the rest. When every claim of
    it holds, a ``verified`` event says so at once. The decision on the whole answer is still made after
    it (a sentence verified early can still be retracted, e.g. when the answer does not answer the question)."""

    def __init__(self, grounder: Grounder, question: str, passages: NumberedPassages, risk: str, emit: EventSink,
                 started: float):
        self.grounder, self.question, self.passages, self.risk = grounder, question, passages, risk
        self.emit, self.started = emit, started
        self.thread: threading.Thread | None = None
        self.verified_ms: float | None = None

    def start(self, text: str, cited: list[int]) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, args=(text, cited), name="attest-early-check",
                                           daemon=True)
            self.thread.start()

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()

    def _run(self, text: str, cited: list[int]) -> None:
        try:
            verdicts = self.grounder.check_sentence(self.question, text, cited, self.passages, self.risk)
        except Exception as exc:  # noqa: BLE001 - the whole answer is verified after it anyway
            log.warning("early verification failed: %s", exc)
            return
        if verdicts and all(v.supported for v in verdicts):
            self.verified_ms = _ms(time.perf_counter() - self.started)
            self.emit("verified", {"sentence": 0, "text": text, "passages": cited,
                                   "score": round(min(float(v.score) for v in verdicts), 4)})


def _from_fast_model(result: AnswerResult) -> bool:
    return result.served_from == "model" and result.tier == "fast"


def _short_answer(result: AnswerResult, verification: Verification) -> str | None:
    """The short answer the user may see: verified by grounding (now, or when the cached answer was first
    given); unverified only where the whole answer is served unverified (low risk, verification off)."""
    if verification.decision not in ("served", "repaired") or not result.answerable:
        return None
    return verification.short_answer if verification.verified else result.short_answer


def _unverified_claims(result: AnswerResult) -> list[ClaimVerdict]:
    from grounding.claims import split_claims

    split = split_claims(result)
    return [ClaimVerdict(text=c.text, sentence=c.sentence, verdict="unverified", citations=list(c.chunk_ids))
            for c in split.claims]


def _word_pieces(text: str, words: int = 4) -> list[str]:
    """Verified text, streamed a few words at a time (high risk: it is all known before the first piece)."""
    parts = text.split(" ")
    return [" ".join(parts[i:i + words]) + (" " if i + words < len(parts) else "") for i in range(0, len(parts), words)]
