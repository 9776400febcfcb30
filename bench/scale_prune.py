"""``make bench-scale``'s feed prune (``SCALE_FEED_PRUNE=1``): the entitlement feed's
retention on the loaded feed (8.76 million events per million users, over two years), as
the worker runs it, with two things beside it that must not suffer:

- a writer appending a feed event every 10 ms as a change does (``take_feed_positions``,
  which locks the feed's clock row until the commit, then the insert), timing how long it
  waited for the clock and its whole transaction;
- readers of ``GET /v1/events`` through the gateway (gunicorn, as the Procfile starts it):
  one at the feed's tail (``after`` = the head less 100) and one without ``after`` (from
  the oldest event kept, where the batches are deleting), one request at a time each.

Each is timed for ``BEFORE`` seconds before the prune too. The prune deletes rows, so it runs
last, and the database is marked changed (its comment): the next ``make bench-scale``
loads it again.
"""
from __future__ import annotations

import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from bench.scale_measure import percentile
from gateway.clock import utcnow
from gateway.domain.entitlement_events import RENEWED, FeedEvent, new_id
from gateway.jobs import retention
from gateway.store.retention import Retention
from gateway.store.sql import sql_store

ROOT = Path(__file__).resolve().parent.parent
BEFORE = 3.0  # seconds each probe runs before the prune starts
PAGE = 100


class Timed(Retention):
    """The retention's SQL, each feed batch's transaction timed."""

    def __init__(self, engine) -> None:
        super().__init__(engine)
        self.seconds: list[float] = []

    def feed_batch(self, *args):
        started = time.perf_counter()
        try:
            return super().feed_batch(*args)
        finally:
            self.seconds.append(time.perf_counter() - started)


