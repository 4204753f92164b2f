"""The review store: queue items, reviewers' leases, decisions, edits and the audit trail, in SQL.

Tables (in ``<data_dir>/attest.sqlite``, beside the other stores):

- ``review_items``: one per request that needs a person (``request_id`` is unique): ``kind`` failed_check
  (the checks withheld the answer), feedback (a user's thumbs down) or flagged (the quality judge); the
  tenant, collection, risk and question as columns to filter on, and ``payload`` (JSON) with everything
  else a reviewer reads: the draft, each claim's verdict, score, vetoes and evidence spans, the sources the
  model was shown, model and prompt versions, the user's feedback. ``status``: pending -> approved | edited
  | rejected, or pending -> disputed -> (one more decision) when two reviewers disagreed.
- ``review_leases``: who is working on an item until when. An item has ``reviews_required`` slots (1, or 2
  when routed to two reviewers independently; a disputed item opens slot 2 for a third reviewer); a lease
  holds one slot. The primary key (item_id, slot) arbitrates races: two reviewers claiming the last free
  slot at once cannot both insert it, in one process or several. An expired lease is ignored and removed.
- ``review_decisions``: one per filled slot: reviewer, action (approved, edited, rejected), the edited text
  or the reason, and the re-verification of an edit.
- ``review_edits``: every text a reviewer submitted for re-verification, with the result.
- ``review_quality``: the quality judge's score of served answers (review/quality.py), for the trend.
- ``review_audit``: every change (queued, claimed, released, lease expired, edit, decision, feedback added):
  who, when, the state before and after.

Portability: plain SQL over ``?`` parameters, TEXT ids made here (no AUTOINCREMENT), ISO 8601 UTC text for
times (fixed width, so they compare as text), JSON in TEXT, no INSERT OR REPLACE; opened through
``attest_db`` (SQLite or PostgreSQL, ``settings.state_url``), whose transactions are BEGIN IMMEDIATE on
SQLite. A race between two claims of one slot ends on the primary key: the loser's transaction rolls back.

Rules (violations raise ``Conflict`` with the reason; the API answers 409):
- a decided item cannot be claimed or decided again;
- a reviewer decides only while holding a live lease on the item (claim first; a lease expires after
  ``lease_s`` and can be renewed by claiming again);
- a reviewer fills at most one slot of an item (two reviews of one item are two people's);
- an item leased by others in every open slot cannot be claimed until a lease ends.

    store = ReviewStore(settings.state_url, clock=time.time)
    item = store.add_item(kind="failed_check", request_id=..., tenant="acme", collection="acme", risk="low",
                          question="...", payload={...}, reviews_required=1)
    lease = store.claim(item["id"], reviewer="key_ab12", lease_s=600)
    store.decide(item["id"], reviewer="key_ab12", action="approved")
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

from attest_db import Migration, Schema, integrity_errors, open_db

SCHEMA = Schema("review", [Migration(1, "review queue, leases, decisions, edits, audit, quality", """
CREATE TABLE IF NOT EXISTS review_items (
    id               TEXT PRIMARY KEY,
    request_id       TEXT NOT NULL UNIQUE,
    kind             TEXT NOT NULL,          -- failed_check | feedback | flagged
    tenant           TEXT NOT NULL,
    api_key_id       TEXT NOT NULL,          -- who asked the question
    collection       TEXT NOT NULL,
    risk             TEXT NOT NULL,
    question         TEXT NOT NULL,
    status           TEXT NOT NULL,          -- pending | disputed | approved | edited | rejected
    reviews_required INTEGER NOT NULL,
    created_at       TEXT NOT NULL,
    decided_at       TEXT,
    final_text       TEXT,                   -- approved / edited: the answer served from then on
    final_reason     TEXT,                   -- rejected: why
    model            TEXT,
    prompt_version   TEXT,
    payload          TEXT NOT NULL           -- JSON (see api/review.py: draft, response, feedback, ...)
);
CREATE INDEX IF NOT EXISTS review_items_queue ON review_items (status, tenant, created_at);
CREATE TABLE IF NOT EXISTS review_leases (
    item_id    TEXT NOT NULL,
    slot       INTEGER NOT NULL,
    reviewer   TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (item_id, slot)
);
CREATE TABLE IF NOT EXISTS review_decisions (
    item_id      TEXT NOT NULL,
    slot         INTEGER NOT NULL,
    reviewer     TEXT NOT NULL,
    action       TEXT NOT NULL,              -- approved | edited | rejected
    text         TEXT,                       -- edited: the reviewer's answer
    reason       TEXT,                       -- rejected: why
    unanswerable INTEGER NOT NULL,           -- rejected: the documents do not answer the question
    verification TEXT,                       -- edited: JSON, the re-verification of the text
    created_at   TEXT NOT NULL,
    PRIMARY KEY (item_id, slot)
);
CREATE TABLE IF NOT EXISTS review_edits (
    id           TEXT PRIMARY KEY,
    item_id      TEXT NOT NULL,
    reviewer     TEXT NOT NULL,
    text         TEXT NOT NULL,
    verification TEXT NOT NULL,              -- JSON
    created_at   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS review_edits_item ON review_edits (item_id, created_at);
CREATE TABLE IF NOT EXISTS review_audit (
    item_id TEXT NOT NULL,
    seq     INTEGER NOT NULL,                -- 1, 2, ... per item: the order of events
    tenant  TEXT NOT NULL,
    actor   TEXT NOT NULL,                   -- an API key id, "system" or "user:<key id>"
    action  TEXT NOT NULL,
    at      TEXT NOT NULL,
    before  TEXT,                            -- JSON: the item's state before
    after   TEXT,                            -- JSON: and after
    detail  TEXT,                            -- JSON: what was submitted (text, reason, ...)
    PRIMARY KEY (item_id, seq)
);
CREATE TABLE IF NOT EXISTS review_quality (
    request_id     TEXT PRIMARY KEY,
    tenant         TEXT NOT NULL,
    collection     TEXT NOT NULL,
    score          {float} NOT NULL,          -- the quality judge's P(good answer)
    model          TEXT,
    prompt_version TEXT NOT NULL,
    judged_at      TEXT NOT NULL
);
""")])

KINDS = ("failed_check", "feedback", "flagged")
ACTIONS = ("approved", "edited", "rejected")
OPEN = ("pending", "disputed")
DECIDED = ACTIONS
# What the list filter ``status`` accepts: stored states, "claimed" (open with a live lease), and groups.
STATUS_FILTERS = ("pending", "claimed", "disputed", "approved", "edited", "rejected", "open", "decided", "all")
TIEBREAK_SLOT = 2  # a disputed item's deciding review


class Conflict(Exception):
    """The transition is not allowed in the item's current state; ``str(exc)`` says why."""


class NotFound(Exception):
    """No such item (or one the caller may not see: the API does not tell the two apart)."""


def iso(t: float) -> str:
    """Epoch seconds as fixed-width ISO 8601 UTC text (compares correctly as text)."""
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="microseconds")


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def accepts(action: str) -> bool:
    """Approved and edited both let an answer through: agreement is measured on accept versus reject."""
    return action in ("approved", "edited")


