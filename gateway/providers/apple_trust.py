"""Verify App Store signed data with Apple's app-store-server-library.

One ``SignedDataVerifier`` per accepted environment (App Review buys in Sandbox against
production servers, so both are accepted by default). Every JWS goes through the library's
``verify_and_decode_*`` in full: chain to a configured root, Apple's certificate OIDs,
optional OCSP, signature, bundle id, app id and environment. Two hooks of the library's
(pinned in requirements.txt) are changed, nothing it checks:

- its chain verifier (``_ChainVerifier.verify_chain``) first asks ``VerifiedChains`` for a
  chain it has already accepted, offline: verifying the X.509 chain is the costly step, and
  every JWS of a notification is signed by the same, rarely rotated chain (the library
  caches chains only with online checks, for 15 minutes, and does so still);
- ``_decode_signed_object`` hands back the claims as Apple sent them, which the gateway
  stores, besides the library's models, which drop fields they do not know.
"""
from __future__ import annotations

import base64
import threading
from collections.abc import Callable

from appstoreserverlibrary.models.Environment import Environment
from appstoreserverlibrary.signed_data_verifier import (SignedDataVerifier, VerificationException,
                                                         VerificationStatus, _ChainVerifier)

from gateway.errors import Malformed, Unauthorized, Unavailable
from gateway.providers import wire
from gateway.providers.apple_chains import VerifiedChains


class AppleVerifier:
    def __init__(self, roots: list[bytes], *, bundle_id: str, app_apple_id: int | None,
                 environments: tuple[str, ...], online_checks: bool = False,
                 chains: VerifiedChains | None = None) -> None:
        self.chains = chains if chains is not None else VerifiedChains(roots)
        # Raises ValueError for Production without an app id, as Apple's verifier requires.
        self.library = {env: _LibraryVerifier(roots, online_checks, Environment(env), bundle_id, app_apple_id,
                                              self.chains)
                        for env in environments}

    def notification(self, signed: str) -> dict:
        """A responseBodyV2DecodedPayload, verified for this app in an accepted environment."""
        return self._verify(signed, "verify_and_decode_notification", _notification_environment)

    def transaction(self, signed: str, environment: str | None = None) -> dict:
        """A JWSTransactionDecodedPayload of this app (in ``environment`` when given)."""
        return self._verify(signed, "verify_and_decode_signed_transaction", _own_environment, environment)

    def renewal(self, signed: str, environment: str | None = None) -> dict:
        """A JWSRenewalInfoDecodedPayload (the library checks its environment only)."""
        return self._verify(signed, "verify_and_decode_renewal_info", _own_environment, environment)

    def _verify(self, signed: str, method: str, environment_of: Callable[[dict], str | None],
                expected: str | None = None) -> dict:
        environment = environment_of(_unverified_claims(signed))  # only to pick the environment's verifier
        library = self.library.get(environment) if isinstance(environment, str) else None
        if library is None or (expected and environment != expected):
            raise Unauthorized(f"signed data of environment {environment!r} is not accepted here",
                               code="apple_invalid_environment")
        return library.claims(method, signed)


class _LibraryVerifier(SignedDataVerifier):
    """Apple's verifier with the chain cache, handing back the verified claims as sent."""

    def __init__(self, roots, online_checks, environment, bundle_id, app_apple_id, chains: VerifiedChains) -> None:
        super().__init__(roots, online_checks, environment, bundle_id, app_apple_id)
        self._chain_verifier = _CachingChainVerifier(roots, chains)
        self._decoded = threading.local()

    def claims(self, method: str, signed: str) -> dict:
        self._decoded.claims = None
        _call_library(getattr(self, method), signed)  # every check of Apple's; raises when one fails
        return self._decoded.claims

    def _decode_signed_object(self, signed_obj: str) -> dict:
        claims = super()._decode_signed_object(signed_obj)
        self._decoded.claims = claims
        return claims


class _CachingChainVerifier(_ChainVerifier):
    def __init__(self, roots: list[bytes], chains: VerifiedChains) -> None:
        super().__init__(roots)
        self.chains = chains

    def verify_chain(self, certificates, perform_online_checks: bool, effective_date: int):
        x5c = tuple(certificates) if isinstance(certificates, list) and len(certificates) == 3 else None
        if not perform_online_checks and x5c and all(isinstance(c, str) for c in x5c):
            key = self.chains.key_for(x5c, effective_date)
            if key is not None:
                return key
        verified = super().verify_chain(certificates, perform_online_checks, effective_date)
        if x5c:
            self.chains.remember(x5c)
        return verified


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


def _unverified_claims(signed: str) -> dict:
    """The claims before verification, only to pick the verifier of their environment.

    Read with the standard library and the gateway's JSON reader, which refuses deep
    nesting; the library then verifies and decodes the token in full.
    """
    try:
        payload = signed.split(".")[1]
        claims = wire.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, TypeError, IndexError) as exc:  # binascii.Error and wire's refusals are ValueErrors
        raise Unauthorized(f"not a JWS: {exc}", code="apple_verification_failure") from None
    if not isinstance(claims, dict):
        raise Unauthorized("not a JWS: the payload must be an object", code="apple_verification_failure")
    return claims


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
