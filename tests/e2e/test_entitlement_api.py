"""The entitlement API: Cognito tokens for clients, API keys for backends."""
from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from devtools import revenuecat as rc
from tests.e2e.conftest import API_KEY


@pytest.fixture
def client(make_app, cognito):
    app = make_app(REVENUECAT_WEBHOOK_AUTH=rc.AUTH, GATEWAY_API_KEYS=f"{API_KEY},second-key", **cognito.env())
    client = app.test_client()
    client.post("/webhooks/revenuecat", data=rc.body(rc.event("INITIAL_PURCHASE", user="alice")),
                headers={"Authorization": rc.AUTH})
    return client


def me(client, headers):
    return client.get("/v1/me/entitlements", headers=headers)


@pytest.mark.parametrize("use", ["id", "access"])
def test_a_user_reads_their_own_entitlements_with_an_id_or_access_token(client, cognito, use):
    response = me(client, cognito.header("alice", use=use))
    assert response.status_code == 200
    assert response.get_json()["user_id"] == "alice" and response.get_json()["is_premium"] is True


def test_a_user_with_nothing_known_is_not_premium(client, cognito):
    assert me(client, cognito.header("nobody")).get_json() == {
        "user_id": "nobody", "is_premium": False, "entitlements": {}}


def test_a_token_reads_only_its_own_user(client, cognito):
    assert me(client, cognito.header("mallory")).get_json()["user_id"] == "mallory"
    response = client.get("/v1/users/alice/entitlements", headers=cognito.header("mallory"))
    assert response.status_code == 401


@pytest.mark.parametrize("case, overrides", [
    ("wrong issuer", {"iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other"}),
    ("wrong client of an id token", {"aud": "another-client"}),
    ("expired", {"exp": int(time.time()) - 10, "iat": int(time.time()) - 3700}),
    ("refresh token_use", {"token_use": "refresh"}),
    ("no token_use", {"token_use": None}),
    ("no expiry", {"exp": None}),
])
def test_invalid_id_tokens_are_401(client, cognito, case, overrides):
    response = me(client, {"Authorization": f"Bearer {cognito.token('alice', **overrides)}"})
    assert response.status_code == 401, case
    assert response.get_json()["error"] == "invalid_token"


def test_access_token_of_another_client_is_401(client, cognito):
    assert me(client, cognito.header("alice", use="access", client_id="another-client")).status_code == 401


def test_id_token_presented_as_access_token_shape_is_401(client, cognito):
    # An access token carries client_id, not aud: claiming token_use=access without it fails.
    token = cognito.token("alice", use="id", token_use="access")
    assert me(client, {"Authorization": f"Bearer {token}"}).status_code == 401


def test_rotated_signing_key_is_fetched_once_when_its_kid_is_new(make_app, cognito):
    client = make_app(COGNITO_JWKS_REFRESH_COOLDOWN=0, **cognito.env()).test_client()
    assert me(client, cognito.header("alice")).status_code == 200
    fetches = len(cognito.server.requests)
    cognito.rotate()
    assert me(client, cognito.header("alice")).status_code == 200
    assert me(client, cognito.header("alice")).status_code == 200
    assert len(cognito.server.requests) == fetches + 1


def test_a_signing_key_the_pool_stopped_publishing_no_longer_verifies(make_app, cognito):
    client = make_app(COGNITO_JWKS_REFRESH_COOLDOWN=0, **cognito.env()).test_client()
    old_kid = cognito.kid
    old_token = cognito.token("alice", kid=old_kid)
    assert me(client, {"Authorization": f"Bearer {old_token}"}).status_code == 200
    old_key = cognito.keys[old_kid]
    try:
        cognito.rotate()
        del cognito.keys[old_kid]  # the pool now publishes only the new key
        assert me(client, cognito.header("alice")).status_code == 200  # the key set was fetched again
        assert me(client, {"Authorization": f"Bearer {old_token}"}).status_code == 401
    finally:
        cognito.keys[old_kid] = old_key  # the issuer is shared by the session's tests


@pytest.mark.parametrize("ahead", [2, 120])
def test_a_fresh_token_stamped_by_a_clock_ahead_of_ours_is_accepted(client, cognito, ahead):
    # Cognito stamps iat by its own clock; a token used right after sign-in may carry an iat
    # in our future. Its exp is what bounds it.
    now = int(time.time())
    token = cognito.token("alice", iat=now + ahead, auth_time=now + ahead, exp=now + ahead + 3600)
    assert me(client, {"Authorization": f"Bearer {token}"}).status_code == 200


