"""The admin's small security parts: password check, CSRF tokens, login throttle and
the session cookie's flags."""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from datetime import timedelta

from flask import request, session
from flask.sessions import SecureCookieSessionInterface

from gateway.clock import utcnow
from gateway.store.login_attempts import LoginAttempts

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
    """At most ``limit`` sign-in attempts per client (``_client``) in a window of ``window``
    seconds opened by its first; a sign-in clears its count.

    Counted in the database (``LoginAttempts``), so the limit holds across every gunicorn
    worker and instance, and counted before the password is compared: attempts sent at
    once cannot all find the count below the limit.
    """

    def __init__(self, attempts: LoginAttempts, limit: int = 5, window: float = 300.0, clock=utcnow) -> None:
        self.attempts, self.limit, self.window, self.clock = attempts, limit, timedelta(seconds=window), clock

    def admit(self, address: str) -> bool:
        """Count an attempt; whether its password may be compared."""
        return self.attempts.count(_client(address), self.clock(), self.window) <= self.limit

    def succeeded(self, address: str) -> None:
        self.attempts.forget(_client(address))


def _client(address: str) -> str:
    """Whom the throttle counts: an IPv4 address, or the /64 of an IPv6 one, which a
    single host usually holds whole: counted per address, it would guess without end."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]  # the column's width: whatever a proxy passed, it is one client
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
