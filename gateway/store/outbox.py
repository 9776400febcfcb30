"""Outgoing webhooks' persistence: the endpoints, and each feed event's delivery to each,
with SQLAlchemy core on the store's engine (PostgreSQL or SQLite).

Fan-out: an endpoint's row holds the feed position it has been fanned out up to. Reading
the feed after it, inserting the deliveries and moving it on happen in one transaction
with that row locked (FOR UPDATE; SQLite has one writer at a time), so two workers never
fan out the same events (the primary key (endpoint, position) would refuse it anyway).
The feed's positions are gapless and visible in commit order (``feed.py``), so paging by
position skips nothing. The events read are locked too (FOR KEY SHARE): the feed's
retention deletes only events no delivery holds, judged under its own lock of them
(``retention.feed_batch``, SKIP LOCKED), so it passes those being queued, and one it is
deleting is read here once its batch has committed, gone. Unlocked, an endpoint switched on
again (the retention's bound leaves a disabled one out) was queued an event a batch had
deleted and not yet committed, and every claim of that delivery failed.

Claims: a pending delivery is due once its time has come and every earlier delivery of
the same endpoint and user has been delivered; it is leased by moving its time to the end
of the lease, in the claiming transaction (FOR UPDATE SKIP LOCKED on PostgreSQL), so a
second worker neither takes it nor the user's next one until it is delivered.

Behind the feed (an endpoint enabled again after a prune passed it), a delivery whose
event is gone, and what an operator does about each: ``outbox_repairs.py``.
"""
from __future__ import annotations

import dataclasses
from datetime import datetime

import sqlalchemy as sa

from gateway.domain.entitlement_events import FeedEvent
from gateway.domain.webhooks import ADMIN, DELIVERED, ENV, FAILED, PENDING, Delivery, Endpoint

from . import rows, tables
from .feed import PRUNED_THROUGH, feed_event
from .outbox_repairs import Repairs

_E, _D, _F = tables.webhook_endpoints.c, tables.webhook_deliveries.c, tables.entitlement_events.c
FAN_OUT_PAGE = 1000
#: ``settle``'s word for an outcome that came after another worker took the delivery over.
TAKEN_OVER = "taken over"


@dataclasses.dataclass(frozen=True)
class Claimed:
    """A delivery leased to one worker, with what it sends; ``attempts`` counts this one."""

    endpoint: Endpoint
    event: FeedEvent
    attempts: int
    queued_at: datetime


class EndpointTaken(ValueError):
    """The name belongs to an endpoint of the other origin."""


def _endpoint(row) -> Endpoint:
    return Endpoint(row.name, row.url, tuple(row.secrets), None if row.event_types is None else tuple(row.event_types),
                    row.enabled, row.origin)


def _endpoint_values(endpoint: Endpoint) -> dict:
    return {"url": endpoint.url, "secrets": list(endpoint.secrets), "enabled": endpoint.enabled,
            "event_types": None if endpoint.types is None else list(endpoint.types), "origin": endpoint.origin}


def _due(now: datetime, limit: int) -> sa.Select:
    earlier = tables.webhook_deliveries.alias("earlier")
    # The status in the SQL's text, not a parameter: a generic plan then still matches the
    # partial index of the rows to send (ix_webhook_deliveries_undelivered).
    held_back = sa.exists().where(earlier.c.endpoint == _D.endpoint, earlier.c.user_sub == _D.user_sub,
                                  earlier.c.position < _D.position,
                                  earlier.c.status != sa.literal(DELIVERED, literal_execute=True))
    return (sa.select(_D.endpoint, _D.position, _D.attempts, _D.queued_at)
            .join(tables.webhook_endpoints, _E.name == _D.endpoint)
            .where(_E.enabled.is_(True), _D.status == PENDING, _D.next_attempt_at <= now, ~held_back)
            .order_by(_D.next_attempt_at, _D.position).limit(limit)
            .with_for_update(of=tables.webhook_deliveries, skip_locked=True))


_LEASE = sa.update(tables.webhook_deliveries).where(
    _D.endpoint == sa.bindparam("b_endpoint"), _D.position == sa.bindparam("b_position"),
).values(next_attempt_at=sa.bindparam("lease_until"), attempts=_D.attempts + 1)


