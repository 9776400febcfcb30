"""Every statement the two SQL stores run, built from the tables in one place.

Building a SQLAlchemy statement costs more than running a cached one, so those a delivery
runs are built once and executed with parameters: ``shared()`` (both stores, through
SQLAlchemy), ``for_sqlite()``, and ``for_postgres()``, the texts PostgreSQL's store sends
on psycopg's own cursor. The reads of the admin, the explain API, reconcile and the
retry worker take filters and are built per call (``search_events`` and below).
"""
from __future__ import annotations

import functools
from datetime import datetime
from types import SimpleNamespace

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from gateway.domain.events import WAITING

from . import tables
from .reconcile_due import subscriptions_to_reconcile  # noqa: F401 (reconcile's read, built per call)
from .rows import GRANT_COLUMNS

_events, _subs, _ents = tables.events.c, tables.subscriptions.c, tables.entitlements.c


def _upsert(insert, table: sa.Table, keys: list[str], returning: bool = True):
    statement = insert(table)
    changes = {c.name: statement.excluded[c.name] for c in table.c if c.name not in keys}
    statement = statement.on_conflict_do_update(index_elements=keys, set_=changes)
    # RETURNING makes SQLAlchemy send a list of rows as ONE multi-row INSERT
    # ("insertmanyvalues"), much cheaper than the driver's statement per row.
    return statement.returning(table.c[keys[0]]) if returning else statement


def _select_entitlements() -> sa.Select:
    """A user's grants, the columns in ``Grant``'s order (``rows.grants``)."""
    return sa.select(*(_ents[name] for name in GRANT_COLUMNS)) \
        .where(_ents.user_sub == sa.bindparam("user_sub")).order_by(_ents.name)


#: Each dialect's INSERT, for what only it can say (ON CONFLICT ...), by ``dialect.name``.
INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


@functools.cache
def shared() -> SimpleNamespace:
    """Both stores: reads by primary key."""
    return SimpleNamespace(
        select_event=sa.select(tables.events).where(_events.id == sa.bindparam("id")),
        select_subscription=sa.select(tables.subscriptions).where(
            _subs.source == sa.bindparam("source"), _subs.key == sa.bindparam("key")),
    )


@functools.cache
def for_sqlite() -> SimpleNamespace:
    identities = tables.identities.c
    return SimpleNamespace(
        record_event=sqlite.insert(tables.events).on_conflict_do_nothing(index_elements=["source", "event_id"])
        .returning(_events.id, _events.source, _events.event_id),  # the caller has the rest
        # Several rows, in key order.
        select_subscriptions=sa.select(tables.subscriptions).where(
            sa.tuple_(_subs.source, _subs.key).in_(sa.bindparam("keys", expanding=True)))
        .order_by(_subs.source, _subs.key),
        upsert_subscription=_upsert(sqlite.insert, tables.subscriptions, ["source", "key"]),
        held_by=sa.select(tables.subscriptions).where(_subs.source == sa.bindparam("source"), sa.or_(
            _subs.account.in_(sa.bindparam("accounts", expanding=True)),
            _subs.user_sub.in_(sa.bindparam("owners", expanding=True)))).order_by(_subs.key),
        subscriptions_of_users=sa.select(tables.subscriptions).where(
            _subs.user_sub.in_(sa.bindparam("user_subs", expanding=True))),
        # The entitlements of these users that no (user, name) pair of ``keep`` keeps.
        stale_entitlements=sa.delete(tables.entitlements).where(
            _ents.user_sub.in_(sa.bindparam("owners", expanding=True)),
            sa.tuple_(_ents.user_sub, _ents.name).not_in(sa.bindparam("keep", expanding=True))),
        upsert_entitlement=_upsert(sqlite.insert, tables.entitlements, ["user_sub", "name"]),
        select_entitlements=_select_entitlements(),
        link_event=sqlite.insert(tables.event_subscriptions)
        .on_conflict_do_nothing(index_elements=["event_pk", "source", "key"])
        .returning(tables.event_subscriptions.c.event_pk),  # one multi-row INSERT, as _upsert
        select_identity=sa.select(identities.user_sub, identities.as_of).where(
            identities.source == sa.bindparam("source"), identities.account == sa.bindparam("account")),
        upsert_identity=_upsert(sqlite.insert, tables.identities, ["source", "account"], returning=False),
        take_feed_positions=take_feed_positions(sqlite.insert),
    )


@functools.cache
def update_event(fields: tuple[str, ...]) -> sa.Update:
    """An UPDATE of these columns of the event ``event_pk``."""
    return sa.update(tables.events).where(_events.id == sa.bindparam("event_pk")) \
        .values({name: sa.bindparam(name) for name in fields})


