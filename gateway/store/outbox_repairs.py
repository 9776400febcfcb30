"""What an operator does to the outgoing webhooks' deliveries when they cannot go on by
themselves (``Outbox`` has these methods; the CLI and the admin call them).

Behind the feed: a disabled endpoint holds nothing from the retention, so enabled again
after a prune its position may be below the highest position deleted. Its receiver would
never hear of the deleted changes (a revocation among them), so the fan-out refuses it:
it sends nothing new, and holds the feed from further pruning, until an operator has
resynced the receiver and says so (``skip_gap``, ``flask webhooks skip-gap``), which moves
it to the oldest event kept. The pruned position is read after the events, as
``GET /v1/events`` does, so a prune committing in between shows.

A delivery whose event is gone (deleted while a release without the fan-out's lock ran,
or by hand) cannot be sent: the claim parks it ``failed``, and like any parked delivery
it holds back that user's later ones to the endpoint. A replay leaves it parked (sent
again, it would only be parked again); once the operator has resynced that user at the
receiver, ``drop`` deletes it, and the user's later deliveries go on. Never automatic,
for the reason a gap is never skipped by itself: the receiver missed a change.

What is parked, per endpoint (``parked``), is what the metrics' gauge and the worker's
warning show an operator who does not open the admin page.
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from gateway.domain.webhooks import FAILED, PENDING

from . import tables
from .feed import PRUNED_THROUGH
from .sql import EngineWork

_E, _D, _F = tables.webhook_endpoints.c, tables.webhook_deliveries.c, tables.entitlement_events.c
#: A delivery whose event the feed still holds: one that can be sent.
_SENDABLE = sa.exists().where(_F.position == _D.position)
#: Each endpoint's parked deliveries, and how many of them have their event gone. Read at
#: every scrape and every worker turn: the status is in the SQL's text, not a parameter, so
#: that even a prepared statement's generic plan reads the few failed rows through
#: ix_webhook_deliveries_status_next_attempt_at, never the whole table.
_PARKED = sa.select(_D.endpoint, sa.func.count().label("parked"),
                    sa.func.sum(sa.case((_SENDABLE, 0), else_=1)).label("gone")).where(
    _D.status == sa.literal(FAILED, literal_execute=True)).group_by(_D.endpoint)


class Repairs(EngineWork):
    def behind(self, enabled_only: bool = False) -> dict[str, tuple[int, int]]:
        """{endpoint: (its position, the highest position deleted)} of the endpoints the
        retention has passed: events between the two were deleted before it fanned them out."""
        with self._transaction(readonly=True) as connection:
            pruned = connection.execute(PRUNED_THROUGH).scalar_one()
            query = sa.select(_E.name, _E.position).where(_E.position < pruned).order_by(_E.name)
            found = connection.execute(query.where(_E.enabled.is_(True)) if enabled_only else query)
            return {row.name: (row.position, pruned) for row in found}

    def skip_gap(self, name: str, now: datetime) -> tuple[int, int] | None:
        """Move an endpoint behind the feed to the oldest event kept, once its receiver has
        been resynced; returns the gap skipped (position, highest deleted), None if none."""
        with self._transaction() as connection:
            row = connection.execute(sa.select(_E.position).where(_E.name == name).with_for_update()).first()
            pruned = connection.execute(PRUNED_THROUGH).scalar_one()
            if row is None or row.position >= pruned:
                return None
            connection.execute(sa.update(tables.webhook_endpoints).where(_E.name == name)
                               .values(position=pruned, updated_at=now))
            return row.position, pruned

    def replay(self, now: datetime, endpoint: str | None = None, positions: tuple[int, ...] = ()) -> int:
        """Make failed deliveries pending again (of one endpoint, or at these positions,
        or all), due now, with three days of attempts ahead; returns how many. One whose
        event is gone stays parked (``unsendable``)."""
        query = sa.update(tables.webhook_deliveries).where(*_failed(endpoint, positions), _SENDABLE)
        with self._transaction() as connection:
            return connection.execute(query.values(status=PENDING, attempts=0, next_attempt_at=now,
                                                   queued_at=now)).rowcount

    def unsendable(self, endpoint: str | None = None, positions: tuple[int, ...] = ()) -> list[tuple[str, int, str]]:
        """(endpoint, position, user) of the failed deliveries whose event is gone."""
        query = sa.select(_D.endpoint, _D.position, _D.user_sub).where(*_failed(endpoint, positions), ~_SENDABLE)
        with self._transaction(readonly=True) as connection:
            return [tuple(row) for row in connection.execute(query.order_by(_D.endpoint, _D.position))]

    def parked(self) -> dict[str, tuple[int, int]]:
        """{endpoint: (its parked (failed) deliveries, those of them whose event is gone)},
        of the endpoints that have any."""
        with self._transaction(readonly=True) as connection:
            return {row.endpoint: (row.parked, row.gone) for row in connection.execute(_PARKED)}

    def drop(self, endpoint: str, positions: tuple[int, ...]) -> dict[int, str]:
        """Delete the failed deliveries of ``endpoint`` at ``positions`` whose event is
        gone, so that their users' later deliveries go on; returns {position: user} of those
        dropped. Judged on the rows locked: one a replay made pending meanwhile, or one
        whose event is kept, is left."""
        with self._transaction() as connection:
            found = connection.execute(sa.select(_D.position, _D.user_sub).where(
                *_failed(endpoint, positions), ~_SENDABLE).with_for_update(of=tables.webhook_deliveries)).all()
            if found:
                connection.execute(sa.delete(tables.webhook_deliveries).where(
                    _D.endpoint == endpoint, _D.position.in_([row.position for row in found]), _D.status == FAILED))
            return {row.position: row.user_sub for row in found}


def _failed(endpoint: str | None, positions: tuple[int, ...]) -> tuple:
    return (_D.status == FAILED, *([_D.endpoint == endpoint] if endpoint is not None else []),
            *([_D.position.in_(positions)] if positions else []))
