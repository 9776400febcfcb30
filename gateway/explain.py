"""Why a user is (or is not) entitled: the explain use case behind the history API and
the admin's user page.

It reads, in one transaction, the user's entitlement rows, the store subscriptions the
user holds, and the deliveries that touched those subscriptions (the evidence links
written when each delivery was applied, ``event_subscriptions``).
"""
from __future__ import annotations

import dataclasses
from datetime import datetime

from gateway.domain.catalog import Catalog
from gateway.domain.entitlements import Grant
from gateway.domain.events import Event
from gateway.domain.model import GRANTING, Snapshot, Subscription
from gateway.store.port import Store

MAX_DELIVERIES = 500


@dataclasses.dataclass(frozen=True)
class Holding:
    """One subscription of the user, with what it maps to and why it counts or not."""

    subscription: Subscription
    names: tuple[str, ...]        # entitlements its product maps to
    chosen_for: tuple[str, ...]   # entitlements whose stored row it is the source of
    verdict: str
    evidence: tuple[int, ...]     # event pks (within the deliveries shown), newest first


@dataclasses.dataclass(frozen=True)
class Explanation:
    user_sub: str
    grants: list[Grant]
    holdings: list[Holding]
    deliveries: list[Event]
    links: dict[int, list[tuple[str, str]]]
    next_before: int | None       # pass as ``before_pk`` for older deliveries


def explain(store: Store, catalog: Catalog, user_sub: str, now: datetime, *,
            before_pk: int | None = None, limit: int = 100) -> Explanation:
    limit = max(1, min(limit, MAX_DELIVERIES))
    with store.transaction(readonly=True) as tx:
        grants = tx.entitlements_of(user_sub)
        held = sorted(tx.subscriptions_of_users([user_sub])[user_sub],
                      key=lambda s: (s.snapshot.source, s.snapshot.key))
        keys = [(s.snapshot.source, s.snapshot.key) for s in held]
        # One more than asked, to know whether an older page exists.
        deliveries = tx.events_touching(keys, before_pk=before_pk, limit=limit + 1)
        more = len(deliveries) > limit
        deliveries = deliveries[:limit]
        links = tx.event_links([e.id for e in deliveries])
    holdings = [_holding(s, catalog, grants, links, now) for s in held]
    next_before = deliveries[-1].id if more else None
    return Explanation(user_sub, grants, holdings, deliveries, links, next_before)


def _holding(subscription: Subscription, catalog: Catalog, grants: list[Grant],
             links: dict[int, list[tuple[str, str]]], now: datetime) -> Holding:
    s = subscription.snapshot
    names = s.entitlements if s.entitlements is not None else catalog.entitlements_for(s.source, s.product_id)
    chosen = tuple(g.name for g in grants if (g.source, g.subscription_key) == (s.source, s.key))
    evidence = tuple(pk for pk in sorted(links, reverse=True) if (s.source, s.key) in links[pk])
    return Holding(subscription, tuple(names), chosen, verdict(subscription, tuple(names), now), evidence)


def verdict(subscription: Subscription, names: tuple[str, ...], now: datetime) -> str:
    """One sentence: does this subscription grant anything right now, and why."""
    s = subscription.snapshot
    if not names:
        return f"grants nothing: product {s.product_id!r} maps to no entitlement in the catalog"
    if s.status in GRANTING and (s.expires_at is None or now < s.expires_at):
        until = f"until {_when(s.expires_at)}" if s.expires_at else "with no end"
        return f"grants {_own_ends(names, s, now)} {until} (status {s.status.value})"
    if s.status in GRANTING:
        return f"grants nothing: {s.status.value} but lapsed at {_when(s.expires_at)}, no newer delivery since"
    raw = f", store status {s.raw_status!r}" if s.raw_status else ""
    return f"grants nothing: status {s.status.value}{raw}"


def _own_ends(names: tuple[str, ...], s: Snapshot, now: datetime) -> str:
    """The names, each that ends before the subscription with its own end (a Play add-on)."""
    ends = {term.name: term.expires_at for term in s.entitlement_terms or ()
            if term.expires_at and term.expires_at != s.expires_at}
    return ", ".join(name if name not in ends else
                     f"{name} ({'until' if now < ends[name] else 'lapsed at'} {_when(ends[name])})" for name in names)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"
