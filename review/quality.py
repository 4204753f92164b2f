"""Flagging after delivery: served answers scored by an LLM quality judge off the request path.

``QualityFlagger.offer(response, ...)`` is called once an answer has been served; it only puts the answer on
a bounded queue (never blocks: when the queue is full the answer is skipped and counted) and returns. One
worker thread takes answers from the queue and
1. for a share ``review_judge_share`` of them (a stable draw from the request id), asks the judge the
   rubric of ``review/prompts/quality@1.txt`` (does it answer the question, is it complete, does it say
   only what the documents say): P(Yes) from the next-token log-probabilities, no prose parsed; the score
   is stored (``review_quality``), observed in ``attest_answer_quality`` and shown by ``attest eval history``;
2. queues the answer for a person (kind ``flagged``) when the score is under ``review_judge_threshold`` or
   its confidence is under ``review_flag_confidence``.

The judge is the grounding stage's (``ATTEST_GROUNDING_JUDGE``: the packaged local model by default, or any
OpenAI-compatible endpoint with log-probabilities), loaded on first use; when none can be loaded the
scores are skipped and low-confidence flagging still works.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from pathlib import Path
from typing import Callable

log = logging.getLogger("attest.review.quality")

PROMPT_VERSION = "quality@1"
PROMPT_FILE = Path(__file__).with_name("prompts") / f"{PROMPT_VERSION}.txt"


def quality_prompt(question: str, answer: str, documents: list[str]) -> str:
    lines = "\n".join(f"[{i}] {text.strip()}" for i, text in enumerate(documents, start=1))
    return PROMPT_FILE.read_text(encoding="utf-8").format(documents=lines, question=question.strip(),
                                                          answer=answer.strip())


def sampled(request_id: str, share: float) -> bool:
    """A stable draw: the same request is always in or out; over many, ``share`` of them are in."""
    if share <= 0:
        return False
    salt = "quality:" + request_id  # independent of the double-review draw
    return int(hashlib.sha256(salt.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share


class QualityFlagger:
    def __init__(self, settings, desk, judge_loader: Callable[[], object | None], metrics=None):
        self.settings = settings
        self.desk = desk
        self.judge_loader = judge_loader
        self.metrics = metrics
        self._queue: queue.Queue = queue.Queue(maxsize=settings.review_judge_queue)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stopped = False

    @property
    def enabled(self) -> bool:
        return self.settings.review_judge_share > 0 or self.settings.review_flag_confidence > 0

    def offer(self, response, tenant: str, api_key_id: str, collection: str) -> bool:
        """Take a served answer for judging later; True when it was queued. Never blocks."""
        if not self.enabled or response.decision not in ("served", "repaired") or response.status != "answered":
            return False
        judge = sampled(response.request_id, self.settings.review_judge_share)
        unsure = response.confidence is not None and response.confidence < self.settings.review_flag_confidence
        if not (judge or unsure):
            return False
        try:
            self._queue.put_nowait((response, tenant, api_key_id, collection, judge))
        except queue.Full:
            if self.metrics is not None:
                self.metrics.quality_skipped.inc()
            return False
        self._ensure_worker()
        return True

    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._run, name="attest-quality-judge", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                self.judge_one(*job)
            except Exception as exc:  # noqa: BLE001 - one failed judgement must not stop the worker
                log.warning("quality judging failed: %s", exc)
            finally:
                self._queue.task_done()

    def judge_one(self, response, tenant: str, api_key_id: str, collection: str, judge: bool = True) -> dict | None:
        """Score one served answer and flag it if needed; returns the flag (None when not flagged)."""
        reasons, score, model = [], None, None
        if judge:
            scorer = self.judge_loader()
            if scorer is not None:
                prompt = quality_prompt(response.question, response.answer, [s.text for s in response.sources])
                score = round(float(scorer.p_yes(prompt)), 4)
                model = getattr(scorer, "model", None)
                self.desk.store.record_quality(response.request_id, tenant, collection, score, model,
                                               PROMPT_VERSION)
                if self.metrics is not None:
                    self.metrics.quality.observe(score)
                if score < self.settings.review_judge_threshold:
                    reasons.append(f"quality judge scored {score:.2f}, under {self.settings.review_judge_threshold}")
        if response.confidence is not None and response.confidence < self.settings.review_flag_confidence:
            reasons.append(f"confidence {response.confidence:.2f}, under {self.settings.review_flag_confidence}")
        if not reasons:
            return None
        flag = {"score": score, "reasons": reasons, "judge_model": model, "prompt_version": PROMPT_VERSION}
        self.desk.queue_flagged(response, tenant=tenant, api_key_id=api_key_id, collection=collection, flag=flag)
        if self.metrics is not None:
            self.metrics.flagged.labels("quality" if score is not None and score < self.settings.review_judge_threshold
                                        else "confidence").inc()
        return flag

    def join(self) -> None:
        """Wait until every queued answer has been judged (tests, shutdown)."""
        self._queue.join()

    def stop(self) -> None:
        with self._start_lock:
            self._stopped = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=30)
