"""Every notification type and subtype Apple documents, signed and delivered for real.

https://developer.apple.com/documentation/appstoreservernotifications/notificationtype
"""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from devtools.apple_pki import mint_chain
from devtools.apple_store import AppStore, now
from tests.e2e.conftest import API_KEY, count_events

USER = str(uuid.uuid4())
KEY = "2000"


def _active(store, **renewal):
    return {"transaction": store.transaction(KEY, token=USER), "renewal": store.renewal(KEY, **renewal)}


def _lapsed(store, **renewal):
    expired = now() - timedelta(hours=2)
    return {"transaction": store.transaction(KEY, token=USER, expires=expired),
            "renewal": store.renewal(KEY, **renewal)}


def _refunded(store):
    return {"transaction": store.transaction(KEY, token=USER, revoked=now() - timedelta(seconds=5)),
            "renewal": store.renewal(KEY, auto_renew=False)}


# (type, subtype, how the signed data looks, expected stored status or None when ignored)
STATE_CASES = [
    ("SUBSCRIBED", "INITIAL_BUY", _active, "active"),
    ("SUBSCRIBED", "RESUBSCRIBE", _active, "active"),
    ("DID_RENEW", None, _active, "active"),
    ("DID_RENEW", "BILLING_RECOVERY", _active, "active"),
    ("DID_CHANGE_RENEWAL_PREF", "UPGRADE", _active, "active"),
    ("DID_CHANGE_RENEWAL_PREF", "DOWNGRADE", _active, "active"),
    ("DID_CHANGE_RENEWAL_PREF", None, _active, "active"),
    ("DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_ENABLED", _active, "active"),
    ("DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_DISABLED", lambda s: _active(s, auto_renew=False), "active"),
    ("OFFER_REDEEMED", "INITIAL_BUY", _active, "active"),
    ("OFFER_REDEEMED", "RESUBSCRIBE", _active, "active"),
    ("OFFER_REDEEMED", "UPGRADE", _active, "active"),
    ("OFFER_REDEEMED", "DOWNGRADE", _active, "active"),
    ("OFFER_REDEEMED", None, _active, "active"),
    ("DID_FAIL_TO_RENEW", "GRACE_PERIOD",
     lambda s: _lapsed(s, retry=True, grace_until=now() + timedelta(days=3)), "grace_period"),
    ("DID_FAIL_TO_RENEW", None, lambda s: _lapsed(s, retry=True), "billing_retry"),
    ("GRACE_PERIOD_EXPIRED", None, lambda s: _lapsed(s, retry=True), "billing_retry"),
    ("EXPIRED", "VOLUNTARY", lambda s: _lapsed(s, auto_renew=False), "expired"),
    ("EXPIRED", "BILLING_RETRY", lambda s: _lapsed(s, auto_renew=False), "expired"),
    ("EXPIRED", "PRICE_INCREASE", lambda s: _lapsed(s, auto_renew=False), "expired"),
    ("EXPIRED", "PRODUCT_NOT_FOR_SALE", lambda s: _lapsed(s, auto_renew=False), "expired"),
    ("REFUND", None, _refunded, "revoked"),
    ("REFUND_DECLINED", None, _active, "active"),
    ("REFUND_REVERSED", None, _active, "active"),
    ("REVOKE", None, _refunded, "revoked"),
    ("PRICE_INCREASE", "PENDING", _active, "active"),
    ("PRICE_INCREASE", "ACCEPTED", _active, "active"),
    ("RENEWAL_EXTENDED", None, _active, "active"),
    ("RENEWAL_EXTENSION", "FAILURE", _active, "active"),
    ("METADATA_UPDATE", None, _active, "active"),
    ("MIGRATION", None, _active, "active"),
    ("PRICE_CHANGE", None, _active, "active"),
]

IGNORED_CASES = [
    ("TEST", None, lambda s: {}),
    ("CONSUMPTION_REQUEST", None, _active),
    ("ONE_TIME_CHARGE", None, lambda s: {"transaction": s.transaction(KEY, token=USER, kind="Consumable")}),
    ("RENEWAL_EXTENSION", "SUMMARY", lambda s: {"data": None, "summary": {
        "requestIdentifier": str(uuid.uuid4()), "environment": "Sandbox", "appAppleId": 1234567890,
        "bundleId": "com.example.app", "productId": "com.example.premium.monthly",
        "storefrontCountryCodes": ["USA"], "failedCount": 0, "succeededCount": 10}}),
    ("EXTERNAL_PURCHASE_TOKEN", "UNREPORTED", lambda s: {"data": None, "externalPurchaseToken": {
        "externalPurchaseId": "SANDBOX_" + uuid.uuid4().hex, "tokenCreationDate": 1698148900000,
        "appAppleId": 1234567890, "bundleId": "com.example.app"}}),
    ("RESCIND_CONSENT", None, lambda s: {"data": None, "appData": {
        "appAppleId": 1234567890, "bundleId": "com.example.app", "environment": "Sandbox",
        "signedAppTransactionInfo": "not-read"}}),
    ("A_TYPE_APPLE_ADDS_LATER", "WITH_A_SUBTYPE", _active),
]


@pytest.fixture(scope="module")
def chain():
    return mint_chain()


@pytest.fixture
def gateway(make_app, chain, tmp_path):
    store = AppStore(chain)
    app = make_app(GATEWAY_API_KEYS=API_KEY, **store.env(chain.write_root(tmp_path)))
    return app, app.test_client(), store


def _notify(store, kind, subtype, shape) -> bytes:
    parts = shape(store)
    transaction, renewal = parts.pop("transaction", None), parts.pop("renewal", None)
    notification = store.notification(kind, subtype, transaction=transaction, renewal=renewal)
    for field, value in parts.items():  # summary, externalPurchaseToken, appData replace data
        notification.pop(field, None) if value is None else notification.update({field: value})
    return store.body(notification)


@pytest.mark.parametrize("kind, subtype, shape, status", STATE_CASES,
                         ids=[f"{k}:{s}" if s else k for k, s, *_ in STATE_CASES])
def test_state_notification_sets_the_status_its_signed_data_says(gateway, api, kind, subtype, shape, status):
    app, client, store = gateway
    response = client.post("/webhooks/apple", data=_notify(store, kind, subtype, shape))
    assert (response.status_code, response.get_json()) == (200, {"status": "processed"})
    assert api(client, USER)["entitlements"]["premium"]["status"] == status


@pytest.mark.parametrize("kind, subtype, shape", IGNORED_CASES,
                         ids=[f"{k}:{s}" if s else k for k, s, _ in IGNORED_CASES])
def test_notification_without_subscription_state_is_recorded_and_ignored(gateway, api, kind, subtype, shape):
    app, client, store = gateway
    body = _notify(store, kind, subtype, shape)
    response = client.post("/webhooks/apple", data=body)
    assert (response.status_code, response.get_json()) == (200, {"status": "ignored"})
    assert count_events(app) == 1
    assert api(client, USER) == {"user_id": USER, "is_premium": False, "entitlements": {}}
    assert client.post("/webhooks/apple", data=body).get_json() == {"status": "duplicate"}
