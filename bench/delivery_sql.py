"""Prints a pgbench script: the SQL of one RevenueCat delivery, without the gateway.

    .venv/bin/python bench/delivery_sql.py > delivery.sql
    pgbench -n -M prepared -c 8 -j 2 -T 10 -f delivery.sql gateway_bench
    .venv/bin/python bench/delivery_sql.py --psycopg postgresql://gateway:gateway@127.0.0.1/gateway_bench

The statements are the gateway's own (``statements.for_postgres()``, the texts the
PostgreSQL store sends on psycopg's cursor), in the order PostgreSQL's statement log shows them for a ``RENEWAL`` of a
known subscription, as ``bench/ingest.lua`` sends: record the event, lock the
subscription, write it, lock the user, read the user's entitlement rows (and whether the
user was deleted) and subscriptions, replace the user's entitlements, take a feed
position and append the renewal's feed event, link the event, commit. Their parameters are pgbench variables and
SQL expressions; a column of a written row that a RENEWAL does not set is NULL, as it
is for the gateway. The whole transaction is one pipeline, one round trip: the gateway
waits four times per delivery (tests/integration/test_delivery_round_trips.py), so this is the kindest case. pgbench is C and does no
HTTP, JSON or signature work: its rate is the most that PostgreSQL itself lets a gateway
ingest on this machine (``bench/run.sh`` runs it as the case ``ingest-sql``).

``--psycopg URL`` sends the same transaction from Python instead, in one psycopg pipeline,
one delivery after another (the body a literal in the SQL, as above), and prints the CPU
microseconds the client spent per delivery: what a Python gateway on psycopg pays on top
of PostgreSQL's share; with ``--waits``, waiting where a gateway must (``GATEWAY_WAITS``),
as bench/delivery_cpu.py and bench/run.sh ask for it, the latter as the ingest target's
bound. It writes made-up deliveries into that database.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gateway.store import statements, tables  # noqa: E402

LATER = "now() + interval '30 days'"
FEED_VIEW = """'{"active": true, "status": "active", "expires_at": "2027-01-04T10:00:00Z", "will_renew": true, \
"source": "revenuecat", "product_id": "monthly"}'"""
CAUSE = """'{"kind": "delivery", "source": "revenuecat", "event_id": "bench-1796236065042-1-1"}'"""


def body() -> str:
    """A delivery's body as bench/ingest.lua sends it (its size is what the event log stores)."""
    user = "bench-1"
    return json.dumps({"api_version": "1.0", "event": {
        "id": "bench-1796236065042-1-1", "type": "RENEWAL", "app_user_id": user,
        "original_app_user_id": user, "aliases": [user], "product_id": "monthly",
        "entitlement_ids": ["premium"], "event_timestamp_ms": 1796236065042,
        "expiration_at_ms": 1798828065042, "original_transaction_id": f"tx-{user}",
        "environment": "PRODUCTION", "store": "APP_STORE"}}, separators=(",", ":"))


def row(table, **values: str) -> dict[str, str]:
    """A value for every column of ``table``: those given, NULL for the others."""
    return {**{column.name: "NULL" for column in table.c}, **values}


def steps(n: str, event: str) -> list[tuple[str, dict[str, str]]]:
    """Each statement's name and its parameters' SQL; ``n`` (the user's number, 0-999)
    and ``event`` (the event's number) are placeholders in the client's own syntax."""
    user, key = f"'bench-' || {n}::text", f"'tx-bench-' || {n}::text"
    payload = "'" + body().replace("'", "''") + "'"
    users = f"ARRAY[{user}]"
    return [
        ("record_event", row(
            tables.events, source="'revenuecat'", event_id=f"'bench-sql-' || {event}::text", event_type="'RENEWAL'",
            received_at="now()", payload=payload, data=payload, status="'processed'", attempts="1",
            processed_at="now()")),
        ("advisory_locks", {"space": "3", "names": f"ARRAY['revenuecat:' || {user}]"}),  # the account
        ("lock_subscription", {"source": "'revenuecat'", "key": key}),
        ("upsert_subscription", row(
            tables.subscriptions, source="'revenuecat'", key=key, user_sub=user, owner_as_of="now()", account=user,
            account_as_of="now()", product_id="'monthly'", status="'active'", raw_status="'RENEWAL'",
            expires_at=LATER, will_renew="true", environment="'PRODUCTION'",
            entitlement_names="'[\"premium\"]'", as_of="now()", updated_at="now()")),
        ("advisory_locks", {"space": "2", "names": users}),
        ("entitlements_of_users", {"user_subs": users}),  # the rows before, for the feed
        ("deleted_among", {"user_subs": users}),
        ("subscriptions_of_users", {"user_subs": users}),
        ("stale_entitlements", {"owners": users, "firsts": users, "seconds": "ARRAY['premium']"}),
        ("upsert_entitlement", row(
            tables.entitlements, user_sub=user, name="'premium'", status="'active'", expires_at=LATER,
            will_renew="true", source="'revenuecat'", product_id="'monthly'", subscription_key=key,
            updated_at="now()")),
        # A renewal moves the end: one feed event, numbered from the clock, locked last.
        ("take_feed_positions", {"count": "1"}),
        ("append_feed", row(
            tables.entitlement_events, position="(SELECT position FROM feed_clock WHERE id = 1)",
            event_id="'evt_' || md5(random()::text)", type="'entitlement.renewed'", user_sub=user,
            entitlement="'premium'", before=FEED_VIEW, after=FEED_VIEW, cause=CAUSE, occurred_at="now()")),
        # The event's id: the gateway passes the one RETURNING gave; in one pipeline
        # there is no answer to read it from, so the sequence's value in this session.
        ("link_event", row(tables.event_subscriptions, event_pk="currval('events_id_seq')", source="'revenuecat'",
                           key=key)),
    ]


