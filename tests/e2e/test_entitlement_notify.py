"""The entitlement cache on PostgreSQL: every commit that changes a user's entitlements, in
any process, is announced by the database (migration 0006), and a cache forgets that user as
it hears it; while it cannot vouch for its listening connection, it answers nothing from
memory. Real PostgreSQL, real connections; the network to the database is broken with a
loopback proxy (``tests/support/tcp_proxy.py``), never by patching the gateway, and a
real PgBouncer stands between the listener and the database where a platform's pooler
would (``tests/support/pgbouncer.py``)."""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from datetime import timedelta

import psycopg
import pytest
import sqlalchemy as sa

from gateway.store.cache import CachedEntitlements
from gateway.store.notify import FIRST_RETRY_SECONDS, ChangeListener
from tests.conftest import DATABASE
from tests.e2e.test_entitlement_cache import NOW, Counting, grant, listening, names, write
from tests.support import pgbouncer
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.skipif(DATABASE != "postgresql", reason="only PostgreSQL announces changes")

#: How long a test waits for something that should take milliseconds (never a measurement:
#: bench/cache_visibility.py measures; a cache that does not hear keeps its answer 300 s).
PATIENCE = 5.0


def eventually(read, expected):
    """What ``read()`` returns once it returns ``expected``, within PATIENCE seconds."""
    deadline = time.monotonic() + PATIENCE
    while (answer := read()) != expected:
        assert time.monotonic() < deadline, f"still {answer!r}, not {expected!r}"
        time.sleep(0.005)
    return answer


def heard(cache, change):
    """Make ``change`` in another process, and wait until ``cache`` has heard of it."""
    before = cache._generation
    change()
    eventually(lambda: cache._generation > before, True)


@pytest.fixture
def other(sql):
    """Another process's store on the same database."""
    from gateway.store.sql import sql_store

    store = sql_store(sql.engine.url.render_as_string(hide_password=False))
    yield store
    store.engine.dispose()


class ListeningThrough(Counting):
    """Reads go straight to the database; the listener's connection goes to ``url``."""

    def __init__(self, store, url: str) -> None:
        super().__init__(store)
        self.url = url

    def listen(self, forget, forget_everyone):
        return ChangeListener(self.url, forget, forget_everyone, heartbeat=0.2, alive=0.5)


def proxied(store, proxy: TcpProxy) -> ListeningThrough:
    """The listener's connection through ``proxy``."""
    url = store.engine.url.set(drivername="postgresql", host="127.0.0.1", port=proxy.port)
    return ListeningThrough(store, url.render_as_string(hide_password=False))


@pytest.fixture
def made():
    caches = []
    yield caches
    for cache in caches:
        cache.listener.stop()


@pytest.fixture
def proxy(sql):
    url = sql.engine.url
    forwarder = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    yield forwarder
    forwarder.close()


def cache_over(store, made, **options) -> CachedEntitlements:
    cache = CachedEntitlements(store, seconds=options.pop("seconds", 300), **options)
    made.append(cache)
    return listening(cache)


def renewed(user_sub, days):
    return {user_sub: [dataclasses.replace(grant("premium"), expires_at=NOW + timedelta(days=days))]}


def expiry(cache, user_sub):
    return [g.expires_at for g in cache.entitlements_of(user_sub)]


def test_another_processs_insert_update_and_delete_are_each_heard(sql, other, made):
    cache = cache_over(sql, made)
    assert cache.entitlements_of("alice") == []  # held: nothing
    write(other, "alice", "premium")  # an INSERT
    eventually(lambda: names(cache.entitlements_of("alice")), ["premium"])
    with other.transaction() as tx:  # a renewal: the row UPDATEd in place
        tx.lock_users(["alice"])
        tx.replace_entitlements_of(renewed("alice", 60), NOW)
    eventually(lambda: expiry(cache, "alice"), [NOW + timedelta(days=60)])
    write(other, "alice")  # a refund: the row DELETEd
    eventually(lambda: cache.entitlements_of("alice"), [])


def test_a_hand_written_statement_and_a_truncate_are_heard_too(sql, other, made):
    write(other, "alice", "premium")
    write(other, "bob", "premium")
    cache = cache_over(sql, made)
    assert names(cache.entitlements_of("alice")) == names(cache.entitlements_of("bob")) == ["premium"]
    with other.engine.begin() as connection:  # an operator's fix, in psql
        connection.execute(sa.text("UPDATE entitlements SET status = 'revoked' WHERE user_sub = 'alice'"))
    eventually(lambda: [g.status.value for g in cache.entitlements_of("alice")], ["revoked"])
    with other.engine.begin() as connection:
        connection.execute(sa.text("TRUNCATE entitlements"))
    eventually(lambda: cache.entitlements_of("bob"), [])


