"""The store's hot statements, built once per dialect and executed with parameters.

Building a SQLAlchemy statement costs more than running a cached one; these run on every
delivery, so they are built once.
"""
from __future__ import annotations

import functools
from types import SimpleNamespace

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from . import tables as t


def _upsert(insert, table: sa.Table, keys: list[str], returning: bool = True):
    statement = insert(table)
    changes = {c.name: statement.excluded[c.name] for c in table.c if c.name not in keys}
    statement = statement.on_conflict_do_update(index_elements=keys, set_=changes)
    # RETURNING makes SQLAlchemy send a list of rows as ONE multi-row INSERT
    # ("insertmanyvalues"), much cheaper than the driver's statement per row.
    return statement.returning(table.c[keys[0]]) if returning else statement


@functools.cache
def for_dialect(name: str) -> SimpleNamespace:
    insert = postgresql.insert if name == "postgresql" else sqlite.insert
    events, subs, ents = t.events.c, t.subscriptions.c, t.entitlements.c
    select_subscription = sa.select(t.subscriptions).where(
        subs.source == sa.bindparam("source"), subs.key == sa.bindparam("key"))
    # Several rows, in key order.
    select_subscriptions = sa.select(t.subscriptions).where(
        sa.tuple_(subs.source, subs.key).in_(sa.bindparam("keys", expanding=True))).order_by(subs.source, subs.key)
    stale_entitlements = sa.delete(t.entitlements).where(
        ents.user_sub == sa.bindparam("owner"), ents.name.not_in(sa.bindparam("keep", expanding=True)))
    upsert_entitlement = _upsert(insert, t.entitlements, ["user_sub", "name"])
    select_entitlements = sa.select(ents.name, ents.status, ents.expires_at, ents.will_renew, ents.source,
                                    ents.product_id, ents.subscription_key) \
        .where(ents.user_sub == sa.bindparam("user_sub")).order_by(ents.name)
    held_by = sa.select(t.subscriptions).where(subs.source == sa.bindparam("source"), sa.or_(
        subs.account.in_(sa.bindparam("accounts", expanding=True)),
        subs.user_sub.in_(sa.bindparam("owners", expanding=True)))).order_by(subs.key)
    return SimpleNamespace(
        record_event=insert(t.events).on_conflict_do_nothing(index_elements=["source", "event_id"])
        .returning(events.id, events.source, events.event_id),  # the caller has the rest
        select_event=sa.select(t.events).where(events.id == sa.bindparam("id")),
        select_subscription=select_subscription,
        select_subscriptions=select_subscriptions,
        upsert_subscription=_upsert(insert, t.subscriptions, ["source", "key"]),
        held_by=held_by,
        subscriptions_of=sa.select(t.subscriptions).where(subs.user_sub == sa.bindparam("user_sub")),
        subscriptions_of_users=sa.select(t.subscriptions).where(
            subs.user_sub.in_(sa.bindparam("user_subs", expanding=True))),
        # The entitlements of several users that none of their new grants keeps.
        stale_entitlements_of=sa.delete(t.entitlements).where(
            ents.user_sub.in_(sa.bindparam("owners", expanding=True)),
            sa.tuple_(ents.user_sub, ents.name).not_in(sa.bindparam("keep", expanding=True))),
        stale_entitlements=stale_entitlements,
        upsert_entitlement=upsert_entitlement,
        select_entitlements=select_entitlements,
        link_event=insert(t.event_subscriptions)
        .on_conflict_do_nothing(index_elements=["event_pk", "source", "key"])
        .returning(t.event_subscriptions.c.event_pk),  # one multi-row INSERT, as _upsert
        driver=_driver_statements(select_entitlements) if name == "postgresql" else None,
    )


def _psycopg(statement, columns: list[str] | None = None) -> str:
    """SQLAlchemy's SQL for psycopg (``%(name)s`` parameters); an INSERT names ``columns``."""
    return str(statement.compile(dialect=postgresql.psycopg.dialect(), column_keys=columns))


