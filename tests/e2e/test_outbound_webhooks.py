"""Outgoing webhooks end to end: RevenueCat deliveries in through HTTP, the entitlement
feed out to a real local receiver that verifies each request as an app's backend would
(``standardwebhooks``), through failures, parking, replay and concurrent workers."""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest

from devtools import revenuecat as rc
from gateway.outbound.worker import Deliverer
from gateway.store.outbox import Outbox
from tests.conftest import DATABASE
from tests.support.webhook_receiver import Receiver, free_port, secret

NOW_MS = int(time.time() * 1000)


@pytest.fixture
def receiver():
    made = Receiver([secret(), secret()])  # a secret rolling: both sign every attempt
    yield made
    made.stop()


@pytest.fixture
def app(make_app, receiver):
    endpoints = [{"name": "backend", "url": receiver.url, "secrets": receiver.secrets, "types": ["entitlement.*"]}]
    return make_app(REVENUECAT_WEBHOOK_AUTH=rc.AUTH, OUTBOUND_WEBHOOKS=json.dumps(endpoints),
                    OUTBOUND_ALLOW_PRIVATE_TARGETS="true", OUTBOUND_TIMEOUT_SECONDS="1")


@pytest.fixture
def deliverer(app):
    made = Deliverer.build(app.extensions["gateway"])
    assert made.run_once() == 0  # the endpoint hears of changes from now on
    return made


def send(app, evt) -> str:
    response = app.test_client().post("/webhooks/revenuecat", data=rc.body(evt), headers={"Authorization": rc.AUTH})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["status"]


def purchase(app, user: str, at_ms: int = NOW_MS) -> dict:
    evt = rc.event("INITIAL_PURCHASE", user, at_ms=at_ms, transaction=f"t-{user}")
    assert send(app, evt) == "processed"
    return evt


def renew(app, user: str, at_ms: int = NOW_MS + 1000) -> dict:
    evt = rc.event("RENEWAL", user, at_ms=at_ms, transaction=f"t-{user}")
    assert send(app, evt) == "processed"
    return evt


def by_user(bodies: list[dict]) -> dict[str, list[tuple[int, str]]]:
    found = defaultdict(list)
    for body in bodies:
        found[body["user_id"]].append((int(body["position"]), body["type"]))
    return dict(found)


def statuses(app) -> dict[tuple[str, int], tuple[str, int]]:
    return {(d.user_sub, d.position): (d.status, d.attempts)
            for d in Outbox.of(app.extensions["gateway"].store).deliveries(limit=1000)}


def test_each_change_arrives_once_in_order_signed_with_every_secret(app, receiver, deliverer):
    receiver.start()
    purchase(app, "user-1")
    first = purchase(app, "user-2")
    renewal = renew(app, "user-1")
    assert send(app, renewal) == "duplicate"
    assert send(app, {**first, "id": "stale-1", "event_timestamp_ms": NOW_MS - 86_400_000}) == "processed"
    refund = rc.event("CANCELLATION", "user-2", at_ms=NOW_MS + 2000, transaction="t-user-2",
                      cancel_reason="CUSTOMER_SUPPORT")
    assert send(app, refund) == "processed"

    assert deliverer.run_once() == 4
    got = receiver.accepted()
    assert by_user(got) == {"user-1": [(1, "entitlement.granted"), (3, "entitlement.renewed")],
                            "user-2": [(2, "entitlement.granted"), (4, "entitlement.revoked")]}
    assert all(a.verified_by == (True, True) and a.webhook_id == a.body["id"] for a in receiver.attempts)
    (second,) = [body for body in got if body["position"] == "2"]
    assert second["entitlement"] == "premium" and second["after"]["active"] is True
    assert second["cause"] == {"kind": "delivery", "source": "revenuecat", "event_id": first["id"]}
    assert deliverer.run_once() == 0 and len(receiver.attempts) == 4


