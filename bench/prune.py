"""The event log's pruning on a big table: rows a second, and how long each transaction
(and so each batch's locks) lasts, while a writer keeps recording deliveries beside it.

    .venv/bin/python bench/prune.py --database-url URL [--seed 200000] [--batch 2000]
                                    [--retention-days 90] [--explain] [--max-batches N]

``--seed N`` first adds N synthetic deliveries (COPY on PostgreSQL, executemany on SQLite):
received over the last 180 days, so about half are older than 90; 97% processed, 2% ignored,
1% failed; each with a ~700-byte payload, one evidence row, and one outgoing webhook
delivery (delivered when the event is processed). ``--seed 0`` prunes what the database
holds already (the scale benchmark's 10,000,000-event table). It then runs the prune as the
CLI does (``gateway.jobs.retention.prune``, every batch until done) and prints the rate,
the time per 10,000 rows, and the median, 99th percentile and longest transaction. Meanwhile a
thread records a young delivery every 10 ms in transactions of its own; the slowest of
those says whether the prune ever held a writer up.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import statistics
import sys
import threading
import time
import uuid
from datetime import timedelta

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402

from gateway.clock import utcnow  # noqa: E402
from gateway.config import from_env  # noqa: E402
from gateway.jobs import retention  # noqa: E402
from gateway.store import tables  # noqa: E402
from gateway.store.migrate import upgrade  # noqa: E402
from gateway.store.retention import Retention  # noqa: E402
from gateway.store.sql import sql_store  # noqa: E402

PAYLOAD = json.dumps({"api_version": "1.0", "event": {
    "type": "RENEWAL", "app_user_id": "x" * 36, "aliases": ["$RCAnonymousID:" + "0" * 32] * 4,
    "product_id": "com.example.premium.monthly", "entitlement_ids": ["premium"], "store": "APP_STORE",
    "environment": "PRODUCTION", "country_code": "US", "currency": "USD", "price": 4.99, "padding": "p" * 300}})


def synthetic(count: int, now) -> tuple[list[tuple], list[tuple]]:
    """(events, deliveries) rows: events without ids, deliveries by feed position."""
    rng = random.Random(7)
    events, deliveries = [], []
    # In the order they arrive, as a live log is written (the heap follows received_at).
    for n, age in enumerate(sorted((rng.uniform(0, 180 * 86400) for _ in range(count)), reverse=True)):
        received = now - timedelta(seconds=age)
        status = rng.choices(["processed", "ignored", "failed"], [97, 2, 1])[0]
        events.append(("revenuecat", f"bench-{uuid.uuid4()}", "RENEWAL", received, PAYLOAD, '{"bench": true}',
                       status, 1, received))
        delivered = status == "processed"
        deliveries.append(("bench", n + 1, f"user-{n % 50000}", "delivered" if delivered else "failed", 1,
                           None, received, received, received if delivered else None))
    return events, deliveries


EVENT_COLUMNS = ("source", "event_id", "event_type", "received_at", "payload", "data", "status", "attempts",
                 "processed_at")
DELIVERY_COLUMNS = ("endpoint", "position", "user_sub", "status", "attempts", "next_attempt_at", "created_at",
                    "queued_at", "delivered_at")


def seed(engine: sa.Engine, count: int) -> None:
    started = time.perf_counter()
    events, deliveries = synthetic(count, utcnow())
    first = 1 + (_scalar(engine, "SELECT coalesce(max(position), 0) FROM webhook_deliveries") or 0)
    deliveries = [(e, p + first, *rest) for e, p, *rest in deliveries]
    if engine.dialect.name == "postgresql":
        _copy(engine, "events", EVENT_COLUMNS, events)
        _copy(engine, "webhook_deliveries", DELIVERY_COLUMNS, deliveries)
    else:
        with engine.begin() as connection:
            connection.execute(sa.insert(tables.events), [dict(zip(EVENT_COLUMNS, row)) | {
                "data": {"bench": True}} for row in events])
            connection.execute(sa.insert(tables.webhook_deliveries), [dict(zip(DELIVERY_COLUMNS, row))
                                                                     for row in deliveries])
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO event_subscriptions (event_pk, source, key) SELECT id, source, "
                                   "'sub-' || id FROM events WHERE event_id LIKE 'bench-%' AND id NOT IN "
                                   "(SELECT event_pk FROM event_subscriptions)"))
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text("VACUUM ANALYZE events, event_subscriptions, webhook_deliveries"))
    print(f"seeded {count} events, evidence and outgoing deliveries in {time.perf_counter() - started:.1f} s")


def _copy(engine: sa.Engine, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    raw = engine.raw_connection()
    try:
        with raw.driver_connection.cursor() as cursor:
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        raw.driver_connection.commit()
    finally:
        raw.close()


def _scalar(engine: sa.Engine, sql: str):
    with engine.connect() as connection:
        return connection.execute(sa.text(sql)).scalar()


class Timed(Retention):
    """The retention's SQL, each batch's transaction timed."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self.seconds: list[float] = []

    def events_batch(self, *args):
        return self._timed(super().events_batch, *args)

    def deliveries_batch(self, *args):
        return self._timed(super().deliveries_batch, *args)

    def _timed(self, step, *args):
        started = time.perf_counter()
        try:
            return step(*args)
        finally:
            self.seconds.append(time.perf_counter() - started)


