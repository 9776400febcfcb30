"""Stripe deliveries through the WSGI app, with real signatures and the local Stripe fake,
read back through the entitlement API."""
from __future__ import annotations

import itertools
import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from devtools import stripe_objects as so
from devtools.stripe_signing import new_secret, signed
from tests.e2e.conftest import API_KEY, count_events
from tests.support.stripe_gateway import fake, stripe_catalog, stripe_server  # noqa: F401 (fixtures)
from tests.fakes.stripe_billing import StripeBilling
from tests.support.events import find_event
from tests.support.stripe_scenarios import signup

OLD_SECRET, SECRET = new_secret(), new_secret()


@pytest.fixture
def app(make_app, fake, stripe_catalog):
    return make_app(STRIPE_WEBHOOK_SECRETS=f"{OLD_SECRET},{SECRET}", STRIPE_API_KEY=fake.api_key,
                    STRIPE_API_BASE=fake.url, GATEWAY_API_KEYS=API_KEY, CATALOG_PATH=stripe_catalog)


@pytest.fixture
def client(app):
    return app.test_client()


def send(client, event, secret=SECRET, **overrides):
    body, headers = signed(event, secret, **overrides)
    return client.post("/webhooks/stripe", data=body, headers=headers)


def status_of(response) -> tuple:
    return response.status_code, response.get_json().get("status") or response.get_json().get("error")


def premium(api, client, user="user-1") -> dict:
    return api(client, user)["entitlements"].get("premium") or {}


def iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("shape", so.SHAPES)
@pytest.mark.parametrize("order", list(itertools.permutations(range(4))), ids=lambda order: "".join(map(str, order)))
def test_every_order_of_a_signup_burst_grants_the_same_premium(client, api, fake, shape, order):
    s = signup(fake, named=False)  # only Checkout's client_reference_id names the user
    burst = s.burst(shape)
    assert [status_of(send(client, burst[i])) for i in order] == [(200, "processed")] * 4
    assert api(client, s.user) == {"user_id": s.user, "is_premium": True, "entitlements": {"premium": {
        "active": True, "status": "active", "expires_at": iso(s.end), "will_renew": True,
        "source": "stripe", "product_id": "price_monthly"}}}


@pytest.mark.parametrize("shape", so.SHAPES)
def test_a_burst_delivered_concurrently_and_twice_grants_premium_once(app, api, fake, shape):
    s = signup(fake, named=False)
    burst = s.burst(shape) * 2  # Stripe retries while the first delivery is still in flight
    with ThreadPoolExecutor(len(burst)) as pool:
        statuses = list(pool.map(lambda event: status_of(send(app.test_client(), event)), burst))
    assert sorted(statuses) == [(200, "duplicate")] * 4 + [(200, "processed")] * 4
    assert count_events(app) == 4
    assert premium(api, app.test_client(), s.user) == {
        "active": True, "status": "active", "expires_at": iso(s.end), "will_renew": True,
        "source": "stripe", "product_id": "price_monthly"}


def test_a_duplicate_delivery_changes_nothing(app, client, api, fake):
    s = signup(fake)
    event = so.event("invoice.paid", s.invoice())
    assert [status_of(send(client, event)) for _ in range(2)] == [(200, "processed"), (200, "duplicate")]
    assert count_events(app) == 1 and premium(api, client)["active"] is True


@pytest.mark.parametrize("shape", so.SHAPES)
def test_a_late_update_after_deletion_leaves_the_subscription_expired(client, api, fake, shape):
    s = signup(fake)
    t = int(time.time()) - 20
    fake.put(s.subscription(status="canceled", ended_at=t + 10, canceled_at=t + 10))
    send(client, so.event("customer.subscription.deleted", s.subscription(
        shape, status="canceled", ended_at=t + 10, canceled_at=t + 10), shape=shape, created=t + 10))
    late = send(client, so.event("customer.subscription.updated", s.subscription(shape), shape=shape, created=t))
    assert status_of(late) == (200, "processed")
    assert premium(api, client) == {"active": False, "status": "expired", "expires_at": iso(t + 10),
                                    "will_renew": False, "source": "stripe", "product_id": "price_monthly"}


