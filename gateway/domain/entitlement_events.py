"""What changed in a user's entitlements, as events an app's backend can act on.

A change is found by comparing a user's entitlement rows before and after one transaction
(``derive`` gives both), so a duplicate or a stale delivery, which changes no row, emits
nothing. Types:

- ``entitlement.granted``: access where there was none (new, or back after it ended);
- ``entitlement.renewed``: access goes on and now ends later;
- ``entitlement.revoked``: access taken back (a refund, a chargeback, a transfer away);
- ``entitlement.expired``: access ended by time or by the store's expiry;
- ``entitlement.changed``: anything else a reader would see (renewal switched off, a grace
  period, another product, a pause).
"""
from __future__ import annotations

import dataclasses
from datetime import datetime

from .entitlements import Grant, view
from .model import Status

GRANTED, RENEWED, CHANGED = "entitlement.granted", "entitlement.renewed", "entitlement.changed"
REVOKED, EXPIRED = "entitlement.revoked", "entitlement.expired"
TYPES = (GRANTED, RENEWED, CHANGED, REVOKED, EXPIRED)


@dataclasses.dataclass(frozen=True)
class EntitlementChange:
    type: str
    user_id: str
    entitlement: str
    before: dict | None
    after: dict | None


def changes(user_id: str, before: list[Grant], after: list[Grant], now: datetime) -> list[EntitlementChange]:
    """The events between two sets of one user's entitlement rows, by entitlement name."""
    old, new = {g.name: g for g in before}, {g.name: g for g in after}
    found = []
    for name in sorted(old.keys() | new.keys()):
        was, now_is = view(old.get(name), now), view(new.get(name), now)
        if was != now_is:
            found.append(EntitlementChange(_type(old.get(name), new.get(name), was, now_is), user_id, name,
                                           was, now_is))
    return found


def expired(user_id: str, grant: Grant, now: datetime) -> EntitlementChange:
    """The event of an entitlement that lapsed by time, without a store event."""
    at_end = dataclasses.replace(grant, status=Status.EXPIRED)
    return EntitlementChange(EXPIRED, user_id, grant.name,
                             {**view(grant, grant.expires_at or now), "active": True}, view(at_end, now))


def _type(old: Grant | None, new: Grant | None, was: dict | None, now_is: dict | None) -> str:
    had, has = bool(was and was["active"]), bool(now_is and now_is["active"])
    if has and not had:
        return GRANTED
    if had and not has:
        if new is None or new.status is Status.REVOKED:
            return REVOKED
        return EXPIRED if new.status is Status.EXPIRED or now_is["status"] == Status.EXPIRED.value else CHANGED
    if had and has and _later(new.expires_at, old.expires_at):
        return RENEWED
    return CHANGED


def _later(new: datetime | None, old: datetime | None) -> bool:
    return old is not None and (new is None or new > old)
