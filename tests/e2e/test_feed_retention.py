"""The feed's retention (FEED_RETENTION_DAYS): old entitlement events are deleted in batches,
except what an outgoing webhook or a consumer of the gateway has not had yet and the newest
event; a reader whose cursor is older than the feed answers 410 instead of skipping events."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from gateway.clock import utcnow
from gateway.config import ConfigError, from_env
from gateway.domain.entitlement_events import FeedEvent, new_id
from gateway.domain.webhooks import Endpoint
from gateway.jobs import retention, sign_out, worker
from gateway.store import tables
from gateway.store.outbox import Outbox
from gateway.store.retention import Retention
from gateway.store.sql import transactional
from gateway.web import schemas
from tests.conftest import DATABASE
from tests.e2e.conftest import API_KEY
from tests.e2e.test_retention import Transactions, run, waiting_for_a_lock

NOW = utcnow()
OLD, YOUNG = NOW - timedelta(days=100), NOW - timedelta(days=1)
CUTOFF = retention.cutoff(90, NOW)
KEY = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def app(make_app):
    return make_app(GATEWAY_API_KEYS=API_KEY)


@pytest.fixture
def store(app):
    return app.extensions["gateway"].store


def append(store, user: str, occurred_at=OLD) -> int:
    """A feed event written as a change writes it (the clock taken last); its position."""
    with store.transaction() as tx:
        last, _ = tx.take_feed_positions(1)
        tx.append_feed([FeedEvent(new_id(), "entitlement.granted", user, "premium", None, {"active": True},
                                  {"kind": "gateway"}, occurred_at, last + 1)])
    return last + 1


def kept(store) -> list[int]:
    with Retention.of(store).engine.connect() as connection:
        return list(connection.execute(sa.select(tables.entitlement_events.c.position).order_by(
            tables.entitlement_events.c.position)).scalars())


def pruned_through(store) -> int:
    with store.transaction(readonly=True) as tx:
        return tx.feed_pruned_through()


def prune(store, cutoff=CUTOFF, batch: int = retention.BATCH, cursors=()) -> retention.Report:
    """The feed's retention alone (the event log's cutoff None)."""
    return retention.prune(Retention.of(store), None, batch, feed_cutoff=cutoff, cursors=cursors)


def endpoint(store, name: str, position: int, enabled: bool = True) -> None:
    with Retention.of(store).engine.begin() as connection:
        connection.execute(sa.insert(tables.webhook_endpoints).values(
            name=name, url=f"https://{name}.example.com/hook", secrets=["whsec_x"], event_types=None,
            enabled=enabled, origin="env", position=position, created_at=OLD, updated_at=OLD))


def owed(store, position: int, user: str, status: str, name: str = "backend") -> None:
    """An outgoing delivery row, as the outbox leaves it."""
    with Retention.of(store).engine.begin() as connection:
        connection.execute(sa.insert(tables.webhook_deliveries).values(
            endpoint=name, position=position, user_sub=user, status=status, attempts=1,
            next_attempt_at=None if status == "delivered" else NOW, created_at=OLD, queued_at=OLD,
            delivered_at=OLD if status == "delivered" else None))


def test_old_events_go_and_the_newest_stays_however_old(store):
    for n in range(4):
        append(store, f"user-{n}")
    done = prune(store)
    assert kept(store) == [4] and done.feed == 3 and pruned_through(store) == 3
    assert prune(store).feed == 0  # the newest stays: a cursor on it stays valid


def test_events_go_up_to_the_first_young_one(store):
    append(store, "user-1", CUTOFF - timedelta(seconds=1))
    append(store, "user-2", CUTOFF + timedelta(seconds=1))
    append(store, "user-3", OLD)  # an expiry reported late carries its period's end: after a young one, it waits
    append(store, "user-4", YOUNG)
    assert prune(store).feed == 1 and kept(store) == [2, 3, 4]


@pytest.mark.parametrize("status", ["pending", "failed"])
def test_an_event_a_webhook_still_owes_stays_with_that_users_later_ones(store, status):
    """Pending (being retried) or failed (parked until ``webhooks replay``): the claim reads
    the event to send it, and the user's later events wait behind it."""
    users = ["user-1", "user-2", "user-1", "user-2", "user-3", "user-9"]
    for user in users:
        append(store, user)
    endpoint(store, "backend", 6)
    owed(store, 1, "user-1", "delivered")
    owed(store, 2, "user-2", status)
    owed(store, 3, "user-1", "delivered")
    done = prune(store)
    assert kept(store) == [2, 4, 6] and done.feed == 3
    assert pruned_through(store) == 5


