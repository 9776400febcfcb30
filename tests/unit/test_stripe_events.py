"""Stripe deliveries: signature checks on the raw body, and body-only translations."""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone

import pytest

from devtools import stripe_objects as so
from devtools.stripe_signing import generate_header, new_secret, signed
from gateway.domain.changes import Link
from gateway.domain.entitlements import derive
from gateway.domain.events import Event
from gateway.domain.model import Status
from gateway.errors import Malformed, NotConfigured, StoreApiError, Unauthorized
from gateway.ingest import StoreLookup
from gateway.providers import stripe_webhook
from gateway.providers.stripe_events import StripeEvents
from tests.fakes.memory_store import MemoryStore
from tests.support.stripe_harness import CATALOG

SECRET, NEXT_SECRET = new_secret(), new_secret()
SOURCE = StripeEvents((SECRET, NEXT_SECRET), CATALOG)  # no API key: bodies only


def translate(event: dict, lookup=None):
    delivery = SOURCE.verify(*signed(event, SECRET))
    recorded = Event(1, delivery.source, delivery.event_id, delivery.event_type,
                     datetime.now(timezone.utc), delivery.payload, delivery.data, "received")
    return SOURCE.translate(recorded, lookup or StoreLookup(MemoryStore()))


def sub_event(shape: str, kind: str = "customer.subscription.updated", **fields) -> dict:
    obj = so.subscription(shape, sub_id="sub_1", customer="cus_1", cognito_sub="user-1",
                          start=1_790_000_000, end=1_792_592_000, **fields)
    return so.event(kind, obj, shape=shape, created=1_790_000_100)


def only_snapshot(event: dict):
    (snapshot,) = translate(event).snapshots
    return snapshot


# Verification.

def test_a_signed_event_is_verified_and_kept_verbatim():
    event = sub_event("basil")
    body, headers = signed(event, SECRET)
    delivery = SOURCE.verify(body, headers)
    assert (delivery.event_id, delivery.event_type) == (event["id"], "customer.subscription.updated")
    assert delivery.payload == body.decode() and delivery.data == event


def test_the_second_secret_matches_during_rotation():
    delivery = SOURCE.verify(*signed(sub_event("basil"), NEXT_SECRET))
    assert delivery.source == "stripe"


@pytest.mark.parametrize("overrides, code", [
    ({"signature": "0" * 64}, "invalid_signature"),
    ({"scheme": "v0"}, "invalid_signature"),
    ({"timestamp": int(time.time()) - 301}, "stale_signature"),
])
def test_forged_or_stale_signatures_are_refused(overrides, code):
    with pytest.raises(Unauthorized) as refused:
        SOURCE.verify(*signed(sub_event("basil"), SECRET, **overrides))
    assert refused.value.code == code


def test_a_signature_made_with_another_secret_is_refused():
    with pytest.raises(Unauthorized):
        SOURCE.verify(*signed(sub_event("basil"), new_secret()))


def test_a_body_changed_after_signing_is_refused():
    body, headers = signed(sub_event("basil"), SECRET)
    with pytest.raises(Unauthorized):
        SOURCE.verify(body.replace(b'"active"', b'"canceled"'), headers)


def test_a_missing_signature_is_refused():
    with pytest.raises(Unauthorized) as refused:
        SOURCE.verify(json.dumps(sub_event("basil")).encode(), {})
    assert refused.value.code == "missing_signature"


def test_without_secrets_the_source_refuses():
    with pytest.raises(NotConfigured):
        StripeEvents((), CATALOG).verify(*signed(sub_event("basil"), SECRET))


@pytest.mark.parametrize("payload", [
    "not json", "[]", json.dumps({"type": "customer.created", "created": 1, "data": {"object": {"id": "cus_1"}}}),
    json.dumps({"id": "evt_1", "type": "customer.created", "created": 1, "data": {}}),
    json.dumps({"id": "evt_1", "type": "customer.subscription.updated", "created": 1, "data": {"object": {}}}),
    json.dumps({"id": "evt_1", "type": "invoice.paid", "created": "yesterday", "data": {"object": {"id": "in_1"}}}),
])
def test_signed_but_malformed_bodies_are_refused(payload):
    with pytest.raises(Malformed):
        SOURCE.verify(*signed(payload, SECRET))


