"""Prometheus metrics, one registry per app (so several apps in one process never collide).

Exposed at ``GET /metrics``: requests and their latency, latency per stage of the question path, tokens,
cost, decisions by type, the fallback tier that answered, cache hits, provider errors, admission
(queued, refused), cancelled generations and ingest jobs; human review: queue depth and the oldest open
item's age per tenant and kind (read from the review store at scrape time), decisions by action and kind.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger("attest.api.metrics")

disable_created_metrics()  # no *_created series: they double the output and no dashboard here reads them

# Seconds: a cache hit takes milliseconds, a local 2-core generation tens of seconds.
_STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)


class Metrics:
    def __init__(self):
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("attest_http_requests_total", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=r)
        self.request_seconds = Histogram("attest_http_request_duration_seconds", "HTTP request latency",
                                         ["method", "route"], buckets=_STAGE_BUCKETS, registry=r)
        self.stage_seconds = Histogram("attest_stage_duration_seconds",
                                       "Latency per stage of the question path (retrieve, generate, verify, total)",
                                       ["stage"], buckets=_STAGE_BUCKETS, registry=r)
        self.tokens = Counter("attest_tokens_total", "Model tokens by provider, model and kind",
                              ["provider", "model", "kind"], registry=r)
        self.cost = Counter("attest_cost_usd_total", "Model cost in US dollars (known prices only)",
                            ["provider", "model"], registry=r)
        self.decisions = Counter("attest_decisions_total", "Answers by grounding decision and risk level",
                                 ["decision", "risk"], registry=r)
        self.answers = Counter("attest_answers_total",
                               "Answers by where they came from (model, cache, router, none) and the fallback tier",
                               ["served_from", "tier", "provider"], registry=r)
        self.fallback_depth = Counter("attest_fallback_used_total",
                                      "Answers by how many failed attempts preceded the one that answered",
                                      ["failed_attempts"], registry=r)
        self.cache = Counter("attest_cache_lookups_total", "Semantic-cache lookups by outcome (hit, miss)",
                             ["outcome"], registry=r)
        self.provider_errors = Counter("attest_provider_errors_total", "Failed provider attempts by kind",
                                       ["provider", "kind"], registry=r)
        self.admission = Counter("attest_admission_total",
                                 "Question-path admission: admitted, queued, refused_overload (503), refused_key (429)",
                                 ["outcome"], registry=r)
        self.inflight = Gauge("attest_inflight_questions", "Questions being answered now", registry=r)
        self.queued = Gauge("attest_queued_questions", "Questions waiting for a slot", registry=r)
        self.cancelled = Counter("attest_generations_cancelled_total",
                                 "Generations stopped because the client went away", registry=r)
        self.jobs = Counter("attest_ingest_jobs_total", "Ingest jobs by final status", ["status"], registry=r)
        self.files = Counter("attest_ingest_files_total", "Uploaded files by ingest outcome", ["outcome"], registry=r)
        self.feedback = Counter("attest_feedback_total", "Feedback received by rating", ["rating"], registry=r)
        self.review_decisions = Counter("attest_review_decisions_total",
                                        "Reviewers' decisions by action (approved, edited, rejected) and item kind",
                                        ["action", "kind"], registry=r)
        self.quality = Histogram("attest_answer_quality", "The quality judge's score of served answers (0..1)",
                                 buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0), registry=r)
        self.flagged = Counter("attest_review_flagged_total", "Served answers queued for review after delivery",
                               ["reason"], registry=r)
        self.quality_skipped = Counter("attest_answer_quality_skipped_total",
                                       "Served answers not judged because the judge's queue was full", registry=r)

    def watch_review_queue(self, desk) -> None:
        """Export the review queue's depth and oldest open item's age, read from ``desk.store`` per scrape."""
        self.registry.register(_ReviewQueueCollector(desk))

    def observe_answer(self, response) -> None:
        """Count one answered question (an ``api.schemas.QueryResponse``)."""
        self.decisions.labels(response.decision, response.risk).inc()
        self.answers.labels(response.served_from, response.tier or "none", response.provider or "none").inc()
        failed = sum(1 for a in response.attempts if a.outcome != "ok")
        if response.served_from == "model":
            self.fallback_depth.labels(str(min(failed, 5))).inc()
        for attempt in response.attempts:
            if attempt.outcome not in ("ok",):
                self.provider_errors.labels(attempt.provider, attempt.outcome).inc()
        for attempt in response.attempts:
            if attempt.prompt_tokens:
                self.tokens.labels(attempt.provider, attempt.model, "prompt").inc(attempt.prompt_tokens)
            if attempt.completion_tokens:
                self.tokens.labels(attempt.provider, attempt.model, "completion").inc(attempt.completion_tokens)
        if response.cost_usd:
            self.cost.labels(response.provider or "none", response.model or "none").inc(response.cost_usd)
        if response.cache_lookup:
            self.cache.labels("hit" if response.served_from == "cache" else "miss").inc()
        for stage, ms in response.timings_ms.items():
            if stage in ("retrieve_ms", "generate_ms", "verify_ms", "total_ms", "first_token_ms", "queue_ms"):
                self.stage_seconds.labels(stage[:-3]).observe(ms / 1000)


class _ReviewQueueCollector:
    """Gauges computed from the review store when /metrics is scraped (the store is the truth: several
    processes may add items to it)."""

    def __init__(self, desk):
        self.desk = desk

    def _families(self):
        depth = GaugeMetricFamily("attest_review_queue_depth", "Open review items (pending, claimed or disputed)",
                                  labels=["tenant", "kind"])
        oldest = GaugeMetricFamily("attest_review_oldest_pending_seconds",
                                   "Age of the oldest open review item, in seconds", labels=["tenant", "kind"])
        return depth, oldest

    def describe(self):
        return list(self._families())

    def collect(self):
        from review.store import parse_iso

        depth, oldest = self._families()
        try:
            stats = self.desk.store.queue_stats()
            now = self.desk.store.clock()
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the store is busy or closed
            log.warning("review queue metrics unavailable: %s", exc)
            stats, now = [], time.time()
        for row in stats:
            depth.add_metric([row["tenant"], row["kind"]], row["depth"])
            oldest.add_metric([row["tenant"], row["kind"]], max(0.0, now - parse_iso(row["oldest"])))
        yield depth
        yield oldest
