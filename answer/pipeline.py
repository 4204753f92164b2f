"""The answer stage: question + retrieved hits -> a cited answer, through cache, router and fallback chain.

    pipeline = AnswerPipeline(settings, store)
    result = pipeline.answer("How long is the warranty?", hits)
    print(result.answer, result.citations, result.route, result.provider, result.tokens, result.timings_ms)

Order of a request:
1. semantic cache (a hit costs no model call);
2. router: simple / complex / out-of-scope (out-of-scope declines without a model call);
3. a simple question's passages cut to the sentences that matter for it (answer/condense.py);
4. the chain: for each configured provider, the route's model with the main prompt, then once more with the
   simplified prompt when the output was unusable; skip providers whose circuit breaker is open; check the
   token budgets before every call; validate every output (citations must point at given passages);
5. when every provider failed: the semantic cache again with a lower threshold, served with a notice;
6. otherwise a clear message carrying the request id. Never a raw error, never a blank answer.

This stage does not decide whether the answer is true: grounding/ does, after it.
"""

from __future__ import annotations

import time
import uuid
from typing import Callable, Sequence

from answer.breaker import BreakerBoard
from answer.cache import CacheHit, SemanticCache
from answer.condense import condensed_views
from answer.output import ANSWER_SCHEMA, DECLINE_TEXT, ModelAnswer, parse_answer
from answer.passages import NumberedPassages
from answer.prompts import PassageView, load_prompt
from answer.providers import (
    ChatRequest, Provider, ProviderError, Usage, build_provider, collect, provider_timeouts,
)
from answer.quotes import best_quote
from answer.result import AnswerResult, AnswerSentence, Attempt, CacheInfo, Citation, TokenCounts
from answer.router import Route, RouteDecision, classify
from answer.usage import BudgetExceeded, Principal, TokenBudget, UsageLedger, UsageRow, cost_usd

# Output failures that a second try with the simplified prompt may fix; outages go to the next provider.
RETRY_WITH_SIMPLER_PROMPT = frozenset({"malformed_output", "refused"})


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex[:20]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def format_answer(answer: ModelAnswer) -> str:
    """Sentences with their [n] citation markers, as a reader sees them."""
    if not answer.answerable:
        return DECLINE_TEXT
    parts = []
    for sentence in answer.sentences:
        marks = "".join(f"[{n}]" for n in sentence.passages)
        parts.append(f"{sentence.text} {marks}".strip())
    return " ".join(parts)


