"""How often a RevenueCat delivery waits on PostgreSQL, read from the wire; and that a
write transaction, whose BEGIN is sent without waiting, holds all its statements.

Each wait of a pipelined transaction is a Flush the client sends (psycopg, to read an
answer) or the Sync that ends the pipeline (with the COMMIT). libpq's trace of the
connection shows every message the client sends, so the test counts them there, on the
gateway's own store and Ingest, with nothing of ours replaced.
"""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from devtools import revenuecat as rc
from gateway.domain.catalog import Catalog
from gateway.ingest import Ingest
from gateway.providers.revenuecat_events import RevenueCatEvents
from gateway.store.sql import sql_store

BASE_MS = 1_900_000_000_000


@pytest.fixture
def traced(database_url, tmp_path):
    """(ingest, trace): the client's messages of the transactions run while ``trace`` is on."""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's pipeline")
    from psycopg import pq

    store, path, tracing = sql_store(database_url), tmp_path / "trace.txt", []

    @sa.event.listens_for(store.engine, "checkout")
    def _checked_out(dbapi_connection, _record, _proxy):
        if tracing:
            dbapi_connection.pgconn.trace(tracing[0].fileno())
            dbapi_connection.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)

    @sa.event.listens_for(store.engine, "checkin")
    def _checked_in(dbapi_connection, _record):
        if dbapi_connection is not None:
            dbapi_connection.pgconn.untrace()

    def trace(action) -> list[str]:
        with open(path, "w") as file:
            tracing.append(file)
            try:
                action()
            finally:
                tracing.clear()
        sent = [line.split("\t") for line in path.read_text().splitlines()]
        return [fields[2] for fields in sent if len(fields) > 2 and fields[0] == "F"]

    yield Ingest(store, Catalog(products={})), trace
    store.close()


def test_a_renewal_of_a_known_subscription_waits_four_times(traced):
    """Where an answer is needed: the subscription as locked, the user's rows
    (entitlements, tombstone, subscriptions), the feed's clock, and the commit. Its BEGIN
    goes with the first of them, and which delivery was recorded comes back with it."""
    ingest, trace = traced
    provider = RevenueCatEvents((rc.AUTH,), Catalog(products={}))
    headers = {"Authorization": rc.AUTH}
    sent = [rc.event(kind, user="trips-ann", transaction="tx-trips-ann", at_ms=BASE_MS + n * 1000,
                     aliases=["trips-ann"], expiration_at_ms=BASE_MS + (n + 30) * 86_400_000)
            for n, kind in enumerate(["INITIAL_PURCHASE", "RENEWAL", "RENEWAL"])]
    ingest.receive(provider, rc.body(sent[0]), headers)
    ingest.receive(provider, rc.body(sent[1]), headers)  # every statement prepared by now

    outcomes = []
    messages = trace(lambda: outcomes.append(ingest.receive(provider, rc.body(sent[2]), headers)))

    assert outcomes == ["processed"]
    # The COMMIT's Sync may be followed by a Flush when its answer was not in yet: one wait.
    waits = [m for n, m in enumerate(messages) if m == "Sync" or m == "Flush" and messages[n - 1] != "Sync"]
    assert len(waits) == 4, messages
    assert messages.count("Sync") == 1  # the COMMIT's: psycopg's BEGIN would end in one of its own
    assert messages.count("Execute") == 15  # every statement still sent, BEGIN and COMMIT included


class _Undone(Exception):
    pass


@pytest.mark.parametrize("hot_statement_first", [False, True])
def test_a_write_transaction_holds_what_sqlalchemy_writes_in_it_too(database_url, hot_statement_first):
    """The BEGIN a write transaction sends itself (its connection stays in autocommit)
    covers the statements that go through SQLAlchemy, alone or after the pipeline's: a
    transaction that fails leaves none of them, one that ends commits them."""
    store, account = sql_store(database_url), ("revenuecat", f"undone-{hot_statement_first}")
    try:
        with pytest.raises(_Undone), store.transaction() as tx:
            if hot_statement_first:
                tx.lock_users(["undone-ann"])  # a pipeline statement, then SQLAlchemy's
            tx.keep_accounts("undone-ann", [account])
            raise _Undone
        with store.transaction(readonly=True) as tx:
            assert tx.deleted_accounts([account]) == {}
        with store.transaction() as tx:
            tx.keep_accounts("undone-ann", [account])
        with store.transaction(readonly=True) as tx:
            assert tx.deleted_accounts([account]) == {account: "undone-ann"}
    finally:
        store.close()
