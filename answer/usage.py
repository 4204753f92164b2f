"""Token budgets and the usage ledger (the state database: ``attest_db``, SQLite or PostgreSQL).

Every model call is one ledger row: request id, who asked (API key id, organisation), provider, model,
route, tier, tokens, cost, latency and outcome. Budgets are checked before a call against the ledger:
the call's prompt tokens (counted with the model's tokenizer where one is local) plus its
``max_tokens``, so a call can never overrun a budget by more than what it was allowed to generate.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from attest_db import Migration, Schema, open_db

SCHEMA = Schema("usage", [Migration(1, "usage ledger", """
CREATE TABLE IF NOT EXISTS usage (
    id {id},
    request_id TEXT NOT NULL,
    created_at TEXT NOT NULL,           -- ISO 8601, UTC
    day TEXT NOT NULL,                  -- YYYY-MM-DD, UTC: the per-key daily budget's window
    month TEXT NOT NULL,                -- YYYY-MM, UTC: the per-organisation monthly budget's window
    api_key_id TEXT NOT NULL,
    org TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    route TEXT NOT NULL,
    tier TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd {float},                   -- NULL when the model has no price in the table
    latency_ms {float} NOT NULL,
    outcome TEXT NOT NULL               -- ok, or the error kind
);
CREATE INDEX IF NOT EXISTS usage_key_day ON usage (api_key_id, day);
CREATE INDEX IF NOT EXISTS usage_org_month ON usage (org, month);
CREATE INDEX IF NOT EXISTS usage_request ON usage (request_id);
""")])


@dataclass(frozen=True)
class Principal:
    """Who is asking: an API key's id (never the key itself) and its organisation."""

    api_key_id: str = "local"
    org: str = "default"


@dataclass
class UsageRow:
    request_id: str
    principal: Principal
    provider: str
    model: str
    route: str
    tier: str
    prompt_version: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    latency_ms: float
    outcome: str


class BudgetExceeded(Exception):
    def __init__(self, scope: str, limit: int, used: int, requested: int):
        self.scope, self.limit, self.used, self.requested = scope, limit, used, requested
        super().__init__(
            f"token budget exceeded ({scope}): this call needs up to {requested} tokens, "
            f"{used} of {limit} are already used" if used else
            f"token budget exceeded ({scope}): this call needs up to {requested} tokens, the limit is {limit}"
        )


class UsageLedger:
    def __init__(self, url: str | Path):
        """``url``: ``settings.state_url`` (or a SQLite file path)."""
        self._db = open_db(url, SCHEMA)
        self._lock = threading.Lock()

    def record(self, row: UsageRow, now: datetime | None = None) -> None:
        now = now or datetime.now(timezone.utc)
        with self._lock:
            self._db.execute(
                "INSERT INTO usage (request_id, created_at, day, month, api_key_id, org, provider, model, route, "
                "tier, prompt_version, prompt_tokens, completion_tokens, cost_usd, latency_ms, outcome) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row.request_id, now.isoformat(), now.strftime("%Y-%m-%d"), now.strftime("%Y-%m"),
                 row.principal.api_key_id, row.principal.org, row.provider, row.model, row.route, row.tier,
                 row.prompt_version, row.prompt_tokens, row.completion_tokens, row.cost_usd,
                 round(row.latency_ms, 1), row.outcome),
            )

    def tokens_for_key_on(self, api_key_id: str, day: str) -> int:
        with self._lock:
            (total,) = self._db.one(
                "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM usage "
                "WHERE api_key_id = ? AND day = ?", (api_key_id, day))
        return int(total)

    def tokens_for_org_in(self, org: str, month: str) -> int:
        with self._lock:
            (total,) = self._db.one(
                "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM usage "
                "WHERE org = ? AND month = ?", (org, month))
        return int(total)

    def rows_for_request(self, request_id: str) -> list[dict]:
        with self._lock:
            return self._db.dicts("SELECT * FROM usage WHERE request_id = ? ORDER BY id", (request_id,))

    def close(self) -> None:
        with self._lock:
            self._db.close()


class TokenBudget:
    """Per request, per API key per day, per organisation per month; 0 means unlimited."""

    def __init__(self, ledger: UsageLedger, per_request: int, per_key_daily: int, per_org_monthly: int):
        self.ledger = ledger
        self.per_request = per_request
        self.per_key_daily = per_key_daily
        self.per_org_monthly = per_org_monthly

    def check(self, principal: Principal, requested: int, used_by_request: int = 0,
              now: datetime | None = None) -> None:
        """Raise ``BudgetExceeded`` if a call of up to ``requested`` tokens would cross any budget."""
        now = now or datetime.now(timezone.utc)
        if self.per_request and used_by_request + requested > self.per_request:
            raise BudgetExceeded("per request", self.per_request, used_by_request, requested)
        if self.per_key_daily:
            used = self.ledger.tokens_for_key_on(principal.api_key_id, now.strftime("%Y-%m-%d"))
            if used + requested > self.per_key_daily:
                raise BudgetExceeded(f"API key {principal.api_key_id!r} per day", self.per_key_daily, used, requested)
        if self.per_org_monthly:
            used = self.ledger.tokens_for_org_in(principal.org, now.strftime("%Y-%m"))
            if used + requested > self.per_org_monthly:
                raise BudgetExceeded(f"organisation {principal.org!r} per month", self.per_org_monthly, used,
                                     requested)


def cost_usd(prices: dict, provider: str, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """Dollars for one call from the price table; local models cost 0; an unknown price is None."""
    if provider == "local" or prompt_tokens + completion_tokens == 0:
        return 0.0
    price = prices.get(model)
    if price is None:
        return None
    return round((prompt_tokens * price.input_per_mtok + completion_tokens * price.output_per_mtok) / 1e6, 8)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


