"""Verify App Store signed data with Apple's app-store-server-library.

One ``SignedDataVerifier`` per accepted environment (App Review buys in Sandbox against
production servers, so both are accepted by default). A JWS whose x5c chain is not yet in
``VerifiedChains`` goes through the library in full: chain to a configured root, Apple's
certificate OIDs, optional OCSP, signature, bundle id, app id and environment. A chain
already verified needs only its ES256 signature checked; the claim checks below mirror
the library's and run on both paths. With online checks on, every JWS goes through the
library, whose own chain cache bounds OCSP freshness to 15 minutes.
"""
from __future__ import annotations

import base64
import time
from collections.abc import Callable

import jwt
from appstoreserverlibrary.models.Environment import Environment
from appstoreserverlibrary.signed_data_verifier import (SignedDataVerifier, VerificationException,
                                                         VerificationStatus)

from gateway.errors import Malformed, Unauthorized, Unavailable
from gateway.providers import wire
from gateway.providers.apple_chains import VerifiedChains

ALGORITHMS = ["ES256"]  # what Apple signs with; never taken from the token header
#: StoreKit testing environments, whose data Apple's verifier accepts unsigned.
UNSIGNED_ENVIRONMENTS = frozenset({"Xcode", "LocalTesting"})


class AppleVerifier:
    def __init__(self, roots: list[bytes], *, bundle_id: str, app_apple_id: int | None,
                 environments: tuple[str, ...], online_checks: bool = False,
                 chains: VerifiedChains | None = None) -> None:
        self.bundle_id, self.app_apple_id, self.online = bundle_id, app_apple_id, online_checks
        self.chains = chains if chains is not None else VerifiedChains(roots)
        # Raises ValueError for Production without an app id, as Apple's verifier requires.
        self.library = {env: SignedDataVerifier(roots, online_checks, Environment(env), bundle_id, app_apple_id)
                        for env in environments}

    def notification(self, signed: str) -> dict:
        """A responseBodyV2DecodedPayload, verified for this app in an accepted environment."""
        claims, environment = self._verify(signed, "verify_and_decode_notification", _notification_environment)
        bundle_id, app_apple_id = _notification_app(claims)
        self._check_bundle(bundle_id)
        if environment == "Production" and app_apple_id != self.app_apple_id:
            raise Unauthorized("the notification is for another app id", code="apple_invalid_app_identifier")
        return claims

    def transaction(self, signed: str, environment: str | None = None) -> dict:
        """A JWSTransactionDecodedPayload of this app (in ``environment`` when given)."""
        claims = self._verify(signed, "verify_and_decode_signed_transaction", _own_environment, environment)[0]
        self._check_bundle(claims.get("bundleId"))
        return claims

    def renewal(self, signed: str, environment: str | None = None) -> dict:
        """A JWSRenewalInfoDecodedPayload (the library checks its environment only)."""
        return self._verify(signed, "verify_and_decode_renewal_info", _own_environment, environment)[0]

    def _verify(self, signed: str, method: str, environment_of: Callable[[dict], str | None],
                expected: str | None = None) -> tuple[dict, str]:
        header, unverified = _unverified(signed)
        environment = environment_of(unverified)
        library = self.library.get(environment) if isinstance(environment, str) else None
        if library is None or (expected and environment != expected):
            raise Unauthorized(f"signed data of environment {environment!r} is not accepted here",
                               code="apple_invalid_environment")
        if environment in UNSIGNED_ENVIRONMENTS:  # the library does not verify these; opt-in only
            _call_library(getattr(library, method), signed)
            return unverified, environment
        x5c, at = _chain_key(header), _effective_time(unverified)
        key = None if self.online or at is None else self.chains.key_for(x5c, at)
        if key is None:
            _call_library(getattr(library, method), signed)
            if x5c is None:  # the library accepted a chain we cannot key: never expected
                raise Unauthorized("the x5c header is not a chain of three", code="apple_invalid_chain_length")
            key = self.chains.remember(x5c)
        try:
            return jwt.decode(signed, key, algorithms=ALGORITHMS), environment
        except (jwt.InvalidTokenError, RecursionError) as exc:  # PyJWT parses JSON again, and lets this through
            raise Unauthorized(f"the signature does not verify: {exc}", code="apple_verification_failure") from None

    def _check_bundle(self, bundle_id) -> None:
        if bundle_id != self.bundle_id:
            raise Unauthorized("the signed data is for another bundle id", code="apple_invalid_app_identifier")


def _call_library(verify: Callable[[str], object], signed: str) -> None:
    try:
        verify(signed)
    except VerificationException as exc:
        if exc.status == VerificationStatus.RETRYABLE_VERIFICATION_FAILURE:
            # The OCSP responder could not be reached: Apple retries the notification later.
            raise Unavailable("a certificate revocation check could not be made",
                              code="apple_revocation_check_unavailable") from exc
        raise Unauthorized(f"App Store signed data rejected: {exc.status.name}",
                           code=f"apple_{exc.status.name.lower()}") from None
    except Exception as exc:  # verified, but the library could not read its fields
        raise Malformed(f"the signed data is not of Apple's shape: {exc}", code="apple_malformed") from None


def _unverified(signed: str) -> tuple[dict, dict]:
    """Header and claims before verification, only to pick the verifier and cache entry.

    Read with the standard library: PyJWT validates base64 character by character in
    Python, which costs more than the signature check on JWS with x5c headers, and the
    verified decode below parses the token once more anyway.
    """
    try:
        header, payload, _ = signed.split(".")
        parts = [wire.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in (header, payload)]
    except (ValueError, TypeError) as exc:  # binascii.Error and wire's refusals are ValueErrors
        raise Unauthorized(f"not a JWS: {exc}", code="apple_verification_failure") from None
    if not all(isinstance(part, dict) for part in parts):
        raise Unauthorized("not a JWS: header and payload must be objects", code="apple_verification_failure")
    return parts[0], parts[1]


def _chain_key(header: dict) -> tuple[str, ...] | None:
    x5c = header.get("x5c")
    if isinstance(x5c, list) and len(x5c) == 3 and all(isinstance(c, str) for c in x5c):
        return tuple(x5c)
    return None


def _effective_time(claims: dict) -> float | None:
    """The instant the library validates the chain at when offline: the JWS's own date
    (or now when it has none). ``None`` when the date is unreadable: the library decides."""
    signed = claims.get("signedDate") if claims.get("signedDate") is not None else claims.get("receiptCreationDate")
    if signed is None:
        return time.time()
    return int(signed) // 1000 if isinstance(signed, int) and not isinstance(signed, bool) else None


def _own_environment(claims: dict) -> str | None:
    return claims.get("environment")


def _notification_parts(claims: dict) -> tuple[dict, str | None]:
    # data, summary, externalPurchaseToken and appData are mutually exclusive; the
    # library reads them in this order.
    for field in ("data", "summary"):
        if isinstance(claims.get(field), dict):
            return claims[field], claims[field].get("environment")
    token = claims.get("externalPurchaseToken")
    if isinstance(token, dict):
        sandbox = str(token.get("externalPurchaseId") or "").startswith("SANDBOX")
        return token, "Sandbox" if sandbox else "Production"
    if isinstance(claims.get("appData"), dict):
        return claims["appData"], claims["appData"].get("environment")
    return {}, None


def _notification_environment(claims: dict) -> str | None:
    return _notification_parts(claims)[1]


def _notification_app(claims: dict) -> tuple[str | None, int | None]:
    part = _notification_parts(claims)[0]
    return part.get("bundleId"), part.get("appAppleId")
