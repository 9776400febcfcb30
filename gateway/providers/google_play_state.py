"""A SubscriptionPurchaseV2 (purchases.subscriptionsv2.get) as a gateway snapshot.

Resource: https://developers.google.com/android-publisher/api-ref/rest/v3/purchases.subscriptionsv2
Lifecycle: https://developer.android.com/google/play/billing/lifecycle/subscriptions
The resource is the state of the purchase as of the moment it was fetched, so a
snapshot is stamped with the fetch time. No I/O here.
"""
from __future__ import annotations

import logging
import re
from datetime import datetime, timezone

from gateway.domain.catalog import Catalog
from gateway.domain import model
from gateway.domain.model import Snapshot, Status
from gateway.domain.terms import Term

log = logging.getLogger("gateway.google")

SOURCE = "google"

# CANCELED keeps access until the line item's expiryTime, without renewal; a pending
# purchase whose payment was canceled never granted anything.
STATES = {
    "SUBSCRIPTION_STATE_ACTIVE": Status.ACTIVE,
    "SUBSCRIPTION_STATE_CANCELED": Status.ACTIVE,
    "SUBSCRIPTION_STATE_IN_GRACE_PERIOD": Status.GRACE_PERIOD,
    "SUBSCRIPTION_STATE_ON_HOLD": Status.BILLING_RETRY,
    "SUBSCRIPTION_STATE_PAUSED": Status.PAUSED,
    "SUBSCRIPTION_STATE_EXPIRED": Status.EXPIRED,
    "SUBSCRIPTION_STATE_PENDING": Status.PENDING,
    "SUBSCRIPTION_STATE_PENDING_PURCHASE_CANCELED": Status.EXPIRED,
}
#: States of a paid purchase, which Play accepts an acknowledgement for.
PAID = frozenset({"SUBSCRIPTION_STATE_ACTIVE", "SUBSCRIPTION_STATE_CANCELED", "SUBSCRIPTION_STATE_IN_GRACE_PERIOD",
                  "SUBSCRIPTION_STATE_ON_HOLD", "SUBSCRIPTION_STATE_PAUSED"})
