"""The event log's retention, in SQL: deletes finished deliveries, delivered outgoing
webhooks and the transfers a store made (RevenueCat's register) older than a cutoff, and
the feed's old entitlement events, one small batch per transaction, with SQLAlchemy core on
the store's engine (PostgreSQL or SQLite). The policy (how old, how often, and why it is
safe) is ``gateway/jobs/retention.py``'s.

What may go: an event whose status is final, ``processed`` or ``ignored``. Never one still
``received`` (being applied, or abandoned: the retry worker takes it), ``deferred`` (the
retry worker's) or ``failed`` (parked until an operator replays it), whatever its age. Its
evidence (``event_subscriptions``) goes in the same transaction: the foreign key cascades
on PostgreSQL, but SQLite does not enforce foreign keys here, so both delete it by name.
The event with the highest id is never deleted: SQLite gives the next row max(id) + 1, so
the id of a deleted newest event would be handed out again. Outgoing: only ``delivered``
rows; a pending or failed delivery is still owed, and a delivered one holds nothing back
(``Outbox``'s claims wait only for earlier rows not delivered). Transfers: those stamped
before the cutoff, and before the time the policy gives each source whose deliveries are
not all applied yet (``unapplied_since``): such a delivery may be stamped before them.

A batch selects the oldest rows that may go, at most ``limit``, locks them (FOR UPDATE
SKIP LOCKED on PostgreSQL: a row another transaction holds, an operator's replay or an
account deletion, is left for the next run, so a batch never waits on a writer, nor two
pruners on each other) and deletes them. It walks ``ix_events_received_at`` (and, for
outgoing deliveries, ``ix_webhook_deliveries_delivered_at``, migration 0007; for
transfers, ``ix_transfers_as_of``, migration 0011) from the previous batch's last time,
so old rows that are kept are passed once per run, not once per batch.

The feed: ``feed_bound`` gives, once per run, the highest position that may go (below the
newest event, the first young one, and every enabled webhook endpoint's and named
consumer's position); ``feed_batch`` walks the primary key up to it and passes a user's
events from the first one a webhook still owes them (pending or failed: a replay sends it),
so the user's last event of each entitlement, which the expiry sweep reads, is never gone
while an older one stays. Its transaction raises ``feed_retention.pruned_through`` to the
last position it deleted: a reader's cursor below it has missed events. It locks only the
rows it deletes and that row, never ``feed_clock``, so writers of new events never wait.
"""
from __future__ import annotations

import dataclasses
from datetime import datetime

import sqlalchemy as sa

from gateway.domain.webhooks import DELIVERED

from . import rows, statements, tables
from .sql import EngineWork

_E, _L, _D = tables.events.c, tables.event_subscriptions.c, tables.webhook_deliveries.c
_T, _S = tables.transfers.c, tables.checkout_sessions.c
_F, _P, _W, _C = tables.entitlement_events.c, tables.feed_retention.c, tables.webhook_endpoints.c, tables.feed_cursors.c

#: The final statuses of a delivery (``ingest``): applied, or of no interest.
FINISHED = ("processed", "ignored")
#: The others: being applied or abandoned, the retry worker's, or parked for an operator.
UNFINISHED = ("received", "deferred", "failed")

_DELETE_TRANSFER = sa.delete(tables.transfers).where(
    _T.source == sa.bindparam("b_source"), _T.account == sa.bindparam("b_account"),
    _T.as_of == sa.bindparam("b_as_of"))


@dataclasses.dataclass(frozen=True)
class Batch:
    """What one transaction deleted, and the time of the last row it took (the next
    batch starts there)."""

    deleted: int
    evidence: int = 0
    last: datetime | int | None = None  # a time; a position for the feed


@dataclasses.dataclass(frozen=True)
class Due:
    """What a prune with this cutoff would delete."""

    events: int
    evidence: int
    deliveries: int
    transfers: int = 0


