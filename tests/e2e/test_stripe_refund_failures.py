"""A Stripe refund that fails after it was made (the card was closed) returned nothing:
the period it took back is paid for again. Through the WSGI app with real signatures and
the local Stripe fake, read back through the entitlement API.

Stripe sets the refund's ``status`` to ``failed`` (``failure_reason`` says why), puts its
amount back on the charge (``amount_refunded``), and tells by ``charge.refund.updated``
and, in newer API versions, ``refund.failed`` and ``refund.updated``.

An invoice paid by several payments (partial payments on invoices, API version basil and
later) is refunded in full only when the refunds of all its payments add up to what it was
paid (https://docs.stripe.com/api/invoice-payment/list)."""
from __future__ import annotations

import dataclasses
import itertools
import json
import time

import pytest

from devtools import stripe_objects as so
from devtools.stripe_signing import new_secret, signed
from tests.e2e.conftest import API_KEY, count_events
from tests.support.stripe_gateway import fake, stripe_catalog, stripe_server  # noqa: F401 (fixtures)
from tests.support.stripe_scenarios import Signup, refund, signup

SECRET = new_secret()
FAILURE_TYPES = ["charge.refund.updated", "refund.failed", "refund.updated"]


@pytest.fixture
def app(make_app, fake, stripe_catalog):
    return make_app(STRIPE_WEBHOOK_SECRETS=SECRET, STRIPE_API_KEY=fake.api_key, STRIPE_API_BASE=fake.url,
                    GATEWAY_API_KEYS=API_KEY, CATALOG_PATH=stripe_catalog)


@pytest.fixture
def client(app):
    return app.test_client()


def send(client, event, secret: str = SECRET, **overrides):
    body, headers = signed(event, secret, **overrides)
    return client.post("/webhooks/stripe", data=body, headers=headers)


def deliver(client, event) -> str:
    response = send(client, event)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["status"]


def status(api, client) -> str:
    return (api(client, "user-1")["entitlements"].get("premium") or {}).get("status")


def stored(app, key: str):
    with app.extensions["gateway"].store.transaction(readonly=True) as tx:
        return tx.get_subscription("stripe", key)


def subscribed(client, fake, shape: str = "basil"):
    s = signup(fake)
    deliver(client, so.event("customer.subscription.created", s.subscription(shape), shape=shape,
                             created=int(time.time()) - 30))
    return s


def refunded(s, shape: str = "basil", amount: int = 999, created: int | None = None) -> dict:
    """``charge.refunded`` as Stripe renders it when the refund is made."""
    return so.event("charge.refunded", s.charge(shape, amount_refunded=amount), shape=shape, created=created)


@pytest.mark.parametrize("shape", so.SHAPES)
@pytest.mark.parametrize("kind", FAILURE_TYPES)
def test_a_full_refund_that_fails_gives_the_period_back(client, api, fake, shape, kind):
    s = subscribed(client, fake, shape)
    refund = s.refund(fake)
    assert deliver(client, refunded(s, shape)) == "processed"
    assert status(api, client) == "revoked"
    failed = s.refund(fake, refund_id=refund["id"], status="failed")
    assert deliver(client, so.event(kind, failed, shape=shape)) == "processed"
    assert status(api, client) == "active"


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))), ids=lambda o: "".join(map(str, o)))
def test_a_refund_that_failed_leaves_the_period_paid_for_in_every_order(client, api, fake, order):
    """Out of order: the failure may be told before the refund; a redelivery may come late."""
    s, t = subscribed(client, fake), int(time.time())
    refund = s.refund(fake)
    made = refunded(s, created=t)  # rendered before the failure: the charge refunded in full
    failed = s.refund(fake, refund_id=refund["id"], status="failed")
    told = [made, so.event("charge.refund.updated", failed, created=t + 5),
            so.event("refund.failed", failed, created=t + 5)]
    for i in order:
        assert deliver(client, told[i]) == "processed"
    assert status(api, client) == "active"


def test_duplicate_deliveries_of_a_refund_and_its_failure_end_with_the_period_given_back(client, api, fake):
    s = subscribed(client, fake)
    refund = s.refund(fake)
    made = refunded(s)
    assert [deliver(client, made) for _ in range(2)] == ["processed", "duplicate"]
    failure = so.event("refund.failed", s.refund(fake, refund_id=refund["id"], status="failed"))
    assert [deliver(client, failure) for _ in range(2)] == ["processed", "duplicate"]
    assert status(api, client) == "active"
    retried = json.loads(json.dumps(made))  # Stripe retries the refund's event, late: same id
    assert deliver(client, retried) == "duplicate" and status(api, client) == "active"