def test_an_enabled_endpoint_holds_what_it_has_not_fanned_out_and_a_disabled_one_nothing(store):
    for n in range(6):
        append(store, f"user-{n}")
    endpoint(store, "behind", 3)
    endpoint(store, "switched-off", 1, enabled=False)
    assert prune(store).feed == 3 and kept(store) == [4, 5, 6]


def test_through_the_outbox_an_event_goes_once_delivered_to_every_endpoint(store):
    outbox, later = Outbox.of(store), NOW + timedelta(hours=1)
    outbox.sync([Endpoint("one", "https://one.example.com/hook", ("whsec_x",)),
                 Endpoint("two", "https://two.example.com/hook", ("whsec_x",))], NOW)
    for user in ("user-1", "user-2", "user-3"):
        append(store, user)
    assert outbox.fan_out(NOW) == 6
    assert prune(store).feed == 0  # fanned out, owed to both

    claimed = [c for c in outbox.claim(NOW, later, 10) if c.event.position == 1 or c.endpoint.name == "one"]
    outbox.settle([(c, None, None) for c in claimed], NOW)  # position 1 to both; 2 and 3 to "one" only
    assert prune(store).feed == 1 and kept(store) == [2, 3]


def test_a_consumer_of_the_gateway_holds_what_its_cursor_has_not_read(store):
    for n in range(5):
        append(store, f"user-{n}")
    with store.transaction() as tx:
        tx.move_feed_cursor(sign_out.CURSOR, 2, NOW)
    assert prune(store, cursors=(sign_out.CURSOR,)).feed == 2 and kept(store) == [3, 4, 5]
    assert prune(store).feed == 2 and kept(store) == [5]  # switched off, its cursor holds nothing


def test_the_sign_out_holds_the_feed_while_it_is_on(database_url, cognito):
    on = from_env({"DATABASE_URL": database_url, "COGNITO_SIGN_OUT_ON_REVOKE": "true", **cognito.env()})
    assert retention.feed_consumers(on) == (sign_out.CURSOR,)
    assert retention.feed_consumers(from_env({"DATABASE_URL": database_url, **cognito.env()})) == ()


def test_events_since_the_expiry_sweeps_mark_stay(store):
    """The sweep asks whether each lapse it reports was told by a later event: an event
    after its mark may be that one."""
    for n in range(3):
        append(store, f"user-{n}")
    with Retention.of(store).engine.begin() as connection:
        connection.execute(sa.update(tables.feed_clock).values(expiries_through=OLD - timedelta(days=1)))
    assert prune(store).feed == 0
    with Retention.of(store).engine.begin() as connection:
        connection.execute(sa.update(tables.feed_clock).values(expiries_through=NOW))
    assert prune(store).feed == 2


def test_a_batch_is_one_transaction_and_the_run_stops_after_its_batches(store):
    for n in range(8):
        append(store, f"user-{n}")
    first = retention.prune(Retention.of(store), None, 2, max_batches=2, feed_cutoff=CUTOFF)
    assert (first.feed, first.more) == (4, True) and pruned_through(store) == 4
    with Transactions(Retention.of(store).engine) as watched:
        second = prune(store, batch=2)
    assert watched.deleting("entitlement_events") == [2, 1]
    assert (second.feed, second.more) == (3, False) and kept(store) == [8] and pruned_through(store) == 7


# The reader's side.
def read(app, **query):
    return app.test_client().get("/v1/events", query_string=query, headers=KEY)


def test_a_cursor_older_than_the_feed_answers_410_and_one_inside_it_reads_on(app, store):
    for user in ("user-1", "user-2", "user-1", "user-3"):
        append(store, user)
    for user in ("user-4", "user-5"):
        append(store, user, YOUNG)
    endpoint(store, "backend", 6)
    owed(store, 2, "user-2", "failed")  # kept below the pruned ones
    assert prune(store).feed == 3 and kept(store) == [2, 5, 6] and pruned_through(store) == 4

    for cursor in (0, 1, 2, 3):
        answer = read(app, after=cursor)
        assert answer.status_code == 410, cursor
        body = answer.get_json()
        assert (body["error"], body["oldest"], body["newest"]) == ("cursor_expired", "4", "6")
        assert "GET /v1/users/<sub>/entitlements" in body["message"]
        assert schemas.CursorExpired().validate(body) == {}
    assert read(app, after=1, wait=5).status_code == 410  # at once, not after the wait

    for cursor, positions in ((4, ["5", "6"]), (5, ["6"]), (6, [])):
        answer = read(app, after=cursor)
        assert answer.status_code == 200, cursor
        assert [e["position"] for e in answer.get_json()["events"]] == positions
    first = read(app, limit=1).get_json()  # no cursor: from the oldest event kept, past the held one
    assert [e["position"] for e in first["events"]] == ["5"] and first["next"] == "5"
    for query in ({"after": "-1"}, {"after": "x"}, {"after": ""}, {"after": str(2**63)}):
        answer = read(app, **query)
        assert (answer.status_code, answer.get_json()["error"]) == (400, "bad_query"), query


