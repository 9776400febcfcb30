"""The SQL store on the test database (SQLite, or PostgreSQL with TEST_DATABASE=postgresql)."""
from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from gateway.apply import apply_translation
from gateway.domain.catalog import Catalog
from gateway.domain.changes import Link, Transfer, Translation
from gateway.domain.entitlements import derive
from gateway.domain.model import Snapshot, Status, Subscription
from gateway.domain.terms import Term
from gateway.store import tables
from gateway.store.migrate import upgrade
from gateway.store.port import StoreRefused, StoreUnavailable
from gateway.store.postgres import IDLE_PING_SECONDS
from gateway.store.reads import MAX_IDLE
from gateway.store.sql import sql_store
from tests.conftest import DATABASE
from tests.support.events import find_event, record_event

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
NOW = T0 + timedelta(days=1)
CATALOG = Catalog(products={})


@pytest.fixture
def store(database_url):
    store = sql_store(database_url)
    yield store
    store.engine.dispose()


def snapshot(seconds: int, status=Status.ACTIVE, key="sub_1", user="alice", **kw) -> Snapshot:
    as_of = T0 + timedelta(seconds=seconds)
    return Snapshot(source="stripe", key=key, as_of=as_of, status=status, product_id="price_m",
                    expires_at=as_of + timedelta(days=30), will_renew=True, user_sub=user, **kw)


def apply(store, *snapshots, links=()):
    with store.transaction() as tx:
        return apply_translation(tx, Translation(snapshots=snapshots, links=links), CATALOG, NOW)


def test_event_log_dedupes_on_source_and_event_id(store):
    fields = dict(event_type="t", received_at=T0, payload="{}", data={"a": [1]})
    with store.transaction() as tx:
        first = record_event(tx, source="stripe", event_id="evt_1", **fields)
        again = record_event(tx, source="stripe", event_id="evt_1", **fields)
        other = record_event(tx, source="apple", event_id="evt_1", **fields)
    assert first.data == {"a": [1]} and first.received_at == T0
    assert again is None and other is not None


def test_several_events_recorded_at_once_answer_as_one_by_one(store):
    fields = dict(event_type="t", received_at=T0, payload="{}", data={"a": 1})
    with store.transaction() as tx:
        record_event(tx, source="stripe", event_id="evt_old", **fields)
    rows = [dict(source="stripe", event_id=e, **fields) for e in ("evt_1", "evt_1", "evt_old", "evt_2")]
    with store.transaction() as tx:
        first, repeat, old, second = tx.record_events(rows)
        assert repeat is None and old is None
        assert (first.id, second.id) == (find_event(tx, "stripe", "evt_1").id,
                                         find_event(tx, "stripe", "evt_2").id)
    assert first.data == {"a": 1} and first.status == "received" and first.attempts == 0


def test_entitlements_of_several_users_replaced_at_once_drop_what_no_grant_keeps(store):
    catalog = Catalog(products={("stripe", "price_m"): ("premium",), ("stripe", "price_f"): ("family",)})
    with store.transaction() as tx:
        for user, product in (("alice", "price_m"), ("alice", "price_f"), ("bob", "price_f")):
            tx.save_subscriptions([Subscription(dataclasses.replace(
                snapshot(1, key=f"{user}-{product}", user=None), product_id=product), owner=user)], NOW)
        tx.lock_users(["alice", "bob"])
        held = tx.subscriptions_of_users(["alice", "bob"])
        tx.replace_entitlements_of({u: list(derive([s.snapshot for s in held[u]], catalog).values())
                                    for u in ("alice", "bob")}, NOW)
    with store.transaction() as tx:
        assert [g.name for g in tx.entitlements_of("alice")] == ["family", "premium"]
        tx.replace_entitlements_of({"alice": [g for g in tx.entitlements_of("alice") if g.name == "family"],
                                    "bob": []}, NOW)
    with store.transaction(readonly=True) as tx:
        assert [g.name for g in tx.entitlements_of("alice")] == ["family"] and tx.entitlements_of("bob") == []


