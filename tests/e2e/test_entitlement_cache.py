"""The entitlement cache (ENTITLEMENT_CACHE_SECONDS): what a read may miss, and what it may
not. On the test database (SQLite, or PostgreSQL under TEST_DATABASE). On PostgreSQL the
cache listens for every commit (test_entitlement_notify.py); the tests here that are about
a database that announces nothing run the cache over ``Counting(..., announces=False)``."""
from __future__ import annotations

import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from devtools import revenuecat as rc
from gateway.domain.entitlements import Grant
from gateway.domain.model import Status
from gateway.store.cache import CachedEntitlements
from gateway.store.sql import SqlStore, sql_store
from gateway.config import DEFAULT_ENTITLEMENT_CACHE_SECONDS
from tests.conftest import DATABASE
from tests.e2e.conftest import API_KEY

NOW = datetime.now(timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def grant(name: str) -> Grant:
    return Grant(name=name, status=Status.ACTIVE, expires_at=NOW + timedelta(days=30), will_renew=True,
                 source="stripe", product_id="price_m", subscription_key=f"sub_{name}")


def write(store, user_sub: str, *names: str) -> None:
    with store.transaction() as tx:
        tx.lock_users([user_sub])
        tx.replace_entitlements_of({user_sub: [grant(name) for name in names]}, NOW)


def names(grants) -> list[str]:
    return [g.name for g in grants]


@pytest.fixture
def other(database_url):
    """Another worker's store on the same database: its commits are not heard of."""
    store = sql_store(database_url)
    yield store
    store.engine.dispose()


class Counting:
    """A store that counts the entitlement reads reaching it and may act in the middle of one;
    ``announces=False``: as a database that announces no change (SQLite)."""

    def __init__(self, store, announces=True) -> None:
        self.store, self.reads, self.during_read, self.announces = store, 0, None, announces

    def transaction(self, readonly=False):
        return self.store.transaction(readonly)

    def listen(self, forget, forget_everyone):
        return self.store.listen(forget, forget_everyone) if self.announces else None

    def close(self):
        pass

    def entitlements_of(self, user_sub):
        self.reads += 1
        grants = self.store.entitlements_of(user_sub)  # what the database said...
        if self.during_read:
            act, self.during_read = self.during_read, None
            act()  # ...and what happens before the read returns
        return grants


def listening(cache):
    """``cache``, once its listener (if it has one) hears every commit."""
    deadline = time.monotonic() + 10
    while cache.listener is not None and not cache.listener.listening():
        assert time.monotonic() < deadline, "the cache's listener did not connect"
        time.sleep(0.01)
    return cache


@pytest.fixture
def caches():
    """``caches(store, **options)``: a cache over ``store``, listening before it is handed out
    when the database announces changes; its listener stopped after the test."""
    made = []

    def build(store, **options):
        cache = CachedEntitlements(store, **options)
        made.append(cache)
        return listening(cache)

    yield build
    for cache in made:
        if cache.listener is not None:
            cache.listener.stop()


def test_unannounced_another_workers_commit_is_seen_once_the_seconds_have_passed(sql, other, caches):
    clock = Clock()
    cache = caches(Counting(sql, announces=False), seconds=5, clock=clock)
    write(other, "alice", "premium")
    assert names(cache.entitlements_of("alice")) == ["premium"]
    write(other, "alice")  # refunded, through another worker
    clock.now += 4.9
    assert names(cache.entitlements_of("alice")) == ["premium"]  # the cached answer, within the seconds
    clock.now += 0.2
    assert cache.entitlements_of("alice") == []


def test_this_processs_commit_is_seen_by_the_next_read(sql, caches):
    cache = caches(sql, seconds=300, clock=Clock())
    assert cache.entitlements_of("alice") == []  # cached: nothing
    write(cache, "alice", "premium")
    assert names(cache.entitlements_of("alice")) == ["premium"]
    write(cache, "alice")
    assert cache.entitlements_of("alice") == []
    with cache.transaction() as tx:  # the form deliveries applied together use
        tx.lock_users(["alice", "bob"])
        tx.replace_entitlements_of({"alice": [grant("premium")], "bob": [grant("pro")]}, NOW)
    assert (names(cache.entitlements_of("alice")), names(cache.entitlements_of("bob"))) == (["premium"], ["pro"])


def test_a_read_that_overlaps_a_commit_does_not_keep_what_it_read(sql, caches):
    # This process's own commit; one heard of is test_entitlement_notify.py's. (Announced, the
    # commits' own notifications, heard at any moment, would make the last read ask again.)
    counting = Counting(sql, announces=False)
    cache = caches(counting, seconds=300, clock=Clock())
    write(cache, "alice", "premium")
    # The database answers the read, then a commit in this process revokes, then the read returns.
    counting.during_read = lambda: write(cache, "alice")
    assert names(cache.entitlements_of("alice")) == ["premium"]  # what the database said when asked
    assert cache.entitlements_of("alice") == []  # not kept: the next read asked again
    assert counting.reads == 2
    assert cache.entitlements_of("alice") == [] and counting.reads == 2  # and that one is kept


def test_a_rolled_back_write_changes_nothing(sql, caches):
    cache = caches(sql, seconds=300, clock=Clock())
    write(cache, "alice", "premium")
    with pytest.raises(RuntimeError):
        with cache.transaction() as tx:
            tx.lock_users(["alice"])
            tx.replace_entitlements_of({"alice": []}, NOW)
            raise RuntimeError("the delivery failed halfway")
    assert names(cache.entitlements_of("alice")) == ["premium"]


def test_the_oldest_user_leaves_a_full_cache_first(sql, caches):
    counting = Counting(sql)
    cache = caches(counting, seconds=300, max_users=2, clock=Clock())
    for user in ("a", "b", "c"):
        cache.entitlements_of(user)
    cache.entitlements_of("b"), cache.entitlements_of("c")
    assert counting.reads == 3  # b and c were held
    cache.entitlements_of("a")
    assert counting.reads == 4  # a had left


def test_concurrent_reads_and_commits_end_with_the_last_commit_visible(sql, caches):
    cache = caches(sql, seconds=300)
    write(cache, "alice", "premium")
    stop, errors = threading.Event(), []

    def read():
        try:
            while not stop.is_set():
                cache.entitlements_of("alice")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for thread in readers:
        thread.start()
    try:
        for n in range(40):
            write(cache, "alice", *(["premium"] if n % 2 else []))
            # Each commit is seen by the next read, whatever the readers did meanwhile.
            assert names(cache.entitlements_of("alice")) == (["premium"] if n % 2 else [])
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    assert errors == []


def test_the_cache_is_on_by_default_only_where_the_database_announces_changes(make_app):
    store = make_app().extensions["gateway"].store
    if DATABASE == "postgresql":
        assert isinstance(store, CachedEntitlements) and store.seconds == DEFAULT_ENTITLEMENT_CACHE_SECONDS
        assert store.listener is not None
    else:
        assert isinstance(store, SqlStore)
    assert isinstance(make_app(ENTITLEMENT_CACHE_SECONDS=0).extensions["gateway"].store, SqlStore)
    store = make_app(ENTITLEMENT_CACHE_SECONDS=5).extensions["gateway"].store
    assert isinstance(store, CachedEntitlements) and store.seconds == 5


def test_hits_and_misses_are_counted_for_metrics(make_app, api):
    from tests.e2e.test_metrics import METRICS_TOKEN, scrape, total

    client = make_app(GATEWAY_API_KEYS=API_KEY, ENTITLEMENT_CACHE_SECONDS=300, METRICS_TOKEN=METRICS_TOKEN).test_client()
    listening(client.application.extensions["gateway"].store)
    before = scrape(client)
    for _ in range(3):
        api(client, "user-1")
    api(client, "user-2")
    after = scrape(client)
    grew = {outcome: total(after, "gateway_entitlement_cache_lookups_total", outcome=outcome)
            - total(before, "gateway_entitlement_cache_lookups_total", outcome=outcome) for outcome in ("hit", "miss")}
    assert grew == {"hit": 2, "miss": 2}


def send(client, evt):
    response = client.post("/webhooks/revenuecat", data=rc.body(evt),
                           headers={"Authorization": rc.AUTH, "Content-Type": "application/json"})
    assert response.status_code == 200, response.get_data(as_text=True)


def test_through_the_api_a_webhook_shows_at_once_and_expiry_is_judged_at_each_read(make_app, api):
    client = make_app(REVENUECAT_WEBHOOK_AUTH=rc.AUTH, GATEWAY_API_KEYS=API_KEY,
                      ENTITLEMENT_CACHE_SECONDS=300).test_client()
    assert api(client, "user-1")["is_premium"] is False  # now cached
    now_ms = int(time.time() * 1000)
    send(client, rc.event("NON_RENEWING_PURCHASE", at_ms=now_ms, expiration_at_ms=now_ms + 1500))
    assert api(client, "user-1")["is_premium"] is True  # the webhook's commit dropped the cached answer
    time.sleep(max(0.0, (now_ms + 1600) / 1000 - time.time()))
    answer = api(client, "user-1")  # the grant is still cached; the instant is this read's
    assert answer["is_premium"] is False and answer["entitlements"]["premium"]["active"] is False


@pytest.mark.skipif(DATABASE == "postgresql", reason="PostgreSQL announces the refund (test_entitlement_notify.py)")
def test_through_the_api_unannounced_another_workers_refund_is_seen_within_the_seconds(make_app, api):
    env = dict(REVENUECAT_WEBHOOK_AUTH=rc.AUTH, GATEWAY_API_KEYS=API_KEY, ENTITLEMENT_CACHE_SECONDS=1)
    worker_a, worker_b = make_app(**env).test_client(), make_app(**env).test_client()
    now_ms = int(time.time() * 1000)
    send(worker_a, rc.event("INITIAL_PURCHASE", at_ms=now_ms))
    read_at = time.monotonic()
    assert api(worker_b, "user-1")["is_premium"] is True  # read, and now cached, by worker b
    send(worker_a, rc.event("CANCELLATION", at_ms=now_ms + 1, cancel_reason="CUSTOMER_SUPPORT"))
    assert api(worker_a, "user-1")["is_premium"] is False  # the worker that applied it: at once
    if time.monotonic() - read_at < 0.9:  # (a slow machine may already be past the second)
        assert api(worker_b, "user-1")["is_premium"] is True  # the other: its cached answer...
    time.sleep(1.05)
    assert api(worker_b, "user-1")["is_premium"] is False  # ...for at most the configured second


def reads_by_worker(metrics_dir: Path) -> dict[int, float]:
    """Entitlement reads each gunicorn worker has answered, by its pid. In prometheus_client's
    multiprocess mode every worker writes its own samples to ``counter_<pid>.db`` in
    PROMETHEUS_MULTIPROC_DIR; read alone, one such file is one worker's count."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    counts = {}
    for path in metrics_dir.glob("counter_*.db"):
        with tempfile.TemporaryDirectory() as alone:
            shutil.copy(path, alone)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=alone)
            counts[int(path.stem.rsplit("_", 1)[1])] = registry.get_sample_value(
                "gateway_entitlement_reads_total", {"endpoint": "user", "result": "ok"}) or 0.0
    return counts


def test_under_gunicorn_every_worker_shows_a_refund_within_the_seconds(database_url, tmp_path):
    """On PostgreSQL with the default cache (60 s), at once: every worker heard the refund.
    Elsewhere with a cache of 1 s set, after that second."""
    from tests.e2e.test_procfile_server import call
    from tests.support.procfile import serve

    metrics_dir = tmp_path / "metrics"  # inspected below: which worker answered which reads
    metrics_dir.mkdir()
    env = {"DATABASE_URL": database_url, "REVENUECAT_WEBHOOK_AUTH": rc.AUTH, "GATEWAY_API_KEYS": API_KEY,
           "LOG_LEVEL": "WARNING", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    announced = DATABASE == "postgresql"
    if not announced:
        env["ENTITLEMENT_CACHE_SECONDS"] = "1"
    webhook = {"Authorization": rc.AUTH, "Content-Type": "application/json"}
    read = {"Authorization": f"Bearer {API_KEY}"}
    now_ms = int(time.time() * 1000)
    with serve(env, workers=2) as (url, _process):
        port = int(url.rsplit(":", 1)[1])

        def premium_each_read(seconds=30, together=8):
            """Every answer of reads made on a new connection each, ``together`` at once, until
            two workers have answered some (or ``seconds`` have passed); and the pids of the
            workers that did. A worker may still be booting when the first one answers, and one
            by one, the worker that has just answered tends to accept the next connection too."""
            before, answers, answered = reads_by_worker(metrics_dir), set(), set()
            deadline = time.monotonic() + seconds
            with ThreadPoolExecutor(together) as pool:
                while len(answered) < 2 and time.monotonic() < deadline:
                    answers |= set(pool.map(lambda _: call(port, "GET", "/v1/users/gunicorn-user/entitlements",
                                                            headers=read)[1]["is_premium"], range(together)))
                    answered = {pid for pid, count in reads_by_worker(metrics_dir).items()
                                if count > before.get(pid, 0)}
            return answers, answered

        call(port, "POST", "/webhooks/revenuecat", rc.body(rc.event("INITIAL_PURCHASE", "gunicorn-user",
                                                                       at_ms=now_ms)), webhook)
        premium, cached_in = premium_each_read()
        assert premium == {True}  # and now cached in the workers that answered
        assert len(cached_in) >= 2, f"only worker {cached_in} answered: one cache would be put to the test"
        refund = rc.event("CANCELLATION", "gunicorn-user", at_ms=now_ms + 1, cancel_reason="CUSTOMER_SUPPORT")
        assert call(port, "POST", "/webhooks/revenuecat", rc.body(refund), webhook)[0] == 200
        time.sleep(0.5 if announced else 1.1)  # announced: the notification's trip, with room to spare
        premium, answered = premium_each_read()
        assert premium == {False}
    # The proof that the cache of more than one process was put to the test: at least two
    # workers answered the grant before the refund, and the refund after it.
    assert len(cached_in & answered) >= 2, f"workers that cached the grant {cached_in}, that answered after {answered}"