@pytest.mark.parametrize("shape", so.SHAPES)
@pytest.mark.parametrize("kind", ["charge.refunded", "charge.dispute.created"])
def test_a_full_refund_or_a_dispute_revokes_premium(client, api, fake, shape, kind):
    s = signup(fake)
    send(client, so.event("customer.subscription.created", s.subscription(shape), shape=shape))
    assert premium(api, client)["active"] is True
    if kind == "charge.refunded":
        s.refund(fake)
    obj = s.charge(shape, amount_refunded=999) if kind == "charge.refunded" else \
        so.dispute(dispute_id=so.new_id("dp"), charge_id=s.charge_id, payment_intent=s.payment_intent)
    assert status_of(send(client, so.event(kind, obj, shape=shape))) == (200, "processed")
    assert (premium(api, client)["status"], api(client, s.user)["is_premium"]) == ("revoked", False)


def test_a_dispute_won_gives_the_period_back_and_one_lost_keeps_it_revoked(client, api, fake):
    s = signup(fake)
    send(client, so.event("customer.subscription.created", s.subscription()))
    dispute = so.dispute(dispute_id=so.new_id("dp"), charge_id=s.charge_id, payment_intent=s.payment_intent)
    send(client, so.event("charge.dispute.created", dispute))
    assert premium(api, client)["status"] == "revoked"
    closed = send(client, so.event("charge.dispute.closed", {**dispute, "status": "won"}))
    assert status_of(closed) == (200, "processed") and premium(api, client)["status"] == "active"
    # A later view of the same period stays active; a second dispute, lost, revokes again.
    send(client, so.event("customer.subscription.updated", s.subscription()))
    assert premium(api, client)["status"] == "active"
    again = {**dispute, "id": so.new_id("dp")}
    send(client, so.event("charge.dispute.created", again))
    send(client, so.event("charge.dispute.closed", {**again, "status": "lost"}))
    assert premium(api, client)["status"] == "revoked"


def test_an_inquiry_is_not_a_chargeback(client, api, fake):
    s = signup(fake)
    send(client, so.event("customer.subscription.created", s.subscription()))
    inquiry = {**so.dispute(dispute_id=so.new_id("dp"), charge_id=s.charge_id, payment_intent=s.payment_intent),
               "status": "warning_needs_response"}
    assert status_of(send(client, so.event("charge.dispute.created", inquiry))) == (200, "ignored")
    assert premium(api, client)["status"] == "active"


@pytest.mark.parametrize("told_by", ["charge.dispute.updated", "charge.dispute.funds_withdrawn"])
def test_an_inquiry_that_escalates_into_a_chargeback_takes_the_period_back(client, api, fake, told_by):
    """Stripe keeps the inquiry's dispute id when it escalates: no second
    charge.dispute.created, only an update of the status and the funds withdrawn."""
    s = signup(fake)
    send(client, so.event("customer.subscription.created", s.subscription()))
    dispute = so.dispute(dispute_id=so.new_id("dp"), charge_id=s.charge_id, payment_intent=s.payment_intent)
    inquiry = {**dispute, "status": "warning_needs_response"}
    assert status_of(send(client, so.event("charge.dispute.created", inquiry))) == (200, "ignored")
    under_review = {**dispute, "status": "warning_under_review"}
    assert status_of(send(client, so.event("charge.dispute.updated", under_review))) == (200, "ignored")
    assert premium(api, client)["status"] == "active"
    escalated = send(client, so.event(told_by, {**dispute, "status": "needs_response"}))
    assert status_of(escalated) == (200, "processed") and premium(api, client)["status"] == "revoked"
    # The other event of the escalation, and an update with evidence: the same cause, once.
    for kind, status in (("charge.dispute.funds_withdrawn", "needs_response"), ("charge.dispute.updated", "under_review")):
        send(client, so.event(kind, {**dispute, "status": status}))
    won = send(client, so.event("charge.dispute.closed", {**dispute, "status": "won"}))
    assert status_of(won) == (200, "processed") and premium(api, client)["status"] == "active"
    late = send(client, so.event("charge.dispute.updated", {**dispute, "status": "under_review"}, created=int(time.time()) - 60))
    assert status_of(late) == (200, "processed") and premium(api, client)["status"] == "active"  # won stays won


