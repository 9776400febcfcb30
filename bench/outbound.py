"""Outgoing webhooks: latency from commit to receiver, and the rate one Deliverer sends at.

    .venv/bin/python bench/outbound.py [--database-url URL] [--events 300] [--burst 2000]

A receiver in its own process verifies every request with ``standardwebhooks`` and notes
when it arrived. Latency: the worker runs continuously (``run_once``, then a short idle
when nothing was due) while RevenueCat purchases arrive one every 10 ms, each for a new
user; measured from the moment the gateway answered the store's webhook (its transaction
committed just before) to the moment the receiver had verified the event. Rate: with the
worker stopped, ``--burst`` events queue (a purchase and a renewal per user), then one
``run_once`` sends them all; events per second of that call.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import pathlib
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from devtools import revenuecat as rc  # noqa: E402
from gateway import create_app  # noqa: E402
from gateway.config import from_env  # noqa: E402
from gateway.outbound.worker import Deliverer  # noqa: E402
from gateway.store.migrate import upgrade  # noqa: E402
from tests.support.webhook_receiver import Receiver, free_port, secret  # noqa: E402


def serve(port: int, key: str, conn) -> None:
    """The receiver's process: answers each request on ``conn`` with the arrivals so far."""
    receiver = Receiver([key], port=port)
    arrived: list[tuple[str, float]] = []
    receiver.answer = lambda body: arrived.append((body["user_id"], time.time())) or "ok"
    receiver.start()
    conn.send("ready")
    while conn.recv():
        conn.send(list(arrived))


def arrivals(conn) -> list[tuple[str, float]]:
    time.sleep(0.2)  # the last answers are on their way back
    conn.send(True)
    return conn.recv()


def gateway(database_url: str, port: int, key: str):
    upgrade(from_env({"DATABASE_URL": database_url}).database_url)
    endpoint = {"name": "bench", "url": f"http://127.0.0.1:{port}/hooks", "secrets": [key]}
    app = create_app(from_env({"DATABASE_URL": database_url, "REVENUECAT_WEBHOOK_AUTH": rc.AUTH,
                               "OUTBOUND_WEBHOOKS": json.dumps([endpoint]), "LOG_LEVEL": "ERROR",
                               "OUTBOUND_ALLOW_PRIVATE_TARGETS": "true"}))
    deliverer = Deliverer.build(app.extensions["gateway"])
    others = [e.name for e in deliverer.outbox.endpoints() if e.name != "bench"]
    if others:
        sys.exit(f"the database holds other webhook endpoints ({', '.join(others)}): give an empty one")
    return app, deliverer


def send(client, kind: str, user: str, at_ms: int) -> None:
    evt = rc.event(kind, user, at_ms=at_ms, transaction=f"t-{user}")
    answer = client.post("/webhooks/revenuecat", data=rc.body(evt), headers={"Authorization": rc.AUTH})
    assert answer.status_code == 200 and answer.get_json()["status"] == "processed", answer.get_data()


def latency(app, deliverer: Deliverer, conn, events: int, idle: float) -> list[float]:
    stop, client, committed = threading.Event(), app.test_client(), {}

    def work():
        while not stop.is_set():
            if not deliverer.run_once():
                time.sleep(idle)

    worker = threading.Thread(target=work)
    worker.start()
    now_ms = int(time.time() * 1000)
    for n in range(events):
        send(client, "INITIAL_PURCHASE", f"lat-{n}", now_ms)
        committed[f"lat-{n}"] = time.time()
        time.sleep(0.01)
    time.sleep(1.0)
    stop.set()
    worker.join()
    got = {user: at for user, at in arrivals(conn) if user.startswith("lat-")}
    assert len(got) == events, f"{len(got)} of {events} arrived"
    return sorted((got[user] - committed[user]) * 1000 for user in committed)


def burst(app, deliverer: Deliverer, conn, count: int) -> float:
    client, now_ms = app.test_client(), int(time.time() * 1000)
    for n in range(count // 2):
        send(client, "INITIAL_PURCHASE", f"burst-{n}", now_ms)
        send(client, "RENEWAL", f"burst-{n}", now_ms + 1000)
    deliverer.max_attempts = count * 2
    started = time.perf_counter()
    made = deliverer.run_once()
    elapsed = time.perf_counter() - started
    got = [user for user, _ in arrivals(conn) if user.startswith("burst-")]
    assert made == len(got) == count, (made, len(got))
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", help="default: a new SQLite file")
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--idle", type=float, default=0.05, help="the worker's sleep when nothing was due")
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    port, key = free_port(), secret()
    conn, child = multiprocessing.Pipe()
    receiver = multiprocessing.Process(target=serve, args=(port, key, child), daemon=True)
    receiver.start()
    assert conn.recv() == "ready"
    app, deliverer = gateway(url, port, key)
    deliverer.run_once()  # the endpoint starts at the feed's head
    lat = latency(app, deliverer, conn, args.events, args.idle)
    print(f"{url.split(':')[0]}: commit -> receiver over {len(lat)} events (idle {args.idle * 1000:.0f} ms): "
          f"median {statistics.median(lat):.1f} ms, p99 {lat[int(len(lat) * 0.99) - 1]:.1f} ms, max {lat[-1]:.1f} ms")
    rate = burst(app, deliverer, conn, args.burst)
    print(f"{url.split(':')[0]}: one run_once sent {args.burst} queued events at {rate:.0f} events/s")
    conn.send(False)
    receiver.join(5)


if __name__ == "__main__":
    main()
