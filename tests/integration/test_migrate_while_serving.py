"""The upgrade on PostgreSQL while the previous release serves (``gateway/store/migrate.py``,
``gateway/store/online.py``): the release phase migrates the database the old dynos write,
so no migration may stop their writes for longer than a lock timeout, and two release
phases must not run the same migration twice."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import psycopg
import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from gateway.store.migrate import MIGRATIONS, MigrationBlocked, downgrade, upgrade
from tests.conftest import DATABASE
from tests.support import pgbouncer

pytestmark = pytest.mark.skipif(DATABASE != "postgresql", reason="locks and concurrent builds are PostgreSQL's")

#: The newest revision: where every upgrade here ends.
HEAD = (ScriptDirectory(MIGRATIONS).get_current_head(),)
INSERT_SUBSCRIPTION = ("INSERT INTO subscriptions (source, key, status, will_renew, as_of, updated_at)"
                       " VALUES ('stripe', %s, 'active', true, now(), now())")
INSERT_ENTITLEMENT = ("INSERT INTO entitlements (user_sub, name, status, will_renew, source, subscription_key,"
                      " updated_at) VALUES (%s, 'premium', 'active', true, 'stripe', 'sub_1', now())")


@pytest.fixture
def at(database_url):
    """Step the schema back to a revision; the test's database is at head again afterwards."""
    dsn = sa.make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    opened: list[psycopg.Connection] = []

    def step_back(revision: str):
        downgrade(database_url, revision)
        return lambda **kw: opened.append(psycopg.connect(dsn, **kw)) or opened[-1]

    yield step_back
    for connection in opened:
        connection.close()
    upgrade(database_url)


class Upgrade(threading.Thread):
    def __init__(self, url: str, **kw) -> None:
        super().__init__(daemon=True)
        self.url, self.kw, self.error, self.took = url, kw, None, None

    def run(self) -> None:
        started = time.monotonic()
        try:
            upgrade(self.url, **self.kw)
        except Exception as exc:  # collected: the test asserts on it
            self.error = exc
        self.took = time.monotonic() - started


def waiting(connect, statement: str, timeout: float = 10.0) -> None:
    """Until a session runs ``statement...`` waiting for a lock."""
    with connect(autocommit=True) as watcher:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if watcher.execute("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s"
                               " AND datname = current_database()",
                               (statement + "%",)).fetchone():
                return
            time.sleep(0.01)
    raise AssertionError(f"no session waits at {statement!r}")


def reached(connect, sessions: int, *statements: str, timeout: float = 30.0) -> None:
    """Until ``sessions`` sessions have run one of ``statements`` (LIKE patterns)."""
    with connect(autocommit=True) as watcher:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            (count,) = watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE ANY(%s)"
                                       " AND pid <> pg_backend_pid() AND datname = current_database()",
                                       (list(statements),)).fetchone()
            if count >= sessions:
                return
            time.sleep(0.01)
    raise AssertionError(f"fewer than {sessions} sessions ran {statements}")


def reading_subscriptions(connect) -> psycopg.Connection:
    """A transaction that read subscriptions and stays open, holding its lock on the table."""
    long_transaction = connect()
    long_transaction.execute("SELECT count(*) FROM subscriptions")
    return long_transaction


def write(connect, insert: str, key: str) -> float:
    """Seconds a delivery's write took; it gives up after 5 s waiting for a lock."""
    started = time.monotonic()
    with connect(autocommit=True) as writer:
        writer.execute("SET lock_timeout = '5s'")
        writer.execute(insert, (key,))
    return time.monotonic() - started


def test_a_migration_behind_a_long_transaction_gives_up_fast_and_writers_go_on(at, database_url):
    """0013 adds a column to subscriptions, which waits for every transaction that read
    the table. Behind a long one, without a lock timeout it waited for as long as that
    transaction lasted, and every delivery's write to subscriptions queued behind it."""
    connect = at("0012")
    long_transaction = reading_subscriptions(connect)
    holder = long_transaction.info.backend_pid
    migration = Upgrade(database_url, lock_timeout=0.5, attempts=2, pause=0.1)
    migration.start()
    try:
        waiting(connect, "ALTER TABLE subscriptions")
        delivery = write(connect, INSERT_SUBSCRIPTION, "sub_during_release")
        migration.join(timeout=8)
        assert not migration.is_alive(), "the upgrade still waits behind the long transaction"
    finally:
        long_transaction.close()
        migration.join()
    assert delivery < 1.5
    assert isinstance(migration.error, MigrationBlocked) and migration.took < 5
    message = str(migration.error)
    assert "ALTER TABLE subscriptions ADD COLUMN first_as_of" in message
    assert f"pid {holder} (idle in transaction" in message


def test_a_migration_is_tried_again_once_the_long_transaction_ended(at, database_url):
    """Mutation caught: the upgrade giving up at its first lock timeout."""
    connect = at("0012")
    long_transaction = reading_subscriptions(connect)
    threading.Timer(1.0, long_transaction.rollback).start()
    upgrade(database_url, lock_timeout=0.3, attempts=6, pause=0.2)
    with connect() as check:
        assert check.execute("SELECT version_num FROM alembic_version").fetchone() == HEAD


