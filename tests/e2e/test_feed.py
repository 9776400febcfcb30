"""The entitlement feed through HTTP: one event per change, in the transaction of the change,
paged by a cursor that never skips, long-polled, and lapses reported by the expiry sweep."""
from __future__ import annotations

import contextlib
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from devtools import revenuecat as rc
from gateway.jobs.expiry import ExpirySweep
from tests.conftest import DATABASE
from tests.e2e.conftest import API_KEY
from tests.e2e.test_races import together

HEADERS = {"Authorization": rc.AUTH, "Content-Type": "application/json"}
KEY = {"Authorization": f"Bearer {API_KEY}"}
NOW_MS = int(time.time() * 1000)
DAY_MS = 86_400_000


@pytest.fixture
def app(make_app):
    return make_app(REVENUECAT_WEBHOOK_AUTH=rc.AUTH, GATEWAY_API_KEYS=API_KEY)


@pytest.fixture
def client(app):
    return app.test_client()


def send(client, evt):
    response = client.post("/webhooks/revenuecat", data=rc.body(evt), headers=HEADERS)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["status"]


def page(client, **query):
    response = client.get("/v1/events", query_string=query, headers=KEY)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def feed(client, after=0) -> list[dict]:
    found, cursor = [], after
    while True:
        answer = page(client, after=cursor, limit=2)
        found += answer["events"]
        cursor = answer["next"]
        if not answer["has_more"]:
            return found


def kinds(events, user=None):
    return [(e["type"], e["entitlement"]) for e in events if user in (None, e["user_id"])]


def test_each_change_is_one_event_with_its_cause_and_the_views_the_api_showed(client, api):
    purchase = rc.event("INITIAL_PURCHASE", at_ms=NOW_MS)
    send(client, purchase)
    (granted,) = feed(client)
    assert granted["type"] == "entitlement.granted" and granted["user_id"] == "user-1"
    assert granted["before"] is None and granted["after"] == api(client, "user-1")["entitlements"]["premium"]
    assert granted["cause"] == {"kind": "delivery", "source": "revenuecat", "event_id": purchase["id"]}
    assert granted["position"] == "1" and granted["id"].startswith("evt_")

    send(client, rc.event("RENEWAL", at_ms=NOW_MS + 1000, expiration_at_ms=NOW_MS + 2 * rc.MONTH_MS))
    send(client, rc.event("CANCELLATION", at_ms=NOW_MS + 2000, cancel_reason="UNSUBSCRIBE",
                          expiration_at_ms=NOW_MS + 2 * rc.MONTH_MS))
    send(client, rc.event("CANCELLATION", at_ms=NOW_MS + 3000, cancel_reason="CUSTOMER_SUPPORT",
                          expiration_at_ms=NOW_MS + 2 * rc.MONTH_MS))
    events = feed(client)
    assert kinds(events) == [("entitlement.granted", "premium"), ("entitlement.renewed", "premium"),
                             ("entitlement.changed", "premium"), ("entitlement.revoked", "premium")]
    assert [e["position"] for e in events] == ["1", "2", "3", "4"]
    assert events[2]["before"]["will_renew"] is True and events[2]["after"]["will_renew"] is False
    assert events[3]["after"] == api(client, "user-1")["entitlements"]["premium"]
    assert events[3]["after"]["active"] is False


def test_duplicates_and_stale_deliveries_emit_nothing(client):
    renewal = rc.event("RENEWAL", at_ms=NOW_MS + 1000, expiration_at_ms=NOW_MS + 2 * rc.MONTH_MS)
    send(client, rc.event("INITIAL_PURCHASE", at_ms=NOW_MS))
    send(client, renewal)
    assert send(client, renewal) == "duplicate"
    assert send(client, rc.event("INITIAL_PURCHASE", at_ms=NOW_MS - 1000)) == "processed"  # older: loses
    assert kinds(feed(client)) == [("entitlement.granted", "premium"), ("entitlement.renewed", "premium")]


