"""The event log's retention (EVENTS_RETENTION_DAYS): finished deliveries older than it are
deleted with their evidence, a batch per transaction; anything the retry worker or an
operator still needs is kept; and a store sending a pruned event again changes nothing."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from devtools import revenuecat as rc
from gateway.clock import utcnow
from gateway.config import ConfigError, from_env
from gateway.domain.changes import Transfer
from gateway.jobs import retention, retry, worker
from gateway.store import tables
from gateway.store.retention import Retention
from tests.conftest import DATABASE
from tests.e2e import test_admin as admin
from tests.e2e.conftest import API_KEY
from tests.support.pg_locks import WAITING

NOW = utcnow()
OLD, YOUNG = NOW - timedelta(days=100), NOW - timedelta(days=1)
CUTOFF = retention.cutoff(90, NOW)


@pytest.fixture
def app(make_app):
    return make_app(REVENUECAT_WEBHOOK_AUTH=rc.AUTH, GATEWAY_API_KEYS=API_KEY)


@pytest.fixture
def store(app):
    return app.extensions["gateway"].store


def record(store, name: str, received_at, status: str = "processed", touched=("sub-1",)) -> int:
    """A delivery in the log as ingest leaves it, with its evidence: the subscriptions it touched."""
    with store.transaction() as tx:
        (event,) = tx.record_events([dict(source="revenuecat", event_id=name, event_type="RENEWAL",
                                          received_at=received_at, payload="{}", data={}, status=status)])
        tx.link_events([(event.id, [("revenuecat", key) for key in touched])])
    return event.id


def deliver(store, position: int, status: str, delivered_at=None, created_at=OLD, endpoint="backend") -> None:
    """An outgoing webhook delivery row, as the worker's outbox leaves it."""
    with Retention.of(store).engine.begin() as connection:
        connection.execute(sa.insert(tables.webhook_deliveries).values(
            endpoint=endpoint, position=position, user_sub="user-1", status=status, attempts=1,
            next_attempt_at=None if status == "delivered" else NOW, created_at=created_at, queued_at=created_at,
            delivered_at=delivered_at))


def names(store) -> set[str]:
    with Retention.of(store).engine.connect() as connection:
        return set(connection.execute(sa.select(tables.events.c.event_id)).scalars())


def evidence(store) -> set[int]:
    with Retention.of(store).engine.connect() as connection:
        return set(connection.execute(sa.select(tables.event_subscriptions.c.event_pk)).scalars())


def deliveries(store) -> dict[int, str]:
    with Retention.of(store).engine.connect() as connection:
        found = connection.execute(sa.select(tables.webhook_deliveries.c.position, tables.webhook_deliveries.c.status))
        return dict(found.all())


def prune(store, batch: int = retention.BATCH, cutoff=CUTOFF) -> retention.Report:
    return retention.prune(Retention.of(store), cutoff, batch)


def test_old_finished_events_go_young_ones_stay(store):
    record(store, "old-processed", OLD)
    record(store, "old-ignored", OLD, status="ignored")
    record(store, "just-past-the-retention", CUTOFF - timedelta(seconds=1))
    record(store, "just-inside-the-retention", CUTOFF + timedelta(seconds=1))
    record(store, "young", YOUNG)
    done = prune(store)
    assert names(store) == {"just-inside-the-retention", "young"}
    assert (done.events, done.deliveries) == (3, 0)


@pytest.mark.parametrize("status", ["received", "deferred", "failed"])
def test_a_delivery_the_retry_worker_or_an_operator_needs_is_kept_whatever_its_age(store, status):
    record(store, f"old-{status}", NOW - timedelta(days=1000), status=status)
    record(store, "old-processed", OLD)
    record(store, "young", YOUNG)
    prune(store)
    assert names(store) == {f"old-{status}", "young"}


def test_the_evidence_of_a_pruned_event_goes_with_it(store):
    pruned = record(store, "old", OLD, touched=("sub-1", "sub-2"))
    kept_old = record(store, "old-failed", OLD, status="failed", touched=("sub-1",))
    young = record(store, "young", YOUNG, touched=("sub-2",))
    done = prune(store)
    assert evidence(store) == {kept_old, young}
    assert pruned not in evidence(store) and done.evidence == 2


