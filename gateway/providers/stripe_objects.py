"""Readers of Stripe's JSON objects, in every API version we may receive.

Webhook endpoints render events in their own pinned API version, and our API client
pins another, so each reader accepts both shapes:

- Subscription: since 2025-03-31.basil the billing period lives on the items
  (``items.data[].current_period_end``), not on the subscription.
  https://docs.stripe.com/changelog/basil/2025-03-31/deprecate-subscription-current-period-start-and-end
- Invoice: ``invoice.subscription`` moved to ``invoice.parent.subscription_details.subscription``
  in basil; ``payment_intent`` and ``charge`` were removed from the invoice, and ``invoice``
  from the Charge and the PaymentIntent (found through the Invoice Payments API instead).
  https://docs.stripe.com/changelog/basil/2025-03-31/add-support-for-multiple-partial-payments-on-invoices
"""
from __future__ import annotations

from datetime import datetime

from gateway.domain.catalog import Catalog
from gateway.domain.model import Status
from gateway.domain.terms import Term
from gateway.providers import wire

SOURCE = "stripe"

# https://docs.stripe.com/billing/subscriptions/overview#subscription-statuses
STATUSES = {
    "active": Status.ACTIVE,
    "trialing": Status.ACTIVE,
    "past_due": Status.GRACE_PERIOD,
    "unpaid": Status.BILLING_RETRY,
    "paused": Status.PAUSED,
    "canceled": Status.EXPIRED,
    "incomplete_expired": Status.EXPIRED,
    "incomplete": Status.PENDING,
}
ENDED = frozenset({"canceled", "incomplete_expired"})


def when(seconds) -> datetime | None:
    """A UNIX time of Stripe's; ``Malformed`` when out of range, ``None`` when not a number."""
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        return None
    return wire.from_seconds(seconds, "a Stripe timestamp", code="malformed_event")


def ref(value) -> str | None:
    """An expandable field: the id whether Stripe sent the id or the expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def cognito_sub(obj: dict) -> str | None:
    metadata = obj.get("metadata")
    value = metadata.get("cognito_sub") if isinstance(metadata, dict) else None
    return value.strip() if isinstance(value, str) and value.strip() else None


def _items(subscription: dict) -> list[dict]:
    items = subscription.get("items")
    data = items.get("data") if isinstance(items, dict) else None
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


def period_end(subscription: dict, catalog: Catalog | None = None) -> datetime | None:
    """The end of the paid period: the latest item period (basil+), of the items the catalog
    lists when it lists any (as ``period_id``: an item granting nothing lengthens nothing),
    else the subscription's."""
    ends = [item.get("current_period_end") for item in _granting(_items(subscription), _product_ids, catalog)]
    ends = [end for end in ends if isinstance(end, int)]
    return when(max(ends)) if ends else when(subscription.get("current_period_end"))


def period_id(subscription: dict, catalog: Catalog | None = None) -> str | None:
    """The current period's identity: when it began (UNIX seconds), from the items (basil+)
    or the subscription. A renewal begins a new one; removing a ``cancel_at`` does not.
    Items of mixed intervals renew apart: only those the catalog lists count, when it
    lists any (a monthly add-on's renewal is not a new year of the plan); every item
    without a catalog."""
    starts = [item.get("current_period_start") for item in _granting(_items(subscription), _product_ids, catalog)]
    starts = [start for start in starts if isinstance(start, int) and not isinstance(start, bool)]
    start = max(starts) if starts else subscription.get("current_period_start")
    return str(start) if when(start) is not None else None


def expires_at(subscription: dict, catalog: Catalog | None = None) -> datetime | None:
    """Access ends when the subscription ended (an immediate cancel), else with the period."""
    ended = when(subscription.get("ended_at"))
    if subscription.get("status") in ENDED and ended is not None:
        return ended
    end = period_end(subscription, catalog)
    cancel_at = when(subscription.get("cancel_at"))
    return min(end, cancel_at) if end and cancel_at else end or cancel_at


def will_renew(subscription: dict, catalog: Catalog | None = None) -> bool:
    """A ``paused`` subscription (a trial ended without a payment method) creates no
    invoices until it is resumed: https://docs.stripe.com/billing/subscriptions/overview#subscription-statuses.
    A ``cancel_at`` after the period's end (a schedule's last phase, a fixed term) renews
    it into the next period, billed until then (https://docs.stripe.com/api/subscriptions/object#subscription_object-cancel_at).
    Paused collection (``pause_collection``) is not a pause: the subscription stays ``active``
    and goes on into new periods, their invoices voided, left as drafts or uncollectible, so
    access goes on past the period's end (https://docs.stripe.com/billing/subscriptions/pause-payment)."""
    if subscription.get("status") in ENDED | {"paused"} or subscription.get("cancel_at_period_end"):
        return False
    cancel_at, end = when(subscription.get("cancel_at")), period_end(subscription, catalog)
    return cancel_at is None or end is not None and cancel_at > end


def _product_ids(item: dict) -> list[str]:
    price = item.get("price") if isinstance(item.get("price"), dict) else item.get("plan")
    if not isinstance(price, dict):
        return []
    return [i for i in (ref(price), ref(price.get("product"))) if i]


def products(subscription: dict, catalog: Catalog) -> tuple[str | None, tuple[str, ...] | None]:
    """The product id to report (a price or product the catalog knows, else the first
    price) and, when the items are known to the catalog, every entitlement they grant."""
    ids = [_product_ids(item) for item in _items(subscription)]
    known = [i for item_ids in ids for i in item_ids if catalog.knows(SOURCE, i)]
    if not known:
        first = next((item_ids[0] for item_ids in ids if item_ids), None)
        return first, None
    return known[0], catalog.granted_by(SOURCE, known)


