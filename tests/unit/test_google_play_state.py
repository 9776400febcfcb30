"""SubscriptionPurchaseV2 resources into snapshots (no I/O)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gateway.domain.catalog import Catalog
from gateway.domain.entitlements import derive
from gateway.domain.model import Snapshot, Status, merge_snapshot
from gateway.providers import google_play_state as state

NOW = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)


def purchase(subscription_state="SUBSCRIPTION_STATE_ACTIVE", **fields) -> dict:
    resource = {
        "kind": "androidpublisher#subscriptionPurchaseV2", "subscriptionState": subscription_state,
        "acknowledgementState": "ACKNOWLEDGEMENT_STATE_PENDING",
        "lineItems": [{"productId": "premium_monthly", "expiryTime": "2026-12-01T12:00:00.123456789Z",
                       "autoRenewingPlan": {"autoRenewEnabled": True}}],
    }
    resource.update(fields)
    return resource


@pytest.mark.parametrize("raw, status", [
    ("SUBSCRIPTION_STATE_ACTIVE", Status.ACTIVE),
    ("SUBSCRIPTION_STATE_CANCELED", Status.ACTIVE),
    ("SUBSCRIPTION_STATE_IN_GRACE_PERIOD", Status.GRACE_PERIOD),
    ("SUBSCRIPTION_STATE_ON_HOLD", Status.BILLING_RETRY),
    ("SUBSCRIPTION_STATE_PAUSED", Status.PAUSED),
    ("SUBSCRIPTION_STATE_EXPIRED", Status.EXPIRED),
    ("SUBSCRIPTION_STATE_PENDING", Status.PENDING),
    ("SUBSCRIPTION_STATE_PENDING_PURCHASE_CANCELED", Status.EXPIRED),
    ("SUBSCRIPTION_STATE_SOMETHING_NEW", Status.EXPIRED),
])
def test_states_map_to_statuses_and_the_raw_state_is_kept(raw, status):
    snapshot = state.snapshot_of("tok", purchase(raw), NOW)
    assert (snapshot.status, snapshot.raw_status) == (status, raw)


def test_a_canceled_subscription_keeps_access_until_expiry_without_renewal():
    snapshot = state.snapshot_of("tok", purchase("SUBSCRIPTION_STATE_CANCELED"), NOW)
    assert (snapshot.status, snapshot.will_renew) == (Status.ACTIVE, False)
    assert snapshot.expires_at == datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


def test_the_snapshot_is_stamped_at_fetch_time_and_keyed_by_the_token():
    snapshot = state.snapshot_of("tok-1", purchase(), NOW)
    assert (snapshot.key, snapshot.account, snapshot.as_of, snapshot.source) == ("tok-1", "tok-1", NOW, "google")
    assert (snapshot.product_id, snapshot.will_renew, snapshot.user_sub) == ("premium_monthly", True, None)


def test_expiry_and_product_come_from_the_latest_line_item_and_any_item_may_renew():
    items = [{"productId": "base", "expiryTime": "2026-12-01T00:00:00Z", "autoRenewingPlan": {"autoRenewEnabled": False}},
             {"productId": "addon", "expiryTime": "2027-01-01T00:00:00.5Z", "autoRenewingPlan": {"autoRenewEnabled": True}},
             {"productId": "prepaid", "prepaidPlan": {}}]
    snapshot = state.snapshot_of("tok", purchase(lineItems=items), NOW)
    assert snapshot.product_id == "addon" and snapshot.will_renew is True
    assert snapshot.expires_at == datetime(2027, 1, 1, 0, 0, 0, 500000, tzinfo=timezone.utc)


def test_a_pending_purchase_without_line_item_dates_has_no_expiry():
    snapshot = state.snapshot_of("tok", purchase("SUBSCRIPTION_STATE_PENDING", lineItems=[{"productId": "p"}]), NOW)
    assert (snapshot.status, snapshot.expires_at, snapshot.product_id) == (Status.PENDING, None, "p")


def test_the_obfuscated_account_id_names_the_user_and_test_purchases_are_test():
    named = purchase(externalAccountIdentifiers={"obfuscatedExternalAccountId": "sub-1"}, testPurchase={})
    snapshot = state.snapshot_of("tok", named, NOW)
    assert (snapshot.user_sub, snapshot.environment) == ("sub-1", "Test")
    assert state.snapshot_of("tok", purchase(), NOW).environment == "Production"


@pytest.mark.parametrize("value, expected", [
    ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
    ("2026-01-02T03:04:05.987654321Z", datetime(2026, 1, 2, 3, 4, 5, 987654, tzinfo=timezone.utc)),
    ("2026-01-02T05:04:05.1+02:00", datetime(2026, 1, 2, 3, 4, 5, 100000, tzinfo=timezone.utc)),
    ("yesterday", None), (None, None), (1700000000, None),
])
def test_rfc3339_times_are_read_to_the_microsecond(value, expected):
    assert state.parse_time(value) == expected


def test_a_replaced_token_no_longer_grants_but_keeps_what_its_views_show():
    """Merged after a view of the old token or before it, whatever their stamps: the view
    says what the purchase is (its product, end, add-ons), the replacement that it ended."""
    known = Snapshot("google", "old", NOW, Status.ACTIVE, product_id="premium_monthly",
                     expires_at=datetime(2026, 12, 1, tzinfo=timezone.utc), will_renew=True, environment="Production",
                     entitlements=("premium", "storage"), entitlement_ends=(("storage", NOW + timedelta(days=3)),))
    snapshot = state.replaced("old", NOW + timedelta(seconds=1), "new")
    assert (snapshot.status, snapshot.raw_status, snapshot.will_renew) == (Status.EXPIRED, "REPLACED", False)
    assert (snapshot.product_id, snapshot.user_sub, snapshot.account) == (None, None, None)
    for held in (merge_snapshot(merge_snapshot(None, known), snapshot),
                 merge_snapshot(merge_snapshot(None, snapshot), known)):
        seen = held.snapshot
        assert (seen.status, seen.will_renew) == (Status.EXPIRED, False)
        assert (seen.product_id, seen.expires_at, seen.entitlements, seen.entitlement_ends) == \
            (known.product_id, known.expires_at, known.entitlements, known.entitlement_ends)


def test_a_replacement_read_later_leaves_the_old_purchases_account_as_its_delivery_gave_it():
    """The old purchase was itself an upgrade stored under its predecessor's account."""
    held = merge_snapshot(None, Snapshot("google", "old", NOW, Status.ACTIVE, account="older"))
    later = NOW + timedelta(minutes=1)
    assert merge_snapshot(held, state.replaced("old", later, "new")).latest.account == "older"


