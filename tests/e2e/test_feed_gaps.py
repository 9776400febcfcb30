"""What the feed's retention leaves to the readers it does not wait for: an outgoing webhook
endpoint that was disabled, or the Cognito sign-out that was switched off, while events were
pruned. Enabled again, neither passes over the deleted events without a word: each stops,
says so (log, admin, CLI) and holds the feed until an operator skips the gap. Delivered rows
whose event was pruned are still listed."""
from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from gateway.domain.entitlement_events import GRANTED, REVOKED, FeedEvent, new_id
from gateway.domain.webhooks import Endpoint
from gateway.jobs import sign_out
from gateway.outbound.worker import Deliverer
from gateway.store import tables
from gateway.store.outbox import Outbox
from tests.conftest import DATABASE
from tests.e2e.test_admin import PASSWORD, SECRET_KEY, sign_in, token
from tests.e2e.test_feed_retention import NOW, OLD, YOUNG, kept, prune, pruned_through
from tests.e2e.test_retention import run

BACKEND = Endpoint("backend", "https://backend.example.com/hook", ("whsec_x",))
LATER = NOW + timedelta(days=30)  # a cutoff past every event: only what is held stays


@pytest.fixture
def app(make_app):
    return make_app(ADMIN_PASSWORD=PASSWORD, ADMIN_SECRET_KEY=SECRET_KEY)


@pytest.fixture
def store(app):
    return app.extensions["gateway"].store


def append(store, user: str, occurred_at=OLD, type_: str = GRANTED) -> int:
    with store.transaction() as tx:
        last, _ = tx.take_feed_positions(1)
        tx.append_feed([FeedEvent(new_id(), type_, user, "premium", None, {"active": type_ == GRANTED},
                                  {"kind": "gateway"}, occurred_at, last + 1)])
    return last + 1


def deliver_all(outbox: Outbox) -> None:
    """Every due delivery taken by the receiver."""
    claimed = outbox.claim(NOW, NOW + timedelta(hours=1), 100)
    outbox.settle([(c, None, None) for c in claimed], NOW)


def queued(outbox: Outbox) -> list[int]:
    return sorted(d.position for d in outbox.deliveries(status="pending", limit=100))


def an_endpoint_left_behind(store) -> Outbox:
    """``backend`` got events 1 to 3, was disabled while 4 to 6 were written and pruned with
    them, and is enabled again; event 7 is young, so kept."""
    outbox = Outbox.of(store)
    outbox.sync([BACKEND], NOW)
    for user in ("user-1", "user-2", "user-3"):
        append(store, user)
    assert outbox.fan_out(NOW) == 3
    deliver_all(outbox)
    outbox.sync([], NOW)  # taken out of OUTBOUND_WEBHOOKS: disabled, holding nothing
    for user in ("user-4", "user-5", "user-6"):
        append(store, user, type_=REVOKED)
    append(store, "user-7", YOUNG)
    assert prune(store).feed == 6 and pruned_through(store) == 6 and kept(store) == [7]
    assert outbox.behind() == {"backend": (3, 6)} and outbox.behind(enabled_only=True) == {}
    outbox.sync([BACKEND], NOW)  # configured again
    return outbox


def test_an_endpoint_enabled_again_after_a_prune_sends_nothing_until_its_gap_is_skipped(app, store, caplog):
    outbox = an_endpoint_left_behind(store)
    deliverer = Deliverer(outbox, [BACKEND])
    with caplog.at_level(logging.ERROR, "gateway.outbound"):
        assert deliverer.run_once() == 0 and deliverer.run_once() == 0
    told = [r for r in caplog.records if r.getMessage().startswith("webhook endpoint behind the feed")]
    assert len(told) == 1  # once per process, not every turn
    assert told[0].fields["endpoint"] == "backend" and told[0].fields["pruned_through"] == 6
    assert queued(outbox) == [] and outbox.behind(enabled_only=True) == {"backend": (3, 6)}

    append(store, "user-8")
    assert prune(store, cutoff=LATER).feed == 0 and kept(store) == [7, 8]  # it holds the feed meanwhile
    assert outbox.fan_out(NOW) == 0

    listed = run(app, "webhooks", "list")
    assert "BEHIND THE FEED: events after 3 through 6" in listed and "webhooks skip-gap backend" in listed
    assert "skipped the events after 3 through 6; it goes on after 6" in run(app, "webhooks", "skip-gap", "backend")
    assert outbox.behind() == {} and outbox.fan_out(NOW) == 2 and queued(outbox) == [7, 8]
    assert "not behind the feed: nothing skipped" in run(app, "webhooks", "skip-gap", "backend")
    missing = app.test_cli_runner().invoke(args=["webhooks", "skip-gap", "nobody"])
    assert missing.exit_code != 0 and "no endpoint nobody" in missing.output


