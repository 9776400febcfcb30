"""The SQL store on the test database (SQLite, or PostgreSQL with TEST_DATABASE=postgresql)."""
from __future__ import annotations

import random
import threading
from datetime import datetime, timedelta, timezone

import pytest

from gateway.apply import apply_translation
from gateway.domain.catalog import Catalog
from gateway.domain.changes import Link, Translation
from gateway.domain.model import Snapshot, Status, link_claim, newest
from gateway.store.migrate import upgrade
from gateway.store.port import StoreUnavailable
from gateway.store.sql import SqlStore, make_engine

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
NOW = T0 + timedelta(days=1)
CATALOG = Catalog(products={})


@pytest.fixture
def store(database_url):
    store = SqlStore(make_engine(database_url))
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
        first = tx.record_event(source="stripe", event_id="evt_1", **fields)
        again = tx.record_event(source="stripe", event_id="evt_1", **fields)
        other = tx.record_event(source="apple", event_id="evt_1", **fields)
    assert first.data == {"a": [1]} and first.received_at == T0
    assert again is None and other is not None


def test_newest_snapshot_wins_and_times_come_back_in_utc(store):
    apply(store, snapshot(10, Status.EXPIRED))
    apply(store, snapshot(5, Status.ACTIVE))
    with store.transaction() as tx:
        stored = tx.get_subscription("stripe", "sub_1")
        (grant,) = tx.entitlements_of("alice")
    assert stored.snapshot.status is Status.EXPIRED and stored.snapshot.as_of.tzinfo is not None
    assert grant.status is Status.EXPIRED and grant.expires_at == T0 + timedelta(seconds=10, days=30)


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
    winner = max(RIVALS, key=lambda rival: link_claim(rival[1], rival[0]))[0]
    for attempt in range(3):
        order = random.Random(attempt).sample(RIVALS, len(RIVALS))
        account = f"cus_{attempt}"
        with store.transaction() as tx:
            answers = [tx.link("stripe", account, user, as_of, NOW) for user, as_of in order]
            assert tx.resolve("stripe", account) == winner
        best_so_far = [max(order[:i + 1], key=lambda rival: link_claim(rival[1], rival[0]))[0]
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
    winner = max(RIVALS, key=lambda rival: link_claim(rival[1], rival[0]))[0]
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
    expected = newest(deliveries)
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


def test_migrations_are_idempotent(database_url):
    upgrade(database_url)
    upgrade(database_url)


def test_an_unreachable_database_is_reported_as_unavailable():
    store = SqlStore(make_engine("postgresql+psycopg://nobody:wrong@127.0.0.1:1/none"))
    with pytest.raises(StoreUnavailable):
        with store.transaction():
            pass