def test_delivered_webhooks_go_once_old_and_owed_ones_stay(store):
    deliver(store, 1, "delivered", delivered_at=OLD)
    deliver(store, 2, "delivered", delivered_at=YOUNG)
    deliver(store, 3, "pending")
    deliver(store, 4, "failed")
    deliver(store, 5, "pending", created_at=NOW - timedelta(days=1000))
    done = prune(store)
    assert deliveries(store) == {2: "delivered", 3: "pending", 4: "failed", 5: "pending"}
    assert done.deliveries == 1


class Transactions:
    """Every committed transaction's statements and the rows each one touched."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine, self.committed, self.current = engine, [], []
        sa.event.listen(engine, "after_cursor_execute", self._ran)
        sa.event.listen(engine, "commit", self._commit)

    def _ran(self, _connection, cursor, statement, _params, _context, _many) -> None:
        self.current.append((" ".join(statement.split()[:3]).upper(), cursor.rowcount))

    def _commit(self, _connection) -> None:
        self.committed.append(self.current)
        self.current = []

    def deleting(self, table: str) -> list[int]:
        """Rows deleted from ``table`` in each transaction that deleted any."""
        deleting = f"DELETE FROM {table}".upper()
        return [sum(n for statement, n in done if statement == deleting)
                for done in self.committed if any(statement == deleting for statement, _ in done)]

    def __enter__(self) -> Transactions:
        return self

    def __exit__(self, *_exc) -> None:
        sa.event.remove(self.engine, "after_cursor_execute", self._ran)
        sa.event.remove(self.engine, "commit", self._commit)


def test_a_batch_is_one_transaction_and_batches_end_where_one_big_prune_would(store):
    for n in range(35):
        record(store, f"old-{n}", OLD + timedelta(seconds=n))
        deliver(store, n, "delivered", delivered_at=OLD + timedelta(seconds=n), endpoint=f"endpoint-{n % 3}")
    record(store, "young", YOUNG)
    with Transactions(Retention.of(store).engine) as watched:
        done = prune(store, batch=10)
    assert watched.deleting("events") == [10, 10, 10, 5]
    assert watched.deleting("webhook_deliveries") == [10, 10, 10, 5]
    assert (done.events, done.deliveries, done.evidence, done.transactions) == (35, 35, 35, 9)  # + transfers: none
    assert names(store) == {"young"} and deliveries(store) == {}


def test_deliveries_received_in_the_same_instant_all_go_across_batches(store):
    for n in range(25):  # a group commit stamps a whole batch of deliveries with one time
        record(store, f"together-{n}", OLD)
        deliver(store, n, "delivered", delivered_at=OLD)
    record(store, "young", YOUNG)
    done = prune(store, batch=10)
    assert (done.events, done.deliveries) == (25, 25)
    assert names(store) == {"young"} and deliveries(store) == {}


def test_a_turn_stops_after_its_batches_and_says_more_is_due(store):
    for n in range(25):
        record(store, f"old-{n}", OLD + timedelta(seconds=n))
    record(store, "young", YOUNG)
    first = retention.prune(Retention.of(store), CUTOFF, batch=10, max_batches=2)
    assert (first.events, first.more) == (20, True) and len(names(store)) == 6
    second = retention.prune(Retention.of(store), CUTOFF, batch=10, max_batches=2)
    assert (second.events, second.more) == (5, False) and names(store) == {"young"}


def test_the_newest_event_is_kept_so_its_id_is_never_handed_out_again(store):
    first = record(store, "old-1", OLD)
    newest = record(store, "old-2", OLD)
    prune(store)
    assert names(store) == {"old-2"}
    assert record(store, "next", YOUNG) > newest > first


# A store sending again an event that was pruned: the real webhook path, really authorized.
def send(app, evt) -> str:
    response = app.test_client().post("/webhooks/revenuecat", data=rc.body(evt),
                                      headers={"Authorization": rc.AUTH, "Content-Type": "application/json"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["status"]


def state(app, store) -> tuple:
    """What a reader sees: the entitlements, the feed, and the subscription rows."""
    read = app.test_client().get("/v1/users/user-1/entitlements", headers={"Authorization": f"Bearer {API_KEY}"})
    with Retention.of(store).engine.connect() as connection:
        feed = connection.execute(sa.select(sa.func.count()).select_from(tables.entitlement_events)).scalar_one()
        subscriptions = connection.execute(sa.select(tables.subscriptions).order_by(
            tables.subscriptions.c.source, tables.subscriptions.c.key)).all()
    return read.get_json(), feed, [tuple(row) for row in subscriptions]


@pytest.mark.parametrize("ending", [
    {"type": "EXPIRATION", "expiration_reason": "UNSUBSCRIBE"},
    {"type": "CANCELLATION", "cancel_reason": "UNSUBSCRIBE"},
    {"type": "CANCELLATION", "cancel_reason": "CUSTOMER_SUPPORT"},
], ids=["expired", "cancelled", "refunded"])
def test_a_pruned_event_sent_again_changes_nothing(app, store, ending):
    now_ms = int(NOW.timestamp() * 1000)
    ending = dict(ending)
    kind = ending.pop("type")
    purchase = rc.event("INITIAL_PURCHASE", at_ms=now_ms - 2 * 86_400_000)
    later = rc.event(kind, at_ms=now_ms - 86_400_000, expiration_at_ms=now_ms - 60_000, **ending)
    assert [send(app, purchase), send(app, later)] == ["processed", "processed"]
    send(app, rc.event("INITIAL_PURCHASE", user="user-2", transaction="2000002"))  # the newest stays
    before = state(app, store)
    assert before[0]["is_premium"] is False

    done = retention.prune(Retention.of(store), utcnow() + timedelta(seconds=1))

    assert done.events == 2 and len(names(store)) == 1
    # Recorded anew (not a duplicate: the log no longer knows them), and nothing moves.
    assert [send(app, purchase), send(app, later)] == ["processed", "processed"]
    assert state(app, store) == before


# An operator's replay of an old delivery (`events replay`, the admin's button) meeting the prune.
def aged_purchase(app, store, user: str, transaction: str):
    """A purchase applied through the webhook, then made older than the retention, with a
    younger delivery after it (the newest event is never pruned); the event as a replay
    loads it."""
    purchase = rc.event("INITIAL_PURCHASE", user=user, transaction=transaction)
    assert send(app, purchase) == "processed"
    send(app, rc.event("RENEWAL", user=f"{user}-other", transaction=f"{transaction}9"))
    with Retention.of(store).engine.begin() as connection:
        connection.execute(sa.update(tables.events).where(tables.events.c.event_id == purchase["id"])
                           .values(received_at=OLD))
        pk = connection.execute(sa.select(tables.events.c.id).where(
            tables.events.c.event_id == purchase["id"])).scalar_one()
    with store.transaction(readonly=True) as tx:
        return tx.get_event(pk)


def replay(app, event) -> dict:
    services = app.extensions["gateway"]
    return dict(retry.replay(services.ingest, services.providers, [event]))


def premium(app, user: str) -> bool:
    answer = app.test_client().get(f"/v1/users/{user}/entitlements", headers={"Authorization": f"Bearer {API_KEY}"})
    return answer.get_json()["is_premium"]


def test_a_replay_of_an_event_pruned_after_it_was_read_says_gone_and_changes_nothing(app, store):
    event = aged_purchase(app, store, "user-1", "1000001")
    before = state(app, store)

    assert prune(store).events == 1  # after the operator's replay read it, before it applies it

    assert replay(app, event) == {"gone": 1}
    assert event.id not in evidence(store)  # no evidence left pointing at a deleted event
    assert event.event_id not in names(store)
    assert state(app, store) == before


def test_a_replay_and_the_prune_released_together_tell_one_story(app, store):
    """Either the replay holds the event first (applied again; the prune passes over it, or
    deletes it with its evidence once the replay has committed) or the prune deletes it
    first (the replay says gone and writes nothing): never a failure, never evidence of a
    deleted event."""
    seen = set()
    for n in range(8):
        user = f"racer-{n}"
        event = aged_purchase(app, store, user, f"30000{n}")
        gate, outcome = threading.Barrier(2), {}

        def pruner():
            gate.wait()
            prune(store)

        def replayer():
            gate.wait()
            outcome.update(replay(app, event))

        threads = [threading.Thread(target=pruner), threading.Thread(target=replayer)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        kept = event.event_id in names(store)
        assert outcome in ({"processed": 1}, {"gone": 1}), (n, outcome)
        assert not (kept and outcome == {"gone": 1}), n
        assert (event.id in evidence(store)) == kept, (n, outcome, kept)
        assert premium(app, user)
        seen.add((next(iter(outcome)), kept))
        prune(store)  # what a run left goes on the next
        assert event.id not in evidence(store) and event.event_id not in names(store)
    print(f"stories seen (outcome, event kept): {sorted(seen)}")


@pytest.mark.skipif(DATABASE != "postgresql",
                    reason="SQLite locks the whole database: nothing can be pruned while a replay waits")
def test_an_operators_replay_of_a_delivery_pruned_while_it_waited_goes_back_to_the_list(make_app):
    """Through the admin page: the operator's replay waits for the subscription's lock (another
    delivery of it is being applied); meanwhile the prune deletes the event. The page says
    so and goes back to the list; nothing is written."""
    app = make_app(ADMIN_PASSWORD=admin.PASSWORD, ADMIN_SECRET_KEY=admin.SECRET_KEY,
                   REVENUECAT_WEBHOOK_AUTH=rc.AUTH, GATEWAY_API_KEYS=API_KEY)
    store = app.extensions["gateway"].store
    event = aged_purchase(app, store, "user-1", "1000001")
    before = state(app, store)
    with store.transaction(readonly=True) as tx:
        (subscription,) = tx.event_links([event.id])[event.id]
    operator = app.test_client()
    admin.sign_in(operator)
    form = {"csrf_token": admin.token(operator, f"/admin/deliveries/{event.id}")}
    answer = {}
    replaying = threading.Thread(target=lambda: answer.update(
        page=operator.post(f"/admin/deliveries/{event.id}/replay", data=form)))
    with store.transaction() as tx:
        assert tx.lock_subscriptions([subscription])[subscription] is not None
        replaying.start()
        waiting_for_a_lock(store)
        assert prune(store).events == 1
    replaying.join(timeout=30)

    assert answer["page"].status_code == 302
    assert answer["page"].headers["Location"].endswith("/admin/deliveries")
    listed = operator.get("/admin/deliveries").get_data(as_text=True)
    assert f"Delivery {event.id} is no longer in the log (the retention deleted it): nothing was replayed." in listed
    assert event.id not in evidence(store) and event.event_id not in names(store)
    assert state(app, store) == before


def waiting_for_a_lock(store) -> None:
    """Returns once a session of this database waits for a lock."""
    deadline = time.monotonic() + 10
    with Retention.of(store).engine.connect() as connection:
        while not connection.execute(WAITING).scalar_one():
            assert time.monotonic() < deadline, "the replay never waited for the subscription's lock"
            time.sleep(0.01)
            connection.rollback()


# The command line.
def run(app, *args) -> str:
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_dry_run_counts_and_changes_nothing_then_prune_deletes_in_batches(app, store):
    for n in range(5):
        record(store, f"old-{n}", OLD + timedelta(seconds=n))
    record(store, "old-deferred", OLD, status="deferred")
    record(store, "young", YOUNG)
    deliver(store, 1, "delivered", delivered_at=OLD)
    deliver(store, 2, "pending")
    with store.transaction() as tx:
        tx.record_transfer(Transfer("revenuecat", ("user-1",), "user-2", OLD - timedelta(days=40)), NOW)
    assert run(app, "events", "prune", "--dry-run").startswith(
        "would delete: events 5, their evidence rows 5, delivered webhooks 1, transfers 1, feed events 0, "
        "expired checkout sessions 0 ")
    assert len(names(store)) == 7 and len(evidence(store)) == 7 and len(deliveries(store)) == 2
    output = run(app, "events", "prune", "--batch", "2")
    assert output.startswith("deleted: events 5, their evidence rows 5, delivered webhooks 1, transfers 1, "
                             "feed events 0, expired checkout sessions 0; 7 transactions,")
    assert names(store) == {"old-deferred", "young"} and deliveries(store) == {2: "pending"}


def test_retention_zero_keeps_everything(make_app):
    app = make_app(EVENTS_RETENTION_DAYS="0", FEED_RETENTION_DAYS="0")
    store = app.extensions["gateway"].store
    record(store, "ancient", NOW - timedelta(days=5000))
    record(store, "young", YOUNG)
    assert "every event is kept" in run(app, "events", "prune")
    assert worker.chores(app.extensions["gateway"], timedelta(seconds=120))["events_prune"]() == 0
    assert names(store) == {"ancient", "young"}


@pytest.mark.parametrize("days", ["0", "90"])
def test_the_worker_forgets_the_checkout_sessions_stripe_has_expired(make_app, days):
    """A session is kept for an account deletion to expire it; past Stripe's 24 hours it is
    nobody's to pay, and goes, whatever the event log's retention."""
    app = make_app(EVENTS_RETENTION_DAYS=days, FEED_RETENTION_DAYS=days)
    store, now = app.extensions["gateway"].store, utcnow()
    made = _sessions_handed_out(store, now)
    assert worker.chores(app.extensions["gateway"], timedelta(seconds=120))["events_prune"]() == 2
    assert _sessions_held(store, made, now) == {"cs_hour_old"}


def _sessions_handed_out(store, now) -> dict[str, datetime]:
    """Three Checkout Sessions, as the checkout records each (a user of their own): one
    Stripe still lets its user pay, two it has expired."""
    made = {"cs_day_old": now - timedelta(hours=24, seconds=5), "cs_hour_old": now - timedelta(hours=1),
            "cs_week_old": now - timedelta(days=7)}
    for session_id, at in made.items():
        with store.transaction() as tx:
            tx.note_checkout_session(f"user-{session_id}", session_id, "cus_1", at, at - timedelta(hours=24))
    return made


def _sessions_held(store, made, now) -> set[str]:
    with store.transaction(readonly=True) as tx:
        return {found for session_id in made
                for found in tx.checkout_sessions_of(f"user-{session_id}", now - timedelta(days=30))}


@pytest.mark.parametrize("days", ["0", "90"])
def test_the_command_line_forgets_the_checkout_sessions_stripe_has_expired(make_app, days):
    """As the worker does, whatever the event log's retention: counted by --dry-run, then gone."""
    app = make_app(EVENTS_RETENTION_DAYS=days, FEED_RETENTION_DAYS=days)
    store, now = app.extensions["gateway"].store, utcnow()
    made = _sessions_handed_out(store, now)
    assert "expired checkout sessions 2" in run(app, "events", "prune", "--dry-run")
    assert _sessions_held(store, made, now) == set(made)
    assert "expired checkout sessions 2;" in run(app, "events", "prune", "--batch", "1")
    assert _sessions_held(store, made, now) == {"cs_hour_old"}


def test_the_worker_prunes_in_its_chores(app, store):
    record(store, "old", OLD)
    record(store, "young", YOUNG)
    chores = worker.chores(app.extensions["gateway"], timedelta(seconds=120))
    assert chores["events_prune"]() == 1 and names(store) == {"young"}
    record(store, "old-2", OLD)
    assert chores["events_prune"]() == 0  # not due again for an hour
    assert names(store) == {"old-2", "young"}


@pytest.mark.parametrize("value", ["30", "1", "-5", "ninety"])
def test_a_retention_shorter_than_the_stores_redeliver_is_refused_at_start(database_url, value):
    with pytest.raises(ConfigError, match="EVENTS_RETENTION_DAYS"):
        from_env({"DATABASE_URL": database_url, "EVENTS_RETENTION_DAYS": value})


def test_the_retention_defaults_to_ninety_days_and_takes_the_minimum(database_url):
    assert from_env({"DATABASE_URL": database_url}).events_retention_days == 90
    assert from_env({"DATABASE_URL": database_url, "EVENTS_RETENTION_DAYS": "31"}).events_retention_days == 31