@pytest.mark.parametrize("shape", so.SHAPES)
def test_a_new_refund_after_a_failed_one_takes_the_period_back_again(client, api, fake, shape):
    s = subscribed(client, fake, shape)
    first = s.refund(fake)
    deliver(client, refunded(s, shape))
    deliver(client, so.event("refund.failed", s.refund(fake, refund_id=first["id"], status="failed"), shape=shape))
    assert status(api, client) == "active"
    s.refund(fake)  # the merchant refunds again, to another card: this one succeeds
    assert deliver(client, refunded(s, shape)) == "processed"
    assert status(api, client) == "revoked"
    # Its failure's event for the first refund, told again under a new id, gives nothing back.
    again = so.event("charge.refund.updated", fake.state.objects["refund"][first["id"]], shape=shape)
    assert deliver(client, again) == "processed" and status(api, client) == "revoked"


def test_two_partial_refunds_that_make_a_full_one_stand_only_while_both_do(client, api, fake):
    s = subscribed(client, fake)
    part = s.refund(fake, 300)
    assert deliver(client, refunded(s, amount=300)) == "processed" and status(api, client) == "active"
    s.refund(fake, 699)
    assert deliver(client, refunded(s)) == "processed" and status(api, client) == "revoked"
    failed = s.refund(fake, 300, refund_id=part["id"], status="failed")
    assert deliver(client, so.event("refund.failed", failed)) == "processed"
    assert status(api, client) == "active"  # 699 of 999 returned: a partial refund leaves access


def test_a_partial_refund_that_fails_changes_nothing(app, client, api, fake):
    s = subscribed(client, fake)
    part = s.refund(fake, 300)
    deliver(client, refunded(s, amount=300))
    before = stored(app, s.sub_id).revocations
    failed = s.refund(fake, 300, refund_id=part["id"], status="failed")
    assert deliver(client, so.event("refund.failed", failed)) == "processed"
    assert status(api, client) == "active"
    after = stored(app, s.sub_id).revocations
    assert after.taken == before.taken == frozenset()


@pytest.mark.parametrize("kind", FAILURE_TYPES)
def test_a_late_update_of_the_refund_from_before_it_failed_changes_nothing(client, api, fake, kind):
    """Stripe tells every change of a refund; only its failure (or cancellation) counts."""
    s, t = subscribed(client, fake), int(time.time())
    refund = s.refund(fake)
    deliver(client, refunded(s, created=t))
    failed = s.refund(fake, refund_id=refund["id"], status="failed")
    assert deliver(client, so.event(kind, failed, created=t + 5)) == "processed"
    late = so.event(kind, {**refund, "metadata": {"note": "before it failed"}}, created=t + 1)
    assert deliver(client, late) == "ignored" and status(api, client) == "active"


@pytest.mark.parametrize("overrides", [{"secret": new_secret()}, {"signature": "a" * 64},
                                       {"timestamp": int(time.time()) - 301}])
def test_a_forged_failure_is_401_stores_nothing_and_the_real_one_gives_the_period_back(
        app, client, api, fake, overrides):
    s = subscribed(client, fake)
    refund = s.refund(fake)
    deliver(client, refunded(s))
    events = count_events(app)
    failure = so.event("refund.failed", {**refund, "status": "failed"})
    assert send(client, failure, **overrides).status_code == 401 and count_events(app) == events
    assert status(api, client) == "revoked"
    s.refund(fake, refund_id=refund["id"], status="failed")
    assert deliver(client, failure) == "processed" and status(api, client) == "active"


@pytest.mark.parametrize("kind", FAILURE_TYPES)
@pytest.mark.parametrize("change", [
    {"id": None}, {"id": ""}, {"status": ["failed"]}, {"status": "f" * 65}, {"charge": "ch_" + "x" * 260},
], ids=["no id", "empty id", "status not text", "status too long", "charge id too long"])
def test_a_malformed_failure_is_400_and_stores_nothing(app, client, api, fake, kind, change):
    s = subscribed(client, fake)
    refund = s.refund(fake)
    deliver(client, refunded(s))
    events = count_events(app)
    response = send(client, so.event(kind, {**refund, "status": "failed", **change}))
    assert response.status_code == 400 and count_events(app) == events
    assert status(api, client) == "revoked"