class Probe(threading.Thread):
    """Calls ``once`` (which returns the seconds to note) until stopped, every ``pace`` seconds."""

    def __init__(self, once, pace: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.once, self.pace, self.stop, self.failures = once, pace, threading.Event(), []
        self.seconds: list[tuple[float, ...]] = []

    def run(self) -> None:
        while not self.stop.wait(self.pace):
            try:
                self.seconds.append(self.once())
            except Exception as exc:  # noqa: BLE001 - reported, not raised in a thread
                self.failures.append(f"{type(exc).__name__}: {exc}"[:200])

    def split(self, at: int) -> tuple[list, list]:
        return self.seconds[:at], self.seconds[at:]


def appender(store):
    """One feed event appended as a change appends it: (clock wait, whole transaction)."""
    def once() -> tuple[float, float]:
        started = time.perf_counter()
        with store.transaction() as tx:
            last, _ = tx.take_feed_positions(1)
            clocked = time.perf_counter()
            tx.append_feed([FeedEvent(new_id(), RENEWED, "bench-feed-prune-writer", "premium", None,
                                      {"active": True}, {"kind": "gateway"}, utcnow(), last + 1)])
        return clocked - started, time.perf_counter() - started
    return once


def reader(url: str, api_key: str, after: int | None):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {api_key}"
    query = {"limit": PAGE, **({} if after is None else {"after": after})}

    def once() -> tuple[float]:
        started = time.perf_counter()
        answer = session.get(f"{url}/v1/events", params=query, timeout=30)
        if answer.status_code != 200:
            raise RuntimeError(f"GET /v1/events {query}: {answer.status_code} {answer.text[:200]}")
        return (time.perf_counter() - started,)
    return once


def _ms(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    return {"count": len(values), "p50_ms": round(statistics.median(values) * 1000, 1),
            "p99_ms": round(percentile(values, 0.99) * 1000, 1), "max_ms": round(max(values) * 1000, 1)}


def gateway(database_url: str, api_key: str, port: int) -> subprocess.Popen:
    """gunicorn serving ``wsgi:app`` on the database, as ``bench/lib.sh`` starts it."""
    env = {**os.environ, "DATABASE_URL": database_url, "GATEWAY_API_KEYS": api_key, "LOG_LEVEL": "WARNING",
           "PORT": str(port)}
    command = [str(Path(sys.executable).parent / "gunicorn"), "wsgi:app", "-c", "gunicorn.conf.py",
               "--bind", f"127.0.0.1:{port}"]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(150):
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.2)
    server.kill()
    raise RuntimeError("the gateway did not answer /healthz within 30 s")


def run(database_url: str, port: int = 18094, days: int = 90, batch: int = retention.BATCH) -> dict:
    """Prune the feed as the worker does (every batch until done) with the probes beside it."""
    api_key = "bench-" + secrets.token_hex(12)
    store = sql_store(database_url)
    timed, server = Timed(store.engine), gateway(database_url, api_key, port)
    try:
        feed_cutoff = retention.cutoff(days, utcnow())
        with store.engine.connect() as connection:
            head = connection.exec_driver_sql("SELECT position FROM feed_clock").scalar() or 0
            before_rows = connection.exec_driver_sql("SELECT count(*) FROM entitlement_events").scalar()
        probes = {"append": Probe(appender(store), 0.01), "read_tail": Probe(reader(
            f"http://127.0.0.1:{port}", api_key, max(head - PAGE, 0))), "read_oldest": Probe(reader(
                f"http://127.0.0.1:{port}", api_key, None))}
        for probe in probes.values():
            probe.start()
        time.sleep(BEFORE)
        marks = {name: len(probe.seconds) for name, probe in probes.items()}
        started = time.perf_counter()
        done = retention.prune(timed, None, batch, feed_cutoff=feed_cutoff)
        elapsed = time.perf_counter() - started
        for probe in probes.values():
            probe.stop.set()
            probe.join()
    finally:
        server.terminate()
        server.wait()
        store.engine.dispose()
    return _figures(done, elapsed, before_rows, timed.seconds, probes, marks, days, batch)


def _figures(done, elapsed, before_rows, batches, probes, marks, days, batch) -> dict:
    figures = {"retention_days": days, "batch": batch, "feed_rows_before": before_rows, "deleted": done.feed,
               "seconds": round(elapsed, 2), "rows_per_second": round(done.feed / elapsed) if elapsed else 0,
               "transactions": done.transactions, "transaction": _ms(batches),
               "load_average": round(os.getloadavg()[0], 1)}
    idle, during = probes["append"].split(marks["append"])
    figures["append"] = {"before": {"clock_wait": _ms([c for c, _ in idle]), "transaction": _ms([t for _, t in idle])},
                         "during": {"clock_wait": _ms([c for c, _ in during]),
                                    "transaction": _ms([t for _, t in during])}}
    for name in ("read_tail", "read_oldest"):
        idle, during = probes[name].split(marks[name])
        figures[name] = {"before": _ms([s for s, in idle]), "during": _ms([s for s, in during])}
    figures["failures"] = {name: p.failures[:5] for name, p in probes.items() if p.failures}
    return figures


def summary(found: dict) -> list[str]:
    """The figures as the report prints them."""
    t, a = found["transaction"], found["append"]
    lines = [f"deleted {found['deleted']:,} of {found['feed_rows_before']:,} feed events (FEED_RETENTION_DAYS="
             f"{found['retention_days']}) in {found['seconds']} s: {found['rows_per_second']:,} a second, "
             f"{found['transactions']:,} transactions of up to {found['batch']:,}: median {t.get('p50_ms')} ms, "
             f"p99 {t.get('p99_ms')} ms, longest {t.get('max_ms')} ms (load average {found['load_average']})",
             f"a feed append every 10 ms beside it ({a['during']['transaction']['count']:,}): waited for the feed's "
             f"clock at most {a['during']['clock_wait'].get('max_ms')} ms (before the prune "
             f"{a['before']['clock_wait'].get('max_ms')} ms); its transaction p99 "
             f"{a['during']['transaction'].get('p99_ms')} ms, longest {a['during']['transaction'].get('max_ms')} ms"]
    for name, label in (("read_tail", "GET /v1/events at the tail"), ("read_oldest", "GET /v1/events without after")):
        d, b = found[name]["during"], found[name]["before"]
        lines.append(f"{label} during the prune ({d['count']:,}): p50 {d.get('p50_ms')} ms, p99 {d.get('p99_ms')} ms, "
                     f"max {d.get('max_ms')} ms (before: p99 {b.get('p99_ms')} ms)")
    lines += [f"FAILED {name}: {errors}" for name, errors in found["failures"].items()]
    return lines


def pruned_at(now=None) -> str:
    """The note the load's figures get once the prune has changed the database."""
    return (now or utcnow()).isoformat(timespec="seconds") + " (feed pruned: loaded again by the next run)"