def _driver_statements(select_entitlements) -> SimpleNamespace:
    """PostgreSQL: the statements of a delivery's write transaction, and the entitlement
    read, as SQL for the driver's own cursor (``sql._SqlTransaction``). A list is one array parameter (a pair
    of lists, two arrays unnested together), so each statement has one text whatever the
    number of rows and stays prepared; rows are written one statement each, sent together
    in the driver's pipeline."""
    subs, ents = t.subscriptions.c, t.entitlements.c
    select_subscriptions = f"SELECT {', '.join(f'subscriptions.{c.name}' for c in subs)} FROM subscriptions"
    in_pairs = "IN (SELECT * FROM unnest(CAST(%(firsts)s AS text[]), CAST(%(seconds)s AS text[])))"
    event_columns = [c.name for c in t.events.c if c.name != "id"]
    upsert_subscription = _upsert(postgresql.insert, t.subscriptions, ["source", "key"], returning=False)
    upsert_entitlement = _upsert(postgresql.insert, t.entitlements, ["user_sub", "name"], returning=False)
    return SimpleNamespace(
        record_event=_psycopg(postgresql.insert(t.events).on_conflict_do_nothing(
            index_elements=["source", "event_id"]).returning(t.events.c.id), event_columns),
        lock_subscription=_psycopg(sa.select(t.subscriptions).where(
            subs.source == sa.bindparam("source"), subs.key == sa.bindparam("key")).with_for_update()),
        # Locked in key order, as the sort returns them.
        lock_subscriptions=f"{select_subscriptions} WHERE (source, key) {in_pairs} "
                           "ORDER BY source, key FOR UPDATE",
        subscriptions_of_users=f"{select_subscriptions} WHERE user_sub = ANY(%(user_subs)s)",
        upsert_subscription=_psycopg(upsert_subscription, [c.name for c in subs]),
        # Taken in the order of the list (sorted by the caller).
        advisory_locks="SELECT pg_advisory_xact_lock(%(space)s, hashtext(lock.name)) "
                       "FROM unnest(CAST(%(names)s AS text[])) WITH ORDINALITY AS lock(name, n) ORDER BY lock.n",
        # The entitlements of these users that no (user, name) pair keeps.
        stale_entitlements=f"DELETE FROM entitlements WHERE user_sub = ANY(%(owners)s) "
                           f"AND (user_sub, name) NOT {in_pairs}",
        upsert_entitlement=_psycopg(upsert_entitlement, [c.name for c in ents]),
        link_event=_psycopg(postgresql.insert(t.event_subscriptions).on_conflict_do_nothing(
            index_elements=["event_pk", "source", "key"]), ["event_pk", "source", "key"]),
        # Locked in key order, as the sort returns them.
        lock_held_by=f"{select_subscriptions} WHERE source = %(source)s "
                     "AND (account = ANY(%(accounts)s) OR user_sub = ANY(%(owners)s)) ORDER BY key FOR UPDATE",
        resolve="SELECT user_sub FROM identities WHERE source = %(source)s AND account = %(account)s",
        link_identity=_psycopg(_link_identity()),
        select_entitlements=_psycopg(select_entitlements),
        commit="COMMIT",
    )


@functools.cache
def update_event(fields: tuple[str, ...]) -> str:
    """PostgreSQL: the driver's UPDATE of these columns of one event (``%(event_pk)s``)."""
    return _psycopg(sa.update(t.events).where(t.events.c.id == sa.bindparam("event_pk"))
                    .values({name: sa.bindparam(name) for name in fields}))


def _link_identity():
    """PostgreSQL: write an identity link unless the one held has a greater ``link_claim``
    (as_of present, then as_of, then user_sub by code point, as Python orders strings,
    whatever the database's collation); returns the user it now maps to. No row comes back
    only when another user's link holds: then the caller reads who. One atomic statement:
    concurrent links of one account need no lock of their own."""
    ids = t.identities.c
    statement = postgresql.insert(t.identities)
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
