"""POST /v1/purchases/apple: a signed-in user claims a StoreKit 2 transaction."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from devtools.apple_pki import mint_chain
from devtools.apple_store import AppStore, now
from tests.e2e.conftest import API_KEY

ALICE, BOB = str(uuid.uuid4()), str(uuid.uuid4())


@pytest.fixture(scope="module")
def chain():
    return mint_chain()


@pytest.fixture
def store(chain):
    return AppStore(chain)


@pytest.fixture
def client(make_app, store, chain, tmp_path, cognito):
    app = make_app(GATEWAY_API_KEYS=API_KEY, **store.env(chain.write_root(tmp_path)), **cognito.env())
    return app.test_client()


def register(client, cognito, user: str, signed_transaction: str):
    return client.post("/v1/purchases/apple", json={"signedTransaction": signed_transaction},
                       headers=cognito.header(user))


def notify(client, store, notification) -> None:
    response = client.post("/webhooks/apple", data=store.body(notification))
    assert response.get_json() == {"status": "processed"}


def test_registration_links_a_subscription_stored_before_its_owner_was_known(client, api, cognito, store):
    notify(client, store, store.notification("SUBSCRIBED", "INITIAL_BUY", transaction=store.transaction("4000"),
                                             renewal=store.renewal("4000")))
    assert api(client, ALICE)["is_premium"] is False
    earlier = store.transaction("4000", signed=now() - timedelta(minutes=5))  # older than the notification
    response = register(client, cognito, ALICE, store.chain.sign(earlier))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == api(client, ALICE)
    granted = response.get_json()["entitlements"]["premium"]
    assert (granted["active"], granted["will_renew"], granted["source"]) == (True, True, "apple")


def test_later_notifications_without_token_keep_the_registered_owner(client, api, cognito, store):
    assert register(client, cognito, ALICE, store.chain.sign(store.transaction("4001"))).status_code == 200
    notify(client, store, store.notification("EXPIRED", "VOLUNTARY", signed=now() + timedelta(seconds=1),
                                             transaction=store.transaction("4001", expires=now())))
    assert api(client, ALICE)["entitlements"]["premium"]["status"] == "expired"


def test_registration_first_grants_from_the_transaction_itself(client, api, cognito, store):
    response = register(client, cognito, ALICE, store.chain.sign(store.transaction("4002")))
    assert response.get_json()["is_premium"] is True
    assert api(client, ALICE)["is_premium"] is True


def test_registering_twice_is_harmless(client, cognito, store):
    signed = store.chain.sign(store.transaction("4003"))
    assert register(client, cognito, ALICE, signed).status_code == 200
    assert register(client, cognito, ALICE, signed).get_json()["is_premium"] is True


def test_purchase_linked_to_another_user_is_409(client, api, cognito, store):
    signed = store.chain.sign(store.transaction("4004"))
    assert register(client, cognito, ALICE, signed).status_code == 200
    response = register(client, cognito, BOB, signed)
    assert (response.status_code, response.get_json()["error"]) == (409, "purchase_owned_by_another_user")
    assert api(client, BOB)["is_premium"] is False


def test_purchase_whose_token_names_another_user_is_409(client, api, cognito, store):
    notify(client, store, store.notification("SUBSCRIBED", transaction=store.transaction("4005", token=ALICE)))
    response = register(client, cognito, BOB, store.chain.sign(store.transaction("4005", token=ALICE)))
    assert response.status_code == 409
    assert api(client, BOB)["is_premium"] is False and api(client, ALICE)["is_premium"] is True


def test_transaction_signed_by_another_chain_is_401(client, api, cognito, store):
    response = register(client, cognito, ALICE, mint_chain().sign(store.transaction("4006")))
    assert response.status_code == 401
    assert api(client, ALICE)["is_premium"] is False


def test_transaction_of_another_app_is_401(client, cognito, store):
    other = AppStore(store.chain, bundle_id="com.example.other")
    assert register(client, cognito, ALICE, store.chain.sign(other.transaction("4007"))).status_code == 401


def test_missing_token_is_401(client, store):
    response = client.post("/v1/purchases/apple", json={"signedTransaction": store.chain.sign(store.transaction("1"))})
    assert response.status_code == 401


@pytest.mark.parametrize("body", [{}, {"signedTransaction": ""}, {"signedTransaction": 5}, [], "text"])
def test_bad_body_is_400(client, cognito, body):
    response = client.post("/v1/purchases/apple", json=body, headers=cognito.header(ALICE))
    assert response.status_code == 400


def test_unconfigured_source_is_503(make_app, cognito, store):
    client = make_app(**cognito.env()).test_client()
    response = register(client, cognito, ALICE, store.chain.sign(store.transaction("4008")))
    assert (response.status_code, response.get_json()["error"]) == (503, "source_not_configured")


def test_a_lapsed_transaction_registered_during_billing_grace_keeps_the_grace_period(client, api, cognito, store):
    """DID_FAIL_TO_RENEW:GRACE_PERIOD: "continue to provide service through the grace
    period", whose end only the renewal info carries. The app registers what it holds, the
    transaction alone, signed later, its expiresDate past as throughout the grace period:
    stamped when signed, it said expired, newer than the grace period."""
    failed_at, lapsed, grace_end = now() - timedelta(minutes=10), now() - timedelta(hours=1), now() + timedelta(days=5)
    notify(client, store, store.notification(
        "DID_FAIL_TO_RENEW", "GRACE_PERIOD", signed=failed_at, transaction=store.transaction("4100", expires=lapsed),
        renewal=store.renewal("4100", retry=True, grace_until=grace_end, signed=failed_at)))
    response = register(client, cognito, ALICE, store.chain.sign(store.transaction("4100", signed=now(), expires=lapsed)))
    assert response.status_code == 200, response.get_data(as_text=True)
    granted = api(client, ALICE)["entitlements"]["premium"]
    assert (granted["status"], granted["active"]) == ("grace_period", True)


def test_a_lapsed_transaction_registered_first_reads_expired(client, api, cognito, store):
    lapsed = now() - timedelta(hours=1)
    response = register(client, cognito, ALICE, store.chain.sign(store.transaction("4200", signed=now(), expires=lapsed)))
    assert response.status_code == 200 and response.get_json()["is_premium"] is False
    assert api(client, ALICE)["entitlements"]["premium"]["status"] == "expired"


def test_a_refunded_past_period_registered_leaves_the_current_period(client, api, cognito, store):
    """StoreKit delivers a refund of an old period as that transaction again, now with its
    revocationDate and signed at the refund (Transaction.updates), and the app registers
    it like any transaction. Its period had ended long before: the notification of the
    same refund is ignored (a past period), and the current period stands here too.
    Stamped when signed, the old transaction's revoked view hid the current period."""
    key, old_end = "4300", now() - timedelta(days=10)
    renewed = now() - timedelta(days=1)
    notify(client, store, store.notification("DID_RENEW", signed=renewed, transaction=store.transaction(
        key, transaction_id=f"{key}-3", signed=renewed, expires=now() + timedelta(days=29)),
        renewal=store.renewal(key, signed=renewed)))
    refunded = store.transaction(key, transaction_id=f"{key}-1", signed=now(), expires=old_end, revoked=now())
    response = register(client, cognito, ALICE, store.chain.sign(refunded))
    assert response.status_code == 200, response.get_data(as_text=True)
    granted = api(client, ALICE)["entitlements"]["premium"]
    assert (granted["status"], granted["active"]) == ("active", True)