@functools.cache
def update_claimed_event(fields: tuple[str, ...]) -> sa.Update:
    """``update_event`` of an event still waiting under the claim ``claim``; returns its id."""
    waiting = [sa.literal_column(f"'{status}'") for status in WAITING]
    return update_event(fields).where(
        _events.status.in_(waiting), _events.next_attempt_at.is_not_distinct_from(sa.bindparam("claim", type_=tables.Time)),
    ).returning(_events.id)


# Built per call: the reads that take filters.
def search_events(*, source=None, status=None, event_type=None, event_id=None, since=None, until=None,
                  before_pk=None, limit=50) -> sa.Select:
    query = sa.select(tables.events).order_by(_events.id.desc()).limit(limit)
    wanted = ((_events.source, source), (_events.status, status), (_events.event_type, event_type),
              (_events.event_id, event_id))
    for column, value in wanted:
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(_events.received_at >= since)
    if until is not None:
        query = query.where(_events.received_at < until)
    if before_pk is not None:
        query = query.where(_events.id < before_pk)
    return query


def event_links(event_pks: list[int]) -> sa.Select:
    links = tables.event_subscriptions.c
    return sa.select(links.event_pk, links.source, links.key).where(links.event_pk.in_(list(event_pks))) \
        .order_by(links.event_pk, links.source, links.key)


def events_touching(keys: list[tuple[str, str]], before_pk: int | None, limit: int) -> sa.Select:
    links = tables.event_subscriptions.c
    touching = sa.select(links.event_pk).where(sa.tuple_(links.source, links.key).in_(list(keys)))
    query = sa.select(tables.events).where(_events.id.in_(touching))
    if before_pk is not None:
        query = query.where(_events.id < before_pk)
    return query.order_by(_events.id.desc()).limit(limit)


def count_events(statuses) -> sa.Select:
    return sa.select(_events.source, _events.status, sa.func.count()) \
        .where(_events.status.in_(list(statuses))).group_by(_events.source, _events.status)


def due_events(now: datetime, stale_before: datetime, limit: int) -> sa.Select:
    """The ids of deferred events whose time has come and of received ones left unapplied."""
    not_leased = sa.or_(_events.next_attempt_at.is_(None), _events.next_attempt_at <= now)
    return sa.select(_events.id).where(sa.or_(
        sa.and_(_events.status == "deferred", not_leased),
        sa.and_(_events.status == "received", _events.received_at < stale_before, not_leased),
    )).order_by(_events.id).limit(limit)


def lease_events(event_pks: list[int], until: datetime) -> sa.Update:
    return sa.update(tables.events).where(_events.id.in_(event_pks)).values(next_attempt_at=until)


# PostgreSQL: SQL for the driver's own cursor.
def _psycopg(statement, columns: list[str] | None = None) -> str:
    """SQLAlchemy's SQL for psycopg (``%(name)s`` parameters); an INSERT names ``columns``."""
    return str(statement.compile(dialect=postgresql.psycopg.dialect(), column_keys=columns))


@functools.cache
def for_postgres() -> SimpleNamespace:
    """The statements of a delivery's write transaction, and the entitlement read, as SQL
    for psycopg's cursor (``postgres.PostgresTransaction``). A list is one array parameter
    (a pair of lists, two arrays unnested together), so each statement has one text
    whatever the number of rows and stays prepared; rows are written one statement each,
    sent together in the driver's pipeline. An INSERT names every column of its table."""
    select_subscriptions = f"SELECT {', '.join(f'subscriptions.{c.name}' for c in _subs)} FROM subscriptions"
    in_pairs = "IN (SELECT * FROM unnest(CAST(%(firsts)s AS text[]), CAST(%(seconds)s AS text[])))"
    upsert_subscription = _upsert(postgresql.insert, tables.subscriptions, ["source", "key"], returning=False)
    upsert_entitlement = _upsert(postgresql.insert, tables.entitlements, ["user_sub", "name"], returning=False)
    return SimpleNamespace(
        record_event=_psycopg(postgresql.insert(tables.events).on_conflict_do_nothing(
            index_elements=["source", "event_id"]).returning(_events.id), [c.name for c in _events if c.name != "id"]),
        lock_subscription=_psycopg(shared().select_subscription.with_for_update()),
        # Locked in key order, as the sort returns them.
        lock_subscriptions=f"{select_subscriptions} WHERE (source, key) {in_pairs} "
                           "ORDER BY source, key FOR UPDATE",
        subscriptions_of_users=f"{select_subscriptions} WHERE user_sub = ANY(%(user_subs)s)",
        upsert_subscription=_psycopg(upsert_subscription, [c.name for c in _subs]),
        # Taken in the order of the list (sorted by the caller).
        advisory_locks="SELECT pg_advisory_xact_lock(%(space)s, hashtext(lock.name)) "
                       "FROM unnest(CAST(%(names)s AS text[])) WITH ORDINALITY AS lock(name, n) ORDER BY lock.n",
        # The entitlements of these users that no (user, name) pair keeps.
        stale_entitlements=f"DELETE FROM entitlements WHERE user_sub = ANY(%(owners)s) "
                           f"AND (user_sub, name) NOT {in_pairs}",
        upsert_entitlement=_psycopg(upsert_entitlement, [c.name for c in _ents]),
        link_event=_psycopg(postgresql.insert(tables.event_subscriptions).on_conflict_do_nothing(
            index_elements=["event_pk", "source", "key"]), ["event_pk", "source", "key"]),
        # Locked in key order, as the sort returns them.
        lock_held_by=f"{select_subscriptions} WHERE source = %(source)s "
                     "AND (account = ANY(%(accounts)s) OR user_sub = ANY(%(owners)s)) ORDER BY key FOR UPDATE",
        resolve="SELECT user_sub FROM identities WHERE source = %(source)s AND account = %(account)s",
        link_identity=_psycopg(_link_identity()),
        select_entitlements=_psycopg(_select_entitlements()),
        begin="BEGIN ISOLATION LEVEL READ COMMITTED",
        commit="COMMIT",
        **_postgres_feed(),
    )