def admin_page(app):
    """A signed-in admin's client, and /admin/webhooks as it shows."""
    client = app.test_client()
    sign_in(client)
    return client, client.get("/admin/webhooks").get_data(as_text=True)


def test_the_admin_shows_an_endpoint_behind_the_feed_and_the_command_that_lets_it_go_on(app, store):
    outbox = an_endpoint_left_behind(store)
    client, page = admin_page(app)
    assert 'id="behind-backend"' in page and "deleted events after position\n    3, up to 6" in page
    assert "It sends nothing until" in page and "webhooks skip-gap backend" in page
    outbox.skip_gap("backend", NOW)
    assert 'id="behind-backend"' not in client.get("/admin/webhooks").get_data(as_text=True)


def test_an_endpoint_the_retention_waited_for_is_never_behind(store):
    outbox = Outbox.of(store)
    outbox.sync([BACKEND], NOW)
    for user in ("user-1", "user-2", "user-3"):
        append(store, user)
    assert prune(store).feed == 0  # not fanned out yet: held
    assert outbox.fan_out(NOW) == 3
    deliver_all(outbox)
    assert prune(store).feed == 2 and outbox.behind() == {}
    append(store, "user-4")
    assert outbox.fan_out(NOW) == 1


class Recorder:
    """Cognito's side of the sign-out: who was signed out."""

    def __init__(self) -> None:
        self.signed_out: list[str] = []

    def __call__(self, user_sub: str) -> bool:
        self.signed_out.append(user_sub)
        return True


def test_the_sign_out_switched_on_again_after_a_prune_signs_no_one_out_until_its_gap_is_skipped(
        app, store, caplog):
    cognito = Recorder()
    consumer = sign_out.SignOutOnRevoke(store, cognito)
    append(store, "user-1", type_=REVOKED)
    assert consumer.run_once() == 0  # switched on: from the head on
    append(store, "user-2", type_=REVOKED)
    assert consumer.run_once() == 1 and cognito.signed_out == ["user-2"]
    # Switched off: its cursor (2) holds nothing while revocations are written and pruned.
    for user in ("user-3", "user-4"):
        append(store, user, type_=REVOKED)
    append(store, "user-5", YOUNG, type_=REVOKED)
    assert prune(store).feed == 4 and pruned_through(store) == 4

    with caplog.at_level(logging.ERROR, "gateway.sign_out"):
        assert consumer.run_once() == 0 and consumer.run_once() == 0
    assert cognito.signed_out == ["user-2"]  # not user-5 past the deleted user-3 and user-4
    told = [r for r in caplog.records if r.getMessage().startswith("sign-out behind the feed")]
    assert len(told) == 1 and (told[0].fields["position"], told[0].fields["pruned_through"]) == (2, 4)
    append(store, "user-6", type_=REVOKED)
    assert prune(store, cutoff=LATER, cursors=(sign_out.CURSOR,)).feed == 0  # on, it holds the feed

    refused = app.test_cli_runner().invoke(args=["users", "sign-out-skip-gap"])
    assert refused.exit_code == 1 and "nothing skipped" in refused.output  # no pool to sign the gap's users out of
    assert "the events after 2 through 4 were deleted unread" in run(app, "users", "sign-out-skip-gap", "--list")
    assert consumer.run_once() == 0
    assert sign_out.skip_gap(store, sign_out.find_gap(store), cognito, NOW)
    assert consumer.run_once() == 2 and cognito.signed_out == ["user-2", "user-5", "user-6"]
    assert "not behind the feed" in run(app, "users", "sign-out-skip-gap")


def test_delivered_rows_whose_event_was_pruned_are_still_listed(app, store):
    """FEED_RETENTION_DAYS shorter than EVENTS_RETENTION_DAYS: a delivered row outlives its event."""
    outbox = Outbox.of(store)
    outbox.sync([BACKEND], NOW)
    for user in ("user-1", "user-2", "user-3"):
        append(store, user)
    outbox.fan_out(NOW)
    deliver_all(outbox)
    assert prune(store).feed == 2 and kept(store) == [3]
    listed = outbox.deliveries(limit=10)
    assert [(d.position, d.status, d.event_type) for d in listed] == [
        (3, "delivered", GRANTED), (2, "delivered", None), (1, "delivered", None)]
    lines = run(app, "webhooks", "deliveries").splitlines()
    assert len(lines) == 3 and "(event pruned)" in lines[2] and "user-1" in lines[2]