def entitlement_terms(subscription: dict, catalog: Catalog, whole: tuple) -> tuple[Term, ...] | None:
    """The product, end and renewal of each entitlement that are not the subscription's
    (``whole``: its product, ``expires_at`` and ``will_renew``): items of different periods
    (flexible billing renews them apart) grant each entitlement until the items granting
    it end, by the rules of the whole (``expires_at``, ``will_renew``) read over those items."""
    listed = [(item, [i for i in _product_ids(item) if catalog.knows(SOURCE, i)]) for item in _items(subscription)]
    listed = [(item, ids) for item, ids in listed if ids]
    terms = []
    for name in catalog.granted_by(SOURCE, [i for _, ids in listed for i in ids]):
        granting = [(item, ids) for item, ids in listed if name in catalog.granted_by(SOURCE, ids)]
        view = {**subscription, "items": {"data": [item for item, _ in granting]}}
        term = Term(name, granting[0][1][0], expires_at(view, catalog), will_renew(view, catalog))
        terms += [term] if term[1:] != whole else []
    return tuple(sorted(terms)) or None


def invoice_subscription(invoice: dict) -> str | None:
    """The subscription an invoice bills: basil+ ``parent``, else the top-level field."""
    parent = invoice.get("parent")
    details = parent.get("subscription_details") if isinstance(parent, dict) else None
    if isinstance(details, dict) and ref(details.get("subscription")):
        return ref(details.get("subscription"))
    return ref(invoice.get("subscription"))


#: Invoices that pay for a subscription's period (https://docs.stripe.com/api/invoices/object#invoice_object-billing_reason):
#: its first one and each renewal. ``subscription_update`` bills a change: a proration of
#: the period under way, or, when the change restarts the billing cycle (a new interval),
#: a new period as well, which its lines tell. ``subscription`` is from before 2018.
PERIOD_REASONS = frozenset({"subscription_create", "subscription_cycle"})
CHANGE_REASONS = frozenset({"subscription_update", "subscription"})


def _period_line(line) -> dict | None:
    """The line's ``period`` when it bills a subscription item's period, not a proration:
    basil+ ``parent.subscription_item_details``, else ``type`` and ``proration``."""
    if not isinstance(line, dict) or not isinstance(line.get("period"), dict):
        return None
    parent = line.get("parent")
    if isinstance(parent, dict):
        details = parent.get("subscription_item_details")
        billed = parent.get("type") == "subscription_item_details" and isinstance(details, dict) \
            and details.get("proration") is False
    else:
        billed = line.get("type") == "subscription" and line.get("proration") is False
    return line["period"] if billed else None


def invoice_period(invoice: dict, catalog: Catalog) -> tuple[datetime | None, str] | None:
    """The end and id (``period_id``) of the period ``invoice`` paid for, from its lines'
    service periods (``invoice.period_*`` look back one period), those of items the
    catalog lists when it lists any (as ``period_id``); ``None`` when no line names one.
    https://docs.stripe.com/api/invoice-line-item/object"""
    lines = invoice.get("lines")
    data = lines.get("data") if isinstance(lines, dict) else None
    billed = [line for line in (data if isinstance(data, list) else []) if _period_line(line)]
    periods = [line["period"] for line in _granting(billed, _line_product_ids, catalog)]
    starts = [p["start"] for p in periods if when(p.get("start")) is not None]
    if not starts:
        return None
    ends = [when(p.get("end")) for p in periods if p.get("start") == max(starts)]
    return max((end for end in ends if end), default=None), str(max(starts))


def pays_period(invoice: dict, period: tuple[datetime | None, str] | None) -> bool:
    """Whether ``invoice``, whose lines name ``period`` (``invoice_period``), paid for a
    period, rather than a proration, usage or an extra charge. Any other reason (a
    ``subscription_threshold`` that reset the billing cycle anchor, which Stripe treats as
    a renewal: https://docs.stripe.com/billing/subscriptions/usage-based/thresholds) pays
    one when a line bills it in advance: from where the invoice's own (usage) period ends."""
    reason = invoice.get("billing_reason")
    if reason in PERIOD_REASONS or (reason in CHANGE_REASONS and period is not None):
        return True
    usage_end = invoice.get("period_end")
    return period is not None and isinstance(usage_end, int) and int(period[1]) >= usage_end


def _line_product_ids(line: dict) -> list[str]:
    """The price and product a line bills: basil+ ``pricing.price_details``, else ``price``."""
    pricing = line.get("pricing")
    details = pricing.get("price_details") if isinstance(pricing, dict) else None
    if isinstance(details, dict):
        return [i for i in (ref(details.get("price")), ref(details.get("product"))) if i]
    return _product_ids(line)


def _granting(found: list[dict], ids_of, catalog: Catalog | None) -> list[dict]:
    """The items or lines of ``found`` whose price or product the catalog lists; all of
    them when it lists none (the catalog's default then grants for every one)."""
    listed = [x for x in found if catalog and any(catalog.knows(SOURCE, i) for i in ids_of(x))]
    return listed or found


def fully_refunded(charge: dict) -> bool:
    amount, refunded = charge.get("amount"), charge.get("amount_refunded")
    if isinstance(amount, int) and isinstance(refunded, int):
        return refunded >= amount > 0
    return charge.get("refunded") is True
