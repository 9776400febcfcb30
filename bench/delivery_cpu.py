"""What one webhook delivery costs a worker in CPU, stage by stage, beside its bounds.

    .venv/bin/python bench/delivery_cpu.py --database-url postgresql://gateway:gateway@127.0.0.1/gateway_bench_cpu
    .venv/bin/python bench/delivery_cpu.py --database-url URL --source stripe|google|apple [--n 2000]
    .venv/bin/python bench/delivery_cpu.py --database-url URL --instructions    # under valgrind, slow

Builds the real app (``create_app`` with a real ``Settings``: real signing secrets, the
Prometheus multiprocess directory gunicorn.conf.py sets, ``LOG_LEVEL=WARNING`` as
``make bench`` runs it) and sends ``--n`` signed deliveries through its WSGI callable, in
this process, one after another, as gunicorn's worker would call it (without gunicorn's
own HTTP parsing). Deliveries go to 1,000 users, each user's subscription created in a
warm-up pass first, so the measured ones are the common case: an update of a known
subscription (RevenueCat ``RENEWAL``, Stripe ``customer.subscription.updated`` applied
from its body, Google ``SUBSCRIPTION_RENEWED`` with its ``subscriptionsv2`` fetch from the
Play fake on loopback, App Store ``DID_RENEW`` with the verified-chain cache warm).

Prints process CPU per delivery (``time.process_time``: user and system) for ``--passes``
passes, then one more pass with a timer around each stage, and in the same run the
bounds: bench/hello.py through the same WSGI call, ``json.loads`` of a delivery's body, and,
on PostgreSQL, psycopg sending a RENEWAL's SQL alone (``bench/delivery_sql.py --psycopg``), in
one round trip, then waiting where a gateway must (``delivery_sql.GATEWAY_WAITS``). The Play
and certificate fakes run in a forked process, so their CPU is not counted.

``--profile FILE`` writes a cProfile of one more pass (CPU time, the profiler's own cost
included). ``--instructions`` runs it twice under valgrind (a pass of ``--n``, then of
twice as many) and prints the instructions a delivery adds: steadier than CPU time on a
shared machine, for before/after comparisons (the kernel's work, system calls, is not in it).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

USERS = 1000  # --users
SOURCES = ("revenuecat", "stripe", "google", "apple")


def wsgi_call(app, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> str:
    """One request through ``app`` as a WSGI server calls it; its status line."""
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "bench",
               "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
               "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"] = value
    status: list[str] = []
    b"".join(app(environ, lambda s, _headers, exc_info=None: status.append(s)))
    return status[0]


# The deliveries of each source: settings, and (body, headers) for deliveries first..first+n.
# Every run has users and subscriptions of its own (``stamp``), so that what one delivery
# costs does not depend on earlier runs (a user's older subscriptions) or on a run beside it
# (a newer snapshot of the same subscription, which would make this one change nothing).
class RevenueCat:
    path = "/webhooks/revenuecat"
    auth = "Bearer delivery-cpu-bench"

    def __init__(self, stamp: int) -> None:
        self.stamp = stamp

    def env(self) -> dict[str, str]:
        return {"REVENUECAT_WEBHOOK_AUTH": self.auth}

    def deliveries(self, first: int, n: int) -> list[tuple[bytes, dict]]:
        """As bench/ingest.lua sends them: a RENEWAL with a new event id, users in turn."""
        out, stamp = [], self.stamp
        for i in range(first, first + n):
            user = f"bench-cpu-{stamp}-{i % USERS}"
            body = json.dumps({"api_version": "1.0", "event": {
                "id": f"bench-cpu-{stamp}-{i}", "type": "RENEWAL", "app_user_id": user,
                "original_app_user_id": user, "aliases": [user], "product_id": "monthly",
                "entitlement_ids": ["premium"], "event_timestamp_ms": stamp + i,
                "expiration_at_ms": stamp + i + 2_592_000_000, "original_transaction_id": f"tx-{user}",
                "environment": "PRODUCTION", "store": "APP_STORE"}}, separators=(",", ":")).encode()
            out.append((body, {"Authorization": self.auth, "Content-Type": "application/json"}))
        return out


class Stripe:
    path = "/webhooks/stripe"

    def __init__(self, stamp: int, folder: str) -> None:
        from devtools.stripe_signing import new_secret
        from tests.support.stripe_harness import CATALOG_DOCUMENT

        self.stamp, self.secret, self.catalog = stamp, new_secret(), os.path.join(folder, "catalog.json")
        with open(self.catalog, "w") as file:
            json.dump(CATALOG_DOCUMENT, file)

    def env(self) -> dict[str, str]:
        # No STRIPE_API_KEY: a subscription event is applied from its body (the snapshot path).
        return {"STRIPE_WEBHOOK_SECRETS": self.secret, "CATALOG_PATH": self.catalog}

    def deliveries(self, first: int, n: int) -> list[tuple[bytes, dict]]:
        """customer.subscription.updated, each a second newer than the last and a period
        later, so that each is applied from its body and moves the entitlement."""
        from devtools import stripe_objects
        from devtools.stripe_signing import signed
        from gateway.providers.stripe_api import PINNED_VERSION

        out, seconds = [], self.stamp // 1000
        for i in range(first, first + n):
            u = i % USERS
            subscription = stripe_objects.subscription(
                "basil", sub_id=f"sub_benchcpu{self.stamp}x{u}", customer=f"cus_benchcpu{self.stamp}x{u}",
                start=seconds - 86400 + i, cognito_sub=f"bench-cpu-{self.stamp}-{u}")
            event = {"id": f"evt_benchcpu{self.stamp}x{i}", "object": "event", "api_version": PINNED_VERSION,
                     "created": seconds + i, "type": "customer.subscription.updated", "livemode": False,
                     "data": {"object": subscription}, "pending_webhooks": 1, "request": {"id": None}}
            out.append(signed(event, self.secret))
        return out


class Google:
    path = "/webhooks/google"

    def __init__(self, stamp: int) -> None:
        from devtools.google_pubsub import PushSigner

        self.stamp, self.play, self.signer = stamp, _renewing_play(), PushSigner()
        for u in range(USERS):
            self.play.subscribe(f"bench-cpu-{stamp}-{u}", user=f"bench-cpu-{stamp}-{u}", acknowledged=True)
        self.server = fork_serving(self.play.server, self.signer.server)

    def env(self) -> dict[str, str]:
        return {**self.signer.env(), **self.play.env()}

    def deliveries(self, first: int, n: int) -> list[tuple[bytes, dict]]:
        """SUBSCRIPTION_RENEWED; the fake answers each read of the purchase a second later."""
        from devtools.google_pubsub import envelope, subscription

        headers = self.signer.headers()  # Pub/Sub reuses a token for an hour
        return [(envelope(subscription(f"bench-cpu-{self.stamp}-{i % USERS}", kind=2), f"{self.stamp}{i}"), headers)
                for i in range(first, first + n)]


def _renewing_play():
    """The Play fake, each purchase renewed by a second whenever it is read."""
    from devtools.google_play import FakePlay, rfc3339

    class RenewingPlay(FakePlay):
        def _get(self, package: str, token: str) -> tuple:
            if token in self.purchases:
                item = self.purchases[token]["lineItems"][0]
                ends = datetime.fromisoformat(item["expiryTime"][:26] + "+00:00") + timedelta(seconds=1)
                item["expiryTime"] = rfc3339(ends)
            return super()._get(package, token)
    return RenewingPlay()


class Apple:
    path = "/webhooks/apple"

    def __init__(self, stamp: int, folder: str) -> None:
        from devtools.apple_pki import mint_chain
        from devtools.apple_store import AppStore

        self.stamp, self.chain = stamp, mint_chain()
        self.store, self.root = AppStore(self.chain), self.chain.write_root(pathlib.Path(folder))

    def env(self) -> dict[str, str]:
        return self.store.env(self.root)

    def deliveries(self, first: int, n: int) -> list[tuple[bytes, dict]]:
        """DID_RENEW, each signed a millisecond after the last, with a later expiry."""
        out, start = [], datetime.fromtimestamp(self.stamp / 1000, timezone.utc)
        for i in range(first, first + n):
            u, signed = i % USERS, start + timedelta(milliseconds=i)
            key, token = f"bench-cpu-{self.stamp}-{u}", str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.stamp}/{u}"))
            transaction = self.store.transaction(key, token=token, signed=signed, expires=signed + timedelta(days=30))
            notification = self.store.notification("DID_RENEW", transaction=transaction, signed=signed,
                                                   renewal=self.store.renewal(key, signed=signed))
            out.append((self.store.body(notification), {"Content-Type": "application/json"}))
        return out


def fork_serving(*servers) -> int:
    """Serve these (already bound) local servers from a child process: their CPU is theirs."""
    pid = os.fork()
    if pid == 0:
        try:
            for server in servers:
                server.__enter__()
            while True:
                time.sleep(3600)
        finally:
            os._exit(0)
    return pid


def source_of(name: str, stamp: int, folder: str):
    return {"revenuecat": lambda: RevenueCat(stamp), "stripe": lambda: Stripe(stamp, folder),
            "google": lambda: Google(stamp), "apple": lambda: Apple(stamp, folder)}[name]()


def cpu_per_call(calls: list, fn) -> float:
    """CPU microseconds (user and system) per call of ``fn`` over ``calls``."""
    started = time.process_time()
    for call in calls:
        fn(call)
    return (time.process_time() - started) / len(calls) * 1e6


def main() -> None:
    global USERS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Never DATABASE_URL by default: the run writes made-up deliveries into the database.
    parser.add_argument("--database-url", default="sqlite:///instance/delivery_cpu.db")
    parser.add_argument("--source", choices=SOURCES, default="revenuecat")
    parser.add_argument("--n", type=int, default=2000, help="deliveries per pass")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--users", type=int, default=USERS, help="users, each sent one delivery to warm up")
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of one more pass")
    parser.add_argument("--no-stages", action="store_true", help="skip the pass with a timer per stage")
    parser.add_argument("--no-bounds", action="store_true", help="skip the hello and psycopg bounds")
    parser.add_argument("--instructions", action="store_true", help="instructions per delivery, under valgrind")
    parser.add_argument("--build", type=int, help=argparse.SUPPRESS)  # --instructions: bodies built for the pass
    args = parser.parse_args()
    if args.instructions:
        return instructions(args)
    folder = tempfile.mkdtemp(prefix="delivery-cpu-")
    # As gunicorn.conf.py runs the workers: prometheus_client reads it when imported.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    USERS, stamp = args.users, int(time.time() * 1000)
    source = source_of(args.source, stamp, folder)  # forks its fakes before any thread or connection exists

    from bench import stages
    from gateway import create_app
    from gateway.config import from_env
    from gateway.store.migrate import upgrade

    upgrade(args.database_url)
    settings = from_env({"DATABASE_URL": args.database_url, "LOG_LEVEL": "WARNING", **source.env()})
    app = create_app(settings)
    sent = 0

    def batch(n: int) -> list:
        nonlocal sent
        made = source.deliveries(sent, n)
        sent += n
        return made

    def deliver(delivery) -> None:
        status = wsgi_call(app, "POST", source.path, *delivery)
        assert status == "200 OK", status

    cpu_per_call(batch(USERS), deliver)  # warm-up: every user's subscription exists
    print(f"{args.source} on {args.database_url.split(':')[0]}: CPU per delivery (user + system), "
          f"{args.passes} passes of {args.n}")
    # Bodies are built before a pass starts: signing them is the sender's work. --instructions
    # builds as many in both its runs, so that only the deliveries sent differ.
    figures = [cpu_per_call(batch(args.build or args.n)[:args.n], deliver) for _ in range(args.passes)]
    print(f"{'delivery (WSGI)':38} {' / '.join(f'{f:.0f}' for f in figures)} us   median {statistics.median(figures):.0f}")
    if not args.no_stages:
        stages.report(stages.measure(app, batch(args.n), deliver), statistics.median(figures))
    if args.profile:
        import cProfile

        calls, profile = batch(args.n), cProfile.Profile(time.process_time)  # CPU, not wall time
        profile.runcall(lambda: [deliver(call) for call in calls])
        profile.dump_stats(args.profile)
    if not args.no_bounds:
        bounds(args.database_url, batch(1)[0][0])
    if getattr(source, "server", None):
        os.kill(source.server, 15)


def bounds(url: str, body: bytes) -> None:
    from bench.hello import app as hello

    calls = list(range(2000))
    hellos = [cpu_per_call(calls, lambda _: wsgi_call(hello, "GET", "/hello")) for _ in range(3)]
    print(f"{'bound: Flask hello (WSGI)':38} {' / '.join(f'{f:.0f}' for f in hellos)} us")
    parses = [cpu_per_call(calls, lambda _: json.loads(body)) for _ in range(3)]
    print(f"{'bound: json.loads of its body':38} {' / '.join(f'{f:.0f}' for f in parses)} us")
    if url.startswith("postgresql"):
        from bench.delivery_sql import GATEWAY_WAITS, psycopg_cpu

        for name, waits in (("bound: its SQL alone, psycopg", ()),
                            ("  the same, waiting as a gateway must", GATEWAY_WAITS)):
            sql = psycopg_cpu(url, 2000, waits=waits)
            print(f"{name:38} {' / '.join(f'{f:.0f}' for f in sql)} us")


def instructions(args) -> None:
    """Instructions per delivery: the benchmark run twice under valgrind, one pass of ``n``
    deliveries, then of ``2n``, everything else the same; the difference divided by ``n``."""
    counts = []
    for n in (args.n, 2 * args.n):
        command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                   sys.executable, os.path.abspath(__file__), "--database-url", args.database_url,
                   "--source", args.source, "--n", str(n), "--build", str(2 * args.n), "--passes", "1",
                   "--users", str(args.users),
                   "--no-stages", "--no-bounds"]
        done = subprocess.run(command, capture_output=True, text=True)
        pid = re.search(r"==(\d+)==", done.stderr).group(1)  # the benchmark's own, not a forked fake's
        found = re.findall(rf"=={pid}== I\s+refs:\s+([\d,]+)", done.stderr)
        if done.returncode or not found:
            sys.exit(f"valgrind run failed:\n{done.stderr[-3000:]}")
        counts.append(int(found[-1].replace(",", "")))
    print(f"{args.source}: {(counts[1] - counts[0]) / args.n:,.0f} instructions per delivery "
          f"(valgrind: {counts[0]:,} in all with {args.n} deliveries, {counts[1]:,} with {2 * args.n})")


if __name__ == "__main__":
    main()
