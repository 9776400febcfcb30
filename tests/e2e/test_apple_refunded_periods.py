"""An App Store refund takes back the period of the transaction it refunded, and no other.

Apple names the refunded transaction (``revocationDate`` belongs to one ``transactionId``);
each renewal, resubscription or plan change is a new transaction under the same
``originalTransactionId``. A later transaction grants, even when its period ends before
the refunded one would have: told apart by their ends only, it stayed revoked.
https://developer.apple.com/documentation/appstoreservernotifications/revocationdate
"""
from __future__ import annotations

import datetime as dt
import uuid
from datetime import timedelta

import pytest

from devtools.apple_pki import mint_chain
from devtools.apple_store import AppStore, ms, now
from tests.e2e.conftest import API_KEY

USER = str(uuid.uuid4())
WEEKLY = "com.example.premium.weekly"  # same subscription group, shorter period


@pytest.fixture(scope="module")
def chain():  # valid since before the backdated notifications below
    return mint_chain(valid_from=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10))


@pytest.fixture
def store(chain):
    return AppStore(chain)


@pytest.fixture
def client(make_app, store, chain, tmp_path):
    return make_app(GATEWAY_API_KEYS=API_KEY, **store.env(chain.write_root(tmp_path))).test_client()


def post(client, store, notification):
    response = client.post("/webhooks/apple", data=store.body(notification))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def iso(value) -> str:
    return value.isoformat().replace("+00:00", "Z")


def premium(api, client):
    return api(client, USER)["entitlements"].get("premium")


def bought_and_refunded(client, store, key: str):
    """A monthly plan bought three days ago (transaction ``key``), refunded a day later;
    the end of its period."""
    bought, refunded = now() - timedelta(days=3), now() - timedelta(days=2)
    end = bought + timedelta(days=30)
    post(client, store, store.notification("SUBSCRIBED", "INITIAL_BUY", signed=bought, transaction=store.transaction(
        key, token=USER, transaction_id=key, signed=bought, expires=end), renewal=store.renewal(key)))
    post(client, store, store.notification("REFUND", signed=refunded, transaction=store.transaction(
        key, token=USER, transaction_id=key, signed=refunded, expires=end, revoked=refunded),
        renewal=store.renewal(key, auto_renew=False, signed=refunded)))
    return end


def test_a_new_paid_transaction_after_a_refund_grants_even_if_it_ends_before_the_refunded_one(client, api, store):
    """REFUND revokes the refunded transaction (its revocationDate). A later SUBSCRIBED:RESUBSCRIBE
    ("Customer resubscribes to any subscription from the same subscription group") is a new
    transaction, without revocationDate: it must grant, whatever its expiresDate."""
    key, resubscribed = "7100", now()
    bought_and_refunded(client, store, key)
    assert premium(api, client)["status"] == "revoked"
    weekly = store.transaction(key, token=USER, transaction_id="7101", product=WEEKLY, signed=resubscribed,
                               expires=resubscribed + timedelta(days=7))
    assert post(client, store, store.notification("SUBSCRIBED", "RESUBSCRIBE", signed=resubscribed,
                                                  transaction=weekly,
                                                  renewal=store.renewal(key, product=WEEKLY))) == {"status": "processed"}
    got = premium(api, client)
    assert (got["status"], got["active"], got["product_id"]) == ("active", True, WEEKLY)