#: Settled only by the worker that holds the lease: a claim counts the attempt, so one that
#: took the delivery over since (the lease lapsed while this worker still sent) has moved
#: ``attempts`` on, and the late outcome changes nothing.
_SETTLE = sa.update(tables.webhook_deliveries).where(
    _D.endpoint == sa.bindparam("b_endpoint"), _D.position == sa.bindparam("b_position"), _D.status == PENDING,
    _D.attempts == sa.bindparam("b_attempts"),
).values(status=sa.bindparam("status"), next_attempt_at=sa.bindparam("later"), last_error=sa.bindparam("error"),
         delivered_at=sa.bindparam("delivered"))

#: A delivery whose event the feed's retention deleted has nothing to send: parked
#: ``failed`` with the reason, shown on /admin/webhooks, instead of failing every claim.
#: It holds back the user's later deliveries until an operator drops it (``Repairs.drop``).
_PARK_GONE = sa.update(tables.webhook_deliveries).where(
    _D.endpoint == sa.bindparam("b_endpoint"), _D.position == sa.bindparam("b_position"),
).values(status=FAILED, next_attempt_at=None,
         last_error="its event was deleted by the feed's retention (FEED_RETENTION_DAYS), so it cannot be sent: "
                    "resync the user at the receiver, then flask webhooks drop")