def test_a_transfer_revokes_one_user_and_grants_the_other(client):
    send(client, rc.event("INITIAL_PURCHASE", user="ann", at_ms=NOW_MS))
    send(client, rc.transfer(["ann"], ["bea"], at_ms=NOW_MS + 1000))
    events = feed(client)
    assert kinds(events, "ann") == [("entitlement.granted", "premium"), ("entitlement.revoked", "premium")]
    assert kinds(events, "bea") == [("entitlement.granted", "premium")]


def test_a_change_that_does_not_commit_leaves_no_event(client, app, refuse_writes, api):
    refuse_writes.on("entitlement_events")
    assert send(client, rc.event("INITIAL_PURCHASE", at_ms=NOW_MS)) == "deferred"
    assert api(client, "user-1")["is_premium"] is False  # the change went with its event
    refuse_writes.off()
    services = app.extensions["gateway"]
    with services.store.transaction() as tx:
        (event,) = tx.search_events(source="revenuecat")
    services.ingest.process(services.providers["revenuecat"], event)
    assert kinds(feed(client)) == [("entitlement.granted", "premium")]
    assert api(client, "user-1")["is_premium"] is True


def test_pages_follow_the_cursor_and_bad_queries_are_refused(client):
    for n, user in enumerate(["u1", "u2", "u3"]):
        send(client, rc.event("INITIAL_PURCHASE", user=user, transaction=f"t-{user}", at_ms=NOW_MS + n))
    first = page(client, limit=2)
    assert [e["user_id"] for e in first["events"]] == ["u1", "u2"] and first["has_more"] is True
    rest = page(client, after=first["next"], limit=2)
    assert [e["user_id"] for e in rest["events"]] == ["u3"] and rest["has_more"] is False
    assert page(client, after=rest["next"]) == {"events": [], "next": rest["next"], "has_more": False}
    assert client.get("/v1/events").status_code == 401
    assert client.get("/v1/events", headers={"Authorization": "Bearer wrong"}).status_code == 401
    for query in ({"after": "-1"}, {"after": "x"}, {"limit": "0"}, {"limit": "1001"}, {"wait": "26"}):
        response = client.get("/v1/events", query_string=query, headers=KEY)
        assert (response.status_code, response.get_json()["error"]) == (400, "bad_query"), query


def test_a_long_poll_answers_when_the_event_commits(client, app):
    started = time.monotonic()
    assert page(client, wait=1)["events"] == []
    assert time.monotonic() - started >= 1.0

    later = threading.Timer(0.3, lambda: send(app.test_client(), rc.event("INITIAL_PURCHASE", at_ms=NOW_MS)))
    later.start()
    started = time.monotonic()
    answer = page(client, wait=10)
    waited = time.monotonic() - started
    later.join()
    assert kinds(answer["events"]) == [("entitlement.granted", "premium")]
    assert 0.25 <= waited < 5


def _sweep(app, at: datetime) -> int:
    return ExpirySweep(app.extensions["gateway"].store, clock=lambda: at).run_once()


def test_a_lapse_without_a_store_event_is_reported_at_its_end_once(client, app):
    ends_ms = NOW_MS + 5 * DAY_MS
    send(client, rc.event("INITIAL_PURCHASE", at_ms=NOW_MS, expiration_at_ms=ends_ms))
    ends = datetime.fromtimestamp(ends_ms / 1000, timezone.utc)
    assert _sweep(app, ends - timedelta(seconds=1)) == 0
    assert _sweep(app, ends + timedelta(seconds=1)) == 1
    assert _sweep(app, ends + timedelta(seconds=2)) == 0
    expired = feed(client)[-1]
    assert expired["type"] == "entitlement.expired" and expired["cause"]["kind"] == "expiry"
    assert expired["occurred_at"] == rc_time(ends_ms)
    assert (expired["before"]["active"], expired["after"]["active"], expired["after"]["status"]) == \
        (True, False, "expired")
    # The store's own expiry afterwards tells nothing new of access; a renewal grants again.
    send(client, rc.event("EXPIRATION", at_ms=ends_ms + 1000, expiration_at_ms=ends_ms))
    send(client, rc.event("RENEWAL", at_ms=ends_ms + 2000, expiration_at_ms=ends_ms + rc.MONTH_MS))
    assert kinds(feed(client))[1:] == [("entitlement.expired", "premium"), ("entitlement.changed", "premium"),
                                       ("entitlement.granted", "premium")]


