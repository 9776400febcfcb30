"""The feed's retention racing its readers and writers, on PostgreSQL with real concurrency:
the prune runs through a gateway of its own (its own engine and connections), released
together with the other side by a barrier (``tests/e2e/test_races.together``)."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from gateway.clock import utcnow
from gateway.domain.webhooks import Endpoint
from gateway.jobs import retention
from gateway.store import tables
from gateway.store.outbox import Outbox
from gateway.store.retention import Retention
from tests.conftest import DATABASE
from tests.e2e.conftest import API_KEY
from tests.e2e.test_feed_retention import CUTOFF, KEY, YOUNG, append, kept, pruned_through
from tests.e2e.test_races import together

pytestmark = pytest.mark.skipif(DATABASE != "postgresql", reason="SQLite has one writer at a time")

OLD_EVENTS = 300


def pruning(app, done: threading.Event, batch: int = 1) -> retention.Report:
    """The feed's retention through ``app``'s store, one event per transaction (a commit
    for every reader's page to meet), then ``done`` set."""
    try:
        return retention.prune(Retention.of(app.extensions["gateway"].store), None, batch, feed_cutoff=CUTOFF)
    finally:
        done.set()


def reading_at_the_floor(app, done: threading.Event) -> dict[str, int]:
    """Read the feed from the oldest cursor still valid, again and again while the prune
    runs: every page answered is the events right after the cursor, with no gap, or 410
    with where the feed starts now. The answers counted."""
    client, cursor, seen = app.test_client(), 0, {"pages": 0, "expired": 0}
    while not done.is_set():
        answer = client.get("/v1/events", query_string={"after": cursor, "limit": 3}, headers=KEY)
        if answer.status_code == 410:
            body = answer.get_json()
            assert body["error"] == "cursor_expired" and int(body["oldest"]) > cursor, body
            cursor, seen["expired"] = int(body["oldest"]), seen["expired"] + 1
            continue
        assert answer.status_code == 200, answer.get_data(as_text=True)
        positions = [int(event["position"]) for event in answer.get_json()["events"]]
        assert positions == list(range(cursor + 1, cursor + 1 + len(positions))), (cursor, positions)
        seen["pages"] += 1
    return seen


def test_a_page_read_while_a_prune_commits_answers_410_and_never_skips_an_event(make_app):
    """The reader's page and the floor are two statements: read in that order, a batch that
    commits between them shows in the floor, so the page that missed its events is not
    answered. Read the other way round (the floor first), a page from a cursor the floor
    had not passed yet skips the event the batch just deleted, answered 200."""
    reader, pruner = (make_app(GATEWAY_API_KEYS=API_KEY) for _ in range(2))
    store = reader.extensions["gateway"].store
    for n in range(OLD_EVENTS):
        append(store, f"user-{n % 7}")
    append(store, "user-young", YOUNG)
    done = threading.Event()
    report, seen = together(lambda: pruning(pruner, done), lambda: reading_at_the_floor(reader, done))
    assert report.feed == OLD_EVENTS and kept(store) == [OLD_EVENTS + 1]
    assert seen["pages"] > 10 and seen["expired"] > 10, seen  # the two really overlapped


def enabling_and_fanning_out(app, names: list[str]) -> int:
    """The admin switching each endpoint on again, one after the other, and the worker's
    fan-out after each (through ``app``, another gateway than the prune's): the deliveries
    queued."""
    store = app.extensions["gateway"].store
    outbox, queued = Outbox.of(store), 0
    while pruned_through(store) == 0:  # until the prune has taken its bound, the endpoints all off
        time.sleep(0.001)
    for name in names:
        outbox.save(Endpoint(name, f"https://{name}.example.com/hook", ("whsec_x",)), utcnow())
        queued += outbox.fan_out(utcnow())
    return queued


def deliveries_of_deleted_events(store) -> list[tuple[str, int]]:
    """Deliveries still to send (a claim reads their event) whose event is gone."""
    d, f = tables.webhook_deliveries.c, tables.entitlement_events.c
    with Retention.of(store).engine.connect() as connection:
        return list(connection.execute(sa.select(d.endpoint, d.position).where(
            d.status != "delivered", ~sa.exists().where(f.position == d.position)).order_by(d.endpoint, d.position)))


def test_an_endpoint_switched_on_while_the_feed_is_pruned_is_never_queued_an_event_the_prune_deletes(make_app):
    """The prune's bound leaves out a disabled endpoint (README: one enabled again goes on
    with the events kept). Switched on while a prune deletes below that bound, its fan-out
    reads the feed from its old place: an event a batch has deleted and not yet committed
    is still there to that read, and was queued. Its delivery then named an event that was
    gone, and every claim that took it failed (KeyError), so that endpoint's webhooks
    stopped for good. Each endpoint's first fan-out meets a different batch."""
    pruner, gateway = (make_app(GATEWAY_API_KEYS=API_KEY) for _ in range(2))
    store, outbox = gateway.extensions["gateway"].store, Outbox.of(gateway.extensions["gateway"].store)
    names = [f"switched-off-{n}" for n in range(12)]
    for name in names:
        outbox.save(Endpoint(name, f"https://{name}.example.com/hook", ("whsec_x",), enabled=False), utcnow())
    for n in range(OLD_EVENTS):
        append(store, f"user-{n % 7}")
    append(store, "user-young", YOUNG)
    done = threading.Event()
    report, queued = together(lambda: pruning(pruner, done), lambda: enabling_and_fanning_out(gateway, names))
    assert 0 < report.feed, (report, queued)  # the prune ran beside the fan-outs
    assert deliveries_of_deleted_events(store) == []
    claimed = outbox.claim(utcnow(), utcnow() + timedelta(minutes=1), 10_000)
    assert len(claimed) == len({(c.endpoint.name, c.event.user_id) for c in claimed})  # one per user, in order


def fanned_out_with_failures(store, failing: set[str]) -> None:
    """Every event queued to an endpoint; the users' of ``failing`` first delivery parked
    failed (its later ones held behind it), every other delivery delivered."""
    outbox = Outbox.of(store)
    outbox.save(Endpoint("backend", "https://backend.example.com/hook", ("whsec_x",)), utcnow())
    for n in range(OLD_EVENTS):
        append(store, user_of(n))
    append(store, "user-young", YOUNG)
    assert outbox.fan_out(utcnow()) == OLD_EVENTS + 1
    d = tables.webhook_deliveries.c
    with Retention.of(store).engine.begin() as connection:
        connection.execute(sa.update(tables.webhook_deliveries).where(d.user_sub.not_in(failing))
                           .values(status="delivered", delivered_at=utcnow()))
        first = sa.select(sa.func.min(d.position)).where(d.user_sub.in_(failing)).group_by(d.user_sub)
        connection.execute(sa.update(tables.webhook_deliveries).where(d.position.in_(first)).values(status="failed"))


def user_of(n: int) -> str:
    """The user of the ``n``th old event: two whose events start inside the feed (positions
    101 and 201), the rest in turn."""
    return {100: "user-x", 150: "user-x", 200: "user-y", 250: "user-y"}.get(n, f"user-{n % 7}")


def replaying_failed(app) -> str:
    """``flask webhooks replay --failed`` through ``app`` once the prune has passed the
    first failed delivery's event and not yet the second's."""
    while pruned_through(app.extensions["gateway"].store) < 170:
        time.sleep(0.001)
    result = app.test_cli_runner().invoke(args=["webhooks", "replay", "--failed"])
    assert result.exit_code == 0, result.output
    return result.output


def test_failed_deliveries_replayed_while_the_feed_is_pruned_keep_their_events(make_app):
    """A failed delivery holds its event and the user's later ones, as a pending one does:
    the replay turning it pending changes nothing the prune judges by, whichever commits
    first."""
    pruner, gateway = (make_app(GATEWAY_API_KEYS=API_KEY) for _ in range(2))
    store, failing = gateway.extensions["gateway"].store, {"user-x", "user-y"}
    fanned_out_with_failures(store, failing)
    done = threading.Event()
    report, output = together(lambda: pruning(pruner, done), lambda: replaying_failed(gateway))
    assert "2" in output and report.feed > 0
    assert deliveries_of_deleted_events(store) == []
    f = tables.entitlement_events.c
    with Retention.of(store).engine.connect() as connection:
        kept_of_failing = connection.execute(sa.select(sa.func.count()).where(f.user_sub.in_(failing))).scalar_one()
    assert kept_of_failing == 4
    claimed = Outbox.of(store).claim(utcnow(), utcnow() + timedelta(minutes=1), 100)
    assert sorted(c.event.user_id for c in claimed) == sorted(failing)  # each user's first, replayed
