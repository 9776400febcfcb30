"""What changed in a user's entitlements, as events an app's backend can act on.

A change is found by comparing a user's stored entitlement rows before and after one
transaction (``derive`` gives both), on what a reader sees of them: status, end, renewal,
source and product. A duplicate or a stale delivery changes no row and emits nothing;
another subscription granting the same view is no change either. Types:

- ``entitlement.granted``: access where the feed last said there was none;
- ``entitlement.renewed``: access goes on and now ends later;
- ``entitlement.revoked``: access taken back (a refund, a chargeback, a transfer away);
- ``entitlement.expired``: access ended by the store's expiry, or by time alone (the
  worker's sweep, ``expired``, at the end of the period);
- ``entitlement.changed``: anything else a reader would see (renewal switched off, a grace
  period, another product, a pause);
- ``user.deleted``: the user's account was deleted at their request.

Whether the feed last said "active" is not judged at the time of the change alone: an
entitlement that lapsed by time was active for the feed until the sweep reported it
expired, up to ``reported_through``. So a renewal that comes after the end, before the
sweep, is ``renewed``; after the sweep, ``granted``. A lapse the sweep has not reached may
have been reported already, by a change after the end that left the row granting (renewal
switched off): the feed's last event on it says so (``lapse_unreported``,
``Transaction.said_inactive``), and neither a later change nor the sweep reports it again.
"""
from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any

from .entitlements import Grant, iso, view
from .model import GRANTING, Status

GRANTED, RENEWED, CHANGED = "entitlement.granted", "entitlement.renewed", "entitlement.changed"
REVOKED, EXPIRED = "entitlement.revoked", "entitlement.expired"
USER_DELETED = "user.deleted"
TYPES = (GRANTED, RENEWED, CHANGED, REVOKED, EXPIRED, USER_DELETED)


@dataclasses.dataclass(frozen=True)
class Cause:
    """What made the change: a store's delivery (its source and event id), or the gateway's
    own work (``kind``: reconcile, a purchase registered, the expiry sweep, a deletion)."""

    kind: str
    source: str | None = None
    event_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "event_id": self.event_id}


EXPIRY = Cause("expiry")


@dataclasses.dataclass(frozen=True)
class FeedEvent:
    """One event of the feed. ``position`` is its place in the feed, given when it is
    written (``Transaction.append_feed``)."""

    id: str
    type: str
    user_id: str
    entitlement: str | None
    before: dict | None
    after: dict | None
    cause: dict[str, Any]
    occurred_at: datetime
    position: int | None = None

    def body(self) -> dict[str, Any]:
        """The event as the feed and the webhooks send it."""
        return {"id": self.id, "type": self.type, "position": str(self.position), "user_id": self.user_id,
                "entitlement": self.entitlement, "before": self.before, "after": self.after,
                "cause": self.cause, "occurred_at": iso(self.occurred_at)}


def new_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


def _seen(grant: Grant | None) -> tuple | None:
    """What a reader sees of a stored row, whatever the time."""
    if grant is None:
        return None
    return grant.status, grant.expires_at, grant.will_renew, grant.source, grant.product_id


Changed = tuple[str, Grant | None, Grant | None]


def changed(before: list[Grant], after: list[Grant]) -> list[Changed]:
    """(name, row before, row after) for each entitlement a reader would see change."""
    old, new = {g.name: g for g in before}, {g.name: g for g in after}
    return [(name, old.get(name), new.get(name)) for name in sorted(old.keys() | new.keys())
            if _seen(old.get(name)) != _seen(new.get(name))]


def events(user_id: str, found: list[Changed], now: datetime, cause: Cause,
           reported_through: datetime, told: frozenset[str] = frozenset()) -> list[FeedEvent]:
    """The events of one user's changed entitlements (``changed``); ``told``: the names
    whose lapse the feed has already reported, though the sweep has not reached it."""
    return [FeedEvent(new_id(), _type(was if name not in told else None, is_now, now, reported_through), user_id,
                      name, view(was, now), view(is_now, now), cause.as_dict(), now)
            for name, was, is_now in found]


def reported_active(grant: Grant | None, reported_through: datetime) -> bool:
    """Whether the feed's last word on this row was "active": a granting row the expiry
    sweep has not yet reported lapsed."""
    return grant is not None and grant.status in GRANTING and (
        grant.expires_at is None or grant.expires_at > reported_through)


def lapse_unreported(grant: Grant | None, now: datetime, reported_through: datetime) -> bool:
    """Whether ``grant`` lapsed by time after the sweep's mark: the feed may still say
    "active", or a change after the end may have reported the lapse already."""
    return reported_active(grant, reported_through) and not grant.is_active(now)


def expired(user_id: str, grant: Grant) -> FeedEvent:
    """The event of an entitlement that lapsed by time, without a store event: stamped
    with the end of its period."""
    at = grant.expires_at
    return FeedEvent(new_id(), EXPIRED, user_id, grant.name, {**view(grant, at), "active": True,
                                                              "status": grant.status.value},
                     view(grant, at), EXPIRY.as_dict(), at)


def user_deleted(user_id: str, report: dict[str, Any], now: datetime) -> FeedEvent:
    return FeedEvent(new_id(), USER_DELETED, user_id, None, None, {"report": report},
                     Cause("deletion").as_dict(), now)


def _type(old: Grant | None, new: Grant | None, now: datetime, reported_through: datetime) -> str:
    had, has = reported_active(old, reported_through), new is not None and new.is_active(now)
    if has and not had:
        return GRANTED
    if had and not has:
        if new is None or new.status is Status.REVOKED:
            return REVOKED
        return EXPIRED if new.status_at(now) is Status.EXPIRED else CHANGED
    if had and has and _later(new.expires_at, old.expires_at):
        return RENEWED
    return CHANGED


def _later(new: datetime | None, old: datetime | None) -> bool:
    return old is not None and (new is None or new > old)
