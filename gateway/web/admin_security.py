"""The admin's small security parts: password check, CSRF tokens, login throttle and
the session cookie's flags."""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from collections import deque

from flask import request, session
from flask.sessions import SecureCookieSessionInterface

CSRF_FIELD = "csrf_token"


class Password:
    """Compares SHA-256 digests in constant time: equal-length inputs, so neither the
    length nor a prefix of the password leaks through timing."""

    def __init__(self, password: str, secret_key: str) -> None:
        self._digest = hashlib.sha256(password.encode()).digest()
        # Stored in the session: a changed ADMIN_PASSWORD ends every open session. The
        # cookie is signed, not encrypted, so this is keyed by ADMIN_SECRET_KEY: a hash of
        # the password alone would let whoever holds the cookie test guesses offline.
        self.fingerprint = hmac.new(secret_key.encode(), b"admin-session:" + self._digest,
                                    hashlib.sha256).hexdigest()[:32]

    def matches(self, given: str) -> bool:
        return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), self._digest)


def csrf_token() -> str:
    """The session's token, made on first use; forms embed it as a hidden field."""
    if CSRF_FIELD not in session:
        session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return session[CSRF_FIELD]


def csrf_problem() -> int | None:
    """None when the POST carries the session's token; else the status to answer."""
    given = request.form.get(CSRF_FIELD)
    if not given:
        return 400
    expected = session.get(CSRF_FIELD)
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return 403
    return None


class LoginThrottle:
    """At most ``limit`` failed logins per client (``_client``) within ``window`` seconds.

    In memory, per process: a brake on password guessing, not an accounting. With
    several gunicorn workers the effective limit is ``limit`` times the worker count.
    """

    def __init__(self, limit: int = 5, window: float = 300.0, clock=time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._failures: dict[str, deque] = {}
        self._lock = threading.Lock()

    def blocked(self, address: str) -> bool:
        with self._lock:
            return len(self._recent(address)) >= self.limit

    def failed(self, address: str) -> None:
        with self._lock:
            self._recent(address).append(self.clock())

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(_client(address), None)

    def _recent(self, address: str) -> deque:
        address = _client(address)
        failures = self._failures.setdefault(address, deque())
        while failures and failures[0] <= self.clock() - self.window:
            failures.popleft()
        if len(self._failures) > 10_000:  # bound memory under a spray of addresses
            self._failures = {address: failures}
        return failures


def _client(address: str) -> str:
    """Whom the throttle counts: an IPv4 address, or the /64 of an IPv6 one, which a
    single host usually holds whole: counted per address, it would guess without end."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if parsed.version == 6 and parsed.ipv4_mapped is None:
        return str(ipaddress.ip_network((parsed, 64), strict=False))
    return str(getattr(parsed, "ipv4_mapped", None) or parsed)


class AdminSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, with ``Secure`` decided per request when "auto"."""

    def __init__(self, secure: str) -> None:
        self.secure = secure

    def get_cookie_secure(self, app) -> bool:
        if self.secure != "auto":
            return self.secure == "true"
        # Behind a TLS-terminating proxy (Heroku's router) the scheme is in the header.
        return request.is_secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"
