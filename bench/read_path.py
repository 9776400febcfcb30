"""What one entitlement read costs inside a worker, without HTTP or load generator.

    .venv/bin/python bench/read_path.py --database-url postgresql://gateway:gateway@127.0.0.1/gateway_bench

Seeds 1,000 users with one entitlement each (users ``read-path-<n>``), then measures CPU
microseconds per call, best of three passes of ``--calls``: the store read alone
(``PostgresStore.entitlements_of``, what the endpoint calls), the whole Flask request
(API key, store, JSON, access line, metrics) called as WSGI, and the bare Flask hello
(``bench/hello.py``) called the same way; ``--cache-seconds`` turns on the entitlement
cache (``gateway/store/cache.py``). In-process figures are steadier than wrk's on a
machine that drifts, and they show where a read's time goes.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import time
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

USERS = 1000
API_KEY = "read-path-bench-key"


def cpu_per_call(fn, calls: int) -> float:
    best = float("inf")
    for _ in range(3):
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Never DATABASE_URL by default: the run writes 1,000 made-up users into the database.
    parser.add_argument("--database-url", default="sqlite:///instance/read_path.db")
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--cache-seconds", type=int, default=0, help="ENTITLEMENT_CACHE_SECONDS (default 0: off)")
    args = parser.parse_args()
    os.environ.update(DATABASE_URL=args.database_url, GATEWAY_API_KEYS=API_KEY, LOG_LEVEL="WARNING",
                      ENTITLEMENT_CACHE_SECONDS=str(args.cache_seconds))

    from bench.hello import app as hello
    from gateway import create_app
    from gateway.domain.entitlements import Grant
    from gateway.domain.model import Status
    from gateway.store.migrate import upgrade

    upgrade(args.database_url)
    app = create_app()
    store = app.extensions["gateway"].store
    now = datetime.now(timezone.utc)
    grant = Grant(name="premium", status=Status.ACTIVE, expires_at=now + timedelta(days=30), will_renew=True,
                  source="revenuecat", product_id="monthly", subscription_key="read-path")
    with store.transaction() as tx:
        tx.replace_entitlements_of({f"read-path-{n}": [grant] for n in range(USERS)}, now)

    def store_read(i: int) -> None:
        assert store.entitlements_of(f"read-path-{i % USERS}")

    def request(i: int) -> None:
        assert wsgi_get(app, f"/v1/users/read-path-{i % USERS}/entitlements", f"Bearer {API_KEY}") == "200 OK"

    def floor(_: int) -> None:
        assert wsgi_get(hello, "/hello") == "200 OK"

    cache = f"entitlement cache {args.cache_seconds} s" if args.cache_seconds else "no entitlement cache"
    print(f"database: {args.database_url.split(':')[0]}; {cache}; CPU microseconds per call, best of 3 x {args.calls}")
    for name, fn in (("store read", store_read), ("entitlement request (WSGI)", request), ("hello (WSGI)", floor)):
        print(f"{name:28} {cpu_per_call(fn, args.calls):8.0f}")


if __name__ == "__main__":
    main()
