"""Admission control for the question path: a bounded number at work, a bounded queue, and a clear refusal.

Requests beyond ``api_max_concurrent`` wait in a queue of at most ``api_max_queue`` for at most
``api_queue_timeout_s``; a request that finds the queue full, or waits too long, gets 503 with a
Retry-After estimated from recent service times. One API key may hold at most ``api_max_inflight_per_key``
places (working or waiting); beyond that it gets 429 with Retry-After. Nothing is dropped silently.

    ticket = await admission.enter(principal.key_id)     # raises Problem(429 | 503)
    try: ...
    finally: admission.leave(ticket)
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict, deque
from dataclasses import dataclass

from api.errors import Problem


@dataclass
class Ticket:
    key_id: str
    entered: float
    admitted: float
    released: bool = False

    @property
    def queued_ms(self) -> float:
        return round((self.admitted - self.entered) * 1000, 1)


class Admission:
    def __init__(self, max_concurrent: int, max_queue: int, queue_timeout_s: float, max_per_key: int, metrics=None):
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.max_per_key = max_per_key
        self.metrics = metrics
        self.running = 0
        self.waiting = 0
        self.per_key: dict[str, int] = defaultdict(int)
        self._durations: deque[float] = deque(maxlen=64)
        self._semaphore: asyncio.Semaphore | None = None

    def _sem(self) -> asyncio.Semaphore:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.max_concurrent)
        return self._semaphore

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the mean recent service time times the queue ahead, per slot."""
        mean = sum(self._durations) / len(self._durations) if self._durations else 1.0
        return max(1, min(600, math.ceil(mean * (self.waiting + 1) / self.max_concurrent)))

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.admission.labels(outcome).inc()

    def _gauges(self) -> None:
        if self.metrics is not None:
            self.metrics.inflight.set(self.running)
            self.metrics.queued.set(self.waiting)

    async def enter(self, key_id: str, limit_key: bool = True) -> Ticket:
        """A place for one question; ``limit_key=False`` skips the per-key share (open mode: one shared key)."""
        if limit_key and self.per_key[key_id] >= self.max_per_key:
            self._count("refused_key")
            raise Problem(429, "too-many-requests", "Too many requests",
                          f"this API key already has {self.per_key[key_id]} questions in progress (the limit is "
                          f"{self.max_per_key}, ATTEST_API_MAX_INFLIGHT_PER_KEY); retry after the time given",
                          headers={"Retry-After": str(self.retry_after())})
        semaphore = self._sem()
        entered = time.monotonic()
        if semaphore.locked():
            if self.waiting >= self.max_queue:
                self._count("refused_overload")
                raise Problem(503, "overloaded", "Server busy",
                              f"{self.running} questions are being answered and {self.waiting} are waiting (the "
                              f"queue holds {self.max_queue}); retry after the time given",
                              headers={"Retry-After": str(self.retry_after())})
            self._count("queued")
        self.per_key[key_id] += 1
        self.waiting += 1
        self._gauges()
        try:
            await asyncio.wait_for(semaphore.acquire(), timeout=self.queue_timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            self._release_key(key_id)
            self._count("refused_overload")
            raise Problem(503, "overloaded", "Server busy",
                          f"no answer slot became free within {self.queue_timeout_s:g} s "
                          f"(ATTEST_API_QUEUE_TIMEOUT_S); retry after the time given",
                          headers={"Retry-After": str(self.retry_after())}) from None
        except BaseException:
            self._release_key(key_id)
            raise
        finally:
            self.waiting -= 1
            self._gauges()
        self.running += 1
        self._gauges()
        self._count("admitted")
        return Ticket(key_id, entered, time.monotonic())

    def _release_key(self, key_id: str) -> None:
        self.per_key[key_id] -= 1
        if self.per_key[key_id] <= 0:
            self.per_key.pop(key_id, None)

    def leave(self, ticket: Ticket) -> None:
        if ticket.released:
            return
        ticket.released = True
        self._durations.append(time.monotonic() - ticket.admitted)
        self.running -= 1
        self._release_key(ticket.key_id)
        self._sem().release()
        self._gauges()
