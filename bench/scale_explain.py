"""EXPLAIN (ANALYZE, BUFFERS) of every hot statement, as the gateway sends it, on the scale database.

The statements are not copied here: each hot path runs for real, through the app or the
store's own calls, on a connection whose psycopg cursors record what they send (text and
parameters, whichever layer sends it: the driver's pipeline or SQLAlchemy). Then each
recorded statement is run again under ``EXPLAIN (ANALYZE, BUFFERS)`` with the same
parameters, a path's statements in one transaction that is rolled back:

- ``read``: ``GET /v1/users/<sub>/entitlements`` of a premium user (``Store.entitlements_of``);
- ``delivery``: a RevenueCat ``RENEWAL`` of an active subscription, through the webhook;
- ``history``: ``GET /v1/users/<heavy>/history``; ``admin``: the admin's user page, the heavy user;
- ``retry``: the retry worker's claim of due deliveries (rolled back: nothing leased);
- ``expiry``: one run of the expiry sweep;
- ``reconcile``: each source's cursor and due subscriptions, as ``flask reconcile`` reads them;
- ``feed``: ``GET /v1/events?after=`` a thousand events before the head;
- ``webhooks``: the outbound worker's fan-out and claim (rolled back: nothing leased), and
  its count of parked deliveries, which each scrape of ``/metrics`` reads too.

Psycopg prepares a statement it has run five times on a connection, and from its sixth run
PostgreSQL may plan it once for any parameters (a generic plan) when that looks no dearer
than the plans for the values seen. Each SELECT, UPDATE and DELETE is therefore also
prepared and run five times, then explained: the plan the gateway's pooled connections get
(``prepared``, marked generic or not).

A sequential scan of a table of more than ``BIG`` rows in a plan misses the target, and so
does a node that reads such a table through an index but filters out more than ``BIG`` rows.
"""
from __future__ import annotations

import contextlib
import json
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.types.json import Jsonb

BIG = 100_000
ADMIN_PASSWORD = "scale-bench-admin-password"


class Recorder:
    """The statements psycopg's cursors send while ``on``: [(path, text, parameters)]."""

    def __init__(self) -> None:
        self.path: str | None = None
        self.sent: list[tuple[str, str, Any]] = []

    def cursor_class(self):
        recorder = self

        class RecordingCursor(psycopg.Cursor):
            def execute(self, query, params=None, **kwargs):
                recorder.note(query, params)
                return super().execute(query, params, **kwargs)

            def executemany(self, query, params_seq, **kwargs):
                params_seq = list(params_seq)
                if params_seq:
                    recorder.note(query, params_seq[0])
                return super().executemany(query, params_seq, **kwargs)

        return RecordingCursor

    def note(self, query, params) -> None:
        if self.path is not None:
            text = query if isinstance(query, str) else query.as_string(None) if hasattr(query, "as_string") \
                else bytes(query).decode()
            self.sent.append((self.path, text, params))

    @contextlib.contextmanager
    def recording(self, path: str):
        self.path = path
        try:
            yield
        finally:
            self.path = None


class _RolledBack(Exception):
    """Raised inside a store transaction to roll it back."""


