"""Pub/Sub push authentication: the ``Authorization: Bearer`` OIDC token Google signs.

https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions: the token is a
Google-signed ID token whose ``aud`` is the audience configured on the push
subscription and whose ``email`` is the subscription's service account. The signature,
``exp``/``iat`` and ``aud`` are checked by ``google.auth.jwt.decode`` (the vendor's
verifier); the issuer, ``email`` and ``email_verified`` are checked here, because
google-auth checks none of them.

google-auth's ``id_token.verify_token`` fetches the certificates on every call, so we
fetch them ourselves, keep them for the ``Cache-Control: max-age`` Google sends, and
fetch again early (at most once a minute) when a token names a key id we do not hold,
which is how a key rotation shows up.
"""
from __future__ import annotations

import re
import threading
import time

import requests
from google.auth import exceptions as google_exceptions
from google.auth import jwt as google_jwt

from gateway.errors import Unauthorized, Unavailable

DEFAULT_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
ISSUERS = ("accounts.google.com", "https://accounts.google.com")
ALGORITHM = "RS256"  # what Google signs ID tokens with
TIMEOUT = (2.0, 4.0)  # connect, read: a push waits on us for its ack deadline (10 s)
CLOCK_SKEW = 10  # seconds of tolerance on iat / exp between Google's clock and ours
DEFAULT_MAX_AGE, LONGEST_MAX_AGE, EARLY_REFETCH = 300.0, 86_400.0, 60.0
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.IGNORECASE)


def max_age(cache_control: str | None) -> float:
    """Seconds a response may be reused, from its Cache-Control header (bounded)."""
    text = cache_control or ""
    if "no-store" in text.lower() or "no-cache" in text.lower():
        return 0.0
    found = _MAX_AGE.search(text)
    return min(float(found.group(1)), LONGEST_MAX_AGE) if found else DEFAULT_MAX_AGE


class CertificateCache:
    """Google's x509 certificates keyed by ``kid``, cached as the endpoint allows."""

    def __init__(self, url: str, session: requests.Session | None = None, clock=time.monotonic) -> None:
        self.url, self.session, self.clock = url, session or requests.Session(), clock
        self.certs: dict[str, str] = {}
        self.fetched_at, self.expires_at = float("-inf"), float("-inf")
        self.lock = threading.Lock()

    def certificates(self, kid: str | None) -> dict[str, str]:
        with self.lock:
            now = self.clock()
            stale = now >= self.expires_at
            unknown = kid is not None and kid not in self.certs and now - self.fetched_at >= EARLY_REFETCH
            if stale or unknown:
                self._fetch(now)
            return dict(self.certs)

    def _fetch(self, now: float) -> None:
        try:
            response = self.session.get(self.url, timeout=TIMEOUT)
            response.raise_for_status()
            certs = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise Unavailable(f"Google's certificates cannot be fetched: {type(exc).__name__}",
                              code="certificates_unavailable") from None
        if not isinstance(certs, dict) or not all(isinstance(v, str) for v in certs.values()):
            raise Unavailable("Google's certificate endpoint answered an unexpected shape",
                              code="certificates_unavailable")
        self.certs, self.fetched_at = certs, now
        self.expires_at = now + max_age(response.headers.get("Cache-Control"))


class PushTokenVerifier:
    """Checks a push token against the configured audience and service account."""

    def __init__(self, audience: str, service_account: str, certs: CertificateCache) -> None:
        if not audience or not service_account:
            # google-auth skips the audience check when given None: never let that happen.
            raise ValueError("a push verifier needs an audience and a service account")
        self.audience, self.service_account, self.certs = audience, service_account, certs

    def verify(self, token: str) -> dict:
        kid = _kid(token)
        certs = self.certs.certificates(kid)
        try:
            claims = google_jwt.decode(token, certs=certs, audience=self.audience,
                                       clock_skew_in_seconds=CLOCK_SKEW)
        except (google_exceptions.GoogleAuthError, ValueError, TypeError, RecursionError) as exc:
            # google-auth lets through json's RecursionError (deep JSON) and a TypeError
            # (an exp or iat that is not a number): both are bad tokens, not our failure.
            raise Unauthorized(f"invalid push token: {exc}", code="invalid_token") from None
        return self._check(claims)

    def _check(self, claims: dict) -> dict:
        if claims.get("iss") not in ISSUERS:
            raise Unauthorized("the push token was not issued by Google", code="invalid_token")
        if claims.get("email") != self.service_account:
            raise Unauthorized("the push token names another service account", code="invalid_token")
        if claims.get("email_verified") is not True:
            raise Unauthorized("the push token's email is not verified", code="invalid_token")
        return claims


def _kid(token: str) -> str | None:
    try:
        header = google_jwt.decode_header(token)
    except (google_exceptions.GoogleAuthError, ValueError, TypeError, RecursionError) as exc:
        raise Unauthorized(f"the push token is not a JWT: {exc}", code="invalid_token") from None
    if not isinstance(header, dict) or header.get("alg") != ALGORITHM:
        # google-auth would take the algorithm from the header; Google signs with RS256 only.
        raise Unauthorized(f"the push token must be signed with {ALGORITHM}", code="invalid_token")
    kid = header.get("kid")
    return kid if isinstance(kid, str) else None
