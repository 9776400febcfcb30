"""The store through a real PgBouncer in transaction mode, as platforms put one before
PostgreSQL (Heroku's connection pooling, Supabase's and Neon's pooled URLs): each
transaction may run on another server session, so a statement prepared on one is unknown
on the next (``gateway/store/postgres.py``, ``_unprepared_behind_a_pooler``)."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from gateway.domain.model import Snapshot, Status
from gateway.store.sql import sql_store
from tests.conftest import DATABASE
from tests.integration.test_sql_store import T0, apply
from tests.support import pgbouncer

pytestmark = pytest.mark.skipif(DATABASE != "postgresql", reason="a pooler stands before PostgreSQL only")

#: Each worker writes and reads this often: psycopg prepares a statement on its fifth run.
ROUNDS = 30
WORKERS = 4


@pytest.fixture
def pooled_store(database_url):
    """The store as a gateway whose DATABASE_URL is a transaction pooler's."""
    with pgbouncer.running(pgbouncer.required(), sa.make_url(database_url), pool_mode="transaction") as url:
        store = sql_store(url.replace("postgresql://", "postgresql+psycopg://", 1))
        yield store
        store.engine.dispose()


def renewal(user: str, n: int) -> Snapshot:
    as_of = T0 + timedelta(seconds=n)
    status = Status.ACTIVE if n % 3 else Status.EXPIRED
    return Snapshot(source="stripe", key=f"sub_{user}", as_of=as_of, status=status, product_id="price_m",
                    expires_at=T0 + timedelta(days=30), will_renew=True, user_sub=user)


def test_through_a_transaction_pooler_concurrent_writes_and_reads_all_succeed(pooled_store, database_url):
    """Workers share the pooler's four server sessions, as a gateway's threads and dynos
    do: with statements prepared, most transactions failed with "prepared statement
    _pg3_0 does not exist" or "already exists"."""
    barrier = threading.Barrier(WORKERS)
    errors: list[BaseException] = []
    users = [f"user-{i}" for i in range(WORKERS)]

    def work(user: str) -> None:
        barrier.wait()  # all at once, so that the sessions change hands
        try:
            for n in range(1, ROUNDS + 1):
                apply(pooled_store, renewal(user, n))
                with pooled_store.transaction(readonly=True) as tx:
                    assert tx.get_subscription("stripe", f"sub_{user}").snapshot.as_of == renewal(user, n).as_of
                pooled_store.entitlements_of(user)
        except Exception as exc:  # collected: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    direct = sql_store(database_url)  # what the database holds, asked past the pooler
    try:
        with direct.transaction(readonly=True) as tx:
            for user in users:
                stored = tx.get_subscription("stripe", f"sub_{user}").snapshot
                assert (stored.as_of, stored.status) == (renewal(user, ROUNDS).as_of, renewal(user, ROUNDS).status)
                assert direct.entitlements_of(user) == pooled_store.entitlements_of(user) != []
    finally:
        direct.engine.dispose()

def test_a_direct_connection_still_prepares_what_it_runs_often(database_url):
    """Only a pooled connection gives up prepared statements: on a connection to the
    server's own process, the entitlement read is prepared and run by name."""
    store = sql_store(database_url)
    try:
        for _ in range(10):
            store.entitlements_of("alice")
        # The one connection those reads used: the read's own (gateway/store/reads.py).
        ((prepared,),) = store.reads.rows("SELECT count(*) FROM pg_prepared_statements", None)
    finally:
        store.engine.dispose()
    assert prepared >= 1