def test_a_writing_transaction_that_fails_leaves_nothing_behind(store):
    fields = dict(event_type="t", received_at=T0, payload="{}", data={})
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            record_event(tx, source="stripe", event_id="evt_undone", **fields)
            apply_translation(tx, Translation(snapshots=(snapshot(1, key="sub_undone"),)), CATALOG, NOW)
            raise RuntimeError("the apply failed after two writes")
    with store.transaction(readonly=True) as tx:
        assert find_event(tx, "stripe", "evt_undone") is None
        assert tx.get_subscription("stripe", "sub_undone") is None and tx.entitlements_of("alice") == []


@pytest.fixture
def driver_warnings(caplog):
    """What the driver logged at WARNING or above: a failed transaction is reported by the
    error it raises, not by a line of psycopg's own beside the gateway's JSON lines."""
    caplog.set_level(logging.WARNING, logger="psycopg")
    return lambda: [r.getMessage() for r in caplog.records if r.name.startswith("psycopg")]


def _nothing_recorded(store, event_id: str) -> bool:
    with store.transaction(readonly=True) as tx:
        return find_event(tx, "stripe", event_id) is None


def test_a_write_refused_after_it_was_sent_fails_the_whole_transaction(store, driver_warnings):
    """On PostgreSQL a write is sent without waiting for its answer (sql.py): its refusal
    comes back with the next statement waited for, and must fail the transaction there."""
    fields = dict(event_type="t", received_at=T0, payload="{}", data={})
    refused = Subscription(dataclasses.replace(snapshot(1, key="sub_refused", user=None), will_renew=None),
                           owner="alice")  # NOT NULL
    with pytest.raises(StoreRefused, match="NotNullViolation|IntegrityError"):
        with store.transaction() as tx:
            record_event(tx, source="stripe", event_id="evt_refused", **fields)
            tx.save_subscriptions([refused], NOW)
            tx.lock_users(["alice"])
            tx.subscriptions_of_users(["alice"])  # waited for: the refusal is here at the latest
            pytest.fail("the refused write went unnoticed")
    assert _nothing_recorded(store, "evt_refused")
    assert driver_warnings() == []
    with store.transaction() as tx:  # the connection went back to the pool clean
        assert record_event(tx, source="stripe", event_id="evt_refused", **fields) is not None
    assert not _nothing_recorded(store, "evt_refused")


@pytest.mark.skipif(DATABASE != "postgresql", reason="statements travel with the COMMIT on PostgreSQL only")
def test_a_write_refused_with_the_commit_commits_nothing(store, driver_warnings):
    fields = dict(event_type="t", received_at=T0, payload="{}", data={})
    with pytest.raises(StoreRefused, match="ForeignKeyViolation"):
        with store.transaction() as tx:
            record_event(tx, source="stripe", event_id="evt_last_refused", **fields)
            apply_translation(tx, Translation(snapshots=(snapshot(1, key="sub_last_refused"),)), CATALOG, NOW)
            tx.link_events([(-1, [("stripe", "sub_last_refused")])])  # no event -1: refused at COMMIT
    assert _nothing_recorded(store, "evt_last_refused")
    assert driver_warnings() == []
    with store.transaction(readonly=True) as tx:
        assert tx.get_subscription("stripe", "sub_last_refused") is None and tx.entitlements_of("alice") == []