def test_an_inquiry_closed_without_escalating_changes_nothing(client, api, fake):
    s = signup(fake)
    send(client, so.event("customer.subscription.created", s.subscription()))
    dispute = so.dispute(dispute_id=so.new_id("dp"), charge_id=s.charge_id, payment_intent=s.payment_intent)
    for kind, status in (("charge.dispute.created", "warning_needs_response"),
                         ("charge.dispute.updated", "warning_under_review"), ("charge.dispute.closed", "warning_closed")):
        assert status_of(send(client, so.event(kind, {**dispute, "status": status}))) == (200, "ignored")
    assert premium(api, client)["status"] == "active"


def test_a_payment_links_client_reference_id_names_no_one(client, api, fake):
    """Anyone can add ?client_reference_id= to a Payment Link's URL: a customer paying
    through such a link must not be handed to whoever the link names."""
    s = signup(fake, user="payer", named=False)
    session = {**s.session(), "client_reference_id": "someone-else", "payment_link": so.new_id("plink")}
    assert status_of(send(client, so.event("checkout.session.completed", session)))[0] == 200
    assert premium(api, client, "someone-else") == {}
    ours = {**s.session(), "client_reference_id": "someone-else", "metadata": {"cognito_sub": "payer"}}
    send(client, so.event("checkout.session.completed", ours))  # the gateway's own session: metadata names
    assert premium(api, client, "payer")["active"] is True and premium(api, client, "someone-else") == {}


def test_cancel_at_period_end_keeps_premium_until_the_period_ends(client, api, fake):
    s = signup(fake)
    send(client, so.event("customer.subscription.updated", s.subscription(cancel_at_period_end=True),
                          previous={"cancel_at_period_end": False}))
    assert premium(api, client) == {"active": True, "status": "active", "expires_at": iso(s.end),
                                    "will_renew": False, "source": "stripe", "product_id": "price_monthly"}


def test_a_trial_that_ended_without_a_payment_method_is_paused_and_does_not_renew(client, api, fake):
    """``trial_settings.end_behavior.missing_payment_method=pause``: the trial ends in status
    ``paused``, and Stripe creates no invoices until it is resumed
    (https://docs.stripe.com/billing/subscriptions/trials#create-free-trials-without-payment)."""
    s, t = signup(fake), int(time.time())
    trial = s.subscription(status="trialing", trial_start=s.start, trial_end=s.end,
                           trial_settings={"end_behavior": {"missing_payment_method": "pause"}})
    send(client, so.event("customer.subscription.created", trial, created=t - 1))
    assert premium(api, client)["status"] == "active"  # a trial grants
    paused = {**trial, "status": "paused", "default_payment_method": None}
    send(client, so.event("customer.subscription.paused", paused, created=t))
    assert premium(api, client) == {"active": False, "status": "paused", "expires_at": iso(s.end),
                                    "will_renew": False, "source": "stripe", "product_id": "price_monthly"}


@pytest.mark.parametrize("overrides", [
    {"secret": new_secret()},
    {"signature": "a" * 64},
    {"timestamp": int(time.time()) - 301},
])
def test_forged_or_stale_signatures_are_401_and_store_nothing(app, client, api, fake, overrides):
    s = signup(fake)
    response = send(client, so.event("customer.subscription.created", s.subscription()), **overrides)
    assert response.status_code == 401 and count_events(app) == 0
    assert premium(api, client) == {}