def test_a_receiver_that_is_down_errs_redirects_and_hangs_gets_everything_once_recovered(app, receiver, deliverer):
    purchase(app, "user-1")
    purchase(app, "user-2")
    renew(app, "user-1")
    now = datetime.now(timezone.utc)
    assert deliverer.run_once(now) == 2  # the head of each user's line; nobody listens yet
    assert all("refused" in d.last_error for d in Outbox.of(app.extensions["gateway"].store).deliveries()
               if d.attempts)
    receiver.start()
    for hours, answer in ((1, 500), (2, "redirect"), (4, "sleep")):
        receiver.answer = lambda body, answer=answer: answer
        assert deliverer.run_once(now + timedelta(hours=hours)) == 2
    assert receiver.followed_redirects == 0 and receiver.accepted() == []
    assert deliverer.run_once(now + timedelta(hours=4, minutes=1)) == 0  # backing off: 2 to 4 minutes now
    receiver.answer = lambda body: "ok"
    assert deliverer.run_once(now + timedelta(hours=12)) == 3

    assert by_user(receiver.accepted()) == {"user-1": [(1, "entitlement.granted"), (3, "entitlement.renewed")],
                                            "user-2": [(2, "entitlement.granted")]}
    tried = defaultdict(set)
    for attempt in receiver.attempts:
        tried[attempt.body["id"]].add(attempt.webhook_id)
    assert all(ids == {event_id} for event_id, ids in tried.items())  # the same webhook-id on every retry
    assert [a.body["type"] for a in receiver.attempts if a.body["user_id"] == "user-1"] == \
        ["entitlement.granted"] * 4 + ["entitlement.renewed"]  # the renewal waited for the purchase
    assert set(statuses(app).values()) == {("delivered", 5), ("delivered", 1)}


def park_user_1(app, receiver, deliverer) -> datetime:
    """user-1's receiver side fails for over three days; returns the time it was parked."""
    purchase(app, "user-1")
    purchase(app, "user-2")
    renew(app, "user-1")
    receiver.start()
    receiver.answer = lambda body: 503 if body["user_id"] == "user-1" else "ok"
    now = datetime.now(timezone.utc)
    for step in range(10):  # 60 hours: still trying
        deliverer.run_once(now + timedelta(hours=6 * step))
    assert statuses(app)[("user-1", 1)] == ("pending", 10)
    for step in range(10, 14):
        deliverer.run_once(now + timedelta(hours=6 * step))
    assert statuses(app) == {("user-1", 1): ("failed", 13), ("user-1", 3): ("pending", 0),
                             ("user-2", 2): ("delivered", 1)}
    return now + timedelta(hours=6 * 14)


def test_a_parked_delivery_holds_back_its_user_until_replayed_then_both_arrive_in_order(app, receiver, deliverer):
    later = park_user_1(app, receiver, deliverer)
    assert deliverer.run_once(later + timedelta(days=30)) == 0  # waits for good, dropped never
    (parked,) = app.test_cli_runner().invoke(args=["webhooks", "deliveries", "--status", "failed"]).output.splitlines()
    assert parked.split()[:5] == ["backend", "1", "failed", "13", "-"] and parked.endswith("user-1  HTTP 503")
    result = app.test_cli_runner().invoke(args=["webhooks", "replay", "--failed"])
    assert result.exit_code == 0 and "replayed 1 delivery" in result.output, result.output
    assert deliverer.run_once(later + timedelta(days=30)) == 1  # still failing: tried again, not parked at once
    assert statuses(app)[("user-1", 1)] == ("pending", 1)
    receiver.answer = lambda body: "ok"
    assert deliverer.run_once(later + timedelta(days=31)) == 2
    assert [(b["position"], b["type"]) for b in receiver.accepted() if b["user_id"] == "user-1"] == \
        [("1", "entitlement.granted"), ("3", "entitlement.renewed")]
    listed = app.test_cli_runner().invoke(args=["webhooks", "list"]).output
    assert "backend" in listed and "delivered 3" in listed and "failed 0" in listed


