"""Two of ``make bench-scale``'s measures: the heavy user's pages one request at a time, and
the database's size."""
from __future__ import annotations

import math
import re
import statistics
import time

import psycopg
import requests

from bench.scale_explain import ADMIN_PASSWORD

WARM = 5  # requests before the measured ones: connections opened, templates compiled


def percentile(values: list[float], share: float) -> float:
    """Nearest rank: the value ``share`` of the requests took at most."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _timed(get, count: int) -> dict:
    for _ in range(WARM):
        get()
    took = []
    for _ in range(count):
        started = time.perf_counter()
        answer = get()
        took.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise RuntimeError(f"{answer.status_code}: {answer.text[:300]}")
    return {"requests": count, "p50_ms": round(percentile(took, 0.50), 1), "p99_ms": round(percentile(took, 0.99), 1),
            "max_ms": round(max(took), 1), "mean_ms": round(statistics.mean(took), 1)}


def latency(url: str, user: str, api_key: str, count: int = 200) -> dict:
    """``GET /v1/users/<user>/history`` (its default page, 100 deliveries) and the admin's
    user page for ``user``, ``count`` each, one after the other on one keep-alive
    connection; the gateway runs with ``ADMIN_PASSWORD`` (``bench/scale.sh``)."""
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {api_key}"
    history = _timed(lambda: api.get(f"{url}/v1/users/{user}/history", timeout=30), count)
    admin = requests.Session()
    page = admin.get(f"{url}/admin/login", timeout=30).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    signed = admin.post(f"{url}/admin/login", data={"password": ADMIN_PASSWORD, "csrf_token": token},
                        allow_redirects=False, timeout=30)
    if signed.status_code != 302:
        raise RuntimeError(f"admin login: {signed.status_code}")
    page = _timed(lambda: admin.get(f"{url}/admin/users", params={"sub": user}, timeout=30), count)
    return {"user": user, "history": history, "admin": page}


def size(url: str) -> dict:
    """The database's size, each table's (heap, TOAST, indexes), the rows, and what a
    delivery's payload and parsed data weigh per source (a sample of the event log)."""
    with psycopg.connect(url, autocommit=True) as db:
        total = db.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        users = db.execute("SELECT count(*) FROM entitlements").fetchone()[0]
        tables = {}
        for name, heap, indexes, whole in db.execute(
                "SELECT relname, pg_relation_size(oid), pg_indexes_size(oid), pg_total_relation_size(oid) "
                "FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace "
                "ORDER BY pg_total_relation_size(oid) DESC").fetchall():
            rows = db.execute(f"SELECT count(*) FROM {name}").fetchone()[0]  # exact: reltuples drifts after deletes
            tables[name] = {"total": whole, "heap": heap, "toast": whole - heap - indexes, "indexes": indexes,
                            "rows": rows}
        deliveries = {source: {"rows_sampled": n, "payload_bytes": payload, "data_bytes": data,
                               "payload_chars": chars}
                      for source, n, payload, data, chars in db.execute(
                          "SELECT source, count(*), avg(pg_column_size(payload))::int, "
                          "avg(pg_column_size(data))::int, avg(length(payload))::int "
                          "FROM events TABLESAMPLE SYSTEM (0.2) GROUP BY source ORDER BY source")}
    return {"database": total, "users": users, "per_million_users": round(total / users * 1e6) if users else None,
            "tables": tables, "stored_per_delivery": deliveries}
