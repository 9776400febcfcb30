"""Pub/Sub push tokens: real RS256 signatures against a local certificate endpoint."""
from __future__ import annotations

import time

import pytest

from devtools.google_pubsub import AUDIENCE, SERVICE_ACCOUNT, PushSigner
from gateway.errors import Unauthorized, Unavailable
from gateway.providers.google_push_auth import CertificateCache, PushTokenVerifier, max_age


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def signer():
    with PushSigner(max_age=600) as signer:
        yield signer


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def verifier(signer, clock):
    signer.available = True
    return PushTokenVerifier(AUDIENCE, SERVICE_ACCOUNT, CertificateCache(signer.certs_url, clock=clock))


@pytest.mark.parametrize("header, seconds", [
    ("public, max-age=19790, must-revalidate, no-transform", 19790.0),
    ("max-age=999999999", 86400.0),
    ("public", 300.0),
    (None, 300.0),
    ("no-store, max-age=60", 0.0),
])
def test_max_age_is_read_from_cache_control_and_bounded(header, seconds):
    assert max_age(header) == seconds


def test_a_valid_token_yields_its_claims(verifier, signer):
    claims = verifier.verify(signer.token())
    assert (claims["email"], claims["aud"]) == (SERVICE_ACCOUNT, AUDIENCE)


@pytest.mark.parametrize("claims, reason", [
    ({"aud": "https://elsewhere.example.com"}, "wrong audience"),
    ({"email": "other@example.com"}, "another service account"),
    ({"email_verified": "true"}, "not verified"),
    ({"iss": "https://accounts.example.com"}, "not issued by Google"),
    ({"exp": int(time.time()) - 60, "iat": int(time.time()) - 3660}, "expired"),
    ({"iat": None}, "iat"),
])
def test_each_broken_expectation_is_refused_with_its_reason(verifier, signer, claims, reason):
    with pytest.raises(Unauthorized, match=reason):
        verifier.verify(signer.token(**claims))


def test_a_verifier_without_an_audience_cannot_be_built(signer):
    with pytest.raises(ValueError):
        PushTokenVerifier("", SERVICE_ACCOUNT, CertificateCache(signer.certs_url))


def test_certificates_are_reused_until_their_max_age_passes(verifier, signer, clock):
    before = signer.fetches
    verifier.verify(signer.token())
    clock.now += 599
    verifier.verify(signer.token())
    assert signer.fetches == before + 1
    clock.now += 2
    verifier.verify(signer.token())
    assert signer.fetches == before + 2


def test_an_unknown_key_id_fetches_again_at_most_once_a_minute(verifier, signer, clock):
    verifier.verify(signer.token())
    old_kid = signer.kid
    signer.rotate()
    with pytest.raises(Unauthorized):  # fetched moments ago: a stranger's kid cannot force fetches
        verifier.verify(signer.token())
    clock.now += 61
    verifier.verify(signer.token())
    verifier.verify(signer.token(kid=old_kid))


def test_an_unreachable_endpoint_is_unavailable(verifier, signer):
    signer.available = False
    with pytest.raises(Unavailable):
        verifier.verify(signer.token())


def test_a_token_that_is_not_a_jwt_is_refused(verifier):
    with pytest.raises(Unauthorized):
        verifier.verify("not.a.jwt")


@pytest.mark.parametrize("algorithm, key", [("HS256", "a-shared-secret-long-enough-for-hs256!"), ("none", None)])
def test_a_token_not_signed_with_rs256_is_refused(verifier, signer, algorithm, key):
    import jwt

    claims = jwt.decode(signer.token(), options={"verify_signature": False})
    forged = jwt.encode(claims, key, algorithm=algorithm, headers={"kid": signer.kid})
    with pytest.raises(Unauthorized, match="RS256"):
        verifier.verify(forged)