def test_family_member_given_access_again_after_revoke_is_granted(client, api, store):
    """REVOKE: the family-shared purchase is no longer available. SUBSCRIBED:RESUBSCRIBE: the
    customer "received access through Family Sharing to the same subscription" again. The
    shared period still ends on the purchaser's renewal date, the same expiresDate."""
    key, period_end = "7200", now() + timedelta(days=20)
    shared = dict(token=USER, expires=period_end, inAppOwnershipType="FAMILY_SHARED")
    post(client, store, store.notification("SUBSCRIBED", "INITIAL_BUY", signed=now() - timedelta(days=2),
                                           transaction=store.transaction(key, transaction_id="7200",
                                                                         signed=now() - timedelta(days=2), **shared)))
    post(client, store, store.notification("REVOKE", signed=now() - timedelta(days=1), transaction=store.transaction(
        key, transaction_id="7200", signed=now() - timedelta(days=1), revoked=now() - timedelta(days=1), **shared)))
    assert premium(api, client)["status"] == "revoked"
    post(client, store, store.notification("SUBSCRIBED", "RESUBSCRIBE", signed=now(), transaction=store.transaction(
        key, transaction_id="7201", signed=now(), **shared), renewal=store.renewal(key)))
    got = premium(api, client)
    assert (got["status"], got["active"]) == ("active", True)


def test_a_family_member_keeps_the_current_period_when_a_past_one_is_revoked(client, api, store):
    """A purchaser's refund revokes the family members' transaction of that period too ("the
    revocation reason for Family Sharing transactions matches the value of the purchaser's
    revocation reason"), and REVOKE carries that transaction, which may be a past renewal,
    as REFUND does for the purchaser, whose current period stands. Taken as the newest view
    of the family member's subscription, it revoked their current period."""
    key, old_end = "7250", now() - timedelta(days=2)
    new_end, renewed = old_end + timedelta(days=30), old_end - timedelta(hours=1)
    shared = dict(token=USER, inAppOwnershipType="FAMILY_SHARED")
    post(client, store, store.notification("DID_RENEW", signed=renewed, transaction=store.transaction(
        key, transaction_id=f"{key}-2", signed=renewed, expires=new_end, **shared),
        renewal=store.renewal(key, signed=renewed, renewalDate=ms(new_end))))
    revoked = store.notification("REVOKE", signed=now(), transaction=store.transaction(
        key, transaction_id=key, signed=now(), expires=old_end, revoked=now(), **shared),
        renewal=store.renewal(key, renewalDate=ms(new_end)))
    assert post(client, store, revoked) == {"status": "ignored"}
    got = premium(api, client)
    assert (got["status"], got["active"], got["expires_at"]) == ("active", True, iso(new_end))


def test_a_view_of_the_refunded_transaction_signed_before_the_refund_stays_revoked(client, api, store):
    """A notification of the refunded transaction signed before the refund, without its
    revocationDate, delivered after it (Apple retrying it): an older view of the same
    payment, still revoked. One signed after it tells the refund was reversed
    (test_apple_refund_reversals)."""
    key = "7300"
    end = bought_and_refunded(client, store, key)
    before = now() - timedelta(days=2, hours=1)
    post(client, store, store.notification("DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_ENABLED", signed=before,
                                           transaction=store.transaction(key, token=USER, transaction_id="7300",
                                                                         signed=before, expires=end),
                                           renewal=store.renewal(key, signed=before)))
    assert premium(api, client)["status"] == "revoked"


@pytest.mark.parametrize("kind", ["REFUND", "REFUND_DECLINED", "REFUND_REVERSED"])
def test_a_refund_decision_on_the_period_a_renewal_already_followed_leaves_the_renewal(client, api, store, kind):
    """The App Store "renews the subscription slightly before it expires", so a refund of a
    period may be decided after its renewal and before its expiresDate. The notification
    carries the refunded transaction; its renewal info's renewalDate, "the expiration date
    of the most recent auto-renewable subscription purchase, including renewals", is the
    renewal's end: the transaction is not the current period. Taken as the newest view of
    the subscription, it hid the renewal (revoked, or lapsing when the old period ends)."""
    key, old_end = f"7400{len(kind)}", now() + timedelta(hours=6)
    new_end, renewed = old_end + timedelta(days=30), now() - timedelta(hours=1)
    post(client, store, store.notification("SUBSCRIBED", "INITIAL_BUY", signed=now() - timedelta(days=2),
                                           transaction=store.transaction(key, token=USER, transaction_id=key,
                                                                         signed=now() - timedelta(days=2),
                                                                         expires=old_end),
                                           renewal=store.renewal(key, renewalDate=ms(old_end))))
    post(client, store, store.notification("DID_RENEW", signed=renewed, transaction=store.transaction(
        key, token=USER, transaction_id=f"{key}-2", signed=renewed, expires=new_end),
        renewal=store.renewal(key, signed=renewed, renewalDate=ms(new_end))))
    extra = {"revoked": now()} if kind == "REFUND" else {}
    decided = store.notification(kind, signed=now(), transaction=store.transaction(
        key, token=USER, transaction_id=key, signed=now(), expires=old_end, **extra),
        renewal=store.renewal(key, renewalDate=ms(new_end)))
    answer = post(client, store, decided)
    got = premium(api, client)
    assert (got["status"], got["active"], got["expires_at"]) == ("active", True, iso(new_end))
    assert answer == {"status": "ignored"}