def _postgres_feed() -> dict[str, str]:
    """The feed's (``feed.py``): before-rows and tombstones of the users, the clock, the events."""
    return dict(
        entitlements_of_users=f"SELECT user_sub, {', '.join(GRANT_COLUMNS)} FROM entitlements "
                              "WHERE user_sub = ANY(%(user_subs)s) ORDER BY user_sub, name",
        deleted_among="SELECT user_sub FROM deleted_users WHERE user_sub = ANY(%(user_subs)s)",
        take_feed_positions=_psycopg(take_feed_positions(postgresql.insert)),
        append_feed=_psycopg(sa.insert(tables.entitlement_events), [c.name for c in tables.entitlement_events.c]),
    )


def take_feed_positions(insert):
    """Add ``count`` to the feed's clock and return it with the expiry mark; the row is
    created when missing (a restored dump, a truncated table), its mark set to now."""
    clock = tables.feed_clock
    statement = insert(clock).values(id=sa.literal_column("1"), position=sa.bindparam("count"),
                                    expiries_through=sa.func.now())
    return statement.on_conflict_do_update(
        index_elements=["id"], set_={"position": clock.c.position + statement.excluded.position},
    ).returning(clock.c.position, clock.c.expiries_through)


@functools.cache
def postgres_update_event(fields: tuple[str, ...]) -> str:
    """``update_event`` as SQL for psycopg's cursor."""
    return _psycopg(update_event(fields))


@functools.cache
def postgres_update_claimed_event(fields: tuple[str, ...]) -> str:
    return _psycopg(update_claimed_event(fields))


def _link_identity():
    """Write an identity link unless the one held has a greater ``link_claim`` (as_of
    present, then as_of, then user_sub by code point, as Python orders strings, whatever
    the database's collation); returns the user it now maps to. No row comes back only
    when another user's link holds or the user was deleted: then the caller reads who
    (nobody, or the holder). One atomic statement:
    concurrent links of one account need no lock of their own."""
    ids = tables.identities.c
    # A deleted user is linked to nothing (``tables.deleted_users``): no row, no answer.
    row = sa.select(*[sa.cast(sa.bindparam(c.name), c.type) for c in tables.identities.c]).where(
        ~sa.exists().where(tables.deleted_users.c.user_sub == sa.cast(sa.bindparam("user_sub"), ids.user_sub.type)))
    statement = postgresql.insert(tables.identities).from_select([c.name for c in tables.identities.c], row)
    new = statement.excluded
    earliest = sa.literal_column("CAST('-infinity' AS TIMESTAMP WITH TIME ZONE)")

    def claim(c):
        return sa.tuple_(c.as_of.is_not(None), sa.func.coalesce(c.as_of, earliest), c.user_sub.collate("C"))

    wins = claim(new) > claim(ids)
    return statement.on_conflict_do_update(
        index_elements=["source", "account"],
        # The same user again (the common case: every delivery repeats its aliases) answers
        # in this statement too, keeping the greater claim's time.
        set_={"user_sub": new.user_sub, "as_of": sa.case((wins, new.as_of), else_=ids.as_of),
              "created_at": sa.case((wins, new.created_at), else_=ids.created_at)},
        where=sa.or_(wins, ids.user_sub.collate("C") == new.user_sub.collate("C")),
    ).returning(ids.user_sub)
