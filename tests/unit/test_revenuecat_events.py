"""RevenueCat events into snapshots, links and transfers (no I/O)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from devtools import revenuecat as rc
from gateway.domain.catalog import Catalog, parse_catalog
from gateway.domain.events import Event
from gateway.domain.model import Status
from gateway.errors import Malformed, NotConfigured, Unauthorized
from gateway.providers.revenuecat_events import RevenueCatEvents

CATALOG = parse_catalog({"entitlements": {"premium": {"revenuecat": ["pro"]}}, "default": "premium"})
SOURCE = RevenueCatEvents((rc.AUTH, "Bearer next-secret"), CATALOG)
HEADERS = {"Authorization": rc.AUTH}


def translate(evt: dict):
    """What the gateway applies for a delivery: verified, recorded, then translated."""
    delivery = SOURCE.verify(rc.body(evt), HEADERS)
    recorded = Event(1, delivery.source, delivery.event_id, delivery.event_type,
                     datetime.now(timezone.utc), delivery.payload, delivery.data, "received")
    return SOURCE.translate(recorded, lookup=None)


def only_snapshot(evt: dict):
    (snapshot,) = translate(evt).snapshots
    return snapshot


@pytest.mark.parametrize("kind", ["INITIAL_PURCHASE", "RENEWAL", "UNCANCELLATION", "SUBSCRIPTION_EXTENDED",
                                  "REFUND_REVERSED"])
def test_granting_events_are_active_and_renewing(kind):
    snapshot = only_snapshot(rc.event(kind, at_ms=1_700_000_000_000))
    assert (snapshot.status, snapshot.will_renew) == (Status.ACTIVE, True)
    assert snapshot.expires_at.timestamp() * 1000 == 1_700_000_000_000 + rc.MONTH_MS
    assert snapshot.key == "1000001" and snapshot.user_sub == "user-1"


def test_a_product_change_carries_no_state():
    """Its product_id and expiration_at_ms are the old product's; the RENEWAL that puts
    the change in effect carries the new state."""
    translation = translate(rc.event("PRODUCT_CHANGE", new_product_id="yearly"))
    assert translation.is_empty and "RENEWAL" in translation.ignored_reason


def test_non_renewing_purchase_grants_without_renewal():
    snapshot = only_snapshot(rc.event("NON_RENEWING_PURCHASE", expiration_at_ms=None))
    assert (snapshot.status, snapshot.will_renew, snapshot.expires_at) == (Status.ACTIVE, False, None)


def test_cancellation_keeps_access_until_expiry_without_renewal():
    snapshot = only_snapshot(rc.event("CANCELLATION", cancel_reason="UNSUBSCRIBE"))
    assert (snapshot.status, snapshot.will_renew) == (Status.ACTIVE, False)


def test_cancellation_by_customer_support_is_a_refund_and_revokes():
    snapshot = only_snapshot(rc.event("CANCELLATION", cancel_reason="CUSTOMER_SUPPORT"))
    assert snapshot.status is Status.REVOKED and snapshot.raw_status == "CANCELLATION:CUSTOMER_SUPPORT"


def test_billing_issue_is_a_grace_period_until_its_end_when_given():
    grace = only_snapshot(rc.event("BILLING_ISSUE", at_ms=1_700_000_000_000,
                                   grace_period_expiration_at_ms=1_700_000_000_000 + 16 * 86_400_000))
    retry = only_snapshot(rc.event("BILLING_ISSUE"))
    assert grace.status is Status.GRACE_PERIOD
    assert grace.expires_at.timestamp() * 1000 == 1_700_000_000_000 + 16 * 86_400_000
    assert retry.status is Status.BILLING_RETRY


def test_subscription_paused_does_not_revoke_before_expiry_but_the_expiration_pauses():
    paused = only_snapshot(rc.event("SUBSCRIPTION_PAUSED"))
    expired = only_snapshot(rc.event("EXPIRATION", expiration_reason="SUBSCRIPTION_PAUSED"))
    assert (paused.status, paused.will_renew) == (Status.ACTIVE, False)
    assert expired.status is Status.PAUSED


def test_expiration_ends_access():
    assert only_snapshot(rc.event("EXPIRATION", expiration_reason="BILLING_ERROR")).status is Status.EXPIRED


def test_entitlement_ids_are_mapped_through_the_catalog():
    assert only_snapshot(rc.event("RENEWAL", entitlement_ids=["pro", "extra"])).entitlements == ("premium", "extra")


@pytest.mark.parametrize("ids", [None, []])
def test_null_or_empty_entitlement_ids_grant_nothing(ids):
    # RevenueCat: null "if the product_id is not mapped to any entitlements" (a consumable).
    assert only_snapshot(rc.event("NON_RENEWING_PURCHASE", entitlement_ids=ids)).entitlements == ()


def test_a_payload_without_entitlement_ids_falls_back_to_entitlement_id_then_the_catalog():
    older = rc.event("RENEWAL", entitlement_id="pro")
    del older["entitlement_ids"]
    assert only_snapshot(older).entitlements == ("premium",)
    del older["entitlement_id"]
    assert only_snapshot(older).entitlements is None  # the catalog decides, by product


def test_a_billing_error_cancellation_is_left_to_the_billing_issue():
    assert translate(rc.event("CANCELLATION", cancel_reason="BILLING_ERROR")).ignored_reason
    assert only_snapshot(rc.event("CANCELLATION", cancel_reason="UNSUBSCRIBE")).status is Status.ACTIVE


def test_alias_links_carry_the_event_time():
    translation = translate(rc.event("RENEWAL", user="user-9", at_ms=1_700_000_000_000))
    assert {link.as_of.timestamp() for link in translation.links} == {1_700_000_000}


def test_anonymous_ids_are_not_users_but_are_linked_to_the_user():
    anonymous = "$RCAnonymousID:abc"
    translation = translate(rc.event("INITIAL_PURCHASE", user=anonymous, original_app_user_id=anonymous,
                                     aliases=[anonymous, "user-9"]))
    (snapshot,) = translation.snapshots
    assert snapshot.user_sub == "user-9" and snapshot.account == anonymous
    assert {(link.account, link.user_sub) for link in translation.links} == {(anonymous, "user-9")}


def test_only_anonymous_ids_leave_the_owner_unknown():
    anonymous = "$RCAnonymousID:abc"
    snapshot = only_snapshot(rc.event("INITIAL_PURCHASE", user=anonymous, original_app_user_id=anonymous,
                                      aliases=[anonymous]))
    assert snapshot.user_sub is None and snapshot.account == anonymous


def test_transfer_moves_access_to_the_first_real_user():
    translation = translate(rc.transfer(["user-1"], ["$RCAnonymousID:x", "user-2"], at_ms=1_700_000_000_000))
    (move,) = translation.transfers
    assert (move.from_accounts, move.to_user) == (("user-1",), "user-2")


def test_a_transfer_and_a_purchase_carry_the_store_and_environment_they_name():
    move = translate({**rc.transfer(["user-1"], ["user-2"]), "store": "PLAY_STORE", "environment": "SANDBOX"})
    bought = translate(rc.event("INITIAL_PURCHASE", store="PLAY_STORE", environment="SANDBOX")).snapshots[0]
    assert (move.transfers[0].store, move.transfers[0].environment) == ("PLAY_STORE", "SANDBOX")
    assert (bought.store, bought.environment) == ("PLAY_STORE", "SANDBOX")


@pytest.mark.parametrize("kind", ["TEST", "INVOICE_ISSUANCE", "EXPERIMENT_ENROLLMENT", "SOMETHING_NEW"])
def test_events_without_subscription_state_are_ignored(kind):
    assert translate(rc.event(kind)).ignored_reason


def test_unconfigured_source_refuses():
    with pytest.raises(NotConfigured):
        RevenueCatEvents((), Catalog(products={})).verify(rc.body(rc.event("RENEWAL")), HEADERS)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": rc.AUTH + " "},
                                     {"Authorization": ""}])
def test_wrong_or_missing_authorization_is_refused(headers):
    with pytest.raises(Unauthorized):
        SOURCE.verify(rc.body(rc.event("RENEWAL")), headers)


def test_any_of_the_rotated_secrets_is_accepted():
    assert SOURCE.verify(rc.body(rc.event("RENEWAL")), {"Authorization": "Bearer next-secret"}).event_type == "RENEWAL"


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b'{"event": []}', b'{"event": {"type": "RENEWAL"}}',
                                 b'{"event": {"id": "x", "type": "RENEWAL", "event_timestamp_ms": "soon"}}',
                                 b"\xff\xfe"])
def test_malformed_bodies_are_refused(raw):
    with pytest.raises(Malformed):
        SOURCE.verify(raw, HEADERS)


@pytest.mark.parametrize("missing", ["original_transaction_id", "app_user_id", "event_timestamp_ms"])
def test_state_events_missing_what_they_need_are_refused(missing):
    evt = rc.event("RENEWAL", transaction_id=None)
    evt[missing] = None
    with pytest.raises(Malformed):
        SOURCE.verify(rc.body(evt), HEADERS)


def test_transfer_without_parties_is_refused():
    with pytest.raises(Malformed):
        SOURCE.verify(rc.body(rc.transfer([], ["user-2"])), HEADERS)