class Retention(EngineWork):
    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        # Seconds to rest between batches. SQLite has one writer at a time, and a writer
        # waiting for it polls at most every 100 ms (its busy handler): batches back to
        # back would starve the webhooks' writes (8.6 s measured); a 100 ms rest gives
        # each waiting writer its turn. PostgreSQL's writers never wait on a batch.
        self.pause = 0.1 if engine.dialect.name == "sqlite" else 0.0

    def newest_event(self) -> int:
        """The highest event id (0 for an empty log): kept, and the bound of a run."""
        with self._transaction(readonly=True) as connection:
            return connection.execute(sa.select(sa.func.coalesce(sa.func.max(_E.id), 0))).scalar_one()

    def events_batch(self, cutoff: datetime, after: datetime | None, below: int, limit: int) -> Batch:
        """Delete up to ``limit`` finished events received before ``cutoff`` (at or after
        ``after``, with an id below ``below``), oldest first, with their evidence."""
        with self._transaction() as connection:
            found = _oldest(connection, (_E.id, _E.received_at), _old_events(cutoff, below), _E.received_at,
                            after, limit)
            if not found:
                return Batch(0)
            ids = [row.id for row in found]
            evidence = connection.execute(sa.delete(tables.event_subscriptions).where(_L.event_pk.in_(ids)))
            deleted = connection.execute(sa.delete(tables.events).where(_E.id.in_(ids)))
            return Batch(deleted.rowcount, evidence.rowcount, found[-1].received_at)

    def deliveries_batch(self, cutoff: datetime, after: datetime | None, limit: int) -> Batch:
        """Delete up to ``limit`` outgoing deliveries delivered before ``cutoff`` (at or
        after ``after``), oldest first."""
        with self._transaction() as connection:
            found = _oldest(connection, (_D.endpoint, _D.position, _D.delivered_at), _old_deliveries(cutoff),
                            _D.delivered_at, after, limit)
            if not found:
                return Batch(0)
            by_endpoint: dict[str, list[int]] = {}
            for row in found:
                by_endpoint.setdefault(row.endpoint, []).append(row.position)
            # Per endpoint, an index scan of the positions: a (endpoint, position) IN list of
            # pairs is planned by PostgreSQL as one OR per pair, 80 times slower at 2,000.
            deleted = sum(connection.execute(sa.delete(tables.webhook_deliveries).where(
                _D.endpoint == endpoint, _D.position.in_(positions))).rowcount
                for endpoint, positions in by_endpoint.items())
            return Batch(deleted, 0, found[-1].delivered_at)

    def unapplied_since(self) -> dict[str, datetime]:
        """Per source, when the oldest of its deliveries not applied yet was received."""
        query = sa.select(_E.source, sa.func.min(_E.received_at)).where(_E.status.in_(UNFINISHED)).group_by(_E.source)
        with self._transaction(readonly=True) as connection:
            return {source: rows.utc(received_at) for source, received_at in connection.execute(query)}

    def transfers_batch(self, cutoff: datetime, kept: dict[str, datetime], after: datetime | None,
                        limit: int) -> Batch:
        """Delete up to ``limit`` transfers stamped before ``cutoff`` and, for a source in
        ``kept``, before its time there (at or after ``after``), oldest first."""
        with self._transaction() as connection:
            found = _oldest(connection, (_T.source, _T.account, _T.as_of), _old_transfers(cutoff, kept), _T.as_of,
                            after, limit)
            if not found:
                return Batch(0)
            # One statement per row by its primary key, sent together (executemany): a
            # (account, as_of) IN list of pairs is planned by PostgreSQL as one OR per pair,
            # 9 times slower at 1,000.
            deleted = connection.execute(_DELETE_TRANSFER, [
                {"b_source": row.source, "b_account": row.account, "b_as_of": row.as_of} for row in found]).rowcount
            return Batch(deleted, 0, found[-1].as_of)

    def checkout_sessions_batch(self, before: datetime, limit: int) -> Batch:
        """Delete up to ``limit`` of the Checkout Sessions handed out before ``before``,
        oldest first: Stripe has expired them, and the deletion no longer asks for them."""
        oldest = sa.select(_S.session_id).where(_S.created_at < before).order_by(_S.created_at).limit(limit)
        with self._transaction() as connection:
            return Batch(connection.execute(sa.delete(tables.checkout_sessions).where(
                _S.session_id.in_(oldest.scalar_subquery()))).rowcount)

    def checkout_sessions_due(self, before: datetime) -> int:
        """How many Checkout Sessions ``checkout_sessions_batch`` would delete (``--dry-run``)."""
        with self._transaction(readonly=True) as connection:
            return connection.execute(sa.select(sa.func.count()).select_from(tables.checkout_sessions)
                                      .where(_S.created_at < before)).scalar_one()

    def feed_bound(self, cutoff: datetime, cursors: tuple[str, ...] = ()) -> int:
        """The highest feed position a prune may delete (0: none): below the newest event
        and the first one that occurred at or after ``cutoff`` (or the expiry sweep's mark,
        when older: the sweep reads the events since), at or below the position of every
        enabled webhook endpoint (beyond it, not fanned out yet) and of the ``cursors``."""
        with self._transaction(readonly=True) as connection:
            newest = connection.execute(sa.select(sa.func.max(_F.position))).scalar_one()
            if not newest:
                return 0
            mark = connection.execute(sa.select(tables.feed_clock.c.expiries_through)).scalar()
            since = cutoff if mark is None else min(cutoff, rows.utc(mark))
            young = connection.execute(sa.select(sa.func.min(_F.position)).where(_F.occurred_at >= since)).scalar()
            read = [connection.execute(query).scalar() for query in (
                sa.select(sa.func.min(_W.position)).where(_W.enabled.is_(True)),
                sa.select(sa.func.min(_C.position)).where(_C.name.in_(cursors)))]
        # The newest and the first young one stay; what an endpoint or a consumer has read may go.
        return min([newest - 1, *([young - 1] if young else []), *(p for p in read if p is not None)])

    def feed_due(self, through: int) -> int:
        """How many feed events ``feed_batch`` would delete up to ``through`` (``--dry-run``)."""
        with self._transaction(readonly=True) as connection:
            return connection.execute(sa.select(sa.func.count()).select_from(tables.entitlement_events)
                                      .where(*_old_feed(through))).scalar_one()

    def feed_batch(self, through: int, after: int | None, limit: int) -> Batch:
        """Delete up to ``limit`` feed events at or below position ``through`` (from
        ``after`` on) that no webhook still owes, nor one of the same user before them."""
        with self._transaction() as connection:
            found = _oldest(connection, (_F.position,), _old_feed(through), _F.position, after, limit)
            if not found:
                return Batch(0)
            positions = [row.position for row in found]
            deleted = connection.execute(sa.delete(tables.entitlement_events).where(_F.position.in_(positions)))
            connection.execute(_raise_floor(self.engine.dialect.name), {"through": positions[-1]})
            return Batch(deleted.rowcount, 0, positions[-1])

    def due(self, cutoff: datetime, below: int, kept: dict[str, datetime] | None = None) -> Due:
        """What a prune would delete now (``--dry-run``); nothing is changed."""
        old = sa.select(_E.id).where(*_old_events(cutoff, below))
        with self._transaction(readonly=True) as connection:
            events = connection.execute(sa.select(sa.func.count()).where(*_old_events(cutoff, below))
                                        .select_from(tables.events)).scalar_one()
            evidence = connection.execute(sa.select(sa.func.count()).select_from(tables.event_subscriptions)
                                          .where(_L.event_pk.in_(old))).scalar_one()
            deliveries = connection.execute(sa.select(sa.func.count()).select_from(tables.webhook_deliveries)
                                            .where(*_old_deliveries(cutoff))).scalar_one()
            transfers = connection.execute(sa.select(sa.func.count()).select_from(tables.transfers)
                                           .where(*_old_transfers(cutoff, kept or {}))).scalar_one()
        return Due(events, evidence, deliveries, transfers)