def transaction(n: str, event: str) -> list[str]:
    """The delivery's statements, BEGIN to COMMIT, with ``n`` and ``event`` left as placeholders."""
    sent = statements.for_postgres()
    texts = ["BEGIN"]
    for name, values in steps(n, event):
        # Every parameter of the driver's text replaced: one it gains that is not a column
        # of a written row fails here, loudly.
        sql = getattr(sent, name)
        assert "%s" not in sql, f"{name}: a positional parameter, which has no value here"
        sql = re.sub(r"%\((\w+)\)s", lambda m: f"({values[m.group(1)]})", sql)
        texts.append(" ".join(sql.split()))
    return texts + [sent.commit]


def script() -> str:
    lines = ["\\set n random(0, 999)", "\\set event random(1, 999999999999999)", "\\startpipeline"]
    lines += [f"{sql};" for sql in transaction(":n", ":event")]
    return "\n".join(lines + ["\\endpipeline"]) + "\n"


#: The statements whose answer the gateway waits for before it sends more (and the COMMIT):
#: a delivery's least round trips, as the merge, the users' rows and the feed's numbers need
#: what PostgreSQL answered.
GATEWAY_WAITS = ("lock_subscription", "subscriptions_of_users", "take_feed_positions")


def psycopg_cpu(url: str, deliveries: int = 2000, passes: int = 3, waits: tuple[str, ...] = ()) -> list[float]:
    """CPU microseconds psycopg's client spends per delivery, for each pass; with ``waits``,
    reading the answer of each statement named there before sending the next."""
    import psycopg

    texts = transaction("%(n)s", "%(event)s")
    names = ["BEGIN", *(name for name, _ in steps("0", "0")), "COMMIT"]
    with psycopg.connect(url, autocommit=True) as connection:

        def deliver() -> None:
            params = {"n": str(random.randrange(1000)), "event": str(random.randrange(10**15))}
            with connection.pipeline():
                for name, sql in zip(names, texts):
                    given = params if "%(" in sql else None
                    cursor = connection.execute(sql, given)
                    if name in waits:
                        cursor.fetchall()

        for _ in range(deliveries // 10):  # warm: statements prepared, caches filled
            deliver()
        figures = []
        for _ in range(passes):
            started = time.process_time()
            for _ in range(deliveries):
                deliver()
            figures.append((time.process_time() - started) / deliveries * 1e6)
        return figures


def psycopg_cost(url: str, deliveries: int = 2000, passes: int = 3, waits: tuple[str, ...] = ()) -> None:
    for figure in psycopg_cpu(url, deliveries, passes, waits):
        print(f"psycopg client CPU per delivery: {figure:.0f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--psycopg", metavar="URL", help="send it with psycopg instead; print the client's CPU")
    parser.add_argument("--waits", action="store_true", help="--psycopg: waiting where a gateway must")
    parser.add_argument("--deliveries", type=int, default=2000, help="--psycopg: deliveries per pass")
    parser.add_argument("--passes", type=int, default=3, help="--psycopg: passes")
    args = parser.parse_args()
    if args.psycopg:
        psycopg_cost(args.psycopg, args.deliveries, args.passes, GATEWAY_WAITS if args.waits else ())
    else:
        sys.stdout.write(script())
