"""Who is calling: Cognito user tokens for clients, API keys for backends.

Cognito token checks follow AWS's "Verifying a JSON Web Token" guide: RS256 signature
against the pool's JWKS, ``iss`` of the pool, ``exp``, and ``token_use``; an ID token's
``aud`` or an access token's ``client_id`` must be one of the accepted app clients.
"""
from __future__ import annotations

import hmac

import jwt

from gateway.config import Settings
from gateway.errors import NotConfigured, Unauthorized, Unavailable

ALGORITHMS = ["RS256"]  # what Cognito signs with; never taken from the token header


def bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("an Authorization: Bearer header is required", code="missing_token")
    return token.strip()


class ApiKeys:
    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = [key.encode() for key in keys]

    def check(self, authorization: str | None) -> None:
        if not self.keys:
            raise NotConfigured("the server API is disabled (GATEWAY_API_KEYS)", code="api_not_configured")
        given = bearer(authorization).encode()
        if not any([hmac.compare_digest(given, key) for key in self.keys]):
            raise Unauthorized("unknown API key", code="invalid_api_key")


class CognitoTokens:
    def __init__(self, settings: Settings) -> None:
        self.issuer = settings.cognito_issuer
        self.clients = set(settings.cognito_app_client_ids)
        url = settings.cognito_jwks
        # PyJWKClient caches the key set and fetches it again when a kid is unknown, which
        # is how Cognito key rotation shows up; the cooldown stops tokens with made-up kids
        # from turning into a stream of fetches. No per-kid cache (cache_keys): it never
        # expires, so a key the pool stopped publishing would go on verifying tokens.
        self.jwks = jwt.PyJWKClient(url, lifespan=3600, timeout=5,
                                    cooldown_duration=settings.cognito_jwks_refresh_cooldown) if url else None

    def user_sub(self, authorization: str | None) -> str:
        if self.jwks is None or self.issuer is None:
            raise NotConfigured("the client API is disabled (COGNITO_USER_POOL_ID)", code="auth_not_configured")
        token = bearer(authorization)
        try:
            key = self.jwks.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError as exc:
            raise Unavailable("the Cognito key set cannot be fetched", code="jwks_unavailable") from exc
        except jwt.PyJWTError as exc:  # unknown kid, garbled or deeply nested header (PyJWT: DecodeError)...
            raise Unauthorized(f"invalid token: {exc}", code="invalid_token") from None
        try:
            # iat is not checked: Cognito stamps it by its own clock, which may run a little
            # ahead of ours, and a token fresh from sign-in would be refused; exp bounds it.
            claims = jwt.decode(token, key, algorithms=ALGORITHMS, issuer=self.issuer,
                                options={"require": ["exp", "iss", "sub", "token_use"], "verify_aud": False,
                                         "verify_iat": False})
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid token: {exc}", code="invalid_token") from None
        return self._check_use(claims)

    def _check_use(self, claims: dict) -> str:
        use = claims.get("token_use")
        client = claims.get("aud") if use == "id" else claims.get("client_id") if use == "access" else None
        if use not in ("id", "access"):
            raise Unauthorized("token_use must be id or access", code="invalid_token")
        if not isinstance(client, str) or client not in self.clients:
            raise Unauthorized("the token was issued to another app client", code="invalid_token")
        sub = claims["sub"]
        if not isinstance(sub, str) or not 0 < len(sub) <= 255:  # Cognito's are UUIDs; this keys our rows
            raise Unauthorized("the token's sub is not a user id", code="invalid_token")
        return sub