def _oldest(connection: sa.Connection, columns: tuple, conditions: tuple, stamp: sa.Column,
            after: datetime | None, limit: int) -> list:
    """Up to ``limit`` rows meeting ``conditions``, oldest by ``stamp`` first (from ``after``
    on), locked; a row another transaction holds is passed (FOR UPDATE SKIP LOCKED)."""
    query = (sa.select(*columns).where(*conditions, *([stamp >= after] if after else []))
             .order_by(stamp).limit(limit).with_for_update(skip_locked=True))
    return connection.execute(query).all()


def _old_events(cutoff: datetime, below: int) -> tuple:
    return _E.received_at < cutoff, _E.status.in_(FINISHED), _E.id < below


def _old_feed(through: int) -> tuple:
    owed = tables.webhook_deliveries.c
    # The status in the SQL's text, so the plan uses the partial index of the rows still owed.
    held = sa.exists().where(owed.user_sub == _F.user_sub, owed.position <= _F.position,
                             owed.status != sa.literal(DELIVERED, literal_execute=True))
    return _F.position <= through, ~held


def _raise_floor(dialect: str) -> sa.Insert:
    """``feed_retention.pruned_through`` raised to ``through``, never lowered."""
    statement = statements.INSERTS[dialect](tables.feed_retention).values(
        id=1, pruned_through=sa.bindparam("through"))
    higher = statement.excluded.pruned_through
    return statement.on_conflict_do_update(index_elements=["id"], set_={
        "pruned_through": sa.case((higher > _P.pruned_through, higher), else_=_P.pruned_through)})


def _old_deliveries(cutoff: datetime) -> tuple:
    return _D.delivered_at < cutoff, _D.status == DELIVERED


def _old_transfers(cutoff: datetime, kept: dict[str, datetime]) -> tuple:
    return (_T.as_of < cutoff, *(sa.or_(_T.source != source, _T.as_of < time) for source, time in sorted(kept.items())))