def test_a_missing_signature_is_401_and_stores_nothing(app, client, fake):
    response = client.post("/webhooks/stripe", data=json.dumps(so.event("customer.created", so.customer(
        customer_id="cus_1"))), headers={"Content-Type": "application/json"})
    assert status_of(response) == (401, "missing_signature") and count_events(app) == 0


def test_the_previous_secret_still_verifies_during_rotation(client, api, fake):
    s = signup(fake)
    response = send(client, so.event("customer.subscription.created", s.subscription()), secret=OLD_SECRET)
    assert status_of(response) == (200, "processed") and premium(api, client)["active"] is True


@pytest.mark.parametrize("payload", ["{not json", json.dumps({"id": "evt_1", "type": "invoice.paid"})])
def test_a_signed_but_malformed_body_is_400_and_stores_nothing(app, client, payload):
    response = send(client, payload)
    assert response.status_code == 400 and count_events(app) == 0


def test_an_event_type_of_no_interest_is_recorded_and_ignored(app, client):
    event = so.event("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent"})
    assert status_of(send(client, event)) == (200, "ignored") and count_events(app) == 1


def test_stripe_down_defers_and_the_retry_command_applies_it_after_recovery(app, client, api, fake):
    s = signup(fake)
    fake.fail_with(503)
    assert status_of(send(client, so.event("invoice.paid", s.invoice()))) == (200, "deferred")
    assert premium(api, client) == {}
    fake.recover()
    _time_passes(app, timedelta(hours=7))  # past the longest backoff
    result = app.test_cli_runner().invoke(args=["events", "retry"])
    assert result.exit_code == 0 and "processed: 1" in result.output
    assert premium(api, client)["active"] is True


def test_stripe_unconfigured_answers_503(make_app):
    client = make_app().test_client()
    response = send(client, so.event("customer.created", so.customer(customer_id="cus_1")))
    assert status_of(response) == (503, "source_not_configured")


def _time_passes(app, how_long: timedelta) -> None:
    """Move the deferred events' next attempt back in time, as waiting would."""
    engine = app.extensions["gateway"].store.engine
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE events SET next_attempt_at = :at WHERE status = 'deferred'"),
                           {"at": datetime.now(timezone.utc) - how_long})