def test_while_the_listener_is_cut_off_every_read_asks_the_database(sql, other, proxy, made):
    store = proxied(sql, proxy)
    cache = cache_over(store, made)
    heard(cache, lambda: write(other, "alice", "premium"))
    assert names(cache.entitlements_of("alice")) == ["premium"]
    reads = store.reads
    assert names(cache.entitlements_of("alice")) == ["premium"] and store.reads == reads  # held

    proxy.cut()
    eventually(lambda: cache.listener.listening(), False)
    write(other, "alice")  # refunded while this process hears nothing
    assert cache.entitlements_of("alice") == []  # asked the database, not its memory
    assert cache.entitlements_of("alice") == [] and store.reads == reads + 2  # and kept nothing

    proxy.restore()
    listening(cache)
    assert cache.entitlements_of("alice") == []  # what it held before the cut was forgotten on reconnecting
    reads = store.reads
    assert cache.entitlements_of("alice") == [] and store.reads == reads  # held again


def test_a_listener_gone_silent_stops_the_cache_within_its_alive_time(sql, other, proxy, made):
    store = proxied(sql, proxy)
    cache = cache_over(store, made)
    write(other, "alice", "premium")
    eventually(lambda: names(cache.entitlements_of("alice")), ["premium"])

    proxy.stall()  # the connection stays open; nothing comes through, notifications included
    write(other, "alice")
    eventually(lambda: cache.listener.listening(), False)  # no heartbeat answered within 0.5 s
    assert cache.entitlements_of("alice") == []
    proxy.restore()
    listening(cache)
    assert cache.entitlements_of("alice") == []


def test_a_read_that_overlaps_a_heard_commit_does_not_keep_what_it_read(sql, other, made):
    store = Counting(sql)
    cache = cache_over(store, made)
    heard(cache, lambda: write(other, "alice", "premium"))

    # The database answers the read, then another process revokes and this one hears of it,
    # then the read returns what the database said.
    store.during_read = lambda: heard(cache, lambda: write(other, "alice"))
    assert names(cache.entitlements_of("alice")) == ["premium"]
    reads = store.reads
    assert cache.entitlements_of("alice") == [] and store.reads == reads + 1  # not kept: asked again


def retries(caplog):
    """The waits the listener announced before each reconnection, in order."""
    return [record.fields["retry_in_seconds"] for record in caplog.records
            if record.name == "gateway.store" and "listener disconnected" in record.getMessage()]


def test_each_lost_connection_that_had_listened_is_retried_at_once_however_often(sql, proxy, made, caplog):
    caplog.set_level(logging.WARNING, logger="gateway.store")
    cache = cache_over(proxied(sql, proxy), made)
    for _ in range(6):  # six blips, each after the listener was back
        proxy.cut()
        eventually(lambda: cache.listener.listening(), False)
        proxy.restore()
        listening(cache)
    assert retries(caplog) == [FIRST_RETRY_SECONDS] * 6  # not 0.1, 0.2, ... 3.2 s


def test_while_the_database_refuses_the_listener_waits_longer_each_time(sql, proxy, made, caplog):
    caplog.set_level(logging.WARNING, logger="gateway.store")
    cache = cache_over(proxied(sql, proxy), made)
    proxy.cut()  # and it stays refused: every new connection is closed at once
    eventually(lambda: len(retries(caplog)) >= 4, True)
    waits = retries(caplog)[:4]
    assert waits == [FIRST_RETRY_SECONDS * 2 ** n for n in range(4)]  # 0.1, 0.2, 0.4, 0.8 s
    proxy.restore()
    listening(cache)
    before = len(retries(caplog))
    proxy.cut()  # lost again after it had listened: the first wait again, then longer ones
    eventually(lambda: len(retries(caplog)) >= before + 2, True)
    assert retries(caplog)[before:before + 2] == [FIRST_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2]


class Traffic:
    """Another client's short transactions through ``url``, until stopped."""

    def __init__(self, url: str) -> None:
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self._thread.start()

    def _run(self, url: str) -> None:
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as connection:
            while not self._stopping.is_set():
                connection.execute("SELECT 1")
                time.sleep(0.005)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()


@pytest.fixture
def transaction_pooler(sql):
    """A real PgBouncer in transaction mode in front of the test database; its URL."""
    with pgbouncer.running(pgbouncer.required(), sql.engine.url, pool_mode="transaction") as url:
        yield url


def test_behind_a_transaction_pooler_the_listener_says_so_and_every_read_asks_the_database(
        sql, other, transaction_pooler, made, caplog):
    """PgBouncer in transaction mode hands the listener's server session to other clients
    between its statements, and the notifications meant for it with them, while every
    heartbeat still answers: a cache that trusted it would keep a refunded user premium."""
    caplog.set_level(logging.INFO, logger="gateway.store")
    cache = CachedEntitlements(ListeningThrough(sql, transaction_pooler), seconds=300)
    made.append(cache)
    assert not cache.listener.listening()  # starts it
    busy = Traffic(transaction_pooler)  # the gateway's own pool shares the pooler
    try:
        for n in range(5):
            user = f"user-{n}"
            write(other, user, "premium")
            assert names(cache.entitlements_of(user)) == ["premium"]
            time.sleep(0.3)  # heartbeats come and go
            write(other, user)  # refunded in another process
            assert cache.entitlements_of(user) == [], n  # asked the database, not a stale memory
    finally:
        busy.stop()
    assert not cache.listener.listening()
    said = [record for record in caplog.records if record.name == "gateway.store"]
    assert [record.levelname for record in said] == ["ERROR"]  # once, and nothing else
    assert "behind a connection pooler" in said[0].getMessage()
