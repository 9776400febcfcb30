"""What one entitlement read costs inside a worker, without HTTP or load generator.

    .venv/bin/python bench/read_path.py --database-url postgresql://gateway:gateway@127.0.0.1/gateway_bench
    .venv/bin/python bench/read_path.py --database-url URL --instructions [--calls 1000]   # under valgrind, slow

Seeds 1,000 users with one entitlement each (users ``read-path-<n>``), then measures CPU
microseconds per call, best of three passes of ``--calls``: the store read alone
(``PostgresStore.entitlements_of``, what the endpoint calls), the whole Flask request
(API key, store, JSON, access line, metrics) called as WSGI, on PostgreSQL its bound
``read-bare`` (``bench/hello_read.py``: bare Flask, the same route and ``SELECT`` over one
psycopg connection) called the same way, and the bare Flask hello (``bench/hello.py``);
``--cache-seconds`` turns on the entitlement cache (``gateway/store/cache.py``). The app
is built as gunicorn.conf.py runs it (a Prometheus multiprocess directory,
``LOG_LEVEL=WARNING``). In-process figures are steadier than wrk's on a machine that
drifts, and they show where a read's time goes.

``--instructions`` runs each case twice under valgrind (a pass of ``--calls``, then of
twice as many, after the same warm-up pass) and prints the instructions a call adds: on a
shared machine the figure for before/after comparisons (the kernel's work, system calls,
is not in it; nor is PostgreSQL's, which runs in its own processes).
"""
from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

USERS = 1000
API_KEY = "read-path-bench-key"
CASES = ("store", "request", "bare", "hello")
TITLES = {"store": "store read", "request": "entitlement request (WSGI)", "bare": "read-bare (WSGI)",
          "hello": "hello (WSGI)"}


def cpu_per_call(fn, calls: int, passes: int = 3) -> float:
    best = float("inf")
    for _ in range(passes):
        started = time.process_time()
        for i in range(calls):
            fn(i)
        best = min(best, (time.process_time() - started) / calls)
    return best * 1e6


def wsgi_get(app, path: str, authorization: str | None = None) -> str:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "bench",
               "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
               "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO()}
    if authorization:
        environ["HTTP_AUTHORIZATION"] = authorization
    status: list[str] = []
    b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    return status[0]


def seed(app) -> None:
    from gateway.domain.entitlements import Grant
    from gateway.domain.model import Status

    now = datetime.now(timezone.utc)
    grant = Grant(name="premium", status=Status.ACTIVE, expires_at=now + timedelta(days=30), will_renew=True,
                  source="revenuecat", product_id="monthly", subscription_key="read-path")
    with app.extensions["gateway"].store.transaction() as tx:
        tx.replace_entitlements_of({f"read-path-{n}": [grant] for n in range(USERS)}, now)


def cases(app, url: str) -> dict:
    """Each case: one call, given the call's number."""
    from bench.hello import app as hello

    store = app.extensions["gateway"].store

    def store_read(i: int) -> None:
        assert store.entitlements_of(f"read-path-{i % USERS}")

    def request(i: int) -> None:
        assert wsgi_get(app, f"/v1/users/read-path-{i % USERS}/entitlements", f"Bearer {API_KEY}") == "200 OK"

    def floor(_: int) -> None:
        assert wsgi_get(hello, "/hello") == "200 OK"

    found = {"store": store_read, "request": request, "hello": floor}
    if url.startswith("postgresql"):
        from bench.hello_read import app as bare

        def bare_read(i: int) -> None:
            assert wsgi_get(bare, f"/v1/users/read-path-{i % USERS}/entitlements") == "200 OK"

        found["bare"] = bare_read
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Never DATABASE_URL by default: the run writes 1,000 made-up users into the database.
    parser.add_argument("--database-url", default="sqlite:///instance/read_path.db")
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--cache-seconds", type=int, default=0, help="ENTITLEMENT_CACHE_SECONDS (default 0: off)")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated, of: " + ", ".join(CASES))
    parser.add_argument("--instructions", action="store_true", help="instructions per call, under valgrind")
    parser.add_argument("--only", choices=CASES, help=argparse.SUPPRESS)  # --instructions: one case, one pass
    parser.add_argument("--warm-up", type=int, default=0, help=argparse.SUPPRESS)  # with --only: calls not counted
    args = parser.parse_args()
    # As gunicorn.conf.py runs the workers: prometheus_client reads it when imported.
    os.environ.update(DATABASE_URL=args.database_url, GATEWAY_API_KEYS=API_KEY, LOG_LEVEL="WARNING",
                      ENTITLEMENT_CACHE_SECONDS=str(args.cache_seconds),
                      PROMETHEUS_MULTIPROC_DIR=tempfile.mkdtemp(prefix="read-path-"))

    from gateway import create_app
    from gateway.store.migrate import upgrade

    if args.only:  # under valgrind: the users are seeded, the warm-up and the pass are all it does
        call = cases(create_app(), args.database_url)[args.only]
        cpu_per_call(call, args.warm_up, passes=1)
        cpu_per_call(call, args.calls, passes=1)
        return
    upgrade(args.database_url)
    app = create_app()
    seed(app)
    found = cases(app, args.database_url)
    chosen = [name for name in args.cases.split(",") if name in found]
    if args.instructions:
        return instructions(args, chosen)
    cache = f"entitlement cache {args.cache_seconds} s" if args.cache_seconds else "no entitlement cache"
    print(f"database: {args.database_url.split(':')[0]}; {cache}; CPU microseconds per call, best of 3 x {args.calls}")
    for name in chosen:
        print(f"{TITLES[name]:28} {cpu_per_call(found[name], args.calls):8.0f}")


def instructions(args, chosen: list[str]) -> None:
    """Instructions per call of each case: run twice under valgrind, after the same warm-up
    pass, one pass of ``calls``, then of ``2 calls``; the difference divided by ``calls``."""
    cache = f"entitlement cache {args.cache_seconds} s" if args.cache_seconds else "no entitlement cache"
    print(f"database: {args.database_url.split(':')[0]}; {cache}; instructions per call (valgrind, "
          f"{args.calls} calls against {2 * args.calls})")
    for name in chosen:
        counts = []
        for n in (args.calls, 2 * args.calls):
            command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                       sys.executable, os.path.abspath(__file__), "--database-url", args.database_url,
                       "--cache-seconds", str(args.cache_seconds), "--only", name, "--calls", str(n),
                       "--warm-up", str(args.calls)]
            done = subprocess.run(command, capture_output=True, text=True)
            found = re.findall(r"==\d+== I\s+refs:\s+([\d,]+)", done.stderr)
            if done.returncode or not found:
                sys.exit(f"valgrind run failed:\n{done.stderr[-3000:]}")
            counts.append(int(found[-1].replace(",", "")))
        print(f"{TITLES[name]:28} {(counts[1] - counts[0]) / args.calls:12,.0f}", flush=True)


if __name__ == "__main__":
    main()
