"""The snapshot rules for App Store transactions and renewal info (no signatures here)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gateway.domain.catalog import Catalog, parse_catalog
from gateway.domain.model import Status
from gateway.errors import Malformed
from gateway.providers.apple_state import instant, owner_of, store_status, translate_transaction

AT = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)
CATALOG = Catalog(products={})


def ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def transaction(**fields) -> dict:
    base = {"originalTransactionId": "77", "productId": "monthly", "type": "Auto-Renewable Subscription",
            "expiresDate": ms(AT + timedelta(days=3)), "environment": "Sandbox", "signedDate": ms(AT)}
    return {**base, **fields}


def snapshot(txn: dict, renewal: dict | None = None, catalog: Catalog = CATALOG, **said):
    translation = translate_transaction(txn, renewal, AT, "DID_RENEW", catalog, **said)
    return translation.snapshots[0] if translation.snapshots else translation


def test_before_expiry_is_active_and_auto_renew_status_gives_will_renew():
    got = snapshot(transaction(), {"autoRenewStatus": 1})
    assert (got.status, got.will_renew, got.expires_at) == (Status.ACTIVE, True, AT + timedelta(days=3))
    assert snapshot(transaction(), {"autoRenewStatus": 0}).will_renew is False


def test_revocation_date_means_revoked_whatever_the_expiry():
    got = snapshot(transaction(revocationDate=ms(AT - timedelta(hours=1))), {"autoRenewStatus": 1})
    assert (got.status, got.will_renew) == (Status.REVOKED, False)


def test_billing_retry_with_grace_in_the_future_is_grace_period_until_its_end():
    grace_end = AT + timedelta(days=2)
    got = snapshot(transaction(expiresDate=ms(AT - timedelta(days=1))),
                   {"isInBillingRetryPeriod": True, "gracePeriodExpiresDate": ms(grace_end), "autoRenewStatus": 1})
    assert (got.status, got.expires_at, got.will_renew) == (Status.GRACE_PERIOD, grace_end, True)


def test_billing_retry_after_grace_or_without_it_is_billing_retry():
    lapsed = transaction(expiresDate=ms(AT - timedelta(days=1)))
    past_grace = {"isInBillingRetryPeriod": True, "gracePeriodExpiresDate": ms(AT - timedelta(seconds=1))}
    assert snapshot(lapsed, past_grace).status == Status.BILLING_RETRY
    assert snapshot(lapsed, {"isInBillingRetryPeriod": True}).status == Status.BILLING_RETRY


def test_grace_date_without_billing_retry_does_not_grant():
    got = snapshot(transaction(expiresDate=ms(AT - timedelta(days=1))),
                   {"isInBillingRetryPeriod": False, "gracePeriodExpiresDate": ms(AT + timedelta(days=1))})
    assert got.status == Status.EXPIRED


LAPSED = AT - timedelta(days=1)


@pytest.mark.parametrize("status, renewal, state, end", [
    # Status 4 (billing grace period) without a grace end: the assumed grace from the period's end.
    (4, {"isInBillingRetryPeriod": True}, Status.GRACE_PERIOD, LAPSED + timedelta(days=3)),
    (4, {}, Status.GRACE_PERIOD, LAPSED + timedelta(days=3)),
    # ... with one, even beside isInBillingRetryPeriod false: that end.
    (4, {"isInBillingRetryPeriod": False, "gracePeriodExpiresDate": ms(AT + timedelta(days=9))},
     Status.GRACE_PERIOD, AT + timedelta(days=9)),
    # ... with one already past: the renewal info's date holds.
    (4, {"isInBillingRetryPeriod": True, "gracePeriodExpiresDate": ms(AT)}, Status.BILLING_RETRY, LAPSED),
    # Status 3 says billing retry where the renewal info says nothing of it.
    (3, {"isInBillingRetryPeriod": False}, Status.BILLING_RETRY, LAPSED),
    # The renewal info's own grace period stands whatever the status says.
    (3, {"isInBillingRetryPeriod": True, "gracePeriodExpiresDate": ms(AT + timedelta(days=1))},
     Status.GRACE_PERIOD, AT + timedelta(days=1)),
    (2, {"isInBillingRetryPeriod": False}, Status.EXPIRED, LAPSED),
    # Active or revoked, or a status of no known meaning, say nothing of a lapsed period.
    (1, {"isInBillingRetryPeriod": True}, Status.BILLING_RETRY, LAPSED),
    (1, {}, Status.EXPIRED, LAPSED),
    (5, {}, Status.EXPIRED, LAPSED),
])
def test_the_store_status_says_which_state_a_lapsed_period_is_in(status, renewal, state, end):
    got = snapshot(transaction(expiresDate=ms(LAPSED)), {"autoRenewStatus": 1, **renewal}, status=status)
    assert (got.status, got.expires_at) == (state, end)


def test_the_assumed_grace_is_the_one_given_and_none_at_zero():
    lapsed, renewal = transaction(expiresDate=ms(LAPSED)), {"isInBillingRetryPeriod": True}
    assert snapshot(lapsed, renewal, status=4, grace=timedelta(days=16)).expires_at == LAPSED + timedelta(days=16)
    assert snapshot(lapsed, renewal, status=4, grace=timedelta(0)).status == Status.BILLING_RETRY


@pytest.mark.parametrize("days_lapsed, grace_days, end_days", [
    (5, 3, 16), (20, 3, 28), (20, 16, 28), (2, 16, 16), (5, 5, 16), (29, 3, None), (5, 0, None)])
def test_a_grace_period_still_stated_past_the_assumed_one_is_the_next_length_apple_offers(days_lapsed, grace_days,
                                                                                         end_days):
    """Apple's lengths are 3, 16 and 28 days: a grace period stated on day 5 is one of 16 or 28."""
    lapsed = AT - timedelta(days=days_lapsed)
    got = snapshot(transaction(expiresDate=ms(lapsed)), {"isInBillingRetryPeriod": True}, status=4,
                   grace=timedelta(days=grace_days))
    if end_days is None:  # past every length, or none assumed: billing retry
        assert (got.status, got.expires_at) == (Status.BILLING_RETRY, lapsed)
    else:
        assert (got.status, got.expires_at) == (Status.GRACE_PERIOD, lapsed + timedelta(days=end_days))