def test_two_upgrades_at_once_take_turns(at, database_url):
    """Two release phases close together, each its own process: both read revision 0012,
    both ran 0013, and the second failed on the column the first had added (the deploy
    failed)."""
    connect = at("0012")
    long_transaction = reading_subscriptions(connect)  # both reach 0013 before either runs it
    script = f"from gateway.store.migrate import upgrade; upgrade({database_url!r}, lock_timeout=30)"
    releases = [subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
    try:
        waiting(connect, "ALTER TABLE subscriptions")
        reached(connect, 2, "ALTER TABLE subscriptions%", "%pg_try_advisory_lock%")  # the second release too
    finally:
        long_transaction.rollback()
        outcomes = [(release.wait(timeout=60), release.stderr.read()) for release in releases]
    assert [code for code, _ in outcomes] == [0, 0], outcomes
    with connect() as check:
        assert check.execute("SELECT version_num FROM alembic_version").fetchone() == HEAD


def test_an_index_is_built_while_deliveries_write_its_table(at, database_url):
    """0008 indexes entitlements, which every delivery that changes access writes. A plain
    CREATE INDEX waits for the writers already in a transaction, and every later writer
    queued behind it until the build was done."""
    connect = at("0007")
    open_delivery = connect()
    open_delivery.execute(INSERT_ENTITLEMENT, ("alice",))  # a delivery's transaction, not committed yet
    migration = Upgrade(database_url, lock_timeout=30)
    migration.start()
    try:
        waiting(connect, "CREATE INDEX")
        delivery = write(connect, INSERT_ENTITLEMENT, "bob")
    finally:
        open_delivery.commit()
        migration.join(timeout=30)
    assert delivery < 1.5 and migration.error is None
    with connect() as check:
        assert check.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_entitlements_expires_at'"
                             "::regclass").fetchone() == (True,)


def test_an_index_a_failed_concurrent_build_left_invalid_is_built_again(at, database_url):
    """A concurrent build that failed half-way (a deploy cut off) leaves an invalid index
    of that name. Mutations caught: the build skipping any index of that name, which would
    leave the expiry sweep on an index PostgreSQL never uses; the build dropping nothing
    (fails on the name)."""
    connect = at("0007")
    open_delivery = connect()
    open_delivery.execute(INSERT_ENTITLEMENT, ("alice",))
    with connect(autocommit=True) as cut_off:
        cut_off.execute("SET lock_timeout = '100ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            cut_off.execute("CREATE INDEX CONCURRENTLY ix_entitlements_expires_at ON entitlements (expires_at)")
    open_delivery.rollback()
    upgrade(database_url)
    with connect() as check:
        assert check.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_entitlements_expires_at'"
                             "::regclass").fetchone() == (True,)


def test_the_carry_over_of_0003_runs_beside_the_writes_of_the_previous_release(at, database_url):
    """0003 carries the revocation of every revoked subscription into a new column. It did
    so under ADD COLUMN's lock on subscriptions, one UPDATE per row: every write to the
    table, every delivery's, waited for the whole carry-over (5,000 rows: seconds)."""
    connect = at("0002")
    with connect(autocommit=True) as setup:
        setup.execute("INSERT INTO subscriptions (source, key, status, raw_status, expires_at, will_renew, as_of,"
                      " updated_at) SELECT 'stripe', 'sub_' || g, 'revoked', 'active:refunded', now(), false,"
                      " now(), now() FROM generate_series(1, 5000) g")
        setup.execute(INSERT_SUBSCRIPTION, ("sub_renewing",))
    stop, waits = threading.Event(), []

    def deliveries() -> None:
        while not stop.is_set():
            try:
                waits.append(write(connect, "UPDATE subscriptions SET updated_at = now() WHERE key = %s",
                                   "sub_renewing"))
            except psycopg.errors.LockNotAvailable:
                waits.append(float("inf"))  # waited 5 s
                return
            time.sleep(0.01)

    writer = threading.Thread(target=deliveries)
    writer.start()
    try:
        time.sleep(0.2)
        upgrade(database_url, "0003")
    finally:
        stop.set()
        writer.join()
    assert max(waits) < 2.0
    with connect() as check:
        assert check.execute("SELECT count(*) FROM subscriptions WHERE revocations IS NOT NULL").fetchone() == (5000,)


def test_the_release_command_fails_with_what_it_waited_for(at, make_app):
    """``flask migrate`` (the Procfile's release) exits non-zero, so the deploy stops and
    the previous release serves on, and says which statement waited behind what."""
    connect = at("0012")
    long_transaction = reading_subscriptions(connect)
    runner = make_app().test_cli_runner()
    result = runner.invoke(args=["migrate", "--lock-timeout", "0.2", "--attempts", "1"])
    long_transaction.rollback()
    assert result.exit_code == 1
    assert "could not take a lock within 0.2 s" in result.output
    assert "SELECT count(*) FROM subscriptions" in result.output


def test_through_a_transaction_pooler_the_upgrade_leaves_nothing_on_the_sessions_it_shares(at, database_url):
    """A pooler in transaction mode lends the upgrade a server session per transaction, and
    the gateway's transactions the same sessions next: a session-wide lock timeout stayed
    on one, and a delivery waiting there for a subscription's lock gave up after 3 s."""
    connect = at("0012")
    with pgbouncer.running(pgbouncer.required(), sa.make_url(database_url)) as url:
        upgrade(url.replace("postgresql://", "postgresql+psycopg://", 1))
        with psycopg.connect(url, prepare_threshold=None, autocommit=True) as gateway:
            assert gateway.execute("SHOW lock_timeout").fetchone() == ("0",)
    with connect() as check:
        assert check.execute("SELECT version_num FROM alembic_version").fetchone() == HEAD
        assert check.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                             "(SELECT oid FROM pg_database WHERE datname = current_database())").fetchone() == (0,)