def _after(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


@pytest.mark.parametrize("order", ["subscription first", "session first"])
def test_a_checkout_session_holds_the_customer_over_its_metadata_in_either_order(client, api, fake, order):
    """The customer's metadata names user-A (set when the customer was made); a Checkout
    Session completed later on that customer names user-B. The session is the later
    statement by Stripe's clock, so user-B holds the subscription whichever delivery
    arrives first (the session is delivered after it completed; the subscription's event
    before it completed, or after)."""
    s = signup(fake, user="user-A", named=False, customer_names_user=True)
    t0 = int(time.time()) + 1
    created = so.event("customer.subscription.created", s.subscription(), created=t0 - 2)
    completed = so.event("checkout.session.completed", {**s.session(), "client_reference_id": "user-B"}, created=t0)
    if order == "subscription first":
        assert status_of(send(client, created)) == (200, "processed")
    _after(t0 + 0.2)
    assert status_of(send(client, completed)) == (200, "processed")
    if order == "session first":
        assert status_of(send(client, created)) == (200, "processed")
    assert (api(client, "user-A")["is_premium"], api(client, "user-B")["is_premium"]) == (False, True)


def in_mode(event: dict, livemode: bool) -> dict:
    """``event`` as Stripe sends it from live or test mode: the event and its object say so."""
    return {**event, "livemode": livemode, "data": {**event["data"], "object": {**event["data"]["object"],
                                                                            "livemode": livemode}}}


def test_a_test_mode_event_grants_nothing_at_a_gateway_whose_key_is_live(make_app, api, stripe_catalog):
    """An endpoint of each mode may point at one gateway, whose STRIPE_WEBHOOK_SECRETS then
    hold both secrets: a test-mode purchase (a test card) must not grant a live user, and
    the live key could not read its objects anyway (https://docs.stripe.com/keys: objects
    of one mode are not accessible to the other)."""
    with StripeBilling(api_key="sk_live_gateway_4242") as live:
        client = make_app(STRIPE_WEBHOOK_SECRETS=SECRET, STRIPE_API_KEY=live.api_key, STRIPE_API_BASE=live.url,
                          GATEWAY_API_KEYS=API_KEY, CATALOG_PATH=stripe_catalog).test_client()
        s = signup(live)
        for kind, obj in (("customer.subscription.created", s.subscription()),
                          ("checkout.session.completed", s.session()), ("invoice.paid", s.invoice())):
            assert status_of(send(client, in_mode(so.event(kind, obj), livemode=False))) == (200, "ignored")
        assert premium(api, client) == {} and not live.requests_to("/v1/")
        live_event = in_mode(so.event("customer.subscription.created", s.subscription()), livemode=True)
        assert status_of(send(client, live_event)) == (200, "processed") and premium(api, client)["active"] is True


def test_a_live_event_changes_nothing_at_a_gateway_whose_key_is_for_test_mode(client, api, fake):
    s = signup(fake)
    send(client, so.event("customer.subscription.created", s.subscription()))
    deleted = so.event("customer.subscription.deleted", s.subscription(status="canceled", ended_at=int(time.time())))
    assert status_of(send(client, in_mode(deleted, livemode=True))) == (200, "ignored")
    assert premium(api, client)["active"] is True


def of_connected_account(event: dict, account: str = "acct_1ConnectedShop") -> dict:
    """``event`` as a Connect endpoint receives it: from a connected account, named by the
    top-level ``account`` (https://docs.stripe.com/connect/webhooks)."""
    return {**event, "account": account}


@pytest.mark.parametrize("kind", ["customer.subscription.deleted", "invoice.payment_failed", "charge.refunded",
                                  "checkout.session.completed", "customer.updated"])
def test_an_event_of_a_connected_account_is_stored_ignored_and_changes_nothing(app, client, api, fake, kind):
    """A Connect endpoint's event is about the connected account's objects, which the
    platform's key does not read: fetched as the platform's, an id the platform also holds
    (here the platform's own subscription, customer and invoice) would be found and applied.
    Neither its body nor a fetch applies, whatever its time, and its resend is a duplicate."""
    s = signup(fake)
    assert status_of(send(client, so.event("customer.subscription.created", s.subscription()))) == (200, "processed")
    fake.put(s.subscription(status="canceled", ended_at=int(time.time())))  # what the platform's copy now says
    s.refund(fake)
    objects = {"customer.subscription.deleted": s.subscription(status="canceled", ended_at=int(time.time())),
               "invoice.payment_failed": s.invoice(status="open"), "charge.refunded": s.charge(amount_refunded=999),
               "checkout.session.completed": {**s.session(), "client_reference_id": "user-2"},
               "customer.updated": so.customer(customer_id=s.customer, cognito_sub="user-2")}
    requests_before = len(fake.requests)
    event = of_connected_account(so.event(kind, objects[kind], created=int(time.time()) + 5))
    assert status_of(send(client, event)) == (200, "ignored")
    assert status_of(send(client, event)) == (200, "duplicate")
    assert premium(api, client)["active"] is True and api(client, "user-2")["entitlements"] == {}
    assert len(fake.requests) == requests_before
    with app.extensions["gateway"].store.transaction() as tx:
        stored = find_event(tx, "stripe", event["id"])
    assert stored.status == "ignored" and "connected account acct_1ConnectedShop" in stored.last_error


def test_an_event_of_the_platform_itself_carries_no_account_and_applies(client, api, fake):
    s = signup(fake)
    event = so.event("customer.subscription.created", s.subscription())
    assert status_of(send(client, {**event, "account": None})) == (200, "processed")
    assert premium(api, client)["active"] is True