@pytest.mark.parametrize("value", [None, 0, 6, "4", 4.0, True])
def test_a_status_of_no_known_meaning_is_none(value):
    assert store_status(value) is None
    assert store_status(4) == 4


def test_the_store_status_does_not_outrank_the_transaction():
    """Before its end a period is active, and a revocationDate revokes, whatever the status."""
    assert snapshot(transaction(), {"autoRenewStatus": 1}, status=2).status == Status.ACTIVE
    assert snapshot(transaction(revocationDate=ms(AT)), {}, status=4).status == Status.REVOKED


def test_after_expiry_is_expired_and_does_not_renew():
    got = snapshot(transaction(expiresDate=ms(AT)), {"autoRenewStatus": 1})
    assert (got.status, got.will_renew) == (Status.EXPIRED, False)


def test_snapshot_is_keyed_and_stamped_for_linking():
    got = snapshot(transaction(appAccountToken="0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0"))
    assert (got.key, got.account, got.as_of, got.environment, got.product_id, got.raw_status) == (
        "77", "77", AT, "Sandbox", "monthly", "DID_RENEW")
    assert got.user_sub == "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


@pytest.mark.parametrize("token", [None, "", "   ", 12, "not-a-uuid", "x" * 300])
def test_missing_or_unusable_token_leaves_the_owner_unknown(token):
    assert owner_of({"appAccountToken": token}) is None


def test_upgraded_transaction_is_ignored():
    assert snapshot(transaction(isUpgraded=True)).ignored_reason


@pytest.mark.parametrize("kind", ["Consumable", "Non-Renewing Subscription", None])
def test_purchases_that_are_not_subscriptions_are_ignored(kind):
    assert snapshot(transaction(type=kind)).ignored_reason


def test_non_consumable_in_the_catalog_is_held_for_good_until_refunded():
    catalog = parse_catalog({"entitlements": {"premium": {"apple": ["lifetime"]}}})
    lifetime = transaction(type="Non-Consumable", productId="lifetime", expiresDate=None)
    assert snapshot(lifetime, catalog=catalog).status == Status.ACTIVE
    assert snapshot(lifetime, catalog=catalog).expires_at is None
    assert snapshot({**lifetime, "revocationDate": ms(AT)}, catalog=catalog).status == Status.REVOKED
    assert snapshot(lifetime).ignored_reason  # listed nowhere: the default entitlement is for subscriptions


@pytest.mark.parametrize("fields", [{"originalTransactionId": None}, {"originalTransactionId": 5},
                                    {"expiresDate": "soon"}, {"expiresDate": None}, {"productId": 3},
                                    {"originalTransactionId": "9" * 256},
                                    {"productId": ["a"], "type": "Non-Consumable"}])
def test_unusable_transaction_is_malformed(fields):
    with pytest.raises(Malformed):
        snapshot(transaction(**fields))


def test_instant_reads_milliseconds():
    assert instant(ms(AT)) == AT and instant(None) is None
    with pytest.raises(Malformed):
        instant(True)