@pytest.mark.skipif(DATABASE != "postgresql", reason="statements travel with the COMMIT on PostgreSQL only")
def test_a_refusal_that_arrives_before_the_commit_is_sent_leaves_the_connection_as_it_was(store, driver_warnings):
    fields = dict(event_type="t", received_at=T0, payload="{}", data={})
    with pytest.raises(StoreRefused, match="ForeignKeyViolation"):
        with store.transaction() as tx:
            record_event(tx, source="stripe", event_id="evt_early_refused", **fields)
            tx.link_events([(-1, [("stripe", "sub_early_refused")])])  # refused, answer not waited for
            time.sleep(0.2)  # the refusal is back before the COMMIT would be sent
    assert _nothing_recorded(store, "evt_early_refused")
    assert driver_warnings() == []
    for _ in range(3):  # every pooled connection answers SQLAlchemy's own statements again
        with store.transaction() as tx:
            event = record_event(tx, source="stripe", event_id="evt_early_refused", **fields) or \
                find_event(tx, "stripe", "evt_early_refused")
            assert find_event(tx, "stripe", "evt_early_refused").id == event.id


@pytest.mark.skipif(DATABASE != "postgresql", reason="connections die on a server, not in SQLite")
def test_a_connection_that_dies_with_writes_in_flight_fails_that_transaction_then_the_pool_recovers(
        store, database_url, driver_warnings):
    fields = dict(event_type="t", received_at=T0, payload="{}", data={})
    with pytest.raises(StoreUnavailable):
        with store.transaction() as tx:
            record_event(tx, source="stripe", event_id="evt_cut", **fields)  # answered
            _terminate_other_connections(database_url)
            apply_translation(tx, Translation(snapshots=(snapshot(1, key="sub_cut"),)), CATALOG, NOW)
    assert _nothing_recorded(store, "evt_cut")
    assert driver_warnings() == []
    apply(store, snapshot(1, key="sub_cut"))
    with store.transaction(readonly=True) as tx:
        assert [g.subscription_key for g in tx.entitlements_of("alice")] == ["sub_cut"]


@pytest.mark.skipif(DATABASE != "postgresql", reason="advisory locks are PostgreSQL's")
def test_locks_taken_in_a_writing_transaction_hold_until_it_ends(store, database_url):
    def held_elsewhere():
        with _other_connection(database_url) as other:
            return other.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                                 "AND pid <> pg_backend_pid() AND database = "  # not another test run's
                                 "(SELECT oid FROM pg_database WHERE datname = current_database())").fetchone()[0]

    with store.transaction() as tx:
        tx.lock_subscriptions([("stripe", "sub_new_1"), ("stripe", "sub_new_2")])  # no rows yet: advisory locks
        tx.lock_users(["alice", "bob"])
        assert held_elsewhere() == 4  # still held by the statements after them
    assert held_elsewhere() == 0


def test_newest_snapshot_wins_and_times_come_back_in_utc(store):
    apply(store, snapshot(10, Status.EXPIRED))
    apply(store, snapshot(5, Status.ACTIVE))
    with store.transaction() as tx:
        stored = tx.get_subscription("stripe", "sub_1")
        (grant,) = tx.entitlements_of("alice")
    assert stored.snapshot.status is Status.EXPIRED and stored.snapshot.as_of.tzinfo is not None
    assert grant.status is Status.EXPIRED and grant.expires_at == T0 + timedelta(seconds=10, days=30)


def test_entitlements_with_terms_of_their_own_keep_them_through_the_store(store):
    """A Play add-on's line item ends before the base plan, shows its own product and does
    not renew: stored, read back, and granted with its own terms, so it lapses then without
    another delivery and says it will not renew. A term may name no product or no end."""
    catalog = Catalog(products={("stripe", "price_m"): ("premium", "storage", "extra")}, default=None)
    own = (Term("extra", None, None, True), Term("storage", "storage_addon", T0 + timedelta(days=3, microseconds=250),
                                                 False))
    with store.transaction() as tx:
        apply_translation(tx, Translation(snapshots=(snapshot(1, entitlement_terms=own),)), catalog, NOW)
    with store.transaction() as tx:
        stored = tx.get_subscription("stripe", "sub_1")
        grants = {grant.name: grant for grant in tx.entitlements_of("alice")}
    assert stored.latest.entitlement_terms == own
    seen = {name: (g.product_id, g.expires_at, g.will_renew) for name, g in grants.items()}
    assert seen == {"premium": ("price_m", stored.latest.expires_at, True), "extra": (None, None, True),
                    "storage": ("storage_addon", own[1].expires_at, False)}