def record(url: str, heavy_user: str) -> tuple[list[tuple[str, str, Any]], dict[str, str]]:
    """Run every hot path once on the gateway; what each sent, and what each asked for."""
    from gateway import create_app
    from gateway.config import from_env
    from gateway.domain.unresolved import SETTLED_WITHIN
    from gateway.jobs.expiry import ExpirySweep

    recorder = Recorder()
    env = {"DATABASE_URL": url, "GATEWAY_API_KEYS": "scale-explain", "REVENUECAT_WEBHOOK_AUTH": "Bearer scale",
           "ADMIN_PASSWORD": ADMIN_PASSWORD, "ADMIN_SECRET_KEY": "s" * 40, "ADMIN_COOKIE_SECURE": "false",
           "LOG_LEVEL": "ERROR"}
    app = create_app(from_env(env))
    store = app.extensions["gateway"].store
    engine = getattr(store, "store", store).engine
    sa.event.listen(engine, "connect", lambda connection, _: setattr(connection, "cursor_factory",
                                                                     recorder.cursor_class()))
    engine.dispose()  # every connection from now on records
    client, api = app.test_client(), {"Authorization": "Bearer scale-explain"}
    asked: dict[str, str] = {}
    with psycopg.connect(_libpq(url), autocommit=True) as db:
        premium = db.execute("SELECT user_sub FROM entitlements TABLESAMPLE SYSTEM (1) "
                             "WHERE status = 'active' AND expires_at > now() LIMIT 1").fetchone()[0]
        user, key = db.execute("SELECT user_sub, key FROM subscriptions TABLESAMPLE SYSTEM (1) WHERE source = "
                               "'revenuecat' AND status = 'active' AND user_sub IS NOT NULL LIMIT 1").fetchone()
        head = db.execute("SELECT position FROM feed_clock").fetchone()[0]
    try:
        with recorder.recording("read"):
            _ok(client.get(f"/v1/users/{premium}/entitlements", headers=api))
        asked["read"] = f"GET /v1/users/{premium}/entitlements"
        with recorder.recording("delivery"):
            _ok(client.post("/webhooks/revenuecat", data=_renewal(user, key),
                            headers={"Authorization": "Bearer scale", "Content-Type": "application/json"}))
        asked["delivery"] = f"RevenueCat RENEWAL of {key} ({user})"
        with recorder.recording("history"):
            _ok(client.get(f"/v1/users/{heavy_user}/history", headers=api))
        asked["history"] = f"GET /v1/users/{heavy_user}/history"
        _admin_login(client)
        with recorder.recording("admin"):
            _ok(client.get(f"/admin/users?sub={heavy_user}"))
        asked["admin"] = f"GET /admin/users?sub={heavy_user}"
        now = datetime.now(timezone.utc)
        with recorder.recording("retry"), contextlib.suppress(_RolledBack), store.transaction() as tx:
            tx.claim_due_events(now=now, stale_before=now - timedelta(minutes=10),
                                lease_until=now + timedelta(minutes=5), limit=100)
            raise _RolledBack
        asked["retry"] = "claim_due_events(limit=100), rolled back"
        with recorder.recording("expiry"):
            ExpirySweep(store).run_once()
        asked["expiry"] = "ExpirySweep.run_once()"
        with recorder.recording("reconcile"), store.transaction(readonly=True) as tx:
            for source in ("stripe", "apple", "google", "revenuecat"):
                after = tx.reconcile_cursor(source)
                for start in (after, _middle_key(url, source)):
                    tx.subscriptions_to_reconcile(source, now - timedelta(days=3), now + timedelta(days=1),
                                                  10_000, start, now - SETTLED_WITHIN[source])
        asked["reconcile"] = "each source's cursor, then its due subscriptions from the first key and from the middle"
        with recorder.recording("feed"):
            _ok(client.get(f"/v1/events?after={max(0, head - 1000)}&limit=100", headers=api))
        asked["feed"] = f"GET /v1/events?after={max(0, head - 1000)}&limit=100"
        with recorder.recording("webhooks"):
            with contextlib.suppress(_Enough):
                _RollingBackOutbox(engine).fan_out(now)
            _RollingBackOutbox(engine).claim(now, now + timedelta(seconds=80), 64)
            _RollingBackOutbox(engine).parked()  # every worker turn and every scrape of /metrics
        asked["webhooks"] = "Outbox.fan_out, Outbox.claim(64), rolled back; Outbox.parked"
    finally:
        store.close()
    return recorder.sent, asked


def _ok(answer) -> None:
    if answer.status_code != 200:
        raise RuntimeError(f"{answer.status_code}: {answer.get_data(as_text=True)[:300]}")


def _admin_login(client) -> None:
    page = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    answer = client.post("/admin/login", data={"password": ADMIN_PASSWORD, "csrf_token": token})
    if answer.status_code != 302:
        raise RuntimeError(f"admin login: {answer.status_code}")


def _renewal(user: str, key: str) -> bytes:
    at = int(time.time() * 1000)
    return json.dumps({"api_version": "1.0", "event": {
        "id": f"scale-explain-{at}", "type": "RENEWAL", "app_user_id": user, "original_app_user_id": user,
        "aliases": [user], "product_id": "com.example.premium.monthly", "entitlement_ids": ["premium"],
        "event_timestamp_ms": at, "expiration_at_ms": at + 30 * 86_400_000, "original_transaction_id": key,
        "environment": "PRODUCTION", "store": "APP_STORE"}}).encode()


