"""The entitlement feed, the expiry sweep's reads and deleted users, for both SQL stores.

Feed order: ``take_feed_positions`` adds to the one row of ``feed_clock`` with an UPDATE,
whose row lock is held until the transaction ends. A second writer of events waits there
until the first has committed (or rolled back, giving its positions back), then numbers
its own after them. So positions are gapless and become visible in order: a reader that
has seen position N has seen every event up to N, and paging by position never skips an
event committed late. (A sequence alone would not do: numbers are taken at insert, and a
transaction holding 7 may commit after one holding 8 was read.) The lock is taken last in
a transaction, after the users' locks, and held only while the commit completes.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from gateway.domain.entitlement_events import FeedEvent
from gateway.domain.entitlements import Grant
from gateway.domain.model import GRANTING

from . import rows, tables

_feed, _clock, _ents = tables.entitlement_events.c, tables.feed_clock.c, tables.entitlements.c
_deleted = tables.deleted_users.c

SET_EXPIRIES_THROUGH = sa.update(tables.feed_clock).where(_clock.id == 1) \
    .values(expiries_through=sa.bindparam("through"))
INSERT_EVENTS = sa.insert(tables.entitlement_events)
ENTITLEMENTS_OF_USERS = sa.select(_ents.user_sub, *(_ents[name] for name in rows.GRANT_COLUMNS)) \
    .where(_ents.user_sub.in_(sa.bindparam("user_subs", expanding=True))).order_by(_ents.user_sub, _ents.name)
DELETED_AMONG = sa.select(_deleted.user_sub).where(_deleted.user_sub.in_(sa.bindparam("user_subs", expanding=True)))
#: The highest position the retention deleted (no row: nothing deleted yet, 0).
PRUNED_THROUGH = sa.select(sa.func.coalesce(sa.func.max(tables.feed_retention.c.pruned_through), 0))


def event_row(event: FeedEvent) -> dict[str, Any]:
    return {"position": event.position, "event_id": event.id, "type": event.type, "user_sub": event.user_id,
            "entitlement": event.entitlement, "before": event.before, "after": event.after,
            "cause": event.cause, "occurred_at": event.occurred_at}


def feed_event(row) -> FeedEvent:
    return FeedEvent(id=row.event_id, type=row.type, user_id=row.user_sub, entitlement=row.entitlement,
                     before=row.before, after=row.after, cause=row.cause, occurred_at=rows.utc(row.occurred_at),
                     position=row.position)


def grants_by_user(found, user_subs: list[str]) -> dict[str, list[Grant]]:
    """Rows of ``ENTITLEMENTS_OF_USERS`` as each user's grants."""
    by_user: dict[str, list] = {user_sub: [] for user_sub in user_subs}
    for row in found:
        by_user[row[0]].append(row[1:])
    return {user_sub: rows.grants(held) for user_sub, held in by_user.items()}


class FeedTransaction:
    """The feed's statements, through SQLAlchemy (``SqlTransaction._execute``, whose
    subclass this is)."""

    def read_entitlements(self, user_subs: list[str]) -> tuple[dict[str, list[Grant]], set[str]]:
        if not user_subs:
            return {}, set()
        grants = grants_by_user(self._execute(ENTITLEMENTS_OF_USERS, {"user_subs": list(user_subs)}), list(user_subs))
        return grants, self.deleted_among(user_subs)

    def take_feed_positions(self, count: int) -> tuple[int, datetime]:
        position, through = self._execute(self.sql.take_feed_positions, {"count": count}).one()
        return position - count, rows.utc(through)

    def append_feed(self, events: list[FeedEvent], expiries_through: datetime | None = None) -> None:
        if events:
            self._execute(INSERT_EVENTS, [event_row(event) for event in events])
        if expiries_through is not None:
            self._execute(SET_EXPIRIES_THROUGH, {"through": expiries_through})

    def read_feed(self, after: int, limit: int, user_sub: str | None = None) -> list[FeedEvent]:
        query = sa.select(tables.entitlement_events).where(_feed.position > after)
        if user_sub is not None:
            query = query.where(_feed.user_sub == user_sub)
        return [feed_event(row) for row in self._execute(query.order_by(_feed.position).limit(limit))]

    def feed_pruned_through(self) -> int:
        return self._execute(PRUNED_THROUGH).scalar_one()

    def said_inactive(self, pairs: set[tuple[str, str]]) -> set[tuple[str, str]]:
        if not pairs:
            return set()
        last = sa.select(sa.func.max(_feed.position)).where(
            _feed.user_sub.in_(sorted({user for user, _ in pairs})), _feed.entitlement.is_not(None),
        ).group_by(_feed.user_sub, _feed.entitlement)
        found = self._execute(sa.select(_feed.user_sub, _feed.entitlement, _feed.after).where(_feed.position.in_(last)))
        return {(row.user_sub, row.entitlement) for row in found
                if (row.user_sub, row.entitlement) in pairs and not (row.after or {}).get("active")}

    def lapsed_grants(self, after: datetime, through: datetime, limit: int | None) -> list[tuple[str, datetime]]:
        query = sa.select(_ents.user_sub, _ents.expires_at).where(
            _ents.status.in_([status.value for status in GRANTING]),
            _ents.expires_at > after, _ents.expires_at <= through,
        ).order_by(_ents.expires_at, _ents.user_sub).limit(limit)
        return [(row.user_sub, rows.utc(row.expires_at)) for row in self._execute(query)]

    def feed_head(self) -> tuple[int, datetime | None]:
        found = self._execute(sa.select(_clock.position, _clock.expiries_through).where(_clock.id == 1)).first()
        return (found.position, rows.utc(found.expiries_through)) if found else (0, None)

    def mark_deleted(self, user_sub: str, report: dict[str, Any], now: datetime) -> dict[str, Any] | None:
        held = self._execute(sa.select(_deleted.report).where(_deleted.user_sub == user_sub)).first()
        if held is not None:
            return held.report
        self._execute(sa.insert(tables.deleted_users), {"user_sub": user_sub, "deleted_at": now, "report": report})
        return None
