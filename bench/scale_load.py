"""Fills a migrated PostgreSQL database with the scale population (``scale_rows``), by COPY.

Order: drop what an earlier load left and migrate (``flask --app wsgi migrate``); capture what the gateway writes for each
kind of delivery, on this very database (``scale_shapes``); empty every table; note the
schema; drop the loaded tables' keys, indexes and foreign key and switch their triggers
off; COPY each table (``FREEZE``, in the transaction that truncated it: no later rewrite to
set hint bits or freeze); make the last deliveries of the endpoint due, write the
endpoint, the feed's clock and the event id sequence; build the keys and indexes again
from their own definitions, switch the triggers back on; check that the schema is the one
noted (the load fails otherwise); ``VACUUM ANALYZE``, as autovacuum would have by then.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg

from bench import scale_rows as rows
from bench.scale_shapes import capture

ROOT = Path(__file__).resolve().parent.parent
LOADED = ("events", "event_subscriptions", "entitlement_events", "webhook_deliveries", "subscriptions",
          "entitlements", "identities")
#: Free disk kept for everyone else on the machine, over the load's own estimate.
DISK_MARGIN = 15 * 2**30

_FINGERPRINT = {
    "columns": "SELECT table_name, column_name, ordinal_position, data_type, character_maximum_length, "
               "is_nullable, column_default FROM information_schema.columns WHERE table_schema = 'public'",
    "constraints": "SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid), convalidated "
                   "FROM pg_constraint WHERE connamespace = 'public'::regnamespace",
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
    "triggers": "SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid), tgenabled FROM pg_trigger "
                "WHERE NOT tgisinternal",
    "sequences": "SELECT sequencename, data_type, start_value, increment_by, max_value FROM pg_sequences "
                 "WHERE schemaname = 'public'",
    "functions": "SELECT proname, md5(prosrc) FROM pg_proc WHERE pronamespace = 'public'::regnamespace",
    "migration": "SELECT version_num FROM alembic_version",
}


def fingerprint(connection: psycopg.Connection) -> dict[str, list]:
    """The schema, as comparable lists: columns, constraints, indexes, triggers (and
    whether each is on), sequences, functions, the migration applied."""
    return {name: sorted(map(list, connection.execute(sql).fetchall())) for name, sql in _FINGERPRINT.items()}


def libpq(url: str) -> str:
    """A SQLAlchemy or Heroku URL as libpq takes it."""
    scheme, rest = url.split("://", 1)
    return f"postgresql://{rest}" if scheme.split("+")[0] in ("postgresql", "postgres") else url


def reset(url: str) -> None:
    """Drop every table and function of the gateway's schema, then migrate from nothing:
    whatever an earlier load left (a failed one may have left its keys dropped)."""
    with psycopg.connect(url, autocommit=True) as connection:
        tables = [r[0] for r in connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        if tables:
            connection.execute(f"DROP TABLE {', '.join(tables)} CASCADE")
        for (signature,) in connection.execute(
                "SELECT oid::regprocedure::text FROM pg_proc WHERE pronamespace = 'public'::regnamespace").fetchall():
            connection.execute(f"DROP FUNCTION {signature} CASCADE")
    migrate(url)


def migrate(url: str) -> None:
    subprocess.run([str(Path(sys.executable).parent / "flask"), "--app", "wsgi", "migrate"], cwd=ROOT,
                   env={**os.environ, "DATABASE_URL": url}, check=True, stdout=subprocess.DEVNULL)


def empty(connection: psycopg.Connection) -> None:
    tables = [r[0] for r in connection.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")]
    connection.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")


class Keys:
    """The keys, indexes and foreign keys of the loaded tables, dropped and built again
    from PostgreSQL's own definitions of them."""

    def __init__(self, connection: psycopg.Connection) -> None:
        tables = list(LOADED)
        self.constraints = connection.execute(
            "SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE connamespace = 'public'::regnamespace AND contype IN ('p', 'u', 'f') "
            "AND (conrelid::regclass::text = ANY(%s) OR confrelid::regclass::text = ANY(%s))",
            (tables, tables)).fetchall()
        self.indexes = connection.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = 'public' "
            "AND i.tablename = ANY(%s) AND NOT EXISTS (SELECT 1 FROM pg_constraint c "
            "WHERE c.conindid = (quote_ident(i.schemaname) || '.' || quote_ident(i.indexname))::regclass "
            "AND c.contype IN ('p', 'u'))", (tables,)).fetchall()

    def drop(self, connection: psycopg.Connection) -> None:
        for table, name, kind, _ in sorted(self.constraints, key=lambda c: c[2] != "f"):  # foreign keys first
            connection.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for name, _ in self.indexes:
            connection.execute(f'DROP INDEX "{name}"')
        for table in LOADED:
            connection.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")

    def build(self, connection: psycopg.Connection, log) -> None:
        for table, name, kind, definition in sorted(self.constraints, key=lambda c: c[2] == "f"):  # foreign keys last
            started = time.monotonic()
            connection.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
            log(f"  {name}: {time.monotonic() - started:.0f} s")
        for name, definition in self.indexes:
            started = time.monotonic()
            connection.execute(definition)
            log(f"  {name}: {time.monotonic() - started:.0f} s")
        for table in LOADED:
            connection.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