def test_a_delivery_whose_event_is_gone_is_parked_failed_and_the_others_are_sent(store):
    """The fan-out locks the events it queues, so the retention never deletes one a delivery
    names; a row left so anyway (a release before that lock, a hand-made delete) failed every
    claim that took it, and the endpoint sent nothing more to anyone. It is parked failed with
    the reason instead, and the other users' deliveries go."""
    outbox = Outbox.of(store)
    outbox.sync([BACKEND], NOW)
    positions = [append(store, user) for user in ("user-1", "user-2", "user-3")]
    outbox.fan_out(NOW)
    delete_event(outbox, positions[1])

    claimed = outbox.claim(NOW, NOW + timedelta(hours=1), 100)

    assert sorted(c.event.position for c in claimed) == [positions[0], positions[2]]
    (parked,) = outbox.deliveries(status="failed", limit=10)
    assert parked.position == positions[1] and "deleted by the feed's retention" in parked.last_error
    assert outbox.claim(NOW, NOW + timedelta(hours=1), 100) == []  # nothing left due, no failure


def delete_event(outbox: Outbox, position: int) -> None:
    """What a release before the fan-out's lock could leave: a delivery naming a deleted event."""
    with outbox.engine.begin() as connection:
        connection.execute(sa.delete(tables.entitlement_events).where(
            tables.entitlement_events.c.position == position))


def a_delivery_that_cannot_be_sent(store) -> Outbox:
    """user-1's delivery of event 1 is parked, its event gone; user-2's of 2 was delivered;
    user-1's of 3 waits behind the parked one."""
    outbox = Outbox.of(store)
    outbox.sync([BACKEND], NOW)
    append(store, "user-1")
    append(store, "user-2")
    assert outbox.fan_out(NOW) == 2
    delete_event(outbox, 1)
    deliver_all(outbox)
    append(store, "user-1", type_=REVOKED)
    assert outbox.fan_out(NOW) == 1
    assert outbox.claim(NOW, NOW + timedelta(hours=1), 100) == []  # 3 waits behind 1
    assert [(d.position, d.status) for d in outbox.deliveries(limit=10)] == [
        (3, "pending"), (2, "delivered"), (1, "failed")]
    return outbox


def test_a_delivery_whose_event_is_gone_holds_its_user_back_until_the_operator_drops_it(app, store, caplog):
    """It can never be sent: a replay sent it to the claim only to be parked again, and there
    was no way to let the user's later deliveries go (3 waited forever). A replay now leaves
    it and says why; ``webhooks drop`` deletes it, explicitly and logged, and 3 is sent."""
    outbox = a_delivery_that_cannot_be_sent(store)

    replayed = run(app, "webhooks", "replay", "--failed")
    assert "replayed 0 deliveries" in replayed
    assert "not replayed: backend 1 (user-1)" in replayed and "`flask webhooks drop backend 1`" in replayed
    (parked,) = outbox.deliveries(status="failed", limit=10)
    assert parked.position == 1 and parked.attempts == 1  # left as it was, not queued again
    assert outbox.claim(NOW, NOW + timedelta(hours=1), 100) == []

    with caplog.at_level(logging.WARNING, "gateway.outbound"):
        assert "backend: dropped 1 (user-1); user-1's later deliveries go on" in run(
            app, "webhooks", "drop", "backend", "1")
    (told,) = [r for r in caplog.records if r.getMessage() == "webhook delivery dropped"]
    assert told.fields == {"endpoint": "backend", "position": 1, "user_sub": "user-1"}
    assert [c.event.position for c in outbox.claim(NOW, NOW + timedelta(hours=1), 100)] == [3]

    again = app.test_cli_runner().invoke(args=["webhooks", "drop", "backend", "1"])
    assert again.exit_code != 0 and "not dropped: 1" in again.output


def test_a_failed_delivery_whose_event_is_kept_is_not_dropped_but_replayed(app, store):
    outbox = Outbox.of(store)
    outbox.sync([BACKEND], NOW)
    append(store, "user-1")
    outbox.fan_out(NOW)
    (claimed,) = outbox.claim(NOW, NOW + timedelta(hours=1), 100)
    assert outbox.settle([(claimed, "HTTP 500", None)], NOW) == ["failed"]

    refused = app.test_cli_runner().invoke(args=["webhooks", "drop", "backend", "1"])
    assert refused.exit_code != 0 and "not dropped: 1" in refused.output and "replayed instead" in refused.output
    assert [d.position for d in outbox.deliveries(status="failed", limit=10)] == [1]
    assert "replayed 1 delivery" in run(app, "webhooks", "replay", "--endpoint", "backend")
    assert "not replayed" not in run(app, "webhooks", "replay", "--failed")