def test_the_worker_that_parks_a_delivery_warns_once_with_the_command_that_sends_it_again(
        app, receiver, deliverer, caplog):
    """The turns after the parking, days apart, say nothing more: the gauge
    (``gateway_webhook_deliveries_parked``) is what shows it stays parked."""
    with caplog.at_level(logging.WARNING, "gateway.outbound"):
        later = park_user_1(app, receiver, deliverer)
        for days in (1, 2, 30):
            assert deliverer.run_once(later + timedelta(days=days)) == 0
    (told,) = [r.fields for r in caplog.records if r.getMessage().startswith("webhook deliveries parked")]
    assert told == {"endpoint": "backend", "parked": 1, "event_gone": 0,
                    "action": "fix the receiver, then: flask webhooks replay --endpoint backend"}


def env(*endpoints) -> dict[str, str]:
    return {"REVENUECAT_WEBHOOK_AUTH": rc.AUTH, "OUTBOUND_ALLOW_PRIVATE_TARGETS": "true",
            "OUTBOUND_WEBHOOKS": json.dumps(list(endpoints))}


def race(workers: list[Deliverer]) -> list[int]:
    """Each worker's ``run_once``, all released at the same moment."""
    barrier, made = threading.Barrier(len(workers)), []

    def work(worker):
        barrier.wait()
        made.append(worker.run_once())

    threads = [threading.Thread(target=work, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return made


def test_two_workers_at_once_deliver_each_event_once_in_order(make_app, app, receiver, deliverer):
    receiver.start()
    backend = {"name": "backend", "url": receiver.url, "secrets": receiver.secrets, "types": ["entitlement.*"]}
    # Two processes, each claiming two at a time, so that their claims overlap often.
    workers = [Deliverer(Outbox.of(make_app(**env(backend)).extensions["gateway"].store), deliverer.configured,
                         allow_private=True, timeout=1, batch=2) for _ in range(2)]
    for worker in workers:
        worker.sync()
    users = []
    for round in range(3):
        users += [f"user-{round}-{n}" for n in range(20)]
        for user in users[-20:]:
            purchase(app, user)
            renew(app, user)
        made = race(workers)
        assert len(made) == 2 and sum(made) == 40, made  # both finished; between them, each event once
    got = receiver.accepted()
    assert len(got) == len({body["id"] for body in got}) == len(receiver.attempts) == 120
    assert all([t for _, t in by_user(got)[user]] == ["entitlement.granted", "entitlement.renewed"] for user in users)
    assert all(by_user(got)[user] == sorted(by_user(got)[user]) for user in users)


def test_endpoints_follow_the_environment_across_restarts(make_app, app, receiver, deliverer):
    receiver.start()
    purchase(app, "user-1")
    renew(app, "user-1")
    other = Receiver([secret()], port=free_port()).start()
    backend = {"name": "backend", "url": receiver.url, "secrets": receiver.secrets}
    late = {"name": "late", "url": other.url, "secrets": other.secrets, "types": ["entitlement.renewed"]}

    def restart(*endpoints) -> Deliverer:
        return Deliverer.build(make_app(**env(*endpoints)).extensions["gateway"])

    try:
        both = restart(backend, late)
        assert both.run_once() == 2  # backend's purchase and renewal; "late" starts at the feed's head
        renew(app, "user-1", at_ms=NOW_MS + 2000)
        assert both.run_once() == 2
        assert [b["type"] for b in other.accepted()] == ["entitlement.renewed"]
        alone = restart(late)  # backend removed: disabled, its place kept
        purchase(app, "user-2")
        assert alone.run_once() == 0  # "late" wants renewals only
        renew(app, "user-2")
        assert alone.run_once() == 1
        listed = app.test_cli_runner().invoke(args=["webhooks", "list"]).output
        assert "backend" in listed and "disabled" in listed
        assert restart(backend, late).run_once() == 2  # backend back: nothing it missed is lost
        assert [(b["user_id"], b["type"]) for b in receiver.accepted()] == [
            ("user-1", "entitlement.granted"), ("user-1", "entitlement.renewed"), ("user-1", "entitlement.renewed"),
            ("user-2", "entitlement.granted"), ("user-2", "entitlement.renewed")]
    finally:
        other.stop()


class SlowClock:
    """The workers' clock: each answer of a slow receiver moves it on by most of a timeout."""

    def __init__(self) -> None:
        self.now, self.lock = datetime.now(timezone.utc), threading.Lock()

    def __call__(self) -> datetime:
        with self.lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.now += timedelta(seconds=seconds)


@pytest.mark.skipif(DATABASE != "postgresql", reason="two workers at once: PostgreSQL")
@pytest.mark.parametrize("batch", [1, 8], ids=["round-by-round", "one-round"])
def test_a_worker_slowed_by_its_receiver_keeps_what_it_is_sending(make_app, app, receiver, deliverer, batch):
    """Eight answers each take most of the 10 s timeouts: past the 80 s lease that one
    attempt needs, whether the run claims one delivery a round or all in one round. A
    lease taken from the run's start (or sized for one attempt) had lapsed while the
    worker was still sending, and another worker sent the same delivery again."""
    receiver.start()
    clock, users = SlowClock(), [f"slow-{n}" for n in range(8)]
    backend = {"name": "backend", "url": receiver.url, "secrets": receiver.secrets, "types": ["entitlement.*"]}
    a, b = (Deliverer(Outbox.of(make_app(**env(backend)).extensions["gateway"].store), deliverer.configured,
                      allow_private=True, timeout=10, threads=1, batch=batch, clock=clock) for _ in range(2))
    for worker in (a, b):
        worker.sync()
    for user in users:
        purchase(app, user)
    a_sending, b_done = threading.Event(), threading.Event()

    def answer(body):
        if body["user_id"] == users[5] and not a_sending.is_set():
            a_sending.set()  # A's sixth attempt is in flight, 95 s after its run began ...
            b_done.wait(10)  # ... while another worker runs
        clock.advance(19)
        return "ok"

    receiver.answer = answer
    run = threading.Thread(target=a.run_once)
    run.start()
    assert a_sending.wait(10)
    b.run_once()
    b_done.set()
    run.join(30)
    got = [body["user_id"] for body in receiver.accepted()]
    assert sorted(got) == sorted(users), got  # each once: between them, nothing sent twice


def test_a_worker_whose_lease_was_taken_over_settles_nothing(app, receiver, deliverer):
    """A worker outlives its lease (a receiver slower than the lease allows); another
    claims the delivery and settles it. The first worker's late outcome, whatever it is,
    must not overwrite the delivery's state: it would park it as failed (holding back the
    user's later events) though the other delivers it, or make it due again and have a
    third worker send it beside the second."""
    purchase(app, "user-lease")
    outbox, now = Outbox.of(app.extensions["gateway"].store), datetime.now(timezone.utc)
    outbox.fan_out(now)
    first = outbox.claim(now, now + timedelta(seconds=1), 10)
    later = now + timedelta(seconds=5)  # the first lease has lapsed
    second = outbox.claim(later, later + timedelta(minutes=5), 10)
    assert [c.event.position for c in first] == [c.event.position for c in second] and len(first) == 1
    # The first worker gives up (attempts exhausted: parked) while the second still sends.
    assert outbox.settle([(first[0], "timed out", None)], later) == ["taken over"]
    assert outbox.settle([(second[0], None, None)], later) == ["delivered"]
    assert outbox.settle([(first[0], "timed out", later + timedelta(minutes=1))], later) == ["taken over"]
    mine = [d for d in outbox.deliveries() if d.user_sub == "user-lease"]
    assert [(d.status, d.attempts) for d in mine] == [("delivered", 2)]