def test_a_renewal_before_the_sweep_is_a_renewal_and_nothing_lapses(client, app):
    ends_ms = NOW_MS + 5 * DAY_MS
    send(client, rc.event("INITIAL_PURCHASE", at_ms=NOW_MS, expiration_at_ms=ends_ms))
    send(client, rc.event("RENEWAL", at_ms=NOW_MS + 1000, expiration_at_ms=ends_ms + rc.MONTH_MS))
    ends = datetime.fromtimestamp(ends_ms / 1000, timezone.utc)
    assert _sweep(app, ends + timedelta(seconds=1)) == 0
    assert kinds(feed(client)) == [("entitlement.granted", "premium"), ("entitlement.renewed", "premium")]


def test_the_sweep_reports_a_backlog_in_batches_without_losing_one(client, app):
    for n in range(7):
        send(client, rc.event("INITIAL_PURCHASE", user=f"u{n}", transaction=f"t-{n}", at_ms=NOW_MS,
                              expiration_at_ms=NOW_MS + DAY_MS + (n // 2) * 1000))  # pairs end together
    store = app.extensions["gateway"].store
    later = datetime.fromtimestamp(NOW_MS / 1000, timezone.utc) + timedelta(days=2)
    sweep = ExpirySweep(store, clock=lambda: later, batch=3)
    counts = [sweep.run_once() for _ in range(5)]
    assert sum(counts) == 7 and all(0 < c <= 4 for c in counts[:2])
    expired = [e["user_id"] for e in feed(client) if e["type"] == "entitlement.expired"]
    assert sorted(expired) == [f"u{n}" for n in range(7)]


def rc_time(ms: int) -> str:
    when = datetime.fromtimestamp(ms / 1000, timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + (f".{ms % 1000:03d}Z" if ms % 1000 else "Z")


def test_a_reader_paging_during_concurrent_commits_sees_every_event_once(app):
    """Writers released together; a reader follows the cursor while they commit. A feed
    numbered at insert (a sequence) lets a reader pass a number whose transaction has
    not committed yet, and never see it."""
    writers, each = 6, 8
    barrier, done = threading.Barrier(writers + 1), threading.Event()
    outcomes, seen = [], []

    def write(n: int) -> None:
        client = app.test_client()
        barrier.wait()
        for k in range(each):
            evt = rc.event("INITIAL_PURCHASE" if k == 0 else "RENEWAL", user=f"w{n}", transaction=f"t-{n}",
                           at_ms=NOW_MS + k * 1000, expiration_at_ms=NOW_MS + rc.MONTH_MS + k * DAY_MS)
            outcomes.append(send(client, evt))

    def read() -> None:
        client, cursor = app.test_client(), 0
        barrier.wait()
        while True:
            finished = done.is_set()
            answer = page(client, after=cursor, limit=5)
            seen.extend(answer["events"])
            cursor = answer["next"]
            if finished and not answer["events"]:
                return

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    reader = threading.Thread(target=read)
    for thread in threads + [reader]:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    done.set()
    reader.join(timeout=60)
    assert outcomes.count("processed") == writers * each
    positions = [int(e["position"]) for e in seen]
    assert positions == list(range(1, writers * each + 1))  # in order, none skipped, none twice
    assert [e["id"] for e in seen] == [e["id"] for e in feed(app.test_client())]
    for n in range(writers):
        assert kinds(seen, f"w{n}") == [("entitlement.granted", "premium")] + [("entitlement.renewed", "premium")] * 7


def _at(app, when: datetime) -> None:
    """Deliveries from now on are received at ``when``."""
    app.extensions["gateway"].ingest.clock = lambda: when


def test_a_lapse_a_delivery_reported_is_not_reported_again_by_the_sweep(client, app):
    """A delivery that comes after the end, before the sweep (the worker idle or down),
    and leaves the lapsed row granting (renewal switched off) reports the lapse; the sweep
    must not report it a second time, nor a second such delivery."""
    ends_ms = NOW_MS + 5 * DAY_MS
    send(client, rc.event("INITIAL_PURCHASE", at_ms=NOW_MS, expiration_at_ms=ends_ms))
    ends = datetime.fromtimestamp(ends_ms / 1000, timezone.utc)
    _at(app, ends + timedelta(seconds=10))
    send(client, rc.event("CANCELLATION", at_ms=NOW_MS + 1000, expiration_at_ms=ends_ms,
                          cancel_reason="UNSUBSCRIBE"))
    _at(app, ends + timedelta(seconds=20))  # renewal switched on again, the period still over
    send(client, rc.event("UNCANCELLATION", at_ms=NOW_MS + 2000, expiration_at_ms=ends_ms))
    assert _sweep(app, ends + timedelta(seconds=30)) == 0
    assert kinds(feed(client)) == [("entitlement.granted", "premium"), ("entitlement.expired", "premium"),
                                   ("entitlement.changed", "premium")]


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _last_word(client, user: str) -> dict:
    return [e for e in feed(client) if e["user_id"] == user][-1]


def test_a_change_stamped_before_the_sweep_and_committed_after_it_does_not_grant_what_lapsed(client, app):
    """A delivery received (stamped) just before a period's end, committed after the sweep
    passed that end (its transaction waited on locks, or its batch): granted at its stamp,
    the sweep would never report the lapse, and the feed would say "active" for ever."""
    send(client, rc.event("INITIAL_PURCHASE", user="bob", at_ms=NOW_MS))  # the feed's clock exists
    swept = datetime.fromtimestamp(NOW_MS / 1000, timezone.utc) + timedelta(days=2)
    _sweep(app, swept)
    _at(app, swept - timedelta(seconds=2))
    send(client, rc.event("INITIAL_PURCHASE", user="alice", transaction="t-alice", at_ms=_ms(swept) - 3000,
                          expiration_at_ms=_ms(swept) - 1000))
    _sweep(app, swept + timedelta(seconds=10))
    assert _last_word(client, "alice")["after"]["active"] is False


@pytest.mark.skipif(DATABASE != "postgresql", reason="on SQLite the sweep's transaction holds every writer off")
def test_a_change_committed_while_the_sweep_reads_its_window_is_reported_by_a_later_run(client, app):
    """The sweep reads the window's entitlements, a change commits a grant ending in it
    (stamped before its end), then the sweep moves its mark past it: never reported."""
    send(client, rc.event("INITIAL_PURCHASE", user="bob", at_ms=NOW_MS))
    swept = datetime.fromtimestamp(NOW_MS / 1000, timezone.utc) + timedelta(days=2)
    _sweep(app, swept)
    store, ends = app.extensions["gateway"].store, swept + timedelta(seconds=5)
    _at(app, ends - timedelta(seconds=1))

    class Racing:
        """The sweep's store: a grant commits right after the sweep read its window."""

        @contextlib.contextmanager
        def transaction(self):
            with store.transaction() as tx:
                read = tx.lapsed_grants

                def lapsed_grants(*args):
                    found = read(*args)
                    together(lambda: send(app.test_client(), rc.event(
                        "INITIAL_PURCHASE", user="alice", transaction="t-alice", at_ms=_ms(ends) - 2000,
                        expiration_at_ms=_ms(ends))))
                    return found

                tx.lapsed_grants = lapsed_grants
                yield tx

    ExpirySweep(Racing(), clock=lambda: ends + timedelta(seconds=1)).run_once()
    assert _last_word(client, "alice")["type"] == "entitlement.granted"
    _sweep(app, ends + timedelta(seconds=2))
    assert _last_word(client, "alice")["type"] == "entitlement.expired"