def test_the_admin_shows_a_delivery_that_cannot_be_sent_and_the_command_that_drops_it(app, store):
    outbox = a_delivery_that_cannot_be_sent(store)
    client, page = admin_page(app)
    assert 'id="unsendable-backend-1"' in page and "webhooks drop backend 1" in page
    assert "holds back user-1's later deliveries to backend" in page
    answer = client.post("/admin/webhooks/backend/replay", data={"csrf_token": token(client, "/admin/webhooks")},
                         follow_redirects=True)
    assert "Replaying 0 failed deliveries of backend. 1 cannot be sent" in answer.get_data(as_text=True)
    outbox.drop("backend", (1,))
    assert 'id="unsendable-backend-1"' not in client.get("/admin/webhooks").get_data(as_text=True)



@pytest.mark.skipif(DATABASE != "postgresql", reason="SQLite has one writer at a time")
def test_two_drops_of_one_delivery_at_once_drop_it_once(store, make_app):
    """Two operators (two processes, each its own engine) drop the same delivery: the first
    holds its row from the SELECT that judges it to the commit, so the second, judging on the
    row locked, finds it gone and reports nothing dropped, and the drop is logged once.
    Judged on an unlocked read, both would report it (the second's DELETE, waiting, deletes
    nothing). The first is held open after its SELECT until the second has asked."""
    outbox, other = a_delivery_that_cannot_be_sent(store), Outbox.of(make_app().extensions["gateway"].store)
    selected, asked = threading.Event(), threading.Event()

    def hold(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().startswith("SELECT webhook_deliveries.position") and not selected.is_set():
            selected.set()
            asked.wait(2)
            time.sleep(0.3)  # the second's SELECT, asked, now waits for this row (or reads it)

    sa.event.listen(outbox.engine, "after_cursor_execute", hold)
    try:
        results: list = []
        first = threading.Thread(target=lambda: results.append(("first", outbox.drop("backend", (1,)))))
        first.start()
        assert selected.wait(5)
        asked.set()
        results.append(("second", other.drop("backend", (1,))))
        first.join(10)
    finally:
        sa.event.remove(outbox.engine, "after_cursor_execute", hold)
    assert sorted(results) == [("first", {1: "user-1"}), ("second", {})]


def test_metrics_show_each_reader_behind_the_feed_until_its_gap_is_skipped(make_app):
    """``gateway_feed_reader_behind``: what an operator alerts on, rather than a log line read
    once per worker process. Read from the database at scrape time: the worker runs the
    readers, a web worker answers the scrape."""
    from tests.e2e.test_metrics import METRICS_TOKEN, samples, scrape

    app = make_app(METRICS_TOKEN=METRICS_TOKEN, COGNITO_SIGN_OUT_ON_REVOKE="true",
                   COGNITO_USER_POOL_ID="us-east-1_Example", COGNITO_REGION="us-east-1",
                   COGNITO_APP_CLIENT_IDS="app-client")
    store, client = app.extensions["gateway"].store, app.test_client()

    def behind() -> dict[tuple[str, str], float]:
        return {(dict(k)["reader"], dict(k)["name"]): v
                for k, v in samples(scrape(client), "gateway_feed_reader_behind").items()}

    assert sign_out.SignOutOnRevoke(store, Recorder()).run_once() == 0  # on: its cursor at the head, 0
    assert behind() == {("sign_out", "cognito_sign_out"): 0}
    outbox = an_endpoint_left_behind(store)  # the prune passed the sign-out's cursor too
    outbox.save(Endpoint("crm", "https://crm.example.com/hook", ("whsec_y",)), NOW)  # new: at the head
    assert behind() == {("webhook", "backend"): 1, ("webhook", "crm"): 0, ("sign_out", "cognito_sign_out"): 1}

    outbox.skip_gap("backend", NOW)
    assert sign_out.skip_gap(store, sign_out.find_gap(store), lambda user_sub: True, NOW)
    assert behind() == {("webhook", "backend"): 0, ("webhook", "crm"): 0, ("sign_out", "cognito_sign_out"): 0}
    outbox.sync([], NOW)  # disabled: not a reader
    assert behind() == {("webhook", "crm"): 0, ("sign_out", "cognito_sign_out"): 0}


def test_metrics_leave_the_sign_out_out_while_it_is_off(make_app):
    from tests.e2e.test_metrics import METRICS_TOKEN, samples, scrape

    app = make_app(METRICS_TOKEN=METRICS_TOKEN)
    assert sign_out.SignOutOnRevoke(app.extensions["gateway"].store, Recorder()).run_once() == 0
    an_endpoint_left_behind(app.extensions["gateway"].store)
    found = samples(scrape(app.test_client()), "gateway_feed_reader_behind")
    assert found == {(("name", "backend"), ("reader", "webhook")): 1}