class Copy:
    """One table's COPY on a connection of its own, in the transaction that emptied it,
    fed lines in batches of about a megabyte; committed when ``stack`` closes."""

    def __init__(self, url: str, table: str, stack: ExitStack) -> None:
        self.table, self.lines, self.size, self.bytes = table, [], 0, 0
        self.connection = stack.enter_context(psycopg.connect(url))
        self.connection.execute(f"TRUNCATE {table}")
        self.copy = stack.enter_context(self.connection.cursor().copy(f"COPY {table} FROM STDIN (FREEZE)"))

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        self.size += len(line)
        if self.size > 1 << 20:
            self.flush()

    def flush(self) -> None:
        if self.lines:
            self.copy.write("".join(self.lines))
            self.bytes += self.size
            self.lines, self.size = [], 0


def copy_all(url: str, table: str, lines) -> tuple[int, int]:
    """COPY every line of ``lines`` into ``table``; (rows, bytes)."""
    count = 0
    with ExitStack() as stack:
        copy = Copy(url, table, stack)
        for line in lines:
            copy(line)
            count += 1
        copy.flush()
    return count, copy.bytes


def estimate(sizes: rows.Sizes, kinds) -> int:
    """Bytes the load will take on disk, roughly: its COPY text (what JSON compression saves
    about pays for keys, indexes and row headers; 3.2 GB for 4.2 estimated at 50,000 users)."""
    values = dict.fromkeys(("user", "key", "customer", "h", "alias", "event", "feed"), "x" * 36)

    def mean(found: list[int]) -> float:
        return sum(found) / len(found)

    per_source = {name: mean([len(k.event.line(values)) for (source, _), k in kinds.items()
                              if rows.SOURCES[source] == name]) for name, _ in sizes.mix}
    per_event = sum(share * per_source[name] for name, share in sizes.mix)
    per_feed = mean([len(k.feed.line(values)) for k in kinds.values() if k.feed is not None])
    return int(sizes.events * (per_event + per_feed + 250) + sizes.users * 1500)


def check_disk(needed: int, log) -> None:
    where = "/var/lib/postgresql" if os.path.isdir("/var/lib/postgresql") else "/"
    free = shutil.disk_usage(where).free
    log(f"estimated size {needed / 2**30:.1f} GiB; free on {where}: {free / 2**30:.1f} GiB")
    if free - needed < DISK_MARGIN:
        raise SystemExit(f"not loading: {needed / 2**30:.1f} GiB would leave less than "
                         f"{DISK_MARGIN / 2**30:.0f} GiB free on {where} (SCALE_USERS smaller, or SCALE_MIX "
                         "with fewer App Store subscriptions, whose deliveries weigh the most)")