class _Statements:
    """What a transaction hands the methods below: ``execute`` returning a cursor, as DB-API does."""

    def __init__(self, db):
        self.execute = db.cursor


class ReviewStore:
    """One per process (thread-safe); ``clock`` returns epoch seconds (tests pass their own)."""

    def __init__(self, url: str | Path, clock: Callable[[], float] = time.time):
        """``url``: ``settings.state_url`` (or a SQLite file path)."""
        self._db = open_db(url, SCHEMA)
        self._lock = threading.RLock()
        self.clock = clock

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- plumbing --------------------------------------------------------------------------------------
    @contextmanager
    def _transaction(self):
        with self._lock, self._db.transaction():
            yield _Statements(self._db)

    def _rows(self, sql: str, args: Iterable = ()) -> list[dict]:
        with self._lock:
            return self._db.dicts(sql, tuple(args))

    def _now(self) -> str:
        return iso(self.clock())

    def _audit(self, db, item: dict, actor: str, action: str, before: dict | None, after: dict | None,
               detail: dict | None = None) -> None:
        (seq,) = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM review_audit WHERE item_id = ?",
                            (item["id"],)).fetchone()
        db.execute("INSERT INTO review_audit (item_id, seq, tenant, actor, action, at, before, after, detail) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (item["id"], seq, item["tenant"], actor, action, self._now(),
                    None if before is None else json.dumps(before), None if after is None else json.dumps(after),
                    None if detail is None else json.dumps(detail)))

    def _state(self, item_id: str) -> dict:
        """The part of an item the audit trail records before and after a change."""
        item = self._load(item_id)
        return {"status": item["status"], "leases": [{k: l[k] for k in ("slot", "reviewer", "expires_at")}
                                                     for l in item["leases"]],
                "decisions": [{k: d[k] for k in ("slot", "reviewer", "action")} for d in item["decisions"]],
                "final_text": item["final_text"], "final_reason": item["final_reason"]}

    def _expire_leases(self, db, item: dict) -> None:
        """Remove the item's leases that have run out (each one audited)."""
        now = self._now()
        expired = db.execute("SELECT slot, reviewer, expires_at FROM review_leases WHERE item_id = ? AND "
                             "expires_at <= ?", (item["id"], now)).fetchall()
        for slot, reviewer, expires_at in expired:
            db.execute("DELETE FROM review_leases WHERE item_id = ? AND slot = ?", (item["id"], slot))
            self._audit(db, item, "system", "lease_expired", {"slot": slot, "reviewer": reviewer,
                                                              "expires_at": expires_at}, None)

    # ---- reading ---------------------------------------------------------------------------------------
    def _load(self, item_id: str) -> dict:
        rows = self._rows("SELECT * FROM review_items WHERE id = ?", (item_id,))
        if not rows:
            raise NotFound(item_id)
        return self._complete(rows[0])

    def _complete(self, row: dict) -> dict:
        item = dict(row)
        item["payload"] = json.loads(item["payload"])
        now = self._now()
        item["leases"] = self._rows("SELECT slot, reviewer, claimed_at, expires_at FROM review_leases WHERE "
                                    "item_id = ? AND expires_at > ? ORDER BY slot", (item["id"], now))
        item["decisions"] = [self._decision(d) for d in self._rows(
            "SELECT * FROM review_decisions WHERE item_id = ? ORDER BY slot", (item["id"],))]
        item["stored_status"] = item["status"]
        if item["status"] in OPEN and item["leases"]:
            item["status"] = "claimed"
        return item

    @staticmethod
    def _decision(row: dict) -> dict:
        row = dict(row)
        row["unanswerable"] = bool(row["unanswerable"])
        row["verification"] = json.loads(row["verification"]) if row["verification"] else None
        return row

    def get(self, item_id: str) -> dict:
        """The item with its live leases and decisions; raises NotFound."""
        with self._lock:
            return self._load(item_id)

    def by_request(self, request_id: str) -> dict | None:
        rows = self._rows("SELECT * FROM review_items WHERE request_id = ?", (request_id,))
        return self._complete(rows[0]) if rows else None

    def list(self, tenants: Iterable[str] | None = None, status: str = "open", tenant: str | None = None,
             collection: str | None = None, risk: str | None = None, kind: str | None = None,
             limit: int = 50, offset: int = 0) -> list[dict]:
        """Items oldest first. ``tenants``: the tenants the caller may see (None: all). ``status``: one of
        STATUS_FILTERS (claimed = open with a live lease; pending = open without one)."""
        if status not in STATUS_FILTERS:
            raise ValueError(f"unknown status {status!r}: one of {', '.join(STATUS_FILTERS)}")
        where, args = [], []
        live = "EXISTS (SELECT 1 FROM review_leases l WHERE l.item_id = i.id AND l.expires_at > ?)"
        if status == "claimed":
            where.append(f"i.status IN ('pending', 'disputed') AND {live}")
            args.append(self._now())
        elif status == "pending":
            where.append(f"i.status = 'pending' AND NOT {live}")
            args.append(self._now())
        elif status == "open":
            where.append("i.status IN ('pending', 'disputed')")
        elif status == "decided":
            where.append("i.status IN ('approved', 'edited', 'rejected')")
        elif status != "all":
            where.append("i.status = ?")
            args.append(status)
        if tenants is not None:
            tenants = list(tenants)
            if not tenants:
                return []
            where.append(f"i.tenant IN ({', '.join('?' for _ in tenants)})")
            args.extend(tenants)
        for column, value in (("tenant", tenant), ("collection", collection), ("risk", risk), ("kind", kind)):
            if value is not None:
                where.append(f"i.{column} = ?")
                args.append(value)
        sql = "SELECT i.* FROM review_items i" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY i.created_at, i.id LIMIT ? OFFSET ?"
        with self._lock:
            return [self._complete(r) for r in self._rows(sql, args + [int(limit), int(offset)])]

    def audit(self, item_id: str) -> list[dict]:
        rows = self._rows("SELECT * FROM review_audit WHERE item_id = ? ORDER BY seq", (item_id,))
        for row in rows:
            for key in ("before", "after", "detail"):
                row[key] = json.loads(row[key]) if row[key] else None
        return rows

    def edits(self, item_id: str) -> list[dict]:
        rows = self._rows("SELECT * FROM review_edits WHERE item_id = ? ORDER BY created_at, id", (item_id,))
        for row in rows:
            row["verification"] = json.loads(row["verification"])
        return rows

    # ---- queueing --------------------------------------------------------------------------------------
    def add_item(self, *, kind: str, request_id: str, tenant: str, api_key_id: str, collection: str, risk: str,
                 question: str, payload: dict, reviews_required: int = 1, model: str | None = None,
                 prompt_version: str | None = None, actor: str = "system") -> tuple[dict, bool]:
        """Queue an item; (item, created). A request already queued is returned as it is (created False)."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
        item_id = "rev_" + uuid.uuid4().hex[:20]
        try:
            with self._transaction() as db:
                db.execute("INSERT INTO review_items (id, request_id, kind, tenant, api_key_id, collection, risk, "
                           "question, status, reviews_required, created_at, model, prompt_version, payload) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)",
                           (item_id, request_id, kind, tenant, api_key_id, collection, risk, question,
                            int(reviews_required), self._now(), model, prompt_version, json.dumps(payload)))
                self._audit(db, {"id": item_id, "tenant": tenant}, actor, "queued", None,
                            {"status": "pending", "kind": kind, "reviews_required": int(reviews_required)})
        except integrity_errors():
            existing = self.by_request(request_id)
            if existing is None:
                raise
            return existing, False
        return self.get(item_id), True

    def add_feedback(self, item_id: str, feedback: dict, actor: str) -> dict:
        """Append a user's feedback to an item's payload (another thumbs down on a request already queued)."""
        with self._transaction() as db:
            item = self._load(item_id)
            payload = item["payload"]
            payload.setdefault("feedback", []).append(feedback)
            db.execute("UPDATE review_items SET payload = ? WHERE id = ?", (json.dumps(payload), item_id))
            self._audit(db, item, actor, "feedback_added", None, None, feedback)
        return self.get(item_id)

    # ---- leases ----------------------------------------------------------------------------------------
    def _open_slots(self, item: dict) -> list[int]:
        slots = list(range(int(item["reviews_required"])))
        if item["stored_status"] == "disputed":
            slots = [TIEBREAK_SLOT]
        decided = {d["slot"] for d in item["decisions"]}
        return [s for s in slots if s not in decided]

    def claim(self, item_id: str, reviewer: str, lease_s: float) -> dict:
        """Lease a free slot of the item to ``reviewer`` for ``lease_s`` seconds (claiming again renews it);
        returns the lease. Raises NotFound, or Conflict when the item is decided, already reviewed by this
        reviewer, or every open slot is leased to someone else."""
        with self._transaction() as db:
            item = self._load(item_id)
            self._expire_leases(db, item)
            item = self._load(item_id)
            if item["stored_status"] in DECIDED:
                raise Conflict(f"item {item_id} is already decided ({item['stored_status']} at {item['decided_at']})")
            now = self.clock()
            expires = iso(now + lease_s)
            mine = [l for l in item["leases"] if l["reviewer"] == reviewer]
            if mine:
                db.execute("UPDATE review_leases SET expires_at = ? WHERE item_id = ? AND slot = ?",
                           (expires, item_id, mine[0]["slot"]))
                self._audit(db, item, reviewer, "lease_renewed", {"expires_at": mine[0]["expires_at"]},
                            {"expires_at": expires})
                return {**mine[0], "expires_at": expires, "item_id": item_id}
            if any(d["reviewer"] == reviewer for d in item["decisions"]):
                raise Conflict(f"you already reviewed item {item_id}; it needs another reviewer's decision")
            leased = {l["slot"] for l in item["leases"]}
            free = [s for s in self._open_slots(item) if s not in leased]
            if not free:
                holders = ", ".join(f"{l['reviewer']} until {l['expires_at']}" for l in item["leases"])
                raise Conflict(f"item {item_id} is claimed by {holders}")
            before = self._state(item_id)
            try:
                db.execute("INSERT INTO review_leases (item_id, slot, reviewer, claimed_at, expires_at) "
                           "VALUES (?, ?, ?, ?, ?)", (item_id, free[0], reviewer, iso(now), expires))
            except integrity_errors():  # another process took the slot between our read and our write
                raise Conflict(f"item {item_id} was just claimed by another reviewer") from None
            self._audit(db, item, reviewer, "claimed", before, self._state(item_id))
            return {"item_id": item_id, "slot": free[0], "reviewer": reviewer, "claimed_at": iso(now),
                    "expires_at": expires}

    def _lease_of(self, db, item: dict, reviewer: str) -> dict:
        self._expire_leases(db, item)
        if item["stored_status"] in DECIDED:
            raise Conflict(f"item {item['id']} is already decided ({item['stored_status']} at {item['decided_at']})")
        now = self._now()
        rows = db.execute("SELECT slot, expires_at FROM review_leases WHERE item_id = ? AND reviewer = ? AND "
                          "expires_at > ?", (item["id"], reviewer, now)).fetchall()
        if not rows:
            raise Conflict(f"you hold no lease on item {item['id']} (it expired, or it was never claimed): "
                           f"claim it first")
        return {"slot": rows[0][0], "expires_at": rows[0][1]}

    def release(self, item_id: str, reviewer: str) -> dict:
        with self._transaction() as db:
            item = self._load(item_id)
            lease = self._lease_of(db, item, reviewer)
            before = self._state(item_id)
            db.execute("DELETE FROM review_leases WHERE item_id = ? AND slot = ?", (item_id, lease["slot"]))
            self._audit(db, item, reviewer, "released", before, self._state(item_id))
        return self.get(item_id)

    # ---- edits and decisions ---------------------------------------------------------------------------
    def record_edit(self, item_id: str, reviewer: str, text: str, verification: dict) -> dict:
        """A reviewer's text and its re-verification (the reviewer must hold a lease)."""
        with self._transaction() as db:
            item = self._load(item_id)
            self._lease_of(db, item, reviewer)
            edit = {"id": "edit_" + uuid.uuid4().hex[:16], "item_id": item_id, "reviewer": reviewer, "text": text,
                    "verification": verification, "created_at": self._now()}
            db.execute("INSERT INTO review_edits (id, item_id, reviewer, text, verification, created_at) VALUES "
                       "(?, ?, ?, ?, ?, ?)", (edit["id"], item_id, reviewer, text, json.dumps(verification),
                                              edit["created_at"]))
            draft = item["payload"].get("draft", {}).get("answer")
            self._audit(db, item, reviewer, "edit_verified", {"text": draft},
                        {"text": text, "decision": verification.get("decision")}, {"edit_id": edit["id"]})
        return edit

    def latest_edit(self, item_id: str, reviewer: str, since: str | None = None) -> dict | None:
        """The reviewer's last edit of the item (made after ``since``, e.g. the start of their lease)."""
        rows = [e for e in self.edits(item_id) if e["reviewer"] == reviewer and (since is None or
                                                                                 e["created_at"] >= since)]
        return rows[-1] if rows else None

    def decide(self, item_id: str, reviewer: str, action: str, text: str | None = None, reason: str | None = None,
               unanswerable: bool = False, verification: dict | None = None) -> dict:
        """Fill the reviewer's leased slot with a decision and settle the item where enough reviews are in:
        one review decides a single-review item; two that agree (both accept or both reject) decide a
        double-review item, two that disagree make it ``disputed`` (slot 2 opens: the next decision is final).
        Returns the item."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        with self._transaction() as db:
            item = self._load(item_id)
            lease = self._lease_of(db, item, reviewer)
            before = self._state(item_id)
            now = self._now()
            db.execute("INSERT INTO review_decisions (item_id, slot, reviewer, action, text, reason, unanswerable, "
                       "verification, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (item_id, lease["slot"], reviewer, action, text, reason, int(bool(unanswerable)),
                        None if verification is None else json.dumps(verification), now))
            db.execute("DELETE FROM review_leases WHERE item_id = ? AND slot = ?", (item_id, lease["slot"]))
            item = self._load(item_id)
            outcome = self._settle(item)
            if outcome is not None:
                status, final_text, final_reason = outcome
                db.execute("UPDATE review_items SET status = ?, decided_at = ?, final_text = ?, final_reason = ? "
                           "WHERE id = ? AND status IN ('pending', 'disputed')",
                           (status, now if status in DECIDED else None, final_text, final_reason, item_id))
            self._audit(db, item, reviewer, action, before, self._state(item_id),
                        {k: v for k, v in (("text", text), ("reason", reason),
                                           ("unanswerable", unanswerable or None)) if v is not None})
        return self.get(item_id)

    def _settle(self, item: dict) -> tuple[str, str | None, str | None] | None:
        """(status, final text, final reason) once the decisions in settle the item; None while one is missing."""
        by_slot = {d["slot"]: d for d in item["decisions"]}
        draft = item["payload"].get("draft", {}).get("answer")

        def final(d: dict):
            if d["action"] == "rejected":
                return "rejected", None, d["reason"]
            return d["action"], d["text"] if d["action"] == "edited" else draft, None

        if TIEBREAK_SLOT in by_slot:
            return final(by_slot[TIEBREAK_SLOT])
        required = list(range(int(item["reviews_required"])))
        if any(s not in by_slot for s in required):
            return None
        if len(required) == 1:
            return final(by_slot[0])
        first, second = by_slot[0], by_slot[1]
        if accepts(first["action"]) != accepts(second["action"]):
            return "disputed", None, None
        if first["action"] == second["action"] == "rejected":
            return "rejected", None, "; ".join(dict.fromkeys(d["reason"] for d in (first, second) if d["reason"]))
        edited = [d for d in (second, first) if d["action"] == "edited"]
        return final(edited[0] if edited else second)

    # ---- quality scores --------------------------------------------------------------------------------
    def record_quality(self, request_id: str, tenant: str, collection: str, score: float, model: str | None,
                       prompt_version: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM review_quality WHERE request_id = ?", (request_id,))
            db.execute("INSERT INTO review_quality (request_id, tenant, collection, score, model, prompt_version, "
                       "judged_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (request_id, tenant, collection, score, model, prompt_version, self._now()))

    def quality_by_day(self) -> list[dict]:
        """Quality scores per day (UTC): answers judged, mean score."""
        return self._rows("SELECT SUBSTR(judged_at, 1, 10) AS day, COUNT(*) AS answers, AVG(score) AS mean_score "
                          "FROM review_quality GROUP BY SUBSTR(judged_at, 1, 10) ORDER BY day")

    # ---- reports ---------------------------------------------------------------------------------------
    def queue_stats(self) -> list[dict]:
        """Open items per tenant and kind, with the oldest one's creation time."""
        return self._rows("SELECT tenant, kind, COUNT(*) AS depth, MIN(created_at) AS oldest FROM review_items "
                          "WHERE status IN ('pending', 'disputed') GROUP BY tenant, kind ORDER BY tenant, kind")

    def agreement(self, tenants: Iterable[str] | None = None) -> dict:
        """Over items two reviewers decided independently: how often they agreed (both accepted or both
        rejected; ``exact``: the same action), overall, per tenant and per kind."""
        sql = ("SELECT i.tenant, i.kind, a.action AS first, b.action AS second FROM review_items i "
               "JOIN review_decisions a ON a.item_id = i.id AND a.slot = 0 "
               "JOIN review_decisions b ON b.item_id = i.id AND b.slot = 1")
        args: list = []
        if tenants is not None:
            tenants = list(tenants)
            if not tenants:
                return {"overall": _rate([]), "by_tenant": {}, "by_kind": {}}
            sql += f" WHERE i.tenant IN ({', '.join('?' for _ in tenants)})"
            args = tenants
        pairs = self._rows(sql, args)
        group = lambda key: {k: _rate([p for p in pairs if p[key] == k])  # noqa: E731
                             for k in sorted({p[key] for p in pairs})}
        return {"overall": _rate(pairs), "by_tenant": group("tenant"), "by_kind": group("kind")}

    def decided(self, tenant: str | None = None, since: str | None = None) -> list[dict]:
        """Decided items, oldest decision first (what the export writes)."""
        where, args = ["status IN ('approved', 'edited', 'rejected')"], []
        if tenant is not None:
            where.append("tenant = ?")
            args.append(tenant)
        if since is not None:
            where.append("decided_at >= ?")
            args.append(since)
        rows = self._rows("SELECT * FROM review_items WHERE " + " AND ".join(where) + " ORDER BY decided_at, id",
                          args)
        with self._lock:
            return [self._complete(r) for r in rows]


def _rate(pairs: list[dict]) -> dict:
    agreed = sum(1 for p in pairs if accepts(p["first"]) == accepts(p["second"]))
    exact = sum(1 for p in pairs if p["first"] == p["second"])
    n = len(pairs)
    return {"items": n, "agreed": agreed, "rate": round(agreed / n, 4) if n else None,
            "exact_rate": round(exact / n, 4) if n else None}
