"""Stripe events applied through ingest to the in-memory store, with the local Stripe fake:
ordering, re-fetching, refunds and disputes, owners, and a Stripe that is down."""
from __future__ import annotations

import dataclasses
import itertools
import time
from datetime import datetime, timedelta, timezone

import pytest

from devtools import stripe_objects as so
from gateway.domain.model import Revocations, Status
from tests.support.stripe_harness import StripeHarness
from tests.support.stripe_gateway import fake, stripe_server  # noqa: F401 (fixtures)
from tests.support.stripe_scenarios import signup


@pytest.fixture
def h(fake):
    return StripeHarness(fake)


def premium(h, user="user-1") -> dict:
    return h.answer(user)["entitlements"].get("premium") or {}


def at(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize("shape", so.SHAPES)
def test_a_newer_subscription_event_is_taken_from_its_body(h, fake, shape):
    s = signup(fake)
    assert h.deliver(so.event("customer.subscription.created", s.subscription(shape), shape=shape)) == "processed"
    assert premium(h) == {"active": True, "status": "active", "expires_at": at(s.end), "will_renew": True,
                          "source": "stripe", "product_id": "price_monthly"}
    assert not fake.requests_to("/v1/subscriptions")


@pytest.mark.parametrize("shape", so.SHAPES)
def test_an_event_not_strictly_newer_is_replaced_by_the_fetched_subscription(h, fake, shape):
    s = signup(fake)
    t = int(time.time()) - 10
    h.deliver(so.event("customer.subscription.updated", s.subscription(shape), shape=shape, created=t))
    fake.put(s.subscription(status="past_due"))  # what Stripe holds now
    stale = so.event("customer.subscription.updated", s.subscription(shape, status="unpaid"), shape=shape, created=t)
    h.deliver(stale)
    assert premium(h)["status"] == "grace_period" and len(fake.requests_to("/v1/subscriptions")) == 1
    assert h.stored(s.sub_id).snapshot.as_of > datetime.fromtimestamp(t + 1, timezone.utc)


@pytest.mark.parametrize("shape", so.SHAPES)
def test_a_fetch_outranks_an_older_event_delivered_late_while_the_gateways_clock_runs_behind(fake, shape):
    """The gateway's clock runs two minutes behind Stripe's. Stripe cancels a subscription
    whose payments failed; the last failure's event is delivered before the cancellation's,
    and its fetch shows the subscription canceled. An update made before the cancellation
    (past due), delivered late, is older than that fetch: it must not give access back
    until the cancellation's own event arrives. Stamped by the gateway's clock alone, the
    fetch ranked two minutes older than it was, below the late update."""
    h = StripeHarness(fake, behind=timedelta(minutes=2))
    s = signup(fake)
    t = int(time.time())
    fake.put(s.subscription(status="canceled", ended_at=t - 5, canceled_at=t - 5))
    failed = so.event("invoice.payment_failed", s.invoice(shape, status="open"), shape=shape, created=t - 6)
    assert h.deliver(failed) == "processed" and premium(h)["status"] == "expired"
    late = so.event("customer.subscription.updated", s.subscription(shape, status="past_due"), shape=shape,
                    created=t - 6)
    assert h.deliver(late) == "processed"
    assert (premium(h)["status"], premium(h)["active"]) == ("expired", False)
    assert h.stored(s.sub_id).snapshot.as_of >= datetime.fromtimestamp(t, timezone.utc)


def test_an_event_after_a_fetch_is_still_taken_from_its_body_while_the_gateways_clock_runs_behind(fake):
    """The fetch is stamped by Stripe's clock, not beyond it: an event Stripe made after
    the answer (a later second) is newer, and read from its body without asking again."""
    h = StripeHarness(fake, behind=timedelta(minutes=2))
    s = signup(fake)
    assert h.deliver(so.event("invoice.paid", s.invoice())) == "processed" and premium(h)["status"] == "active"
    ended = s.subscription(status="canceled", ended_at=int(time.time()) + 2)
    assert h.deliver(so.event("customer.subscription.deleted", ended, created=int(time.time()) + 2)) == "processed"
    assert premium(h)["status"] == "expired" and len(fake.requests_to("/v1/subscriptions")) == 1


@pytest.mark.parametrize("shape", so.SHAPES)
def test_a_late_update_after_deletion_does_not_restore_access(h, fake, shape):
    s = signup(fake)
    t = int(time.time()) - 10
    ended = s.subscription(shape, status="canceled", ended_at=t + 5, canceled_at=t + 5)
    fake.put(s.subscription(status="canceled", ended_at=t + 5, canceled_at=t + 5))
    h.deliver(so.event("customer.subscription.deleted", ended, shape=shape, created=t + 5))
    h.deliver(so.event("customer.subscription.updated", s.subscription(shape), shape=shape, created=t + 3))
    assert premium(h) == {"active": False, "status": "expired", "expires_at": at(t + 5), "will_renew": False,
                          "source": "stripe", "product_id": "price_monthly"}


@pytest.mark.parametrize("shape", so.SHAPES)
@pytest.mark.parametrize("kind, held, status", [
    ("invoice.paid", "active", "active"),
    ("invoice.payment_failed", "past_due", "grace_period"),
    ("invoice.payment_failed", "unpaid", "billing_retry"),
])
def test_invoices_apply_the_fetched_subscription(h, fake, shape, kind, held, status):
    s = signup(fake)
    fake.put(s.subscription(status=held, end=s.end + 30 * so.DAY))
    assert h.deliver(so.event(kind, s.invoice(shape, status="paid" if held == "active" else "open"),
                              shape=shape)) == "processed"
    assert (premium(h)["status"], premium(h)["expires_at"]) == (status, at(s.end + 30 * so.DAY))


@pytest.mark.parametrize("shape", so.SHAPES)
def test_a_full_refund_revokes_access(h, fake, shape):
    s = signup(fake)
    h.deliver(so.event("customer.subscription.created", s.subscription(shape), shape=shape))
    s.refund(fake)
    refunded = s.charge(shape, amount_refunded=999)
    assert h.deliver(so.event("charge.refunded", refunded, shape=shape)) == "processed"
    assert premium(h)["status"] == "revoked" and premium(h)["active"] is False
    assert h.stored(s.sub_id).snapshot.raw_status == "active:refunded"
    # basil+ charges name no invoice: the Invoice Payments API maps the PaymentIntent to it.
    assert bool(fake.requests_to("/v1/invoice_payments")) is (shape == "basil")


@pytest.mark.parametrize("shape", so.SHAPES)
@pytest.mark.parametrize("another_stands", [False, True])
def test_a_revocation_named_by_invoice_before_refunds_were_is_given_back_when_its_refund_fails(
        h, fake, shape, another_stands):
    """Stored before refunds named their cause: ``refunded:<invoice>``. The refund's failure
    gives it back while the charge, as Stripe shows it now, is not refunded in full."""
    s = signup(fake)
    h.deliver(so.event("customer.subscription.created", s.subscription(shape), shape=shape))
    refund = s.refund(fake)
    with h.store.transaction() as tx:
        held = tx.get_subscription("stripe", s.sub_id)
        taken = frozenset({(f"refunded:{s.invoice_id}", held.latest.expires_at, held.latest.period_id)})
        tx.save_subscriptions([dataclasses.replace(held, revocations=Revocations(taken))], datetime.now(timezone.utc))
    assert h.stored(s.sub_id).snapshot.status is Status.REVOKED
    failed = s.refund(fake, refund_id=refund["id"], status="failed")
    if another_stands:
        s.refund(fake)  # refunded again before the failure was told: the charge is refunded in full
    assert h.deliver(so.event("refund.failed", failed, shape=shape)) == "processed"
    assert h.stored(s.sub_id).snapshot.status is (Status.REVOKED if another_stands else Status.ACTIVE)


@pytest.mark.parametrize("shape", so.SHAPES)
def test_a_partial_refund_leaves_access(h, fake, shape):
    s = signup(fake)
    s.refund(fake, 300)
    h.deliver(so.event("charge.refunded", s.charge(shape, amount_refunded=300), shape=shape))
    assert premium(h)["status"] == "active"


def test_refunding_an_older_period_leaves_the_current_one(h, fake):
    s = signup(fake)
    fake.put(s.subscription(start=s.end, end=s.end + 30 * so.DAY, latest_invoice="in_newer"))  # renewed
    s.refund(fake)
    h.deliver(so.event("charge.refunded", s.charge(amount_refunded=999)))
    assert premium(h)["status"] == "active"


@pytest.mark.parametrize("shape, via_charge", [("legacy", False), ("basil", False), ("basil", True)])
def test_a_dispute_revokes_access(h, fake, shape, via_charge):
    s = signup(fake)
    dispute = so.dispute(dispute_id=so.new_id("dp"), charge_id=s.charge_id,
                         payment_intent=None if via_charge else s.payment_intent)
    if via_charge:
        fake.put(s.charge("legacy"))  # an older dispute: found through its charge's invoice
    assert h.deliver(so.event("charge.dispute.created", dispute, shape=shape)) == "processed"
    assert premium(h)["status"] == "revoked"
    assert h.stored(s.sub_id).snapshot.raw_status == "active:disputed"


def test_a_revocation_holds_for_the_period_and_a_renewal_ends_it(h, fake):
    s = signup(fake)
    s.refund(fake)
    h.deliver(so.event("charge.refunded", s.charge(amount_refunded=999)))
    h.deliver(so.event("customer.subscription.updated", s.subscription(), created=int(time.time()) + 2))
    assert premium(h)["status"] == "revoked"
    renewed = s.subscription(start=s.end, end=s.end + 30 * so.DAY, latest_invoice="in_next")
    h.deliver(so.event("customer.subscription.updated", renewed, created=int(time.time()) + 3))
    assert premium(h)["status"] == "active"


@pytest.mark.parametrize("shape", so.SHAPES)
def test_pause_and_resume(h, fake, shape):
    s = signup(fake)
    t = int(time.time())
    h.deliver(so.event("customer.subscription.paused", s.subscription(shape, status="paused"), shape=shape, created=t))
    assert premium(h)["status"] == "paused"
    h.deliver(so.event("customer.subscription.resumed", s.subscription(shape), shape=shape, created=t + 1))
    assert premium(h)["status"] == "active"


def test_a_remembered_customer_names_the_owner_without_asking_stripe(h, fake):
    s = signup(fake, named=False)
    h.deliver(so.event("customer.created", so.customer(customer_id=s.customer, cognito_sub=s.user)))
    h.deliver(so.event("customer.subscription.created", s.subscription()))
    assert premium(h)["active"] and not fake.requests_to("/v1/customers")


def test_the_customer_metadata_is_fetched_once_and_remembered(h, fake):
    s = signup(fake, named=False, customer_names_user=True)
    t = int(time.time())
    h.deliver(so.event("customer.subscription.created", s.subscription(), created=t))
    h.deliver(so.event("customer.subscription.updated", s.subscription(), created=t + 1))
    assert premium(h)["active"] and len(fake.requests_to("/v1/customers")) == 1


def test_an_unknown_owner_is_stored_and_attached_when_the_customer_names_it(h, fake):
    s = signup(fake, named=False)
    h.deliver(so.event("customer.subscription.created", s.subscription()))
    assert h.stored(s.sub_id).owner is None and premium(h) == {}
    h.deliver(so.event("customer.updated", so.customer(customer_id=s.customer, cognito_sub=s.user)))
    assert premium(h)["active"]


def test_a_duplicate_changes_nothing_and_asks_stripe_nothing(h, fake):
    s = signup(fake)
    event = so.event("invoice.paid", s.invoice())
    assert [h.deliver(event), h.deliver(event)] == ["processed", "duplicate"]
    assert len(fake.requests_to("/v1/subscriptions")) == 1


def test_stripe_down_defers_and_the_retry_worker_applies_it_later(h, fake):
    s = signup(fake)
    fake.fail_with(503)
    event = so.event("invoice.paid", s.invoice())
    assert h.deliver(event) == "deferred" and premium(h) == {}
    assert "503" in h.event(event["id"]).last_error
    fake.recover()
    assert h.retry() == {"processed": 1}
    assert premium(h)["active"]


def test_a_stripe_that_hangs_is_given_up_on_within_the_timeout(fake):
    h = StripeHarness(fake, timeout=0.3)
    s = signup(fake)
    fake.hang(1.0)
    started = time.monotonic()
    assert h.deliver(so.event("invoice.paid", s.invoice())) == "deferred"
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("shape", so.SHAPES)
@pytest.mark.parametrize("named", [True, False])
@pytest.mark.parametrize("behind", [timedelta(0), timedelta(minutes=2)], ids=["in-time", "gateway-behind"])
def test_every_order_of_a_signup_burst_ends_in_the_same_answer(fake, shape, named, behind):
    answers = set()
    for order in itertools.permutations(range(4)):
        h = StripeHarness(fake, behind=behind)
        s = signup(fake, user=f"user-{'-'.join(map(str, order))}", named=named)
        burst = s.burst(shape)
        outcomes = [h.deliver(burst[i]) for i in order]
        assert set(outcomes) == {"processed"}, outcomes
        answer = h.answer(s.user)
        answers.add(repr({**answer, "user_id": None, "entitlements": {
            name: {**grant, "expires_at": grant["expires_at"] and "set"}
            for name, grant in answer["entitlements"].items()}}))
        assert answer["entitlements"]["premium"]["expires_at"] == at(s.end)
    assert len(answers) == 1 and "'active': True" in answers.pop()
