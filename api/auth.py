"""API keys: each bound to a tenant and the collections it may read and write.

Keys come from the configuration (``ATTEST_API_KEYS``, JSON) and from the ``api_keys`` table of the state
database (``attest_db``; only a SHA-256 digest of each key is stored there; ``add_key`` makes one).
A request without a valid key gets 401; a collection the key may not touch is reported as not found (404),
so one tenant cannot learn the names of another's collections. ``ATTEST_API_AUTH_MODE=open`` turns keys off
for local use: every request is the tenant ``local`` with every collection.

    principal = keys.authenticate("Bearer sk-...")         # or the X-API-Key header's value
    principal.can_read("acme-docs"), principal.can_write("acme-docs")
    principal.can_review("acme")                            # role "reviewer", scoped to named tenants

Roles: ``reviewer`` (the human-review API, for the tenants in ``review_tenants``; "*" = every tenant) and
``request_review`` (may send ``"review": true`` with a question). Table keys keep theirs in ``api_key_roles``.
In open mode the one local principal has both roles for every tenant.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from answer.usage import Principal as UsagePrincipal
from attest_db import Database, Migration, Schema, open_db

_SCHEMA = Schema("api_keys", [Migration(1, "API keys", """
CREATE TABLE IF NOT EXISTS api_keys (
    key_sha256  TEXT PRIMARY KEY,
    key_id      TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    collections TEXT NOT NULL,           -- JSON list; "*" = every collection
    read_only_collections TEXT NOT NULL DEFAULT '[]',
    created_at  TEXT NOT NULL,
    revoked     INTEGER NOT NULL DEFAULT 0
);
"""), Migration(2, "API key roles", """
CREATE TABLE IF NOT EXISTS api_key_roles (
    key_sha256     TEXT PRIMARY KEY,     -- api_keys.key_sha256
    roles          TEXT NOT NULL,        -- JSON list: reviewer, request_review
    review_tenants TEXT NOT NULL         -- JSON list of tenants a reviewer key may review; "*" = every tenant
);
""")])

OPEN_TENANT = "local"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


key_digest = _digest  # public: the review page's session refers to a key by its digest


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key id (never the key), its tenant, and what it may touch."""

    key_id: str
    tenant: str
    collections: tuple[str, ...]
    read_only: tuple[str, ...] = ()
    open_mode: bool = False
    roles: tuple[str, ...] = ()
    review_tenants: tuple[str, ...] = ()

    def can_read(self, collection: str) -> bool:
        return "*" in self.collections or collection in self.collections or collection in self.read_only \
            or "*" in self.read_only

    def can_write(self, collection: str) -> bool:
        return "*" in self.collections or collection in self.collections

    @property
    def reviewer(self) -> bool:
        return "reviewer" in self.roles

    def can_review(self, tenant: str) -> bool:
        return self.reviewer and ("*" in self.review_tenants or tenant in self.review_tenants)

    def may_request_review(self) -> bool:
        return "request_review" in self.roles

    def default_collection(self, fallback: str) -> str:
        for name in self.collections + self.read_only:
            if name != "*":
                return name
        return fallback

    def usage(self) -> UsagePrincipal:
        """The answer stage's view (token budgets per key and per organisation = tenant)."""
        return UsagePrincipal(api_key_id=self.key_id, org=self.tenant)


@dataclass
class _Entry:
    digest: str
    principal: Principal


@dataclass
class KeyStore:
    """Config keys plus the SQLite table; lookups compare digests in constant time."""

    settings: object
    _config: list[_Entry] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        for key, spec in (self.settings.api_keys or {}).items():
            digest = _digest(key)
            self._config.append(_Entry(digest, Principal(
                key_id="key_" + digest[:12], tenant=spec.tenant, collections=tuple(spec.collections),
                read_only=tuple(spec.read_only_collections), roles=tuple(spec.roles),
                review_tenants=tuple(spec.review_tenants))))
        self._db: Database | None = open_db(self.settings.state_url, _SCHEMA)

    @property
    def open_mode(self) -> bool:
        return self.settings.api_auth_mode == "open"

    def count(self) -> int:
        with self._lock:
            (n,) = self._db.one("SELECT COUNT(*) FROM api_keys WHERE revoked = 0")
        return n + len(self._config)

    def lookup(self, key: str) -> Principal | None:
        if not key:
            return None
        return self.lookup_digest(_digest(key))

    def lookup_digest(self, digest: str) -> Principal | None:
        """The principal of the key whose SHA-256 is ``digest`` (the review page's session holds the digest,
        never the key, and looks it up on every request: a revoked key or a removed role ends the session)."""
        found = None
        for entry in self._config:
            if hmac.compare_digest(entry.digest, digest):
                found = entry.principal
        if found is not None:
            return found
        with self._lock:
            row = self._db.one(
                "SELECT k.key_id, k.tenant, k.collections, k.read_only_collections, r.roles, r.review_tenants "
                "FROM api_keys k LEFT JOIN api_key_roles r ON r.key_sha256 = k.key_sha256 "
                "WHERE k.key_sha256 = ? AND k.revoked = 0", (digest,))
        if row is None:
            return None
        key_id, tenant, collections, read_only, roles, review_tenants = row
        return Principal(key_id=key_id, tenant=tenant, collections=tuple(json.loads(collections)),
                         read_only=tuple(json.loads(read_only)), roles=tuple(json.loads(roles or "[]")),
                         review_tenants=tuple(json.loads(review_tenants or "[]")))

    def open_principal(self) -> Principal:
        return Principal(key_id="local", tenant=OPEN_TENANT, collections=("*",), open_mode=True,
                         roles=("reviewer", "request_review"), review_tenants=("*",))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def add_key(database: str | Path, tenant: str, collections: list[str], read_only: list[str] | None = None,
            roles: list[str] | None = None, review_tenants: list[str] | None = None) -> str:
    """Create a key in the state database (``settings.state_url`` or a SQLite file path) and return it (shown
    once; only its digest is kept). ``roles``: reviewer (of ``review_tenants``) and/or request_review."""
    unknown = set(roles or ()) - {"reviewer", "request_review"}
    if unknown:
        raise ValueError(f"unknown role(s) {sorted(unknown)}: roles are reviewer, request_review")
    key = "ak_" + secrets.token_urlsafe(32)
    digest = _digest(key)
    db = open_db(database, _SCHEMA)
    try:
        db.execute("INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, 0)",
                   (digest, "key_" + digest[:12], tenant, json.dumps(collections), json.dumps(read_only or []),
                    datetime.now(timezone.utc).isoformat(timespec="seconds")))
        if roles:
            db.execute("INSERT INTO api_key_roles (key_sha256, roles, review_tenants) VALUES (?, ?, ?)",
                       (digest, json.dumps(list(roles)), json.dumps(list(review_tenants or []))))
    finally:
        db.close()
    return key


def revoke_key(database: str | Path, key: str) -> bool:
    db = open_db(database, _SCHEMA)
    try:
        return db.execute("UPDATE api_keys SET revoked = 1 WHERE key_sha256 = ?", (_digest(key),)) > 0
    finally:
        db.close()