def test_an_api_version_other_than_the_pinned_one_is_logged_once(caplog):
    stripe_webhook._seen_versions.discard("2024-06-20")
    with caplog.at_level(logging.WARNING, logger="gateway.stripe"):
        for _ in range(3):
            SOURCE.verify(*signed(sub_event("legacy"), SECRET))
    drift = [r for r in caplog.records if "API version" in r.getMessage()]
    assert len(drift) == 1 and drift[0].fields["api_version"] == "2024-06-20"


# Subscription bodies, in both shapes.

@pytest.mark.parametrize("shape", so.SHAPES)
@pytest.mark.parametrize("raw, status", [
    ("active", Status.ACTIVE), ("trialing", Status.ACTIVE), ("past_due", Status.GRACE_PERIOD),
    ("unpaid", Status.BILLING_RETRY), ("paused", Status.PAUSED), ("canceled", Status.EXPIRED),
    ("incomplete_expired", Status.EXPIRED), ("incomplete", Status.PENDING), ("brand_new", Status.PENDING),
])
def test_statuses_map_and_keep_the_raw_value(shape, raw, status):
    snapshot = only_snapshot(sub_event(shape, status=raw))
    assert (snapshot.status, snapshot.raw_status) == (status, raw)
    assert snapshot.expires_at == datetime.fromtimestamp(1_792_592_000, timezone.utc)
    assert (snapshot.key, snapshot.account, snapshot.user_sub) == ("sub_1", "cus_1", "user-1")
    assert snapshot.as_of == datetime.fromtimestamp(1_790_000_100, timezone.utc)


@pytest.mark.parametrize("shape", so.SHAPES)
def test_cancel_at_period_end_keeps_access_until_the_period_ends(shape):
    snapshot = only_snapshot(sub_event(shape, cancel_at_period_end=True, canceled_at=1_790_000_050))
    assert (snapshot.status, snapshot.will_renew) == (Status.ACTIVE, False)
    assert snapshot.expires_at.timestamp() == 1_792_592_000


@pytest.mark.parametrize("shape", so.SHAPES)
def test_a_scheduled_cancellation_ends_access_at_the_cancel_time_without_renewal(shape):
    snapshot = only_snapshot(sub_event(shape, cancel_at=1_791_000_000))
    assert (snapshot.status, snapshot.will_renew, snapshot.expires_at.timestamp()) == (Status.ACTIVE, False, 1_791_000_000)


@pytest.mark.parametrize("shape", so.SHAPES)
@pytest.mark.parametrize("cancel_at, renews", [(1_792_592_000, False), (1_792_592_001, True), (1_800_000_000, True)],
                         ids=["at-the-period-end", "a-second-later", "months-later"])
def test_a_cancellation_scheduled_past_the_period_renews_into_the_next_one(shape, cancel_at, renews):
    """``cancel_at`` months ahead (a schedule's last phase, a fixed-term contract): Stripe
    renews the subscription at the end of this period, and access goes on into the next."""
    snapshot = only_snapshot(sub_event(shape, cancel_at=cancel_at))
    assert (snapshot.status, snapshot.will_renew, snapshot.expires_at.timestamp()) == (Status.ACTIVE, renews, 1_792_592_000)


@pytest.mark.parametrize("shape", so.SHAPES)
@pytest.mark.parametrize("behavior", ["void", "keep_as_draft", "mark_uncollectible"])
def test_paused_collection_keeps_access_and_renews_into_the_next_period(shape, behavior):
    """Collection paused, the subscription stays ``active`` and Stripe goes on moving it
    into new periods without charging: access does not end with the period, as a client
    told ``will_renew: false`` would say. A scheduled end still ends it."""
    paused = {"behavior": behavior, "resumes_at": None}
    snapshot = only_snapshot(sub_event(shape, pause_collection=paused))
    assert (snapshot.status, snapshot.will_renew, snapshot.expires_at.timestamp()) == (Status.ACTIVE, True, 1_792_592_000)
    ending = only_snapshot(sub_event(shape, pause_collection=paused, cancel_at_period_end=True))
    assert (ending.status, ending.will_renew) == (Status.ACTIVE, False)