def test_the_user_a_transaction_names_may_claim_it_after_another_registered_it(client, api, cognito, store):
    """Apple's Set App Account Token sets or updates the appAccountToken of an existing
    purchase (https://developer.apple.com/documentation/appstoreserverapi/set-app-account-token).
    A purchase Bob registered without one, which Apple then shows naming Alice, is
    Alice's: the notification gives it to her, and her own registration of the
    transaction that names her must not be refused as another user's."""
    key = "4400"
    assert register(client, cognito, BOB, store.chain.sign(store.transaction(key))).status_code == 200
    named = store.transaction(key, token=ALICE, signed=now() + timedelta(seconds=1))
    notify(client, store, store.notification("SUBSCRIBED", signed=now() + timedelta(seconds=1), transaction=named))
    assert api(client, ALICE)["is_premium"] is True and api(client, BOB)["is_premium"] is False
    response = register(client, cognito, ALICE, store.chain.sign(named))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["is_premium"] is True and api(client, BOB)["is_premium"] is False
    older = register(client, cognito, BOB, store.chain.sign(store.transaction(key)))
    assert (older.status_code, older.get_json()["error"]) == (409, "purchase_owned_by_another_user")


def test_a_transaction_naming_the_caller_registered_before_its_notification_is_theirs(client, api, cognito, store):
    key = "4401"
    assert register(client, cognito, BOB, store.chain.sign(store.transaction(key))).status_code == 200
    named = store.transaction(key, token=ALICE, signed=now() + timedelta(seconds=1))
    response = register(client, cognito, ALICE, store.chain.sign(named))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["is_premium"] is True and api(client, BOB)["is_premium"] is False


def test_an_upgraded_transaction_naming_another_user_is_409(client, api, cognito, store):
    """A transaction the App Store shows as upgraded grants nothing itself (the one that
    replaced it carries the state), but its appAccountToken still names whose purchase it
    is: another user may not link it."""
    upgraded = store.transaction("4500", token=ALICE, isUpgraded=True)
    response = register(client, cognito, BOB, store.chain.sign(upgraded))
    assert (response.status_code, response.get_json()["error"]) == (409, "purchase_owned_by_another_user")
    current = store.transaction("4500", token=ALICE, signed=now() + timedelta(seconds=1))
    assert register(client, cognito, ALICE, store.chain.sign(current)).status_code == 200