def test_a_charge_refunded_in_full_by_more_than_a_page_of_refunds_is_revoked(client, api, fake):
    # GET /v1/refunds answers 100 a page at most; the oldest refund is on the second.
    s, t = subscribed(client, fake), int(time.time())
    fake.put({**s.refund(fake, 99), "created": t - 1000})
    for _ in range(100):
        s.refund(fake, 9)
    assert fake.state.objects["charge"][s.charge_id]["amount_refunded"] == 999
    assert deliver(client, refunded(s, created=t)) == "processed"
    assert status(api, client) == "revoked"


# An invoice paid by two payments, 500 then 499 of its 999.
FIRST, SECOND = 500, 499


@dataclasses.dataclass
class Payment:
    charge_id: str
    payment_intent: str
    amount: int


def paid_twice(client, api, fake, shape: str) -> tuple[Signup, list[Payment]]:
    """A subscriber whose first invoice (999) was paid by two payments, 500 then 499."""
    s = signup(fake)
    fake.state.objects["invoice_payment"].clear()
    payments = [Payment(s.charge_id, s.payment_intent, FIRST), Payment(so.new_id("ch"), so.new_id("pi"), SECOND)]
    for index, p in enumerate(payments):
        fake.put(payment_charge(s, p, shape))
        fake.pay(s.invoice_id, p.payment_intent, amount=p.amount, is_default=index == 0)
    assert deliver(client, so.event("customer.subscription.created", s.subscription(shape), shape=shape)) == "processed"
    assert status(api, client) == "active"
    return s, payments


def payment_charge(s: Signup, p: Payment, shape: str, refunded: int = 0) -> dict:
    return so.charge(shape, charge_id=p.charge_id, customer=s.customer, invoice_id=s.invoice_id,
                     payment_intent=p.payment_intent, amount=p.amount, amount_refunded=refunded)


def payment_refunded(fake, s: Signup, p: Payment, shape: str) -> dict:
    """Stripe refunds ``p`` in full; its ``charge.refunded`` event."""
    refund(fake, p.charge_id, p.payment_intent, p.amount)
    return so.event("charge.refunded", payment_charge(s, p, shape, refunded=p.amount), shape=shape)


def causes(app, s: Signup) -> set[str]:
    return {cause for cause, _, _ in stored(app, s.sub_id).revocations.taken}


@pytest.mark.parametrize("shape", so.SHAPES)
def test_one_of_two_payments_refunded_in_full_leaves_the_period_paid_for(app, client, api, fake, shape):
    s, (first, second) = paid_twice(client, api, fake, shape)
    assert deliver(client, payment_refunded(fake, s, first, shape)) == "processed"
    assert status(api, client) == "active"  # 499 of 999 is still paid
    assert causes(app, s) == set()
    assert deliver(client, payment_refunded(fake, s, second, shape)) == "processed"
    assert status(api, client) == "revoked"


@pytest.mark.parametrize("order", list(itertools.permutations(range(2))))
def test_both_payments_refunded_revoke_once_whichever_is_told_first(app, client, api, fake, order):
    s, payments = paid_twice(client, api, fake, "basil")
    events = [payment_refunded(fake, s, p, "basil") for p in payments]
    for index in order:
        assert deliver(client, events[index]) == "processed"
        assert status(api, client) == "revoked"
    refund_ids = sorted(fake.state.objects["refund"])
    assert causes(app, s) == {"refunded:" + "+".join(refund_ids)}


def test_a_refund_of_either_payment_that_fails_gives_the_period_back(app, client, api, fake):
    s, payments = paid_twice(client, api, fake, "basil")
    for p in payments:
        deliver(client, payment_refunded(fake, s, p, "basil"))
    assert status(api, client) == "revoked"
    first = next(r for r in fake.state.objects["refund"].values() if r["charge"] == payments[0].charge_id)
    failed = refund(fake, payments[0].charge_id, payments[0].payment_intent, FIRST, "failed", first["id"])
    assert deliver(client, so.event("refund.failed", failed)) == "processed"
    assert status(api, client) == "active"

