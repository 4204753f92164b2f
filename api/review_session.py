"""Sign-in for the reviewer page (/review): a signed cookie session and its CSRF token.

The cookie holds ``{"k": <SHA-256 of the reviewer's API key>, "c": <CSRF token>}`` (never the key itself),
signed and time-stamped with itsdangerous (a well-kept library: the signing, the timestamp and the
constant-time comparison are not ours to get wrong) under a secret kept in ``<data_dir>/review-session.key``
(made on first use, mode 0600), so sessions survive a restart. The key is looked up again on every request
(``KeyStore.lookup_digest``): revoking it, or taking its reviewer role away, ends the session at once. The
cookie is HttpOnly, SameSite=Strict, limited to ``/review``, Secure when the page is served over HTTPS, and
expires after ``review_session_s``.

CSRF: every form carries the session's token and every POST is refused (403) unless the token matches
(synchronizer token; SameSite=Strict is the second line). The sign-in form has one too: before sign-in the
cookie is an anonymous session holding only a token, and signing in issues a new token.

Sign-out clears the cookie. The session is stateless: a copy of the cookie taken before sign-out stays
valid until it expires, unless the key is revoked.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "attest_review"
PATH = "/review"
OPEN = "open"  # the "key" of an open-mode session (ATTEST_API_AUTH_MODE=open: no keys at all)


@dataclass(frozen=True)
class Session:
    key: str | None     # the key's digest; None before sign-in
    csrf: str


def _secret(path: Path) -> bytes:
    """The signing secret: read, or made once (O_EXCL: two processes starting at once agree on one)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_text().strip()
        if len(secret) < 32:
            raise RuntimeError(f"{path} holds no usable secret: delete it and a new one is made (every reviewer "
                               f"signs in again)") from None
        return secret.encode()
    secret = secrets.token_hex(32)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret.encode()


class ReviewSessions:
    def __init__(self, settings):
        self.max_age = int(settings.review_session_s)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.serializer = URLSafeTimedSerializer(_secret(settings.data_dir / "review-session.key"),
                                                 salt="attest-review-session")

    def read(self, cookie: str | None) -> Session | None:
        """The session in ``cookie``; None when absent, tampered with, or expired."""
        if not cookie:
            return None
        try:
            data = self.serializer.loads(cookie, max_age=self.max_age)
        except BadSignature:  # also SignatureExpired
            return None
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return None
        return Session(key=data.get("k") if isinstance(data.get("k"), str) else None, csrf=data["c"])

    @staticmethod
    def new(key: str | None = None) -> Session:
        return Session(key=key, csrf=secrets.token_urlsafe(32))

    def set_cookie(self, response, session: Session, secure: bool) -> None:
        value = self.serializer.dumps({"k": session.key, "c": session.csrf})
        response.set_cookie(COOKIE, value, max_age=self.max_age, path=PATH, httponly=True, samesite="strict",
                            secure=secure)

    @staticmethod
    def clear_cookie(response, secure: bool) -> None:
        response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict", secure=secure)

    @staticmethod
    def csrf_ok(session: Session | None, token: str | None) -> bool:
        return session is not None and bool(token) and hmac.compare_digest(session.csrf, str(token))
