"""Which Stripe period a refund takes back, through the WSGI app with real signatures and
the local Stripe fake, read back through the entitlement API.

A refund takes back the period its invoice paid for: not a proration's difference, and not
more than that period when a scheduled cancellation is removed afterwards (Stripe's
``cancel_at`` shortens the period shown, not the one paid for)."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from devtools import stripe_objects as so
from devtools.stripe_signing import new_secret, signed
from tests.e2e.conftest import API_KEY
from tests.support.stripe_gateway import fake, stripe_catalog, stripe_server  # noqa: F401 (fixtures)
from tests.support.stripe_scenarios import refund, signup

SECRET = new_secret()


@pytest.fixture
def client(make_app, fake, stripe_catalog):
    return make_app(STRIPE_WEBHOOK_SECRETS=SECRET, STRIPE_API_KEY=fake.api_key, STRIPE_API_BASE=fake.url,
                    GATEWAY_API_KEYS=API_KEY, CATALOG_PATH=stripe_catalog).test_client()


def deliver(client, event: dict) -> str:
    body, headers = signed(event, SECRET)
    response = client.post("/webhooks/stripe", data=body, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["status"]


def premium(api, client, user: str = "user-1") -> dict:
    return api(client, user)["entitlements"].get("premium") or {}


def iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def paid(fake, s, shape: str, *, amount: int, credited: dict | None = None, **invoice) -> dict:
    """An invoice of ``s``'s subscription, paid by a charge of its own; ``credited``: a
    proration line (unused time credited) listed first, as Stripe lists prorations."""
    ids = {"invoice": so.new_id("in"), "charge": so.new_id("ch"), "intent": so.new_id("pi")}
    body = so.invoice(shape, invoice_id=ids["invoice"], customer=s.customer, subscription_id=s.sub_id,
                      charge=ids["charge"], payment_intent=ids["intent"], amount=amount, **invoice)
    if credited:
        body["lines"]["data"].insert(0, so.invoice_line(shape, invoice_id=ids["invoice"], subscription_id=s.sub_id,
                                                        proration=True, **credited))
    fake.put(body)
    fake.put(so.charge(shape, charge_id=ids["charge"], customer=s.customer, invoice_id=ids["invoice"],
                       payment_intent=ids["intent"], amount=amount))
    fake.pay(ids["invoice"], ids["intent"])
    return ids


def upgraded_with_a_proration(fake, s, shape: str, start: int | None = None, end: int | None = None) -> dict:
    """A mid-period upgrade with ``proration_behavior=always_invoice``: Stripe bills the
    difference at once on an invoice of its own, which becomes ``latest_invoice``; the
    period (and its start) stays the one shown."""
    start, end = start or s.start, end or s.end
    proration = paid(fake, s, shape, billing_reason="subscription_update", period=(start, end), amount=300)
    upgraded = fake.put(s.subscription(shape, start=start, end=end, latest_invoice=proration["invoice"],
                                       price_id="price_yearly"))
    return {**proration, "subscription": upgraded}


@pytest.mark.parametrize("shape", so.SHAPES)
def test_removing_a_scheduled_cancellation_after_a_full_refund_leaves_the_period_revoked(client, api, fake, shape):
    s, t = signup(fake), int(time.time())
    scheduled = fake.put(s.subscription(shape, cancel_at=t + 5 * so.DAY))  # access would end in five days
    assert deliver(client, so.event("customer.subscription.updated", scheduled, shape=shape, created=t)) == "processed"
    s.refund(fake)
    assert deliver(client, so.event("charge.refunded", s.charge(shape, amount_refunded=999), shape=shape,
                                    created=t + 1)) == "processed"
    assert premium(api, client)["status"] == "revoked"
    resumed = fake.put(s.subscription(shape, cancel_at=None))  # same period, no new invoice: nothing paid
    deliver(client, so.event("customer.subscription.updated", resumed, shape=shape, created=t + 2))
    assert premium(api, client)["status"] == "revoked"
    renewed = fake.put(s.subscription(shape, start=s.end, end=s.end + 30 * so.DAY, latest_invoice="in_next"))
    deliver(client, so.event("customer.subscription.updated", renewed, shape=shape, created=t + 3))
    assert premium(api, client)["status"] == "active"  # a renewal is a new period, paid for


@pytest.mark.parametrize("shape", so.SHAPES)
def test_a_partial_refund_of_the_periods_charge_takes_nothing_back_and_a_cancellation_ends_access(
        client, api, fake, shape):
    """A refund does not cancel a subscription in Stripe, and a partial one is how a credit is
    handed back: the unused time of a downgrade (Stripe puts it on the customer's balance, and
    a merchant may refund it from the period's charge) or of a cancellation. The period stays
    paid for as Stripe shows it; access ends only when the subscription does, expired at its
    end, not revoked, though refunds add up to nearly all of the charge."""
    s, t = signup(fake), int(time.time())
    assert deliver(client, so.event("customer.subscription.created", s.subscription(shape), shape=shape,
                                    created=t - 5)) == "processed"
    s.refund(fake, 300)  # a downgrade's credit returned to the card
    assert deliver(client, so.event("charge.refunded", s.charge(shape, amount_refunded=300), shape=shape,
                                    created=t - 4)) == "processed"
    assert premium(api, client) == {"active": True, "status": "active", "expires_at": iso(s.end),
                                    "will_renew": True, "source": "stripe", "product_id": "price_monthly"}
    ended = fake.put(s.subscription(shape, status="canceled", canceled_at=t - 3, ended_at=t - 3))
    assert deliver(client, so.event("customer.subscription.deleted", ended, shape=shape, created=t - 3)) == "processed"
    s.refund(fake, 690)  # the unused time of the canceled period: 990 of 999 returned in all
    assert deliver(client, so.event("charge.refunded", s.charge(shape, amount_refunded=990), shape=shape,
                                    created=t - 2)) == "processed"
    assert premium(api, client) == {"active": False, "status": "expired", "expires_at": iso(t - 3),
                                    "will_renew": False, "source": "stripe", "product_id": "price_monthly"}


@pytest.mark.parametrize("shape", so.SHAPES)
@pytest.mark.parametrize("kind", ["refund", "dispute"])
def test_returning_a_proration_in_full_leaves_the_period_paid_for(client, api, fake, shape, kind):
    s, t = signup(fake), int(time.time())
    proration = upgraded_with_a_proration(fake, s, shape)
    deliver(client, so.event("customer.subscription.updated", proration["subscription"], shape=shape, created=t))
    if kind == "refund":
        refund(fake, proration["charge"], proration["intent"], 300)
        returned = so.event("charge.refunded", so.charge(
            shape, charge_id=proration["charge"], customer=s.customer, invoice_id=proration["invoice"],
            payment_intent=proration["intent"], amount=300, amount_refunded=300), shape=shape, created=t + 1)
    else:
        returned = so.event("charge.dispute.created", so.dispute(
            dispute_id=so.new_id("dp"), charge_id=proration["charge"], payment_intent=proration["intent"],
            amount=300), shape=shape, created=t + 1)
    assert deliver(client, returned) == "processed"
    assert premium(api, client) == {
        "active": True, "status": "active", "expires_at": iso(s.end), "will_renew": True, "source": "stripe",
        "product_id": "price_yearly"}


@pytest.mark.parametrize("shape", so.SHAPES)
@pytest.mark.parametrize("order", ["upgrade first", "refund first"])
def test_refunding_the_periods_invoice_revokes_it_though_a_proration_is_the_latest(client, api, fake, shape, order):
    s, t = signup(fake), int(time.time())
    proration = upgraded_with_a_proration(fake, s, shape)  # what the refund's fetch reads either way
    upgrade = so.event("customer.subscription.updated", proration["subscription"], shape=shape, created=t)
    s.refund(fake)
    refunded = so.event("charge.refunded", s.charge(shape, amount_refunded=999), shape=shape, created=t + 1)
    for event in ((upgrade, refunded) if order == "upgrade first" else (refunded, upgrade)):
        assert deliver(client, event) == "processed"
    assert premium(api, client)["status"] == "revoked"


@pytest.mark.parametrize("shape", so.SHAPES)
def test_refunding_an_interval_changes_invoice_revokes_the_period_it_began(client, api, fake, shape):
    """Switching from monthly to yearly restarts the billing cycle: Stripe bills the new year
    at once on a ``subscription_update`` invoice whose line is not a proration (the unused
    month is credited on a proration line). That invoice paid for the new period: refunded
    in full, it takes it back though a later proration became the latest invoice; the
    first month's invoice refunded takes nothing from it."""
    s, t = signup(fake), int(time.time())
    start, end = t - 10, t - 10 + 365 * so.DAY
    switch = paid(fake, s, shape, period=(start, end), amount=9999,  # a line billing the new year
                  credited={"start": start, "end": s.end, "amount": -990})
    fake.put({**fake.state.objects["invoice"][switch["invoice"]], "billing_reason": "subscription_update"})
    later = upgraded_with_a_proration(fake, s, shape, start, end)  # a seat added since, billed at once
    deliver(client, so.event("customer.subscription.updated", later["subscription"], shape=shape, created=t))
    s.refund(fake)
    deliver(client, so.event("charge.refunded", s.charge(shape, amount_refunded=999), shape=shape, created=t + 1))
    assert premium(api, client)["status"] == "active"
    refund(fake, switch["charge"], switch["intent"], 9999)
    refunded = so.charge(shape, charge_id=switch["charge"], customer=s.customer, invoice_id=switch["invoice"],
                         payment_intent=switch["intent"], amount=9999, amount_refunded=9999)
    assert deliver(client, so.event("charge.refunded", refunded, shape=shape, created=t + 2)) == "processed"
    assert premium(api, client)["status"] == "revoked"



def threshold_invoice(fake, s, shape: str, reached: int, reset: bool) -> dict:
    """A ``subscription_threshold`` invoice (https://docs.stripe.com/billing/subscriptions/usage-based/thresholds):
    the usage accrued since the period began, billed when it reached the threshold; with
    ``reset_billing_cycle_anchor`` a new period begins then, as if the subscription had
    reached its renewal, billed in advance on a line of its own. The invoice's own
    ``period_*`` cover the usage (they look back)."""
    new_period = (reached, reached + 30 * so.DAY)
    made = paid(fake, s, shape, billing_reason="subscription_threshold", period=new_period, amount=1499)
    body = fake.state.objects["invoice"][made["invoice"]]
    usage = so.invoice_line(shape, invoice_id=made["invoice"], subscription_id=s.sub_id, start=s.start,
                            end=reached, amount=500)
    lines = [usage] + (body["lines"]["data"] if reset else [])
    fake.put({**body, "period_start": s.start, "period_end": reached,
              "lines": {**body["lines"], "data": lines, "total_count": len(lines)}})
    period = new_period if reset else (s.start, s.end)
    return {**made, "subscription": fake.put(s.subscription(shape, start=period[0], end=period[1],
                                                            latest_invoice=made["invoice"]))}


@pytest.mark.parametrize("shape", so.SHAPES)
@pytest.mark.parametrize("reset", [True, False], ids=["anchor reset", "anchor kept"])
def test_refunding_a_threshold_invoice_revokes_the_period_it_began(client, api, fake, shape, reset):
    """A threshold invoice that reset the billing cycle anchor paid for the period it began:
    refunded in full, it takes that period back. One that kept the anchor billed usage
    only: the period stays paid for by the invoice that began it."""
    s, t = signup(fake), int(time.time())
    threshold = threshold_invoice(fake, s, shape, reached=t - 10, reset=reset)
    deliver(client, so.event("customer.subscription.updated", threshold["subscription"], shape=shape, created=t))
    assert premium(api, client)["status"] == "active"
    refund(fake, threshold["charge"], threshold["intent"], 1499)
    refunded = so.charge(shape, charge_id=threshold["charge"], customer=s.customer, invoice_id=threshold["invoice"],
                         payment_intent=threshold["intent"], amount=1499, amount_refunded=1499)
    assert deliver(client, so.event("charge.refunded", refunded, shape=shape, created=t + 1)) == "processed"
    assert premium(api, client)["status"] == ("revoked" if reset else "active")

@pytest.mark.parametrize("shape", so.SHAPES)
@pytest.mark.parametrize("reason, bills, revokes", [
    ("quote_accept", "period", True), ("manual", "proration", False),
    ("automatic_pending_invoice_item_invoice", "proration", False)])
def test_an_invoice_of_another_reason_takes_back_the_period_only_when_a_line_bills_it_in_advance(
        client, api, fake, shape, reason, bills, revokes):
    """``quote_accept``: an accepted quote's invoice of the subscription it made, billing its
    first period from the moment it was accepted; ``manual``: a change's prorations invoiced
    at once by ``POST /v1/invoices``; pending invoice items invoiced on their own interval.
    The reasons are https://docs.stripe.com/api/invoices/object#invoice_object-billing_reason;
    whether a line bills a period, not the reason, decides (``pays_period``)."""
    t = int(time.time())
    s = signup(fake)
    made = paid(fake, s, shape, billing_reason=reason, period=(s.start, s.end), amount=999, created=s.start)
    if bills == "proration":
        body = fake.state.objects["invoice"][made["invoice"]]
        line = so.invoice_line(shape, invoice_id=made["invoice"], subscription_id=s.sub_id, proration=True,
                               start=t - 5, end=s.end, amount=999)
        fake.put({**body, "period_start": t - 5, "period_end": t - 5, "lines": {**body["lines"], "data": [line]}})
    deliver(client, so.event("customer.subscription.updated", s.subscription(shape), shape=shape, created=t - 1))
    refund(fake, made["charge"], made["intent"], 999)
    refunded = so.charge(shape, charge_id=made["charge"], customer=s.customer, invoice_id=made["invoice"],
                         payment_intent=made["intent"], amount=999, amount_refunded=999)
    assert deliver(client, so.event("charge.refunded", refunded, shape=shape, created=t)) == "processed"
    assert premium(api, client)["status"] == ("revoked" if revokes else "active")


def seat_changes(shape, s, invoice_id: str, start: int, end: int, n: int = 10) -> list[dict]:
    """Lines of ``n`` seat changes billed at the next invoice (``create_prorations``)."""
    return [so.invoice_line(shape, invoice_id=invoice_id, subscription_id=s.sub_id, proration=True,
                            start=start + 3600 * (k + 1), end=end, amount=-50 if k % 2 else 50) for k in range(n)]


def listed_first(fake, invoice_id: str, lines: list[dict]) -> None:
    """Put ``lines`` before the invoice's own, as Stripe lists prorations: its period line
    is then past the ten an invoice embeds."""
    body = fake.state.objects["invoice"][invoice_id]
    fake.put({**body, "lines": {**body["lines"], "data": lines + body["lines"]["data"]}})


@pytest.mark.parametrize("shape", so.SHAPES)
def test_refunding_a_cycle_restarting_invoice_whose_period_line_is_not_embedded_revokes_its_period(
        client, api, fake, shape):
    s, t = signup(fake), int(time.time())
    start, end = t - 10, t - 10 + 365 * so.DAY
    switch = paid(fake, s, shape, billing_reason="subscription_update", period=(start, end), amount=9999)
    body = fake.state.objects["invoice"][switch["invoice"]]
    body["lines"]["data"] = [so.invoice_line(shape, invoice_id=switch["invoice"], subscription_id=s.sub_id,
                                             start=start, end=end, amount=9999, price_id="price_yearly")]
    listed_first(fake, switch["invoice"], seat_changes(shape, s, switch["invoice"], s.start, s.end))
    yearly = fake.put(s.subscription(shape, start=start, end=end, latest_invoice=switch["invoice"],
                                     price_id="price_yearly"))
    assert deliver(client, so.event("customer.subscription.updated", yearly, shape=shape, created=t)) == "processed"
    refund(fake, switch["charge"], switch["intent"], 9999)
    refunded = so.charge(shape, charge_id=switch["charge"], customer=s.customer, invoice_id=switch["invoice"],
                         payment_intent=switch["intent"], amount=9999, amount_refunded=9999)
    assert deliver(client, so.event("charge.refunded", refunded, shape=shape, created=t + 1)) == "processed"
    assert premium(api, client)["status"] == "revoked"  # the year it paid for


@pytest.mark.parametrize("shape", so.SHAPES)
def test_refunding_a_renewal_whose_period_line_is_not_embedded_revokes_though_a_proration_is_the_latest(
        client, api, fake, shape):
    s, t = signup(fake), int(time.time())
    listed_first(fake, s.invoice_id, seat_changes(shape, s, s.invoice_id, s.start - 30 * so.DAY, s.start))
    fake.put({**fake.state.objects["invoice"][s.invoice_id], "billing_reason": "subscription_cycle"})
    later = upgraded_with_a_proration(fake, s, shape)
    deliver(client, so.event("customer.subscription.updated", later["subscription"], shape=shape, created=t))
    s.refund(fake)
    deliver(client, so.event("charge.refunded", s.charge(shape, amount_refunded=999), shape=shape, created=t + 1))
    assert premium(api, client)["status"] == "revoked"


# Mixed intervals (flexible billing, basil and later): items keep their own periods and
# renew apart (https://docs.stripe.com/billing/subscriptions/mixed-interval). A yearly plan the
# catalog lists with a monthly add-on it does not: the add-on's renewal is not a new year.


def _mixed(s, year: tuple[int, int], month: tuple[int, int], latest: str) -> dict:
    body = s.subscription("basil", start=year[0], end=year[1], price_id="price_yearly", latest_invoice=latest)
    addon = {**body["items"]["data"][0], "id": f"si_addon{s.sub_id[4:]}", "price": so.price("price_addon", "prod_addon"),
             "current_period_start": month[0], "current_period_end": month[1]}
    body["items"]["data"].append(addon)
    body["items"]["total_count"] = 2
    return body


def _mixed_intervals(fake):
    s, now = signup(fake), int(time.time())
    t0 = now - 40 * so.DAY
    year, first_month, second_month = (t0, t0 + 365 * so.DAY), (t0, t0 + 30 * so.DAY), (t0 + 30 * so.DAY, t0 + 60 * so.DAY)
    created = fake.put(s.invoice("basil", billing_reason="subscription_create", period=year, amount=999))
    created["lines"]["data"].append(so.invoice_line("basil", invoice_id=s.invoice_id, subscription_id=s.sub_id,
                                                    start=first_month[0], end=first_month[1], amount=100,
                                                    price_id="price_addon"))
    fake.put({**created, "created": t0})
    before = fake.put(_mixed(s, year, first_month, s.invoice_id))
    renewal = so.invoice("basil", invoice_id=so.new_id("in"), customer=s.customer, subscription_id=s.sub_id,
                         billing_reason="subscription_cycle", period=second_month, amount=100)
    renewal["lines"]["data"][0]["pricing"]["price_details"]["price"] = "price_addon"
    fake.put(renewal)
    return s, before, _mixed(s, year, second_month, renewal["id"]), now


@pytest.mark.parametrize("order", ["refund before the add-on renews", "refund after the add-on renewed"])
def test_a_refunded_year_stays_revoked_when_a_monthly_add_on_renews(client, api, fake, order):
    s, before, renewed, now = _mixed_intervals(fake)
    assert deliver(client, so.event("customer.subscription.created", before, created=now - 40 * so.DAY + 5)) \
        == "processed"
    assert premium(api, client)["status"] == "active"
    refund(fake, s.charge_id, s.payment_intent, 999)
    refunded = so.event("charge.refunded", s.charge("basil", amount_refunded=999), created=now - 5)
    renewal = so.event("customer.subscription.updated", renewed, created=now - 2,
                       previous={"items": {"data": [{"current_period_start": before["items"]["data"][1]["current_period_start"]}]}})
    if order == "refund before the add-on renews":
        assert deliver(client, refunded) == "processed"
        assert premium(api, client)["status"] == "revoked"
        fake.put(renewed)
        assert deliver(client, renewal) == "processed"
    else:
        fake.put(renewed)
        assert deliver(client, renewal) == "processed"
        assert deliver(client, refunded) == "processed"
    # The year that grants premium was refunded in full; the add-on's month pays for the add-on.
    assert premium(api, client)["status"] == "revoked"


def test_refunding_only_the_add_ons_month_leaves_the_paid_year_granted(client, api, fake):
    s, before, renewed, now = _mixed_intervals(fake)
    fake.put(renewed)
    assert deliver(client, so.event("customer.subscription.updated", renewed, created=now - 2)) == "processed"
    assert premium(api, client)["status"] == "active"
    renewal_id = renewed["latest_invoice"]
    charge_id, intent = so.new_id("ch"), so.new_id("pi")
    fake.put(so.charge("basil", charge_id=charge_id, customer=s.customer, invoice_id=renewal_id,
                       payment_intent=intent, amount=100))
    fake.pay(renewal_id, intent)
    refund(fake, charge_id, intent, 100)
    refunded = so.charge("basil", charge_id=charge_id, customer=s.customer, invoice_id=renewal_id,
                         payment_intent=intent, amount=100, amount_refunded=100)
    assert deliver(client, so.event("charge.refunded", refunded, created=now)) == "processed"
    # Only the add-on's month was returned; the year that grants premium is paid for.
    assert premium(api, client)["status"] == "active"