class Outbox(Repairs):
    """The outgoing webhooks' endpoints and deliveries."""

    # Endpoints.
    def endpoints(self) -> list[Endpoint]:
        with self._transaction(readonly=True) as connection:
            found = connection.execute(sa.select(tables.webhook_endpoints).order_by(_E.name))
            return [_endpoint(row) for row in found]

    def sync(self, configured: list[Endpoint], now: datetime) -> None:
        """Make the env endpoints those of ``configured``: a new one starts at the feed's
        head (it hears of changes from now on); one no longer configured is disabled, its
        undelivered rows kept. An admin endpoint of the same name becomes the env's."""
        with self._transaction() as connection:
            held = {row.name: _endpoint(row) for row in connection.execute(
                sa.select(tables.webhook_endpoints).with_for_update())}
            for endpoint in configured:
                endpoint = dataclasses.replace(endpoint, enabled=True, origin=ENV)
                if endpoint.name not in held:
                    self._insert(connection, endpoint, now)
                elif held[endpoint.name] != endpoint:
                    self._update(connection, endpoint, now)
            names = {endpoint.name for endpoint in configured}
            for gone in held.values():
                if gone.origin == ENV and gone.enabled and gone.name not in names:
                    self._update(connection, dataclasses.replace(gone, enabled=False), now)

    def save(self, endpoint: Endpoint, now: datetime) -> bool:
        """Add or change an admin endpoint; True when it is new. An env endpoint is not the
        admin's to change (the next start would undo it): ``EndpointTaken``."""
        endpoint = dataclasses.replace(endpoint, origin=ADMIN)
        with self._transaction() as connection:
            held = connection.execute(sa.select(_E.origin).where(_E.name == endpoint.name).with_for_update()).first()
            if held is not None and held.origin != ADMIN:
                raise EndpointTaken(f"{endpoint.name} is configured by {held.origin.upper()}")
            (self._update if held else self._insert)(connection, endpoint, now)
            return held is None

    def _insert(self, connection: sa.Connection, endpoint: Endpoint, now: datetime) -> None:
        head = connection.execute(sa.select(sa.func.coalesce(sa.func.max(_F.position), 0))).scalar_one()
        connection.execute(sa.insert(tables.webhook_endpoints), {
            "name": endpoint.name, **_endpoint_values(endpoint), "position": head,
            "created_at": now, "updated_at": now})

    def _update(self, connection: sa.Connection, endpoint: Endpoint, now: datetime) -> None:
        connection.execute(sa.update(tables.webhook_endpoints).where(_E.name == endpoint.name)
                           .values(**_endpoint_values(endpoint), updated_at=now))

    # Fan-out.
    def fan_out(self, now: datetime) -> int:
        """Queue, for every enabled endpoint, the feed events it wants since its position;
        returns how many deliveries were queued."""
        with self._transaction(readonly=True) as connection:
            names = list(connection.execute(sa.select(_E.name).where(_E.enabled.is_(True))).scalars())
        return sum(self._fan_out_to(name, now) for name in names)

    def _fan_out_to(self, name: str, now: datetime) -> int:
        queued, page = 0, FAN_OUT_PAGE
        while page == FAN_OUT_PAGE:
            with self._transaction() as connection:
                row = connection.execute(sa.select(tables.webhook_endpoints).where(
                    _E.name == name, _E.enabled.is_(True)).with_for_update()).first()
                if row is None:
                    return queued
                found = connection.execute(sa.select(_F.position, _F.type, _F.user_sub).where(
                    _F.position > row.position).order_by(_F.position).limit(FAN_OUT_PAGE)
                    .with_for_update(read=True, key_share=True)).all()
                if not found or row.position < connection.execute(PRUNED_THROUGH).scalar_one():
                    return queued  # nothing new, or behind the feed: it waits for ``skip_gap``
                wanted = [event for event in found if _endpoint(row).wants(event.type)]
                if wanted:
                    connection.execute(sa.insert(tables.webhook_deliveries), [
                        {"endpoint": name, "position": event.position, "user_sub": event.user_sub,
                         "status": PENDING, "attempts": 0, "next_attempt_at": now, "created_at": now,
                         "queued_at": now} for event in wanted])
                connection.execute(sa.update(tables.webhook_endpoints).where(_E.name == name)
                                   .values(position=found[-1].position))
            queued, page = queued + len(wanted), len(found)
        return queued

    # Attempts.
    def claim(self, now: datetime, lease_until: datetime, limit: int) -> list[Claimed]:
        """Due deliveries, at most one per (endpoint, user), leased until ``lease_until``."""
        with self._transaction() as connection:
            due = connection.execute(_due(now, limit)).all()
            if not due:
                return []
            connection.execute(_LEASE, [{"b_endpoint": d.endpoint, "b_position": d.position,
                                         "lease_until": lease_until} for d in due])
            endpoints = {row.name: _endpoint(row) for row in connection.execute(
                sa.select(tables.webhook_endpoints).where(_E.name.in_({d.endpoint for d in due})))}
            events = {row.position: feed_event(row) for row in connection.execute(
                sa.select(tables.entitlement_events).where(_F.position.in_({d.position for d in due})))}
            gone = [d for d in due if d.position not in events]
            if gone:  # never queued since the fan-out locks what it reads; parked, not crashed on
                connection.execute(_PARK_GONE, [{"b_endpoint": d.endpoint, "b_position": d.position} for d in gone])
        return [Claimed(endpoints[d.endpoint], events[d.position], d.attempts + 1, rows.utc(d.queued_at))
                for d in due if d.position in events]

    def settle(self, outcomes: list[tuple[Claimed, str | None, datetime | None]], now: datetime) -> list[str]:
        """Record attempts' outcomes, each (claimed, error, retry_at): delivered (no
        error), tried again at ``retry_at``, or parked ``failed`` (neither); returns the
        statuses, ``TAKEN_OVER`` where another worker holds the delivery now. One
        transaction for a round of attempts."""
        settled = [{"b_endpoint": claimed.endpoint.name, "b_position": claimed.event.position, "error": error,
                    "b_attempts": claimed.attempts,
                    "status": DELIVERED if error is None else PENDING if later is not None else FAILED,
                    "later": later, "delivered": None if error else now} for claimed, error, later in outcomes]
        if not settled:
            return []
        with self._transaction() as connection:
            return [row["status"] if connection.execute(_SETTLE, row).rowcount else TAKEN_OVER for row in settled]

    # What the admin and the CLI show.
    def counts(self) -> dict[str, dict[str, int]]:
        """{endpoint: {status: deliveries}}."""
        query = sa.select(_D.endpoint, _D.status, sa.func.count()).group_by(_D.endpoint, _D.status)
        found: dict[str, dict[str, int]] = {}
        with self._transaction(readonly=True) as connection:
            for endpoint, status, count in connection.execute(query):
                found.setdefault(endpoint, {})[status] = count
        return found

    def deliveries(self, endpoint: str | None = None, status: str | None = None, limit: int = 50) -> list[Delivery]:
        """The newest first; ``event_type`` None where the feed's retention deleted the event
        (a delivered row stays for ``EVENTS_RETENTION_DAYS``, which may be the longer)."""
        query = sa.select(*tables.webhook_deliveries.c, _F.type).outerjoin(
            tables.entitlement_events, _F.position == _D.position).order_by(_D.position.desc(), _D.endpoint)
        if endpoint is not None:
            query = query.where(_D.endpoint == endpoint)
        if status is not None:
            query = query.where(_D.status == status)
        with self._transaction(readonly=True) as connection:
            return [Delivery(row.endpoint, row.position, row.user_sub, row.type, row.status, row.attempts,
                             rows.utc(row.next_attempt_at), row.last_error, rows.utc(row.created_at),
                             rows.utc(row.delivered_at)) for row in connection.execute(query.limit(limit))]