def test_unknown_owner_is_kept_and_attached_when_the_link_arrives(store):
    apply(store, snapshot(1, user=None, account="cus_1"))
    with store.transaction() as tx:
        assert tx.get_subscription("stripe", "sub_1").owner is None
    users = apply(store, links=(Link("stripe", "cus_1", "carol", T0),))
    with store.transaction() as tx:
        assert users == {"carol"} and [g.name for g in tx.entitlements_of("carol")] == ["premium"]


def test_newer_identity_link_holds_whatever_the_order(store):
    apply(store, links=(Link("stripe", "cus_1", "bob", T0 + timedelta(seconds=9)),))
    apply(store, links=(Link("stripe", "cus_1", "alice", T0),))
    with store.transaction() as tx:
        assert tx.resolve("stripe", "cus_1") == "bob"


# Competing links for one account: equal times, no time, and names whose order differs
# between code points (what Python compares) and a natural-language collation.
RIVALS = [("Zoe", T0), ("adam", T0), ("Émile", T0), ("émile", T0 + timedelta(seconds=1)),
          ("bob", None), ("Bob", None), ("zed", T0 - timedelta(days=1))]


def claim(user: str, as_of) -> tuple:
    """The rule competing links follow, written out here rather than taken from the gateway
    (``link_claim``), so that a change of the rule fails these tests: a link with the
    store's time beats one without, the newer time wins, and equal times go to the greater
    user id by code point (never by a database collation)."""
    return (as_of is not None, as_of or T0, user)


@pytest.fixture
def natural_collation(store):
    """On PostgreSQL, identities.user_sub under an English collation, as on a database
    created with en_US.UTF-8 (Heroku's): there "adam" sorts before "Zoe"."""
    if store.engine.dialect.name != "postgresql":
        yield
        return
    column = "ALTER TABLE identities ALTER COLUMN user_sub TYPE VARCHAR(255) COLLATE "
    with store.engine.begin() as connection:
        connection.exec_driver_sql(column + '"en-US-x-icu"')
        assert connection.exec_driver_sql("SELECT 'adam' < 'Zoe' COLLATE \"en-US-x-icu\"").scalar()
    yield
    with store.engine.begin() as connection:
        connection.exec_driver_sql(column + '"default"')


@pytest.mark.usefixtures("natural_collation")
def test_competing_links_end_with_the_greatest_link_claim_in_any_order(store):
    winner = max(RIVALS, key=lambda rival: claim(*rival))[0]
    assert winner == "émile"  # the one newest time
    for attempt in range(3):
        order = random.Random(attempt).sample(RIVALS, len(RIVALS))
        account = f"cus_{attempt}"
        with store.transaction() as tx:
            answers = [tx.link("stripe", account, user, as_of, NOW) for user, as_of in order]
            assert tx.resolve("stripe", account) == winner
        best_so_far = [max(order[:i + 1], key=lambda rival: claim(*rival))[0]
                       for i in range(len(order))]
        assert answers == best_so_far  # link() answers who holds the account after it


def test_the_same_link_again_keeps_the_newest_time_and_answers_its_user(store):
    with store.transaction() as tx:
        assert tx.link("stripe", "cus_again", "ada", T0 + timedelta(seconds=5), NOW) == "ada"
        assert tx.link("stripe", "cus_again", "ada", T0, NOW) == "ada"  # older, same user
        assert tx.link("stripe", "cus_again", "ada", None, NOW) == "ada"
        # The held time is still the newest: a rival between the two times loses.
        assert tx.link("stripe", "cus_again", "bob", T0 + timedelta(seconds=3), NOW) == "ada"
        assert tx.link("stripe", "cus_again", "bob", T0 + timedelta(seconds=6), NOW) == "bob"


