"""The App Store Server API client against a local fake that checks the bearer JWT."""
from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devtools.apple_pki import mint_chain
from devtools.apple_store import AppStore, BUNDLE_ID
from gateway.config import from_env
from gateway.providers.apple_api import AppleApiError, AppStoreServerApi, build_api
from tests.fakes.apple_api import FakeAppStoreServerApi

ISSUER, KEY_ID = "57246542-96fe-1a63-e053-0824d011072a", "2X9R4HXF34"


def pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def key():
    return ec.generate_private_key(ec.SECP256R1())  # stands in for the .p8 key from App Store Connect


@pytest.fixture(scope="module")
def server(key):
    with FakeAppStoreServerApi(key.public_key(), issuer_id=ISSUER, key_id=KEY_ID, bundle_id=BUNDLE_ID) as running:
        yield running


@pytest.fixture
def fake(server):
    server.statuses.clear(), server.history.clear(), server.rejections.clear(), server.server.requests.clear()
    return server


def client(fake, key, **kwargs) -> AppStoreServerApi:
    return AppStoreServerApi(issuer_id=ISSUER, key_id=KEY_ID, private_key=pem(key), bundle_id=BUNDLE_ID,
                             base_url=fake.url, **kwargs)


def test_token_carries_the_claims_apple_documents(key):
    api = AppStoreServerApi(issuer_id=ISSUER, key_id=KEY_ID, private_key=pem(key), bundle_id=BUNDLE_ID,
                            base_url="http://unused", clock=lambda: 1_800_000_000)
    token = api.token()
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": KEY_ID, "typ": "JWT"}
    claims = jwt.decode(token, key.public_key(), algorithms=["ES256"], audience="appstoreconnect-v1",
                        options={"verify_exp": False, "verify_iat": False})
    assert claims == {"iss": ISSUER, "iat": 1_800_000_000, "exp": 1_800_000_000 + 1200,
                      "aud": "appstoreconnect-v1", "bid": BUNDLE_ID}


def test_token_is_reused_until_a_minute_before_it_expires(key):
    now = [1_800_000_000]
    api = AppStoreServerApi(issuer_id=ISSUER, key_id=KEY_ID, private_key=pem(key), bundle_id=BUNDLE_ID,
                            base_url="http://unused", clock=lambda: now[0])
    first = api.token()
    now[0] += 1100
    assert api.token() == first
    now[0] += 60
    assert api.token() != first


def test_all_subscription_statuses_are_read_with_a_token_the_fake_accepts(fake, key):
    chain = mint_chain()
    store = AppStore(chain)
    answer = {"environment": "Sandbox", "appAppleId": 1234567890, "bundleId": BUNDLE_ID, "data": [
        {"subscriptionGroupIdentifier": "21000000", "lastTransactions": [
            {"originalTransactionId": "5000", "status": 1, "signedTransactionInfo": chain.sign(store.transaction("5000")),
             "signedRenewalInfo": chain.sign(store.renewal("5000"))}]}]}
    fake.statuses["5000"] = answer
    statuses = client(fake, key).subscription_statuses("5000")
    (group,) = statuses.data
    (item,) = group.lastTransactions
    assert (statuses.bundleId, statuses.rawEnvironment, group.subscriptionGroupIdentifier) == \
        (BUNDLE_ID, "Sandbox", "21000000")
    assert (item.originalTransactionId, item.rawStatus, item.signedTransactionInfo, item.signedRenewalInfo) == \
        ("5000", 1, answer["data"][0]["lastTransactions"][0]["signedTransactionInfo"],
         answer["data"][0]["lastTransactions"][0]["signedRenewalInfo"])
    # Apple's own client built the request: its user agent, its path, its parsing.
    assert fake.server.requests[-1].headers["User-Agent"].startswith("app-store-server-library/python/")
    assert fake.rejections == []


def test_notification_history_pages_through(fake, key):
    fake.history = [[{"signedPayload": "a"}], [{"signedPayload": "b"}]]
    api = client(fake, key)
    first = api.notification_history(1_700_000_000_000, 1_700_086_400_000, only_failures=True)
    assert ([i.signedPayload for i in first.notificationHistory], first.hasMore, first.paginationToken) == \
        (["a"], True, "1")
    second = api.notification_history(1_700_000_000_000, 1_700_086_400_000, first.paginationToken, only_failures=True)
    assert ([i.signedPayload for i in second.notificationHistory], second.hasMore) == (["b"], False)
    assert fake.server.requests[0].json() == {"startDate": 1_700_000_000_000, "endDate": 1_700_086_400_000,
                                              "onlyFailures": True}


def test_unknown_transaction_raises_with_apples_error_code(fake, key):
    with pytest.raises(AppleApiError) as raised:
        client(fake, key).subscription_statuses("404404")
    assert (raised.value.status, raised.value.error_code) == (404, 4040010)


def test_token_signed_by_another_key_is_refused(fake):
    with pytest.raises(AppleApiError) as raised:
        client(fake, ec.generate_private_key(ec.SECP256R1())).subscription_statuses("5000")
    assert raised.value.status == 401 and fake.rejections


def test_unreachable_api_raises_a_store_api_error(key):
    api = AppStoreServerApi(issuer_id=ISSUER, key_id=KEY_ID, private_key=pem(key), bundle_id=BUNDLE_ID,
                            base_url="http://127.0.0.1:9", timeout=2)
    with pytest.raises(AppleApiError):
        api.subscription_statuses("5000")


def test_transaction_id_cannot_change_the_path(fake, key):
    with pytest.raises(ValueError):
        client(fake, key).subscription_statuses("../../notifications/history")


def test_build_needs_every_credential_and_reads_a_key_file(key, tmp_path):
    assert build_api(from_env({"APPLE_BUNDLE_ID": BUNDLE_ID})) is None
    path = tmp_path / "AuthKey.p8"
    path.write_text(pem(key))
    api = build_api(from_env({"APPLE_BUNDLE_ID": BUNDLE_ID, "APPLE_ISSUER_ID": ISSUER, "APPLE_KEY_ID": KEY_ID,
                              "APPLE_PRIVATE_KEY": str(path), "APPLE_API_BASE": "http://127.0.0.1:1/"}))
    assert (api.base_url, api.private_key) == ("http://127.0.0.1:1", pem(key))
    sandbox = build_api(from_env({"APPLE_BUNDLE_ID": BUNDLE_ID, "APPLE_ISSUER_ID": ISSUER, "APPLE_KEY_ID": KEY_ID,
                                  "APPLE_PRIVATE_KEY": pem(key)}), "Sandbox")
    assert sandbox.base_url == "https://api.storekit-sandbox.apple.com"