@pytest.mark.parametrize("shape", so.SHAPES)
def test_an_ended_subscription_expires_when_it_ended(shape):
    snapshot = only_snapshot(sub_event(shape, "customer.subscription.deleted", status="canceled",
                                       ended_at=1_790_000_090, canceled_at=1_790_000_090))
    assert (snapshot.status, snapshot.will_renew) == (Status.EXPIRED, False)
    assert snapshot.expires_at.timestamp() == 1_790_000_090


def test_basil_items_each_carry_a_period_and_the_latest_end_counts():
    event = sub_event("basil")
    items = event["data"]["object"]["items"]["data"]
    items.append({**items[0], "id": "si_2", "price": so.price("price_addon", "prod_family"),
                  "current_period_end": 1_795_000_000})
    snapshot = only_snapshot(event)
    assert snapshot.expires_at.timestamp() == 1_795_000_000
    assert (snapshot.product_id, snapshot.entitlements) == ("price_monthly", ("premium", "family"))


def test_an_item_the_catalog_does_not_list_does_not_lengthen_what_the_listed_ones_grant():
    """A monthly plan with a yearly item that grants nothing (support, say: flexible billing
    renews items apart): past due, the plan's month is all the grace there is, not the year."""
    event = sub_event("basil", status="past_due")
    items = event["data"]["object"]["items"]["data"]
    items.append({**items[0], "id": "si_2", "price": so.price("price_support_yearly", "prod_support"),
                  "current_period_start": 1_790_000_000, "current_period_end": 1_821_536_000})
    snapshot = only_snapshot(event)
    assert (snapshot.status, snapshot.expires_at.timestamp()) == (Status.GRACE_PERIOD, 1_792_592_000)
    assert (snapshot.product_id, snapshot.entitlements) == ("price_monthly", ("premium",))


@pytest.mark.parametrize("status, cancel_at", [("past_due", None), ("active", 1_800_000_000)])
def test_items_renewing_apart_grant_each_entitlement_until_its_own_items_end(status, cancel_at):
    """A monthly plan and a yearly add-on of its own entitlement (flexible billing): the plan's
    renewal failed, the add-on's year is paid. Premium is the plan's, until its month ends;
    family lasts the year (or to a ``cancel_at`` before then, with no renewal)."""
    event = sub_event("basil", status=status, cancel_at=cancel_at)
    items = event["data"]["object"]["items"]["data"]
    items.append({**items[0], "id": "si_2", "price": so.price("price_family_yearly", "prod_family"),
                  "current_period_start": 1_790_000_000, "current_period_end": 1_821_536_000})
    grants = derive([only_snapshot(event)], CATALOG)
    family_end = min(1_821_536_000, cancel_at or 1_821_536_000)
    assert {name: (g.expires_at.timestamp(), g.will_renew, g.product_id) for name, g in grants.items()} == {
        "premium": (1_792_592_000, True, "price_monthly"),
        "family": (family_end, cancel_at is None, "prod_family")}


def test_a_subscription_of_unknown_prices_reports_its_first_price_and_no_entitlement_list():
    snapshot = only_snapshot(sub_event("basil", items={"object": "list", "data": [
        {"id": "si_9", "price": so.price("price_other", "prod_other"), "current_period_end": 1_792_592_000}]}))
    assert (snapshot.product_id, snapshot.entitlements) == ("price_other", None)


def test_the_subscription_metadata_names_the_user_and_links_the_customer():
    translation = translate(sub_event("basil"))
    assert translation.links == (Link("stripe", "cus_1", "user-1", translation.snapshots[0].as_of),)


# Customers, Checkout, and what is ignored.