class Writer(threading.Thread):
    """Records a young delivery every 10 ms, each in its own transaction, timing each."""

    def __init__(self, store) -> None:
        super().__init__(daemon=True)
        self.store, self.seconds, self.stop = store, [], threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.01):
            started = time.perf_counter()
            with self.store.transaction() as tx:
                tx.record_events([dict(source="revenuecat", event_id=f"probe-{uuid.uuid4()}", event_type="RENEWAL",
                                       received_at=utcnow(), payload="{}", data={}, status="processed")])
            self.seconds.append(time.perf_counter() - started)


def explain(engine: sa.Engine, cutoff) -> None:
    if engine.dialect.name != "postgresql":
        return
    below = Retention(engine).newest_event()
    with engine.connect() as connection:
        for sql in (f"SELECT id FROM events WHERE received_at < :cutoff AND status IN ('processed', 'ignored') "
                    f"AND id < {below} ORDER BY received_at LIMIT 2000 FOR UPDATE SKIP LOCKED",
                    "SELECT endpoint, position FROM webhook_deliveries WHERE delivered_at < :cutoff AND "
                    "status = 'delivered' ORDER BY delivered_at LIMIT 2000 FOR UPDATE SKIP LOCKED"):
            plan = connection.execute(sa.text("EXPLAIN " + sql), {"cutoff": cutoff}).scalars()
            print("\n".join("    " + line for line in plan))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--seed", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=retention.BATCH)
    parser.add_argument("--retention-days", type=int, default=90)
    parser.add_argument("--explain", action="store_true", help="print the batches' query plans (PostgreSQL)")
    parser.add_argument("--max-batches", type=int, help="stop after this many batches of each table "
                        "(a share of a big log, at the rate of the whole)")
    args = parser.parse_args()
    url = from_env({"DATABASE_URL": args.database_url}).database_url
    upgrade(url)
    store = sql_store(url)
    if args.seed:
        seed(store.engine, args.seed)
    cutoff = retention.cutoff(args.retention_days, utcnow())
    if args.explain:
        explain(store.engine, cutoff)
    report(store, cutoff, args.batch, args.max_batches)
    store.engine.dispose()


def report(store, cutoff, batch: int, max_batches: int | None = None) -> None:
    timed, writer = Timed(store.engine), Writer(store)
    writer.start()
    time.sleep(0.5)  # the writer's pace before the prune
    idle = list(writer.seconds)
    started = time.perf_counter()
    done = retention.prune(timed, cutoff, batch, max_batches)
    elapsed = time.perf_counter() - started
    writer.stop.set()
    writer.join()
    rows = done.events + done.evidence + done.deliveries
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"deleted {done.events} events, {done.evidence} evidence rows, {done.deliveries} outgoing deliveries "
          f"in {elapsed:.2f} s, {done.transactions} transactions of up to {batch} rows")
    print(f"events: {done.events / elapsed:,.0f} a second with their evidence and the deliveries; "
          f"{elapsed / max(done.events, 1) * 10_000:.2f} s per 10,000 events ({rows} rows in all)")
    print(f"transaction: median {statistics.median(timed.seconds) * 1000:.1f} ms, p99 "
          f"{percentile(timed.seconds, 0.99) * 1000:.1f} ms, longest {max(timed.seconds) * 1000:.1f} ms")
    during = writer.seconds[len(idle):]
    print(f"a writer beside it: {len(during)} deliveries recorded, median {statistics.median(during) * 1000:.1f} ms, "
          f"slowest {max(during) * 1000:.1f} ms (before the prune: slowest {max(idle or [0]) * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