def _middle_key(url: str, source: str) -> str | None:
    """A key halfway through the source's subscriptions: where a cursor stops mid-way."""
    with psycopg.connect(_libpq(url), autocommit=True) as db:
        found = db.execute("SELECT key FROM subscriptions WHERE source = %s ORDER BY key "
                           "OFFSET (SELECT count(*) / 2 FROM subscriptions WHERE source = %s) LIMIT 1",
                           (source, source)).fetchone()
    return found[0] if found else None


def _libpq(url: str) -> str:
    from bench.scale_load import libpq

    return libpq(url)


class _Enough(Exception):
    """Ends a fan-out after its first page (rolled back, every page would be the first)."""


class _RollingBackOutbox:
    """``Outbox`` whose transactions are rolled back: its statements, without their effect;
    at most one writing transaction (a page of the fan-out) per call."""

    def __new__(cls, engine):
        from gateway.store.outbox import Outbox
        from gateway.store.sql import transactional

        class RollingBack(Outbox):
            written = 0

            @contextlib.contextmanager
            def _transaction(self, readonly: bool = False):
                if not readonly:
                    self.written += 1
                    if self.written > 1:
                        raise _Enough
                # A transaction, as the outbox's own (connections rest in autocommit).
                with self.engine.connect() as connection:
                    connection = transactional(connection)
                    transaction = connection.begin()
                    try:
                        yield connection
                    finally:
                        transaction.rollback()

        return RollingBack(engine)


# Explaining.
_EXPLAINABLE = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b", re.I)


def explain_all(url: str, sent: list[tuple[str, str, Any]]) -> list[dict]:
    """Each distinct statement of each path, explained in the path's order, a path per
    transaction that is rolled back (each statement in a savepoint of its own); with its
    plan once prepared where it has one."""
    results, seen = [], set()
    paths: dict[str, list[tuple[str, Any]]] = {}
    for where, text, params in sent:
        if _EXPLAINABLE.match(text) and (where, text) not in seen:
            seen.add((where, text))
            paths.setdefault(where, []).append((text, params))
    with psycopg.connect(_libpq(url), prepare_threshold=None) as db:  # no statement of its own prepared
        sizes = dict(db.execute("SELECT relname, reltuples::bigint FROM pg_class WHERE relkind = 'r' "
                                "AND relnamespace = 'public'::regnamespace").fetchall())
        db.rollback()
        for where, statements in paths.items():
            with db.transaction(force_rollback=True):
                for text, params in statements:
                    results.append(_explained(db, where, text, params, sizes, f"scale_prepared_{len(results)}"))
    return results


def _explained(db: psycopg.Connection, where: str, text: str, params, sizes: dict, name: str) -> dict:
    found = {"path": where, "sql": " ".join(text.split()), "params": _shown(params)}
    try:
        with db.transaction():
            plan = db.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {text}", params).fetchone()[0][0]
        found.update(_judged(plan, sizes))
    except psycopg.errors.UniqueViolation:
        # An INSERT of the row the real run wrote: its plan, without running it again.
        with db.transaction():
            plan = db.execute(f"EXPLAIN (BUFFERS, FORMAT JSON) {text}", params).fetchone()[0][0]
        found.update(_judged(plan, sizes), analyzed=False)
    except psycopg.Error as exc:
        found["error"] = str(exc).strip().splitlines()[0]
    if not text.lstrip().upper().startswith(("INSERT", "WITH")):
        found["prepared"] = _generic(db, text, params, sizes, name)
    return found


