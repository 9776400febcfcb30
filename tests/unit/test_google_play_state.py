"""SubscriptionPurchaseV2 resources into snapshots (no I/O)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gateway.domain.catalog import Catalog
from gateway.domain.entitlements import derive
from gateway.domain.model import Snapshot, Status, merge_snapshot
from gateway.domain.terms import Term
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
    addon = Term("storage", "storage_addon", NOW + timedelta(days=3), True)
    known = Snapshot("google", "old", NOW, Status.ACTIVE, product_id="premium_monthly",
                     expires_at=datetime(2026, 12, 1, tzinfo=timezone.utc), will_renew=True, environment="Production",
                     entitlements=("premium", "storage"), entitlement_terms=(addon,))
    snapshot = state.replaced("old", NOW + timedelta(seconds=1), "new")
    assert (snapshot.status, snapshot.raw_status, snapshot.will_renew) == (Status.EXPIRED, "REPLACED", False)
    assert (snapshot.product_id, snapshot.user_sub, snapshot.account) == (None, None, None)
    for held in (merge_snapshot(merge_snapshot(None, known), snapshot),
                 merge_snapshot(merge_snapshot(None, snapshot), known)):
        seen = held.snapshot
        assert (seen.status, seen.will_renew) == (Status.EXPIRED, False)
        assert (seen.product_id, seen.expires_at, seen.entitlements) == \
            (known.product_id, known.expires_at, known.entitlements)
        # the add-on keeps its own product and end, and renews no more than the purchase does
        assert seen.entitlement_terms == (addon._replace(will_renew=False),)
        assert derive([seen], ADDONS)["storage"].will_renew is False


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
    assert snapshot.entitlement_terms == (Term("storage", "addon", addon_end, False),)
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
    assert (snapshot.entitlements, snapshot.expires_at) == (("storage", "premium"), None)
    assert snapshot.entitlement_terms == (Term("premium", "base", None, False),)  # its own product, no end


def base_and_addon(base_renews: bool, addon_renews: bool, addon_expiry: str = "2026-11-20T00:00:00Z") -> list[dict]:
    """A base plan and an add-on, each with its own ``autoRenewingPlan``; the add-on listed first."""
    return [{"productId": "addon", "expiryTime": addon_expiry, "autoRenewingPlan": {"autoRenewEnabled": addon_renews}},
            {"productId": "base", "expiryTime": "2026-12-01T00:00:00Z",
             "autoRenewingPlan": {"autoRenewEnabled": base_renews}}]


def granted(items: list[dict], subscription_state: str = "SUBSCRIPTION_STATE_ACTIVE") -> dict:
    snapshot = state.snapshot_of("tok", purchase(subscription_state, lineItems=items), NOW, ADDONS)
    return {name: (grant.product_id, grant.expires_at.day, grant.will_renew)
            for name, grant in derive([snapshot], ADDONS).items()}


@pytest.mark.parametrize("base_renews, addon_renews", [(True, False), (True, True), (False, True), (False, False)])
def test_each_entitlement_shows_the_product_end_and_renewal_of_its_own_line_item(base_renews, addon_renews):
    """An add-on cancelled on a renewing base plan does not renew; a base plan cancelled with
    its add-on renewing is the other way round. The purchase renews while any item does, and
    its product is the latest item's: each entitlement showed those."""
    assert granted(base_and_addon(base_renews, addon_renews)) == {
        "premium": ("base", 1, base_renews), "storage": ("addon", 20, addon_renews)}


def test_items_that_end_together_each_keep_their_own_product_whatever_the_order_play_lists_them():
    items = base_and_addon(True, True, addon_expiry="2026-12-01T00:00:00Z")
    expected = {"premium": ("base", 1, True), "storage": ("addon", 1, True)}
    assert granted(items) == granted(items[::-1]) == expected


def test_a_canceled_or_expired_purchase_renews_no_entitlement_whatever_its_items_say():
    for raw in ("SUBSCRIPTION_STATE_CANCELED", "SUBSCRIPTION_STATE_EXPIRED"):
        assert {renews for _, _, renews in granted(base_and_addon(True, True), raw).values()} == {False}


def test_an_entitlement_two_items_grant_ends_with_the_later_and_renews_while_either_does():
    """The item that ends first renews at its end, so the entitlement goes on past the later one's."""
    items = [{"productId": product, "expiryTime": f"2026-{expiry}T00:00:00Z", "autoRenewingPlan": {"autoRenewEnabled": on}}
             for product, expiry, on in (("bundle", "11-20", True), ("addon", "11-25", False), ("base", "12-01", False))]
    assert granted(items)["storage"] == ("addon", 25, True)


def test_a_single_item_purchase_carries_no_terms_of_its_own():
    snapshot = state.snapshot_of("tok", purchase(lineItems=base_and_addon(False, True)[1:]), NOW, ADDONS)
    assert (snapshot.entitlements, snapshot.entitlement_terms) == (None, None)
