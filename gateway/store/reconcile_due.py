"""Reconcile's due read: the subscriptions worth re-reading from a store's API, built per
call (``statements`` names it among the rest)."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from gateway.domain.model import Status
from gateway.domain.unresolved import RENEWING, REVOKED_UNTIL_THE_END, UNRESOLVED

from . import tables

_subs = tables.subscriptions.c


def subscriptions_to_reconcile(source: str, expires_from: datetime, expires_to: datetime, limit: int,
                               after: str | None = None, unresolved_from: datetime | None = None) -> sa.Select:
    """Keyset order: ``after`` is the last key of the previous page (ordered and compared in
    the database's own collation). A subscription the store has not settled (``UNRESOLVED``,
    or stored as renewing: ``RENEWING`` and ``will_renew``) is due unless it ended before
    ``unresolved_from`` (``expires_from`` when not given); one whose owner is unknown,
    unless it ended before ``expires_from``; for a source in ``REVOKED_UNTIL_THE_END``, one
    stored as revoked whose period has not ended (its end after the window).

    The due rows are found first, then ordered (a MATERIALIZED common table expression:
    PostgreSQL may not fold the ORDER BY and LIMIT into the scan). Folded, a generic plan,
    the one a statement gets once psycopg has prepared it, walked the primary key for
    the order and filtered out every subscription not due: 1.7 s per million
    subscriptions, where finding the due ones in their indexes and sorting them took 0.1 s
    (bench/README.md, bench-scale). Each branch of the OR has an index of its own
    (``user_sub``, ``status``, ``expires_at`` for the window and for the renewing ones
    ended before it): a BitmapOr of them."""
    def ended_since(start: datetime):
        return sa.or_(_subs.expires_at.is_(None), _subs.expires_at >= start)

    # Written into the SQL, not bound: a generic plan then knows how few rows they are
    # and keeps to the status index; bound, it guessed a seventh of the table each.
    unresolved = _subs.status.in_([sa.literal(status.value, literal_execute=True)
                                   for status in sorted(UNRESOLVED)])
    # Half the table is active: these are found by their end (the expires_at index; the
    # range holds the subscriptions ended since, the expired ones filtered out), never by status.
    renewing = sa.and_(_subs.status == sa.literal(RENEWING.value, literal_execute=True),
                       _subs.will_renew.is_(sa.true()))
    since = expires_from if unresolved_from is None else unresolved_from
    due = [sa.and_(_subs.user_sub.is_(None), ended_since(expires_from)),
           sa.and_(unresolved, ended_since(since)),
           sa.and_(renewing, _subs.expires_at >= since, _subs.expires_at < expires_from),
           _subs.expires_at.between(expires_from, expires_to)]
    if source in REVOKED_UNTIL_THE_END:  # a refund reversed, its notification lost: by status, few
        due.append(sa.and_(_subs.status == _literal(Status.REVOKED), _subs.expires_at > expires_to))
    found = sa.select(tables.subscriptions).where(_subs.source == source, sa.or_(*due))
    if after is not None:
        found = found.where(_subs.key > after)
    due = found.cte("due").prefix_with("MATERIALIZED", dialect="postgresql")
    return sa.select(due).order_by(due.c.key).limit(limit)


def _literal(status: Status):
    return sa.literal(status.value, literal_execute=True)
