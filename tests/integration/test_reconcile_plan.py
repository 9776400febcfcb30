"""Reconcile's due query stays index-backed on PostgreSQL, as sent and once prepared.

Psycopg prepares a statement it has run five times on a connection, and PostgreSQL may then
plan it once for any parameters (a generic plan). Each plan here is asked of the statement
``Transaction.subscriptions_to_reconcile`` sends, on a table whose shape is a real one's (most
subscriptions active or expired; a few percent in billing retry, grace period or paused; a few
active ones whose period ended unrenewed; one percent without an owner): from the first key
and after a cursor, custom and generic. None may read the table whole, and each finds the
unsettled rows by ``ix_subscriptions_status`` (the active ones ended before the window by
``ix_subscriptions_expires_at``, never by status: half the table is active).
Catches the statuses sent as bound parameters: the generic plan then guessed each to be a
seventh of the table and read every subscription of the source instead (bench/README.md);
and ``active`` put among the unsettled statuses (every subscription of the source read).
"""
from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from psycopg import ClientCursor
from sqlalchemy.dialects import postgresql

from gateway.domain.unresolved import SETTLED_WITHIN
from gateway.store import statements
from tests.conftest import DATABASE

pytestmark = pytest.mark.skipif(DATABASE != "postgresql", reason="the plans are PostgreSQL's")

ROWS = 60_000
SOURCES = ("stripe", "apple", "google", "revenuecat")


def _row(n: int, now: datetime, chance: random.Random) -> tuple:
    roll, days = chance.random(), chance.uniform(0, 1)
    status, expires = (("active", now + timedelta(days=31 * days - 2)) if roll < 0.547
                       else ("active", now - timedelta(days=90 * days)) if roll < 0.55  # its renewal unseen
                       else ("expired", now - timedelta(days=365 * days)) if roll < 0.97
                       else ("billing_retry", now - timedelta(days=120 * days)) if roll < 0.985
                       else ("grace_period", now + timedelta(days=40 * days - 30)) if roll < 0.99
                       else ("paused", now - timedelta(days=120 * days)) if roll < 0.995
                       else ("pending", None) if roll < 0.996 else ("revoked", now - timedelta(days=365 * days)))
    owner = None if chance.random() < 0.01 else f"user-{n}"
    return SOURCES[n % 4], f"k{n:09d}", owner, status, expires, True, now, now


@pytest.fixture
def loaded(database_url):
    engine = sa.create_engine(database_url)
    now = datetime.now(timezone.utc)
    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        chance = random.Random(7)
        with raw.cursor() as cursor:
            with cursor.copy("COPY subscriptions (source, key, user_sub, status, expires_at, will_renew, as_of, "
                             "updated_at) FROM STDIN") as copy:
                for n in range(ROWS):
                    copy.write_row(_row(n, now, chance))
            cursor.execute("ANALYZE subscriptions")
        raw.commit()
    yield engine, now
    engine.dispose()


def _plan(engine, query, generic: bool) -> dict:
    """EXPLAIN of ``query`` as psycopg sends it; ``generic``: prepared and planned for any
    parameters, as a pooled connection may run it."""
    compiled = query.compile(dialect=postgresql.psycopg.dialect(), compile_kwargs={"render_postcompile": True})
    sql, params = str(compiled), compiled.params
    names = [name for name in params if f"%({name})s" in sql]
    for number, name in enumerate(names, 1):
        sql = sql.replace(f"%({name})s", f"${number}")
    kinds = ["timestamptz" if isinstance(params[n], datetime) else "int" if isinstance(params[n], int) else "text"
             for n in names]
    with engine.connect() as connection:
        cursor = connection.connection.driver_connection.cursor()
        cursor.execute(f"SET plan_cache_mode = {'force_generic_plan' if generic else 'force_custom_plan'}")
        cursor.execute(f"PREPARE due({', '.join(kinds)}) AS {sql}")
        values = ", ".join("%s" for _ in names)  # written in by the client: EXECUTE's arguments
        found = ClientCursor(connection.connection.driver_connection).execute(
            f"EXPLAIN (FORMAT JSON) EXECUTE due({values})", [params[n] for n in names]).fetchone()[0]
        cursor.execute("DEALLOCATE due")
        connection.rollback()
    return found[0]["Plan"] if isinstance(found, list) else json.loads(found)[0]["Plan"]


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


@pytest.mark.parametrize("generic", [False, True], ids=["as sent", "prepared, generic"])
@pytest.mark.parametrize("cursor", [None, f"k{ROWS // 2:09d}"], ids=["from the first key", "after a cursor"])
def test_the_due_query_finds_its_rows_by_their_indexes(loaded, generic, cursor):
    engine, now = loaded
    query = statements.subscriptions_to_reconcile("apple", now - timedelta(days=3), now + timedelta(days=1), 10_000,
                                                  cursor, now - SETTLED_WITHIN["apple"])

    nodes = list(_nodes(_plan(engine, query, generic)))

    scans = [(node["Node Type"], node.get("Index Name")) for node in nodes if node.get("Relation Name")
             or node.get("Index Name")]
    assert not [scan for scan in scans if scan[0] == "Seq Scan"], scans
    assert ("Bitmap Index Scan", "ix_subscriptions_status") in scans, scans
    # Active, renewing and ended before the window: by their end, not half the table by status.
    by_status = [node.get("Index Cond") for node in nodes if node.get("Index Name") == "ix_subscriptions_status"]
    assert not [cond for cond in by_status if "'active'" in cond], by_status