class AnswerPipeline:
    """One per process: it owns the providers, the circuit breakers, the ledger and the cache."""

    def __init__(self, settings, store=None, encoder=None, providers: dict[str, Provider] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.store = store
        self._encoder = encoder
        self._providers: dict[str, Provider] = dict(providers or {})
        self.breakers = BreakerBoard(settings.breaker_failures, settings.breaker_cooldown_s, clock)
        self.ledger = UsageLedger(settings.state_url)
        self.budget = TokenBudget(self.ledger, settings.budget_request_tokens, settings.budget_key_daily_tokens,
                                  settings.budget_org_monthly_tokens)
        self.cache = SemanticCache(store, settings.cache_threshold) if store is not None and settings.cache_enabled \
            else None

    # ---- parts -------------------------------------------------------------------------------------
    def provider(self, name: str) -> Provider:
        if name not in self._providers:
            self._providers[name] = build_provider(name, self.settings)
        return self._providers[name]

    @property
    def encoder(self):
        if self._encoder is None:
            from retrieval.dense import get_dense_encoder

            self._encoder = get_dense_encoder()
        return self._encoder

    def embed(self, question: str) -> list[float]:
        return self.encoder.encode_query(question, threads=self.settings.query_threads)

    def close(self) -> None:
        self.ledger.close()

    # ---- the request -------------------------------------------------------------------------------
    def answer(self, question: str, passages: NumberedPassages | Sequence, *, collection: str | None = None,
               filters: dict | None = None, principal: Principal = Principal(),
               providers: Sequence[str] | None = None, question_vector: list[float] | None = None,
               on_delta: Callable[[str], None] | None = None, use_cache: bool = True,
               request_id: str | None = None, instruction: str | None = None,
               escalate: bool = False) -> AnswerResult:
        """Answer ``question`` (already validated by the edge that received it) from ``passages``: retrieval
        Hits, best first, every one of them shown to the model as a numbered passage.

        ``providers`` overrides the configured chain. ``use_cache`` reads the semantic cache; this stage never
        writes it: only an answer that grounding has served is remembered, by the question path, through
        ``remember``. ``request_id`` is the caller's id for this request (the API's), used in messages and
        ledger rows; ``instruction`` is appended to the prompt (grounding's regeneration names the claims
        that failed), and such an answer never comes from the cache. ``escalate``: the strong tier answers
        whatever the router says (the question path's second try after the fast model declined or failed
        its checks).
        """
        question = " ".join(question.split())
        started = time.perf_counter()
        request = _Request(self, request_id or new_request_id(), question, NumberedPassages.of(passages),
                           collection or self.settings.collection, filters, principal, started, instruction)

        cache_ready = use_cache and self.cache is not None and not instruction and not escalate
        if cache_ready:
            t = time.perf_counter()
            request.vector = question_vector or self.embed(question)
            hit = self.cache.lookup(request.collection, request.vector, filters, question=question)
            request.timings["cache_lookup_ms"] = _ms(time.perf_counter() - t)
            if hit is not None:
                notice = (f"Served from the answer cache: a validated answer to a similar question "
                          f"(\"{hit.question}\", similarity {hit.similarity:.2f}, answered {hit.created_at}).")
                return request.from_cache(hit, notice)

        t = time.perf_counter()
        decision = classify(question, [h.text for h in request.passages])
        if escalate and decision.route is Route.SIMPLE:
            decision = RouteDecision(Route.COMPLEX, ["escalated: the fast model's answer declined or did not hold up"])
        elif decision.route is Route.COMPLEX and not escalate and self.settings.answer_complex_tier == "fast":
            decision.tier_override = "fast"
            decision.reasons.append("answered by the fast tier first (answer_complex_tier)")
        request.timings["route_ms"] = _ms(time.perf_counter() - t)
        request.decision = decision
        if decision.route is Route.OUT_OF_SCOPE:
            return request.finish(status="declined", served_from="router", tier="none",
                                  answer=ModelAnswer(answerable=False, sentences=[]),
                                  notice=f"Not answered by a model: {decision.reasons[0]}.")

        # One fact asked: its passages cut to the sentences that match it. A complex question asks several,
        # each with its own evidence: whole passages (demo golden, 13 complex questions: 11 served whole, 8
        # condensed to 3 sentences).
        if self.settings.answer_condense_sentences and decision.route is Route.SIMPLE:
            t = time.perf_counter()
            request.vector = request.vector or question_vector or self.embed(question)
            request.views = condensed_views(question, request.vector, request.passages, self.encoder,
                                            self.settings.answer_condense_sentences, self.settings.query_threads)
            request.timings["condense_ms"] = _ms(time.perf_counter() - t)

        for name, model in self._chain(decision, providers or self.settings.answer_providers):
            outcome = request.try_provider(name, model, on_delta)
            if isinstance(outcome, AnswerResult):
                return outcome

        failures = "; ".join(f"{a.provider}/{a.model or '-'}: {a.outcome}" for a in request.attempts) or "none configured"
        if cache_ready:
            t = time.perf_counter()
            hit = self.cache.lookup(request.collection, request.vector, filters,
                                    threshold=self.settings.cache_fallback_threshold, question=question)
            request.timings["cache_fallback_ms"] = _ms(time.perf_counter() - t)
            if hit is not None:
                notice = (f"Every model provider failed ({failures}). This is a cached answer to a similar "
                          f"question (\"{hit.question}\", similarity {hit.similarity:.2f}, answered "
                          f"{hit.created_at}); it may not match your question exactly. Request id {request.id}.")
                return request.from_cache(hit, notice)
        message = (f"Sorry, no answer could be produced right now: every model provider failed ({failures}) and "
                   f"no cached answer matches. Please try again in a minute; if it keeps failing, quote "
                   f"request id {request.id}.")
        return request.finish(status="unavailable", served_from="none", tier="none", answer=None,
                              text=message, notice=message)

    def remember(self, result: AnswerResult, question_vector: list[float] | None = None,
                 collection: str | None = None, filters: dict | None = None) -> str | None:
        """Put an answered result into the semantic cache. Only the question path calls this, and only for
        an answer grounding served or repaired (``result`` is then the text that was served)."""
        if self.cache is None or not result.answerable or result.served_from != "model":
            return None
        vector = question_vector or self.embed(result.question)
        cached = {
            "answer": result.answer,
            "short_answer": result.short_answer,
            "sentences": [s.model_dump() for s in result.sentences],
            "provider": result.provider, "model": result.model, "prompt": result.prompt, "route": result.route,
        }
        return self.cache.remember(collection or self.settings.collection, result.question, vector, cached,
                                   [c.doc_id for c in result.citations], filters)

    def _chain(self, decision: RouteDecision, names: Sequence[str]) -> list[tuple[str, str]]:
        """(provider, model) pairs in order: each provider's model for the route's tier; for complex
        questions each provider's fast model follows as a last resort."""
        chain: list[tuple[str, str]] = []
        for tier in ([decision.tier] + (["fast"] if decision.tier == "strong" else [])):
            for name in names:
                pair = (name, self.provider(name).model_for(tier))
                if pair not in chain:
                    chain.append(pair)
        return chain


class _Request:
    """The state of one request while it moves through the chain."""

    def __init__(self, pipeline: AnswerPipeline, request_id: str, question: str, passages: NumberedPassages,
                 collection: str, filters: dict | None, principal: Principal, started: float,
                 instruction: str | None = None):
        self.pipeline = pipeline
        self.instruction = instruction
        self.settings = pipeline.settings
        self.id = request_id
        self.question = question
        self.passages = passages
        self.collection = collection
        self.filters = filters
        self.principal = principal
        self.started = started
        self.views = [PassageView(n, h.doc_id, h.page, h.text) for n, h in passages.numbered()]
        self.vector: list[float] | None = None
        self.decision: RouteDecision | None = None
        self.attempts: list[Attempt] = []
        self.timings: dict[str, float] = {}
        self.tokens = TokenCounts()
        self.cost: float | None = 0.0
        self.generate_s = 0.0

    # One provider/model: the main prompt, then (after an unusable output) the simplified one.
    def try_provider(self, name: str, model: str, on_delta) -> AnswerResult | None:
        provider = self.pipeline.provider(name)
        breaker = self.pipeline.breakers.get(name)
        if not breaker.allow():
            snap = breaker.snapshot()
            self.attempts.append(Attempt(provider=name, model=model, outcome="circuit_open",
                                         detail=f"{snap.consecutive_failures} consecutive failures; "
                                                f"next probe in {snap.retry_in_s:.1f} s"))
            return None
        first_token_limit, total_limit = provider_timeouts(name, self.settings)
        for prompt_id in (self.settings.answer_prompt, self.settings.answer_retry_prompt):
            prompts_dir = str(self.settings.prompts_dir) if self.settings.prompts_dir else None
            messages = load_prompt(prompt_id, prompts_dir).render(self.question, self.views, self.instruction)
            call_started = time.perf_counter()
            chat = None
            try:
                prompt_tokens = provider.count_tokens(messages, model)
                self.pipeline.budget.check(self.principal, prompt_tokens + self.settings.answer_max_tokens,
                                           self.tokens.total)
                request = ChatRequest(messages, max_tokens=self.settings.answer_max_tokens, temperature=0.0,
                                      json_schema=ANSWER_SCHEMA, first_token_timeout_s=first_token_limit,
                                      total_timeout_s=total_limit)
                chat = collect(provider, request, model, on_delta)
                t = time.perf_counter()
                parsed = parse_answer(chat.text, chat.finish_reason, len(self.passages), name)
                self.timings["validate_ms"] = _ms(time.perf_counter() - t)
            except BudgetExceeded as exc:
                self.attempts.append(Attempt(provider=name, model=model, prompt=prompt_id, outcome="over_budget",
                                             detail=str(exc)))
                message = f"Request refused: {exc}. Request id {self.id}."
                return self.finish(status="over_budget", served_from="none", tier="none", answer=None,
                                   text=message, notice=message)
            except ProviderError as exc:
                usage = chat.usage if chat is not None else Usage(0, 0, reported=False)
                self._account(name, model, prompt_id, usage, call_started, exc.kind, str(exc), exc.retry_after,
                              chat.first_token_s if chat is not None else None)
                breaker.record_failure(exc.kind, exc.retry_after)
                if exc.kind in RETRY_WITH_SIMPLER_PROMPT:
                    continue
                return None
            except Exception as exc:  # a bug or an unexpected library error must still not reach the user raw
                self._account(name, model, prompt_id, Usage(0, 0, reported=False), call_started, "unavailable",
                              f"{type(exc).__name__}: {exc}", None, None)
                breaker.record_failure("unavailable")
                return None
            breaker.record_success()
            self._account(name, model, prompt_id, chat.usage, call_started, "ok", "", None, chat.first_token_s)
            if chat.first_token_s is not None:
                self.timings["first_token_ms"] = _ms(call_started - self.started + chat.first_token_s)
            return self.finish(status="answered" if parsed.answerable else "declined", served_from="model",
                               tier=self.decision.tier or "none", answer=parsed, provider=name, model=chat.model,
                               prompt=prompt_id)
        return None

    def _account(self, name, model, prompt_id, usage: Usage, call_started, outcome, detail, retry_after,
                 first_token_s) -> None:
        latency = time.perf_counter() - call_started
        self.generate_s += latency
        cost = cost_usd(self.settings.prices, name, model, usage.prompt_tokens, usage.completion_tokens)
        self.tokens = TokenCounts(prompt=self.tokens.prompt + usage.prompt_tokens,
                                  completion=self.tokens.completion + usage.completion_tokens,
                                  exact=self.tokens.exact and (usage.reported or name == "local"))
        self.cost = None if cost is None or self.cost is None else round(self.cost + cost, 8)
        self.attempts.append(Attempt(
            provider=name, model=model, prompt=prompt_id, outcome=outcome, detail=detail[:500],
            retry_after_s=retry_after, latency_ms=_ms(latency),
            first_token_ms=_ms(first_token_s) if first_token_s is not None else None,
            prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens))
        self.pipeline.ledger.record(UsageRow(
            request_id=self.id, principal=self.principal, provider=name, model=model,
            route=self.decision.route.value if self.decision else "", tier=self.decision.tier or "none",
            prompt_version=prompt_id, prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
            cost_usd=cost, latency_ms=latency * 1000, outcome=outcome))

    def _citations(self, answer: ModelAnswer) -> list[AnswerSentence]:
        out = []
        for sentence in answer.sentences:
            citations = []
            for n in sentence.passages:
                hit = self.passages.hit(n)
                citations.append(Citation(passage=n, chunk_id=hit.id, doc_id=hit.doc_id, source=hit.source,
                                          title=hit.title, page=hit.page, quote=best_quote(sentence.text, hit.text)))
            out.append(AnswerSentence(text=sentence.text, citations=citations))
        return out

    def finish(self, *, status, served_from, tier, answer: ModelAnswer | None, text: str | None = None,
               notice: str | None = None, provider: str | None = None, model: str | None = None,
               prompt: str | None = None) -> AnswerResult:
        if self.generate_s:
            self.timings["generate_ms"] = _ms(self.generate_s)
        self.timings["total_ms"] = _ms(time.perf_counter() - self.started)
        decision = self.decision
        return AnswerResult(
            request_id=self.id, question=self.question, status=status, served_from=served_from,
            answer=text if text is not None else format_answer(answer),
            answerable=bool(answer and answer.answerable),
            short_answer=answer.short_answer if answer is not None and answer.answerable else None,
            sentences=self._citations(answer) if answer is not None else [],
            route=decision.route.value if decision else "", route_reasons=decision.reasons if decision else [],
            tier=tier, provider=provider, model=model, prompt=prompt, tokens=self.tokens, cost_usd=self.cost,
            timings_ms=dict(self.timings), notice=notice, attempts=list(self.attempts))

    def from_cache(self, hit: CacheHit, notice: str) -> AnswerResult:
        cached = hit.answer
        self.timings["total_ms"] = _ms(time.perf_counter() - self.started)
        decision = self.decision
        return AnswerResult(
            request_id=self.id, question=self.question, status="answered", served_from="cache",
            answer=cached["answer"], answerable=True, short_answer=cached.get("short_answer"),
            sentences=[AnswerSentence.model_validate(s) for s in cached["sentences"]],
            route=decision.route.value if decision else cached.get("route", ""),
            route_reasons=decision.reasons if decision else [], tier="cache", provider=cached.get("provider"),
            model=cached.get("model"), prompt=cached.get("prompt"), tokens=self.tokens, cost_usd=self.cost,
            timings_ms=dict(self.timings), notice=notice, attempts=list(self.attempts),
            cache=CacheInfo(similarity=round(hit.similarity, 4), question=hit.question, created_at=hit.created_at,
                            entry_id=hit.entry_id, reviewed=cached.get("reviewed")))