def test_only_a_paid_purchase_replaces_its_linked_token():
    assert state.replaces(purchase(linkedPurchaseToken="old")) == "old"
    assert state.replaces(purchase("SUBSCRIPTION_STATE_PENDING", linkedPurchaseToken="old")) is None
    assert state.replaces(purchase()) is None


@pytest.mark.parametrize("raw, acknowledgement, needed", [
    ("SUBSCRIPTION_STATE_ACTIVE", "ACKNOWLEDGEMENT_STATE_PENDING", True),
    ("SUBSCRIPTION_STATE_IN_GRACE_PERIOD", "ACKNOWLEDGEMENT_STATE_PENDING", True),
    ("SUBSCRIPTION_STATE_CANCELED", "ACKNOWLEDGEMENT_STATE_PENDING", True),
    ("SUBSCRIPTION_STATE_ACTIVE", "ACKNOWLEDGEMENT_STATE_ACKNOWLEDGED", False),
    ("SUBSCRIPTION_STATE_PENDING", "ACKNOWLEDGEMENT_STATE_PENDING", False),
    ("SUBSCRIPTION_STATE_EXPIRED", "ACKNOWLEDGEMENT_STATE_PENDING", False),
])
def test_paid_unacknowledged_purchases_need_acknowledgement(raw, acknowledgement, needed):
    resource = purchase(raw, acknowledgementState=acknowledgement)
    assert state.needs_acknowledgement(resource) is needed
    assert state.acknowledged_product(resource) == "premium_monthly"


ADDONS = Catalog(products={("google", "base"): ("premium",), ("google", "addon"): ("storage",),
                           ("google", "bundle"): ("premium", "storage")}, default=None)


def test_each_entitlement_ends_with_the_last_line_item_that_grants_it():
    """An add-on that ends before its base plan lapses at its own end, judged when read:
    no notification comes at that moment."""
    items = [{"productId": "addon", "expiryTime": "2026-11-05T00:00:00Z"},
             {"productId": "base", "expiryTime": "2026-12-01T00:00:00Z"},
             {"productId": "bundle", "expiryTime": "2026-11-03T00:00:00Z"}]
    snapshot = state.snapshot_of("tok", purchase(lineItems=items), NOW, ADDONS)
    addon_end = datetime(2026, 11, 5, tzinfo=timezone.utc)
    assert snapshot.entitlement_ends == (("storage", addon_end),)
    grants = derive([snapshot], ADDONS)
    between = addon_end + timedelta(seconds=1)
    assert grants["premium"].is_active(between) and not grants["storage"].is_active(between)
    assert grants["storage"].is_active(addon_end - timedelta(seconds=1))


def test_an_add_on_already_ended_is_kept_so_its_entitlement_lapses_rather_than_vanishes():
    items = [{"productId": "addon", "expiryTime": "2026-10-30T00:00:00Z"},
             {"productId": "base", "expiryTime": "2026-12-01T00:00:00Z"}]
    snapshot = state.snapshot_of("tok", purchase(lineItems=items), NOW, ADDONS)
    grants = derive([snapshot], ADDONS)
    assert grants["premium"].is_active(NOW) and grants["storage"].status_at(NOW) is Status.EXPIRED


def test_items_without_an_end_end_nothing_early():
    items = [{"productId": "addon"}, {"productId": "base"}]
    snapshot = state.snapshot_of("tok", purchase("SUBSCRIPTION_STATE_PENDING", lineItems=items), NOW, ADDONS)
    assert (snapshot.entitlements, snapshot.entitlement_ends) == (("storage", "premium"), None)
