"""How long a change takes to reach every worker's reads, with the entitlement cache on (its
default on PostgreSQL), under read load.

    .venv/bin/python bench/cache_visibility.py --database-url postgresql://gateway:gateway@127.0.0.1/gateway_bench

Starts two gateways as two dynos would run them (two gunicorn masters, ``gunicorn.conf.py``:
2 workers x 4 threads each) on one PostgreSQL, and wrk reading 1,000 users from the second
one throughout. Then ``--changes`` times: a signed RevenueCat ``RENEWAL`` that moves one of
50 users' expiry is sent to the first gateway; from its 200, ``--probes`` threads read that
user from the second gateway, each request on a new connection (so every worker answers
some), until ``--quiet-ms`` pass with no old answer. A change's delay is from the 200 to the
last read that still answered the old expiry (0 when none did): to that read's start, and to
its answer (the old state was served somewhere between the two; the answer is judged, so a
read queued behind the load counts against the cache). Printed as p50 / p99 / max, with the
target (p99 <= ``--target-ms``); the exit status is 1 when it is missed, or when a change
never showed within 5 s (as without the trigger of migration 0006).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devtools import revenuecat as rc  # noqa: E402 - after the path

USERS = 50
GIVE_UP_SECONDS = 5.0


def start(port: int, env: dict[str, str]) -> subprocess.Popen:
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "wsgi:app", "-c", "gunicorn.conf.py",
         "--bind", f"127.0.0.1:{port}"], cwd=ROOT, env={**os.environ, **env, "PORT": str(port)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if request(port, "GET", "/healthz")[0] == 200:
                return process
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the gateway on port {port} did not start")


def request(port: int, method: str, path: str, body: bytes | None = None, headers=None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class Probe:
    def __init__(self, port: int, api_key: str) -> None:
        self.port, self.headers = port, {"Authorization": f"Bearer {api_key}"}

    def expiry(self, user: str) -> str | None:
        status, body = request(self.port, "GET", f"/v1/users/{user}/entitlements", headers=self.headers)
        if status != 200:
            raise RuntimeError(f"read answered {status}: {body[:200]!r}")
        premium = json.loads(body)["entitlements"].get("premium")
        return premium and premium["expires_at"]


def delay_of(probe: Probe, user: str, old: str | None, since: float, probes: int,
             quiet: float) -> tuple[float, float]:
    """Seconds from ``since`` to the last read that answered ``old``: to its start, and to its
    answer (the old state was served somewhere between the two)."""
    last_old, stop, lock = (since, since), threading.Event(), threading.Lock()

    def read_until_quiet():
        nonlocal last_old
        while not stop.is_set():
            started = time.monotonic()
            stale = probe.expiry(user) == old
            now = time.monotonic()
            with lock:
                if stale:
                    last_old = max(last_old, (started, now))
                if now - max(last_old[1], since) > quiet:
                    stop.set()
                elif now - since > GIVE_UP_SECONDS:
                    stop.set()
                    raise NeverShown(f"{user}'s change did not show within {GIVE_UP_SECONDS:.0f} s")

    with ThreadPoolExecutor(probes) as pool:
        list(pool.map(lambda _: read_until_quiet(), range(probes)))
    return last_old[0] - since, last_old[1] - since


class NeverShown(Exception):
    pass


def renewal(user: str, at_ms: int, expires_ms: int) -> bytes:
    return json.dumps({"api_version": "1.0", "event": rc.event(
        "RENEWAL", user, at_ms=at_ms, transaction=f"vis-{user}", expiration_at_ms=expires_ms)}).encode()


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return f"p50 {pick(0.5):.1f} ms, p99 {pick(0.99):.1f} ms, max {ordered[-1] * 1000:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--probes", type=int, default=4)
    parser.add_argument("--quiet-ms", type=float, default=100)
    parser.add_argument("--target-ms", type=float, default=100)
    parser.add_argument("--wrk-connections", type=int, default=16)
    args = parser.parse_args()

    auth, api_key = f"Bearer {secrets.token_hex(12)}", secrets.token_hex(12)
    env = {"DATABASE_URL": args.database_url, "REVENUECAT_WEBHOOK_AUTH": auth, "GATEWAY_API_KEYS": api_key,
           "LOG_LEVEL": "WARNING"}
    env.pop("ENTITLEMENT_CACHE_SECONDS", None)
    subprocess.run([str(Path(sys.executable).with_name("flask")), "--app", "wsgi", "migrate"], cwd=ROOT,
                   env={**os.environ, **env}, check=True, capture_output=True)
    writer, reader = 18091, 18092
    gateways = [start(writer, env), start(reader, env)]
    load = None
    try:
        load = subprocess.Popen(["wrk", "-t2", f"-c{args.wrk_connections}", "-d1h", "-s", "bench/read.lua",
                                 f"http://127.0.0.1:{reader}"], cwd=ROOT, env={**os.environ, "BENCH_API_KEY": api_key},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        delays, upper = run(args, Probe(reader, api_key), writer, auth)
    except NeverShown as exc:
        print(f"FAILED: {exc}")
        return 1
    finally:
        for process in ([load] if load else []) + gateways:
            os.killpg(process.pid, signal.SIGTERM) if process in gateways else process.terminate()
            process.wait()
    print(f"changes {len(delays)} under read load ({args.wrk_connections} wrk connections on the reading gateway)")
    print("from the delivery's 200 to the last read that answered the old state:")
    print(f"  that read's start:  {percentiles(delays)}")
    print(f"  that read's answer: {percentiles(upper)} (judged)")
    p99 = sorted(upper)[min(len(upper) - 1, int(0.99 * len(upper)))] * 1000
    met = p99 <= args.target_ms
    print(f"target: p99 <= {args.target_ms:.0f} ms: {p99:.1f} ms, {'met' if met else 'NOT MET'}")
    return 0 if met else 1


def run(args, probe: Probe, writer: int, auth: str) -> tuple[list[float], list[float]]:
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    base_ms = int(time.time() * 1000)
    expiry: dict[str, str | None] = {}
    for n in range(USERS):  # each user bought, and read (so cached) on the reading gateway
        user = f"vis-{n}"
        status, body = request(writer, "POST", "/webhooks/revenuecat", renewal(user, base_ms, base_ms + 86_400_000),
                               headers)
        assert status == 200, body
        expiry[user] = None
    delays, upper = [], []
    for i in range(args.changes):
        user = f"vis-{i % USERS}"
        old = expiry[user] or probe.expiry(user)
        for _ in range(4):
            probe.expiry(user)  # held by the workers that answer
        at_ms = base_ms + 1 + i
        status, body = request(writer, "POST", "/webhooks/revenuecat",
                               renewal(user, at_ms, at_ms + 86_400_000 + 60_000 * (i + 1)), headers)
        answered = time.monotonic()
        assert status == 200, body
        started, received = delay_of(probe, user, old, answered, args.probes, args.quiet_ms / 1000)
        delays.append(started)
        upper.append(received)
        expiry[user] = probe.expiry(user)
        assert expiry[user] != old, f"{user}: the renewal did not move the expiry"
    return delays, upper


if __name__ == "__main__":
    sys.exit(main())