@pytest.mark.usefixtures("natural_collation")
def test_concurrent_links_of_one_account_attach_its_subscription_to_the_winner(store):
    apply(store, snapshot(0, user=None, account="cus_shared"))
    barrier, errors = threading.Barrier(len(RIVALS)), []

    def send(user, as_of):
        barrier.wait()
        try:
            apply(store, links=(Link("stripe", "cus_shared", user, as_of),))
        except Exception as exc:  # collected: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=send, args=rival) for rival in RIVALS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # A link without the store's time is stamped when the gateway records it (NOW).
    winner = max(RIVALS, key=lambda rival: claim(rival[0], rival[1] or NOW))[0]
    assert winner == "bob"  # stamped NOW, after every store's time; "bob" > "Bob"
    with store.transaction() as tx:
        assert errors == [] and tx.resolve("stripe", "cus_shared") == winner
        assert tx.get_subscription("stripe", "sub_1").owner == winner
        holders = [user for user, _ in RIVALS if tx.entitlements_of(user)]
    assert holders == [winner]


def test_concurrent_deliveries_for_one_subscription_end_in_the_newest(store):
    deliveries = [snapshot(s, random.choice(list(Status)), user=random.choice(["alice", "bob"]))
                  for s in range(40)]
    random.shuffle(deliveries)
    errors = []

    def send(batch):
        for item in batch:
            try:
                apply(store, item)
            except Exception as exc:  # collected: a thread's failure must fail the test
                errors.append(exc)

    threads = [threading.Thread(target=send, args=(deliveries[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    expected = max(deliveries, key=lambda delivery: delivery.as_of)  # one second apart: the newest is one
    with store.transaction() as tx:
        stored = tx.get_subscription("stripe", "sub_1")
        owner_grants = tx.entitlements_of(stored.owner)
        other = tx.entitlements_of({"alice": "bob", "bob": "alice"}[stored.owner])
    assert stored.snapshot.status is expected.status and stored.snapshot.as_of == expected.as_of
    assert stored.owner == expected.user_sub  # the newest delivery also names the owner
    assert [g.status for g in owner_grants] == [expected.status] and other == []


def test_concurrent_deliveries_for_two_subscriptions_of_one_user_both_count(store):
    barrier = threading.Barrier(2)

    def send(key, days):
        barrier.wait()
        with store.transaction() as tx:
            apply_translation(tx, Translation(snapshots=(
                Snapshot(source="stripe", key=key, as_of=T0, status=Status.ACTIVE, product_id=key,
                         expires_at=T0 + timedelta(days=days), user_sub="alice"),)),
                Catalog(products={("stripe", "a"): ("premium",), ("stripe", "b"): ("family",)}), NOW)

    threads = [threading.Thread(target=send, args=args) for args in (("a", 10), ("b", 20))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with store.transaction() as tx:
        assert sorted(g.name for g in tx.entitlements_of("alice")) == ["family", "premium"]


def test_a_transfer_waits_for_another_of_its_source_then_replays_it(store):
    """B->A, the newer, is applied first and its transaction held open; A->B, applied
    meanwhile, waits for it (the register's lock), then replays it: the purchase ends with
    A. Reading the register before B->A committed, A->B would leave it with B."""
    bought = Snapshot(source="revenuecat", key="rc_register_1", as_of=T0, status=Status.ACTIVE,
                      expires_at=T0 + timedelta(days=30), user_sub="alice", account="alice")
    apply(store, bought)

    def transfer(a, b, seconds):
        return Translation(transfers=(Transfer("revenuecat", (a,), b, T0 + timedelta(seconds=seconds)),))

    applied = threading.Event()

    def there():
        with store.transaction() as tx:
            apply_translation(tx, transfer("alice", "bob", 10), CATALOG, NOW)
        applied.set()

    with store.transaction() as tx:
        apply_translation(tx, transfer("bob", "alice", 20), CATALOG, NOW)
        thread = threading.Thread(target=there)
        thread.start()
        assert not applied.wait(0.5)  # A->B waits until B->A commits
    thread.join(30)
    with store.transaction() as tx:
        assert tx.get_subscription("revenuecat", "rc_register_1").owner == "alice"


def _other_connection(database_url) -> psycopg.Connection:
    """A connection of the driver's own, outside the store's pool."""
    return psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


def _terminate_other_connections(database_url):
    with _other_connection(database_url) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")


def _read_in_transaction(store, user_sub):
    with store.transaction(readonly=True) as tx:
        return tx.entitlements_of(user_sub)


def _read_by_the_store(store, user_sub):
    return store.entitlements_of(user_sub)


# The entitlement read both ways: in a read-only transaction, and the store's own (on
# PostgreSQL, a statement on a pooled connection with no SQLAlchemy Connection around it).
READS = pytest.mark.parametrize("read", [_read_in_transaction, _read_by_the_store], ids=["transaction", "store"])


def test_the_store_reads_entitlements_as_a_read_only_transaction_does(store):
    apply(store, snapshot(1, key="sub_read_a"), snapshot(2, key="sub_read_b", user="bob"),
          snapshot(3, key="sub_read_c", status=Status.EXPIRED))
    alice = _read_in_transaction(store, "alice")
    assert [g.subscription_key for g in alice] == ["sub_read_a"]
    assert store.entitlements_of("alice") == alice
    assert [g.subscription_key for g in store.entitlements_of("bob")] == ["sub_read_b"]
    assert store.entitlements_of("nobody") == []


@pytest.mark.skipif(DATABASE != "postgresql", reason="connections die on a server, not in SQLite")
@READS
def test_a_pooled_connection_that_died_while_idle_is_replaced_before_use(store, database_url, read):
    assert read(store, "nobody") == []  # a connection now waits in the pool
    _terminate_other_connections(database_url)  # as a database restart or failover would
    time.sleep(IDLE_PING_SECONDS + 0.2)
    assert read(store, "nobody") == []


@pytest.mark.skipif(DATABASE != "postgresql", reason="connections die on a server, not in SQLite")
@READS
def test_a_connection_that_died_just_after_use_fails_one_read_then_the_pool_recovers(store, database_url, read):
    assert read(store, "nobody") == []
    _terminate_other_connections(database_url)
    with pytest.raises(StoreUnavailable):  # used again at once: no ping, the statement fails
        read(store, "nobody")
    assert read(store, "nobody") == []
    with store.transaction() as tx:  # and writes too: the dead connection left the pool
        tx.lock_users(["nobody"])


@pytest.mark.skipif(DATABASE != "postgresql", reason="the read's own connections are PostgreSQL's")
def test_the_reads_own_connections_rest_outside_a_transaction_at_most_max_idle_and_close_with_the_engine(
        store, database_url):
    sleep = "SELECT pg_sleep(0.3) AS reads_own_connections"  # its text names the sessions below
    threads = [threading.Thread(target=store.reads.rows, args=(sleep, None)) for _ in range(MAX_IDLE + 3)]
    for thread in threads:  # all at once: as many connections as reads
        thread.start()
    for thread in threads:
        thread.join()

    def sessions() -> list[str]:
        with _other_connection(database_url) as admin:
            return [state for (state,) in admin.execute(
                "SELECT state FROM pg_stat_activity WHERE datname = current_database() AND query = %s", (sleep,))]

    assert sessions() == ["idle"] * MAX_IDLE
    store.engine.dispose()
    deadline = time.monotonic() + 5
    while sessions() and time.monotonic() < deadline:  # a backend takes a moment to go
        time.sleep(0.05)
    assert sessions() == []


def test_migrations_are_idempotent(database_url):
    upgrade(database_url)
    upgrade(database_url)


def test_an_unreachable_database_is_reported_as_unavailable():
    store = sql_store("postgresql+psycopg://nobody:wrong@127.0.0.1:1/none")
    with pytest.raises(StoreUnavailable):
        with store.transaction():
            pass
    with pytest.raises(StoreUnavailable):
        store.entitlements_of("alice")


def test_links_without_a_store_time_are_ordered_by_arrival_not_by_name(store):
    """RevenueCat aliases, purchase registration and Google's carry-over name no time: the
    link recorded last holds, whatever the users' names."""
    for user, now in (("zed", NOW), ("adam", NOW + timedelta(seconds=1))):
        with store.transaction() as tx:
            apply_translation(tx, Translation(links=(Link("revenuecat", "$RCAnonymousID:a1", user),)), CATALOG, now)
    with store.transaction() as tx:
        assert tx.resolve("revenuecat", "$RCAnonymousID:a1") == "adam"


def test_migration_0003_carries_a_stored_revocation_over_so_a_later_view_does_not_undo_it(database_url):
    """A subscription revoked before 0003 kept its revocation in the snapshot itself (status
    revoked); after the upgrade, a later view of the same period must still not grant."""
    from gateway.store.migrate import downgrade

    expires = T0 + timedelta(days=30)
    downgrade(database_url, "0002")
    try:
        engine = sql_store(database_url).engine
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO subscriptions (source, key, user_sub, account, product_id, status, raw_status,"
                " expires_at, will_renew, environment, as_of, updated_at)"
                " VALUES ('stripe', 'sub_old', 'alice', 'cus_1', 'price_monthly', 'revoked', 'active:refunded',"
                f" '{expires.isoformat()}', false, 'live', '{T0.isoformat()}', '{T0.isoformat()}')")
        engine.dispose()
    finally:
        upgrade(database_url)
    store = sql_store(database_url)
    later_view = Snapshot("stripe", "sub_old", T0 + timedelta(hours=1), Status.ACTIVE, "price_monthly", expires,
                          True, account="cus_1")
    apply(store, later_view)
    with store.transaction() as tx:
        (held,) = tx.lock_subscriptions([("stripe", "sub_old")]).values()
        assert held.revocations.taken == {("refunded:before-0003", expires, None)}
        assert held.snapshot.status is Status.REVOKED and held.latest.status is Status.ACTIVE


def test_the_migrations_build_the_schema_the_code_declares(database_url):
    """Every table, column and index of ``tables.py`` is what the migrations made (an index
    declared but never migrated is a plan that works in tests and scans in production)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from gateway.store.tables import metadata

    upgrade(database_url)
    engine = sql_store(database_url).engine
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_checkout_sessions_are_recorded_per_user_and_those_stripe_expired_forgotten(store):
    with store.transaction() as tx:
        tx.note_checkout_session("alice", "cs_old", "cus_a", T0, T0 - timedelta(days=1))
        tx.note_checkout_session("bob", "cs_bob", "cus_b", T0, T0 - timedelta(days=1))
    with store.transaction() as tx:
        tx.note_checkout_session("alice", "cs_new", "cus_a", NOW, NOW - timedelta(hours=12))
        tx.note_checkout_session("alice", "cs_new", "cus_a", NOW, NOW - timedelta(hours=12))  # once
    with store.transaction(readonly=True) as tx:
        assert tx.checkout_sessions_of("alice", T0) == {"cs_new": "cus_a"}  # cs_old forgotten
        assert tx.checkout_sessions_of("bob", NOW) == {} and tx.checkout_sessions_of("bob", T0) == {"cs_bob": "cus_b"}
    with store.transaction() as tx:
        tx.forget_checkout_sessions("alice")
    with store.transaction(readonly=True) as tx:
        assert tx.checkout_sessions_of("alice", T0) == {} and tx.checkout_sessions_of("bob", T0) == {"cs_bob": "cus_b"}