_NOT_YET_PAID = frozenset({"SUBSCRIPTION_STATE_PENDING", "SUBSCRIPTION_STATE_PENDING_PURCHASE_CANCELED"})
_EPOCH = datetime.min.replace(tzinfo=timezone.utc)
#: A line item as it grants: (product, end, renews).
Item = tuple[str | None, datetime | None, bool]
_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 timestamp as Google writes it (``Z``, up to nanoseconds)."""
    found = _RFC3339.match(value) if isinstance(value, str) else None
    if not found:
        return None
    seconds, fraction, zone = found.groups()
    micros = (fraction or "0")[:6].ljust(6, "0")
    try:  # year 0000, an offset of +99:99, or a date at datetime's edge: unreadable like the rest
        parsed = datetime.fromisoformat(f"{seconds}.{micros}{'+00:00' if zone == 'Z' else zone}")
        return parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None


def line_items(purchase: dict) -> list[dict]:
    items = purchase.get("lineItems")
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _latest(purchase: dict) -> tuple[dict | None, datetime | None]:
    dated = [(parse_time(item.get("expiryTime")), item) for item in line_items(purchase)]
    dated_only = [(when, item) for when, item in dated if when is not None]
    if dated_only:
        when, item = max(dated_only, key=lambda pair: pair[0])
        return item, when
    items = line_items(purchase)
    return (items[0] if items else None), None


def owner_of(purchase: dict) -> str | None:
    """The Cognito sub the app set with ``setObfuscatedAccountId``, when it did."""
    ids = purchase.get("externalAccountIdentifiers")
    sub = ids.get("obfuscatedExternalAccountId") if isinstance(ids, dict) else None
    return sub if isinstance(sub, str) and sub.strip() else None


def _item_renews(item: dict) -> bool:
    """``autoRenewingPlan.autoRenewEnabled`` of one line item: a prepaid plan never renews."""
    plan = item.get("autoRenewingPlan")
    return isinstance(plan, dict) and plan.get("autoRenewEnabled") is True


def _items(purchase: dict, expires_at: datetime | None, renewing: bool) -> list[Item]:
    """Each line item as it grants; an item without ``expiryTime`` ends with the
    purchase, and none renews once the purchase is canceled or expired (``renewing``)."""
    return [(item.get("productId") if isinstance(item.get("productId"), str) else None,
             parse_time(item.get("expiryTime")) or expires_at, renewing and _item_renews(item))
            for item in line_items(purchase)]


def _last(item: Item) -> tuple:
    product, end, renews = item
    return end is not None, end or _EPOCH, renews, product is not None, product or ""


def _term(name: str, granting: list[Item]) -> Term:
    """Entitlement ``name`` as the items that grant it show it: the product and end of the
    one that ends last (a renewing one first, then by product id: Play lists the items in
    no promised order), renewing while any of them renews (it goes on past that item's end)."""
    product, end, _ = max(granting, key=_last)
    return Term(name, product, end, any(renews for _, _, renews in granting))


def _entitlements(purchase: dict, catalog: Catalog | None, whole: Item, renewing: bool):
    """What the line items grant together (a base plan and its add-ons, each with its own
    product, ``expiryTime`` and renewal): the names (``None`` when that is what the reported
    product alone grants, so the catalog maps it when read), and the terms of each one
    whose product, end or renewal is not the purchase's (``whole``, in a ``Term``'s order):
    so an add-on lapses at its own end without another read, and shows its own product and
    renewal. An item that has ended still names what it granted: its entitlement lapses,
    it does not vanish."""
    items = _items(purchase, whole[1], renewing)
    if catalog is None or not items:
        return None, None
    granted = catalog.granted_by(SOURCE, [product for product, _, _ in items])
    terms = (_term(name, [item for item in items if name in catalog.entitlements_for(SOURCE, item[0])])
             for name in granted)
    own = tuple(sorted((term for term in terms if term[1:] != whole), key=lambda term: term.name))
    return (None if set(granted) == set(catalog.entitlements_for(SOURCE, whole[0])) else granted), own or None


def snapshot_of(token: str, purchase: dict, as_of: datetime, catalog: Catalog | None = None) -> Snapshot:
    raw = str(purchase.get("subscriptionState") or "SUBSCRIPTION_STATE_UNSPECIFIED")
    status = STATES.get(raw)
    if status is None:  # a state Google added after this code: no access, kept raw, said loudly
        log.warning("unknown subscriptionState", extra={"fields": {"state": raw}})
        status = Status.EXPIRED
    item, expires_at = _latest(purchase)
    product_id = item.get("productId") if item else None
    renewing = status is not Status.EXPIRED and raw != "SUBSCRIPTION_STATE_CANCELED"
    will_renew = renewing and any(_item_renews(item) for item in line_items(purchase))
    entitlements, terms = _entitlements(purchase, catalog, (product_id, expires_at, will_renew), renewing)
    return Snapshot(
        source=SOURCE, key=token, as_of=as_of, status=status, product_id=product_id, expires_at=expires_at,
        entitlements=entitlements, entitlement_terms=terms,
        will_renew=will_renew, user_sub=owner_of(purchase), account=token,
        environment="Test" if "testPurchase" in purchase else "Production", raw_status=raw,
    )


def current_orders(purchase: dict) -> set[str]:
    """The orders that paid the period the purchase is in now: each line item's
    ``latestSuccessfulOrderId``, and the purchase's ``latestOrderId`` (deprecated, still sent).
    A renewal is an order of its own (``GPA.1234-...-56789..0``, ``..1``)."""
    orders = [item.get("latestSuccessfulOrderId") for item in line_items(purchase)]
    orders.append(purchase.get("latestOrderId"))
    return {order for order in orders if isinstance(order, str) and order}


def replaced(token: str, as_of: datetime, by: str) -> Snapshot:
    """The old token of an upgrade, downgrade or resubscription (replaced ``by`` another):
    it no longer grants, for good. Play goes on showing it active for a while, so a view
    of it read later must not give it back: the replacement is recorded like a revocation
    of every period (``model.replacement``), whatever the order the two tokens' deliveries
    come in. What the old purchase is (product, end, add-ons) is its own views' to say,
    as held under the lock, never a read of our store made before it.

    It names no account: the old purchase's own (its token, or the purchase it replaced
    in turn while that one's owner was unknown) is its delivery's to say, and a
    replacement read later must not take it back to the token."""
    return model.replacement(SOURCE, token, as_of, by)


def replaces(purchase: dict) -> str | None:
    """The token this purchase replaces, once it is paid: until a pending upgrade is
    paid for, the old subscription is still the one that grants."""
    linked = purchase.get("linkedPurchaseToken")
    if not isinstance(linked, str) or not linked or purchase.get("subscriptionState") in _NOT_YET_PAID:
        return None
    return linked


def needs_acknowledgement(purchase: dict) -> bool:
    """Unacknowledged paid purchases are refunded by Google after three days.
    https://developer.android.com/google/play/billing/integrate#process"""
    return (purchase.get("acknowledgementState") == "ACKNOWLEDGEMENT_STATE_PENDING"
            and purchase.get("subscriptionState") in PAID)


def acknowledged_product(purchase: dict) -> str | None:
    """The product id the acknowledge call takes: the RTDN no longer carries one."""
    item = next((i for i in line_items(purchase) if isinstance(i.get("productId"), str)), None)
    return item["productId"] if item else None