def test_a_feed_never_pruned_answers_every_cursor_as_before(app, store):
    for user in ("user-1", "user-2"):
        append(store, user)
    assert [e["position"] for e in read(app, after=0).get_json()["events"]] == ["1", "2"]
    assert read(app).get_json() == read(app, after=0).get_json()


# The worker, the command line, the settings.
def test_the_worker_prunes_the_feed_even_with_the_event_log_kept_whole(make_app):
    app = make_app(EVENTS_RETENTION_DAYS="0")
    store = app.extensions["gateway"].store
    for user in ("user-1", "user-2"):
        append(store, user)
    chores = worker.chores(app.extensions["gateway"], timedelta(seconds=120))
    assert chores["events_prune"]() == 1 and kept(store) == [2]
    assert run(app, "events", "prune", "--dry-run").startswith(
        "would delete: feed events 0, expired checkout sessions 0 (the event log is kept)")


def test_the_command_line_counts_then_deletes_feed_events(app, store):
    for user in ("user-1", "user-2", "user-3"):
        append(store, user)
    assert "feed events 2, expired checkout sessions 0 (received" in run(app, "events", "prune", "--dry-run") and len(kept(store)) == 3
    assert "feed events 2, expired checkout sessions 0;" in run(app, "events", "prune", "--batch", "1") and kept(store) == [3]


def test_zero_keeps_the_feed_whole(make_app):
    app = make_app(FEED_RETENTION_DAYS="0", EVENTS_RETENTION_DAYS="0")
    store = app.extensions["gateway"].store
    for user in ("user-1", "user-2"):
        append(store, user)
    assert "every event is kept" in run(app, "events", "prune")
    assert worker.chores(app.extensions["gateway"], timedelta(seconds=120))["events_prune"]() == 0
    assert kept(store) == [1, 2]


@pytest.mark.parametrize("value", ["6", "1", "-5", "ninety"])
def test_a_feed_retention_shorter_than_a_week_is_refused_at_start(database_url, value):
    with pytest.raises(ConfigError, match="FEED_RETENTION_DAYS"):
        from_env({"DATABASE_URL": database_url, "FEED_RETENTION_DAYS": value})


def test_the_feed_retention_defaults_to_ninety_days_and_takes_the_minimum(database_url):
    assert from_env({"DATABASE_URL": database_url}).feed_retention_days == 90
    assert from_env({"DATABASE_URL": database_url, "FEED_RETENTION_DAYS": "7"}).feed_retention_days == 7
    assert from_env({"DATABASE_URL": database_url, "FEED_RETENTION_DAYS": "0"}).feed_retention_days == 0


@pytest.mark.skipif(DATABASE != "postgresql", reason="SQLite has one writer at a time")
def test_a_batch_holding_its_rows_makes_no_writer_of_new_events_wait(app, store):
    """A batch is held open between its delete and its commit (the row it raises is locked
    by another session): meanwhile a change appends its event, and a reader reads the feed
    as it was, neither waiting on the batch."""
    for n in range(4):
        append(store, f"user-{n}")
    engine = Retention.of(store).engine
    with engine.begin() as connection:
        connection.execute(sa.insert(tables.feed_retention).values(id=1, pruned_through=0))
    done = {}
    with engine.connect() as connection:
        holder = transactional(connection)  # the engine's connections are in autocommit
        holder.begin()
        holder.execute(sa.text("SELECT 1 FROM feed_retention WHERE id = 1 FOR UPDATE"))
        batch = threading.Thread(target=lambda: done.update(report=prune(store)))
        batch.start()
        waiting_for_a_lock(store)  # the batch has deleted its rows and waits to commit

        appended = threading.Thread(target=lambda: done.update(position=append(store, "user-new", YOUNG)))
        appended.start()
        appended.join(timeout=10)
        assert done.get("position") == 5, "a writer of new events waited on the prune's batch"
        assert [e["position"] for e in read(app, after=0).get_json()["events"]] == ["1", "2", "3", "4", "5"]
        holder.rollback()
    batch.join(timeout=10)
    assert done["report"].feed == 3 and kept(store) == [4, 5] and read(app, after=0).status_code == 410