def load(url: str, sizes: rows.Sizes, log=print) -> dict:
    """Migrate, capture, empty and load ``url``; returns the load's figures."""
    started, url = time.monotonic(), libpq(url)
    reset(url)
    captured = capture(url)
    kinds, sweep, deferred = rows.templates(captured)
    check_disk(estimate(sizes, kinds), log)
    with psycopg.connect(url, autocommit=True) as connection:
        empty(connection)
        schema = fingerprint(connection)
        keys = Keys(connection)
        keys.drop(connection)
        _check_columns(connection)
    figures: dict = {"users": sizes.users, "mix": dict(sizes.mix)}
    step = time.monotonic()
    plan = rows.plan(sizes, kinds)
    log(f"planned {len(plan.user):,} subscriptions in {time.monotonic() - step:.0f} s")
    for table, lines in (("subscriptions", rows.subscriptions(plan, kinds)),
                         ("entitlements", rows.entitlements(plan, kinds)),
                         ("identities", rows.identities(plan, kinds))):
        step = time.monotonic()
        count, size = copy_all(url, table, lines)
        figures[table] = count
        log(f"{table}: {count:,} rows, {size / 2**20:,.0f} MiB of COPY text in {time.monotonic() - step:.0f} s")
    step = time.monotonic()
    with ExitStack() as stack:
        copies = [Copy(url, t, stack) for t in ("events", "event_subscriptions", "entitlement_events")]
        copies.append(Copy(url, "webhook_deliveries", stack) if sizes.webhooks else None)
        counts = rows.stream(plan, kinds, sweep, deferred, rows.Writers(*copies))
        for copy in filter(None, copies):
            copy.flush()
    figures.update(events=counts.events, event_subscriptions=counts.links, entitlement_events=counts.feed,
                   webhook_deliveries=counts.webhooks)
    log(f"events {counts.events:,}, links {counts.links:,}, feed {counts.feed:,}, webhook deliveries "
        f"{counts.webhooks:,}: {sum(c.bytes for c in filter(None, copies)) / 2**30:,.1f} GiB of COPY text "
        f"in {time.monotonic() - step:.0f} s")
    with psycopg.connect(url, autocommit=True) as connection:
        _finish(connection, plan, counts, sizes)
        step = time.monotonic()
        connection.execute("SET maintenance_work_mem = '1GB'")
        keys.build(connection, log)
        log(f"keys and indexes built in {time.monotonic() - step:.0f} s")
        if fingerprint(connection) != schema:
            raise SystemExit("the loaded schema differs from the migrated one: " + json.dumps(
                _difference(schema, fingerprint(connection)), default=str))
        log("schema checked: the same as migrated")
        step = time.monotonic()
        connection.execute("VACUUM ANALYZE")
        log(f"VACUUM ANALYZE in {time.monotonic() - step:.0f} s")
    figures["heavy_user"] = rows.user_sub(0)
    figures["load_seconds"] = round(time.monotonic() - started)
    return figures


def _check_columns(connection: psycopg.Connection) -> None:
    """The tables written without a capture are written by column position: their columns
    must be the ones this file knows."""
    known = {
        "webhook_deliveries": ["endpoint", "position", "user_sub", "status", "attempts", "next_attempt_at",
                               "last_error", "created_at", "queued_at", "delivered_at"],
        "event_subscriptions": ["event_pk", "source", "key"],
    }
    for table, columns in known.items():
        found = [d.name for d in connection.execute(f"SELECT * FROM {table} LIMIT 0").description]
        if found != columns:
            raise SystemExit(f"{table} has columns {found}; bench/scale_rows.py writes {columns}")


def _finish(connection: psycopg.Connection, plan: rows.Plan, counts: rows.Counts, sizes: rows.Sizes) -> None:
    """The feed's clock at its last position (expiries reported up to the load's time),
    the event ids' sequence after the last delivery, and the endpoint: fanned out up to
    the feed's head, its last deliveries due."""
    now = rows.stamp(plan.now)
    connection.execute("INSERT INTO feed_clock (id, position, expiries_through) VALUES (1, %s, %s)",
                       (counts.feed, now))
    connection.execute("SELECT setval('events_id_seq', %s)", (counts.events,))
    if sizes.webhooks:
        connection.execute(
            "INSERT INTO webhook_endpoints (name, url, secrets, event_types, enabled, origin, position, created_at, "
            "updated_at) VALUES (%s, 'https://hooks.example.com/entitlements', %s, NULL, true, 'admin', %s, %s, %s)",
            (rows.ENDPOINT, json.dumps(["whsec_" + "c2NhbGUtYmVuY2gtc2VjcmV0LW5vdC1yZWFsLTAwMDA="]), counts.feed,
             rows.stamp(plan.now - rows.HISTORY - 400 * rows.DAY), now))
        connection.execute(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, delivered_at = NULL, "
            "next_attempt_at = queued_at WHERE position > %s AND status = 'delivered'",
            (counts.feed - rows.WEBHOOKS_DUE,))


def _difference(before: dict, after: dict) -> dict:
    return {name: {"missing": [r for r in before[name] if r not in after[name]],
                   "extra": [r for r in after[name] if r not in before[name]]}
            for name in before if before[name] != after[name]}