@pytest.mark.parametrize("shape", so.SHAPES)
@pytest.mark.parametrize("kind", ["customer.created", "customer.updated"])
def test_customer_metadata_links_the_customer_to_the_user(shape, kind):
    event = so.event(kind, so.customer(customer_id="cus_7", cognito_sub="user-7"), shape=shape, created=1_790_000_000)
    assert translate(event).links == (Link("stripe", "cus_7", "user-7", datetime.fromtimestamp(1_790_000_000, timezone.utc)),)
    assert translate(so.event(kind, so.customer(customer_id="cus_8"), shape=shape)).ignored_reason


@pytest.mark.parametrize("shape", so.SHAPES)
def test_checkout_completion_links_the_customer_to_the_client_reference_id(shape):
    session = so.checkout_session(session_id="cs_1", customer="cus_2", subscription_id="sub_2",
                                  client_reference_id="user-2")
    (link,) = translate(so.event("checkout.session.completed", session, shape=shape)).links
    assert (link.account, link.user_sub) == ("cus_2", "user-2")


def test_a_payment_mode_checkout_is_ignored():
    session = so.checkout_session(session_id="cs_1", customer="cus_2", subscription_id=None,
                                  client_reference_id="user-2", mode="payment")
    assert "payment-mode" in translate(so.event("checkout.session.completed", session)).ignored_reason


def test_event_types_of_no_interest_are_ignored_with_a_reason():
    translation = translate(so.event("payment_intent.created", {"id": "pi_1", "object": "payment_intent"}))
    assert translation.is_empty and "payment_intent.created" in translation.ignored_reason


@pytest.mark.parametrize("shape", so.SHAPES)
def test_an_invoice_without_a_subscription_is_ignored(shape):
    invoice = so.invoice(shape, invoice_id="in_1", customer="cus_1", subscription_id=None)
    assert translate(so.event("invoice.paid", invoice, shape=shape)).ignored_reason


@pytest.mark.parametrize("shape", so.SHAPES)
def test_an_invoice_needs_the_api_so_without_a_key_it_is_deferred(shape):
    invoice = so.invoice(shape, invoice_id="in_1", customer="cus_1", subscription_id="sub_1")
    with pytest.raises(StoreApiError):
        translate(so.event("invoice.paid", invoice, shape=shape))


def test_the_signature_header_is_the_documented_construction():
    header = generate_header("{}", "whsec_test", timestamp=1_700_000_000)
    assert header.startswith("t=1700000000,v1=") and len(header.split("v1=")[1]) == 64


def _rolled_header(payload: str, timestamp: int, *secrets_in_order: str) -> str:
    """The header while an endpoint's secret is rolled with an expiry: one ``v1`` per secret
    still signing (stripe-python's ``verify_header`` accepts any of them), and a test-mode
    ``v0``, which is never to be trusted (https://docs.stripe.com/webhooks#verify-events)."""
    sigs = [generate_header(payload, s, timestamp=timestamp).split(",")[1] for s in secrets_in_order]
    return ",".join([f"t={timestamp}", *sigs, "v0=" + "0" * 64])


@pytest.mark.parametrize("order", ["known-first", "known-last"])
def test_a_header_signed_by_the_rolled_and_the_new_secret_is_verified_by_either(order):
    payload, unknown = json.dumps(sub_event("basil")), new_secret()
    secrets_in_order = (SECRET, unknown) if order == "known-first" else (unknown, SECRET)
    header = _rolled_header(payload, int(time.time()), *secrets_in_order)
    assert SOURCE.verify(payload.encode(), {"Stripe-Signature": header}).event_type == "customer.subscription.updated"


def test_a_rolled_header_past_the_tolerance_is_stale_and_one_of_no_known_secret_invalid():
    payload = json.dumps(sub_event("basil"))
    for secrets_in_order, timestamp, code in (((new_secret(), SECRET), int(time.time()) - 301, "stale_signature"),
                                              ((new_secret(), new_secret()), int(time.time()), "invalid_signature")):
        with pytest.raises(Unauthorized) as refused:
            SOURCE.verify(payload.encode(), {"Stripe-Signature": _rolled_header(payload, timestamp, *secrets_in_order)})
        assert refused.value.code == code