def failed_to_renew_into_grace(store, key: str):
    """A weekly period (transaction ``key``) that ended an hour ago and failed to renew: the
    DID_FAIL_TO_RENEW:GRACE_PERIOD notification, its renewalDate the period's end (no later
    purchase), and the transaction's fields."""
    bought, ended, failed = now() - timedelta(days=7, hours=1), now() - timedelta(hours=1), now() - timedelta(minutes=50)
    period = dict(token=USER, transaction_id=key, expires=ended, purchaseDate=ms(bought))
    failing = store.notification("DID_FAIL_TO_RENEW", "GRACE_PERIOD", signed=failed, transaction=store.transaction(
        key, signed=failed, **period), renewal=store.renewal(key, retry=True, grace_until=now() + timedelta(days=15),
                                                          signed=failed, renewalDate=ms(ended)))
    return failing, period


@pytest.mark.parametrize("refund_first", [False, True], ids=["in_order", "refund_first"])
def test_a_refund_of_the_period_a_grace_period_stands_on_ends_the_grace_period(client, api, store, refund_first):
    """In a billing grace period the latest transaction is the period that failed to renew:
    StoreKit's current entitlements are "the latest transaction for each auto-renewable
    subscription" in the subscribed or grace period state, and "products that the App Store
    has refunded or revoked don't appear" there; status 5 is "revoked. The App Store
    refunded the transaction". Its REFUND, signed after the period ended, was ignored as a
    past period, and the grace period went on granting until its end."""
    key = "7500"
    failing, period = failed_to_renew_into_grace(store, key)
    refund = store.notification("REFUND", signed=now(), transaction=store.transaction(
        key, signed=now(), revoked=now(), **period),
        renewal=store.renewal(key, auto_renew=False, retry=True, renewalDate=ms(period["expires"])))
    for notification in ([refund, failing] if refund_first else [failing, refund]):
        assert post(client, store, notification) == {"status": "processed"}
    got = premium(api, client)
    assert (got["status"], got["active"]) == ("revoked", False)
    assert api(client, USER)["is_premium"] is False


def test_a_refund_reversed_gives_the_grace_period_back(client, api, store):
    """REFUND_REVERSED: Apple "reversed a previously granted refund"; the grace period the
    refund ended stands again, until its end."""
    key = "7600"
    failing, period = failed_to_renew_into_grace(store, key)
    renewal = dict(retry=True, grace_until=now() + timedelta(days=15), renewalDate=ms(period["expires"]))
    refunded = now() - timedelta(minutes=5)
    post(client, store, failing)
    post(client, store, store.notification("REFUND", signed=refunded, transaction=store.transaction(
        key, signed=refunded, revoked=refunded, **period), renewal=store.renewal(key, signed=refunded, **renewal)))
    assert premium(api, client)["status"] == "revoked"
    assert post(client, store, store.notification("REFUND_REVERSED", signed=now(), transaction=store.transaction(
        key, signed=now(), **period), renewal=store.renewal(key, **renewal))) == {"status": "processed"}
    got = premium(api, client)
    assert (got["status"], got["active"], got["expires_at"]) == ("grace_period", True, iso(renewal["grace_until"]))