def test_made_up_kids_do_not_refetch_the_key_set_within_the_cooldown(client, cognito):
    assert me(client, cognito.header("alice")).status_code == 200
    fetches = len(cognito.server.requests)
    claims = jwt.decode(cognito.token("alice"), options={"verify_signature": False})
    for n in range(5):
        token = jwt.encode(claims, cognito.keys[cognito.kid], algorithm="RS256", headers={"kid": f"made-up-{n}"})
        assert me(client, {"Authorization": f"Bearer {token}"}).status_code == 401
    assert len(cognito.server.requests) == fetches


def test_unknown_kid_is_401(client, cognito):
    token = cognito.token("alice")
    header = jwt.get_unverified_header(token)
    forged = jwt.encode(jwt.decode(token, options={"verify_signature": False}), cognito.keys[cognito.kid],
                        algorithm="RS256", headers={**header, "kid": "not-a-key-of-the-pool"})
    assert me(client, {"Authorization": f"Bearer {forged}"}).status_code == 401


def test_token_signed_by_another_key_is_401(client, cognito):
    from cryptography.hazmat.primitives.asymmetric import rsa

    claims = jwt.decode(cognito.token("alice"), options={"verify_signature": False})
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other, algorithm="RS256", headers={"kid": cognito.kid})
    assert me(client, {"Authorization": f"Bearer {forged}"}).status_code == 401


def test_unsigned_and_symmetric_tokens_are_401(client, cognito):
    claims = jwt.decode(cognito.token("alice"), options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": cognito.kid})
    symmetric = jwt.encode(claims, "a-shared-secret-long-enough-for-hs256!", algorithm="HS256", headers={"kid": cognito.kid})
    for token in (unsigned, symmetric):
        assert me(client, {"Authorization": f"Bearer {token}"}).status_code == 401


@pytest.mark.parametrize("kid", [5, None, ["a"], {"kid": "x"}])
def test_a_token_whose_kid_is_not_a_string_is_401(client, cognito, kid):
    _, payload, signature = cognito.token("alice").split(".")  # PyJWT will not write such a header
    header = base64.urlsafe_b64encode(json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}).encode())
    made_up = ".".join((header.decode().rstrip("="), payload, signature))
    assert me(client, {"Authorization": f"Bearer {made_up}"}).status_code == 401


@pytest.mark.parametrize("claim", [{"aud": ["client-a", "client-b"]}, {"aud": {"app": 1}}])
def test_a_signed_token_whose_audience_is_not_a_string_is_401(client, cognito, claim):
    assert me(client, cognito.header("alice", **claim)).status_code == 401


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic YWxpY2U6c2VjcmV0", "Bearer not.a.jwt"])
def test_missing_or_junk_authorization_is_401(client, header):
    headers = {} if header is None else {"Authorization": header}
    assert me(client, headers).status_code == 401


def test_backends_read_any_user_with_an_api_key(client):
    for key in (API_KEY, "second-key"):
        response = client.get("/v1/users/alice/entitlements", headers={"Authorization": f"Bearer {key}"})
        assert response.get_json()["is_premium"] is True


@pytest.mark.parametrize("header", [None, "Bearer wrong-key", f"Token {API_KEY}"])
def test_wrong_or_missing_api_key_is_401(client, header):
    headers = {} if header is None else {"Authorization": header}
    assert client.get("/v1/users/alice/entitlements", headers=headers).status_code == 401


def test_apis_without_configuration_refuse_with_503(make_app, cognito):
    client = make_app().test_client()
    assert client.get("/v1/users/alice/entitlements", headers={"Authorization": "Bearer x"}).status_code == 503
    assert client.get("/v1/me/entitlements", headers=cognito.header("alice")).status_code == 503


def test_health_and_readiness(make_app):
    client = make_app().test_client()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ok"}


def test_readiness_fails_when_the_database_is_unreachable(make_app):
    from gateway.app import create_app
    from gateway.config import from_env

    app = create_app(from_env({"DATABASE_URL": "postgresql://nobody:wrong@127.0.0.1:1/none"}))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503 and response.get_json()["error"] == "database_unreachable"
    assert app.test_client().get("/healthz").status_code == 200


def test_readiness_tells_anyone_nothing_of_the_database(make_app, caplog):
    """/readyz is open to the internet: the driver's message names the database's host,
    port and user, and whether the password was wrong. That goes to the log only."""
    from gateway.app import create_app
    from gateway.config import from_env

    app = create_app(from_env({"DATABASE_URL": "postgresql://nobody:wrong@127.0.0.1:1/none"}))
    answer = app.test_client().get("/readyz").get_data(as_text=True)
    assert "127.0.0.1" not in answer and "nobody" not in answer and "port" not in answer
    assert any("127.0.0.1" in str(getattr(record, "fields", {})) for record in caplog.records)
