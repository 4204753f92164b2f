"""A circuit breaker per provider: stop calling a provider that keeps failing, probe it again later.

closed -> (N consecutive failures) -> open -> (cool-down passed) -> half_open: one probe call is let
through -> success closes, failure opens again. A rate limit with ``retry_after`` opens the breaker for
at least that long at once: the provider has said when to come back.
Only outages count (timeout, rate_limited, unavailable); a malformed answer means the provider is up.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Literal

State = Literal["closed", "open", "half_open"]
OUTAGE_KINDS = frozenset({"timeout", "rate_limited", "unavailable"})


@dataclass
class BreakerSnapshot:
    state: State
    consecutive_failures: int
    retry_in_s: float


class CircuitBreaker:
    def __init__(self, failures_to_open: int = 3, cooldown_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self.failures_to_open = failures_to_open
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._state: State = "closed"
        self._failures = 0
        self._open_until = 0.0
        self._probe_in_flight = False
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """May a call go through now? In half-open state only one probe at a time."""
        with self._lock:
            if self._state == "closed":
                return True
            if self._state == "open":
                if self.clock() < self._open_until:
                    return False
                self._state = "half_open"
                self._probe_in_flight = False
            if self._probe_in_flight:
                return False
            self._probe_in_flight = True
            return True

    def record_success(self) -> None:
        with self._lock:
            self._state, self._failures, self._probe_in_flight = "closed", 0, False

    def record_failure(self, kind: str, retry_after: float | None = None) -> None:
        with self._lock:
            self._probe_in_flight = False
            if kind not in OUTAGE_KINDS:
                if self._state == "half_open":  # the probe reached a live provider: it is up
                    self._state, self._failures = "closed", 0
                return
            self._failures += 1
            now = self.clock()
            if retry_after is not None and retry_after > 0:
                self._state = "open"
                self._open_until = max(self._open_until, now + retry_after)
            if self._state == "half_open" or self._failures >= self.failures_to_open:
                self._state = "open"
                self._open_until = max(self._open_until, now + self.cooldown_s)

    def snapshot(self) -> BreakerSnapshot:
        with self._lock:
            state = self._state
            if state == "open" and self.clock() >= self._open_until:
                state = "half_open"
            return BreakerSnapshot(state, self._failures, max(0.0, self._open_until - self.clock()))


class BreakerBoard:
    """The breakers of one process, one per provider name."""

    def __init__(self, failures_to_open: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic):
        self.failures_to_open = failures_to_open
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def get(self, provider: str) -> CircuitBreaker:
        with self._lock:
            if provider not in self._breakers:
                self._breakers[provider] = CircuitBreaker(self.failures_to_open, self.cooldown_s, self.clock)
            return self._breakers[provider]