def _generic(db: psycopg.Connection, text: str, params, sizes: dict, name: str) -> dict:
    """The plan the statement gets once psycopg has prepared it (its sixth run on a
    connection): prepared here too, run five times, then explained; ``generic`` says
    whether PostgreSQL chose its plan for any parameters over one for these."""
    query, values, types = _numbered(text, params)
    if types is None:
        return {"error": "a parameter of no known type"}
    # The values as literals (EXECUTE takes no bound parameters), typed as prepared.
    execute = f"EXECUTE {name}" + (f"({', '.join(f'%s::{t}' for t in types)})" if values else "")
    client = psycopg.ClientCursor(db)
    try:
        with db.transaction():
            db.execute(f"PREPARE {name} ({', '.join(types)}) AS {query}" if types else f"PREPARE {name} AS {query}")
            for _ in range(5):
                client.execute(execute, values)
            plan = client.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {execute}", values).fetchone()[0][0]
        return {**_judged(plan, sizes), "generic": bool(re.search(r"\$\d", json.dumps(plan["Plan"])))}
    except psycopg.Error as exc:
        return {"error": str(exc).strip().splitlines()[0]}
    finally:  # a prepared statement outlives the transaction that made it
        with contextlib.suppress(psycopg.Error), db.transaction():
            db.execute(f"DEALLOCATE {name}")


def _numbered(text: str, params) -> tuple[str, list, list[str] | None]:
    """``%(name)s`` and ``%s`` parameters as ``$n``, their values, and their SQL types."""
    values, numbers = [], {}

    def number(found: re.Match) -> str:
        name = found.group(1)
        if name is None:
            values.append(params[len(values)] if not isinstance(params, dict) else None)
            return f"${len(values)}"
        if name not in numbers:
            values.append(params[name])
            numbers[name] = len(values)
        return f"${numbers[name]}"

    query = re.sub(r"%\((\w+)\)s|%s", number, text)
    types = [_sql_type(v) for v in values]
    return query, values, None if None in types else types


def _sql_type(value) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):  # as psycopg sends it: the smallest type that holds it
        return "smallint" if -2**15 <= value < 2**15 else "integer" if -2**31 <= value < 2**31 else "bigint"
    if isinstance(value, str):
        return "text"
    if isinstance(value, datetime):
        return "timestamptz"
    if isinstance(value, Jsonb):
        return "jsonb"
    if isinstance(value, (list, tuple)) and value:
        inner = _sql_type(value[0])
        return None if inner is None else f"{inner}[]"
    return None


def _judged(plan: dict, sizes: dict) -> dict:
    """The plan's verdict: sequential scans of big tables; what each node read."""
    nodes, big_scans = [], []

    def walk(node: dict, depth: int) -> None:
        relation = node.get("Relation Name")
        removed = node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)
        nodes.append({"depth": depth, "node": node["Node Type"], "relation": relation, "index": node.get("Index Name"),
                      "rows": node.get("Actual Rows", 0) * node.get("Actual Loops", 1),
                      "removed": removed * node.get("Actual Loops", 1),
                      "buffers": node.get("Shared Hit Blocks", 0) + node.get("Shared Read Blocks", 0)})
        if node["Node Type"] == "Seq Scan" and sizes.get(relation, 0) > BIG:
            big_scans.append(f"Seq Scan of {relation} ({sizes[relation]:,} rows)")
        elif relation and sizes.get(relation, 0) > BIG and removed * node.get("Actual Loops", 1) > BIG:
            big_scans.append(f"{node['Node Type']} of {relation} filtering out "
                             f"{removed * node.get('Actual Loops', 1):,} rows: a sequential scan in all but name")
        for child in node.get("Plans", []):
            walk(child, depth + 1)

    walk(plan["Plan"], 0)
    top = plan["Plan"]
    return {"ms": round(plan.get("Execution Time", 0.0), 3), "nodes": nodes, "seq_scans": big_scans,
            "buffers": top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0),
            "read_blocks": top.get("Shared Read Blocks", 0),
            "most_removed": max((n["removed"] for n in nodes), default=0)}


def _shown(params) -> Any:
    """Parameters as JSON can show them, long values cut."""
    def one(value):
        if isinstance(value, Jsonb):
            value = value.obj
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, (list, tuple)):
            return [one(v) for v in value[:5]]
        if isinstance(value, str) and len(value) > 80:
            return value[:77] + "..."
        if isinstance(value, (dict,)):
            return "{...}"
        return value
    if isinstance(params, dict):
        return {k: one(v) for k, v in params.items()}
    return [one(v) for v in params or []]


def run(url: str, heavy_user: str) -> dict:
    sent, asked = record(url, heavy_user)
    return {"asked": asked, "statements": explain_all(url, sent)}
