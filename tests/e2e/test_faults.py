"""Nothing lost under faults: a database that refuses writes, a process killed between
recording and applying, a store API down, a deploy (graceful reload) during a burst."""
from __future__ import annotations

import os
import signal
import threading
import time

from devtools import revenuecat as rc
from devtools import stripe_objects as so
from devtools.google_pubsub import subscription
from devtools.stripe_signing import new_secret, signed
from tests.e2e.conftest import API_KEY, count_events
from tests.e2e.gunicorn_world import Gunicorn
from tests.support.google_gateway import _play_server, google, play, push_signer  # noqa: F401 (fixtures)
from tests.support.events import find_event
from tests.support.stripe_gateway import stripe_server  # noqa: F401 (fixture)
from tests.support.stripe_scenarios import signup

RC_HEADERS = {"Authorization": rc.AUTH, "Content-Type": "application/json"}


def renewals(n: int, users: int = 10, base_ms: int = 1_900_000_000_000) -> list[dict]:
    return [rc.event("RENEWAL", user=f"fault-{i % users}", transaction=f"f{i % users}", at_ms=base_ms + i)
            for i in range(n)]


def test_database_refusing_writes_mid_burst_answers_503_and_the_provider_retry_succeeds(make_app, api, refuse_writes):
    app = make_app(REVENUECAT_WEBHOOK_AUTH=rc.AUTH, GATEWAY_API_KEYS=API_KEY)
    client, events = app.test_client(), renewals(30)
    statuses = [client.post("/webhooks/revenuecat", data=rc.body(e), headers=RC_HEADERS).status_code
                for e in events[:10]]
    refuse_writes.on("events")
    statuses += [client.post("/webhooks/revenuecat", data=rc.body(e), headers=RC_HEADERS).status_code
                 for e in events[10:]]
    assert statuses == [200] * 10 + [503] * 20
    assert count_events(app) == 10
    assert api(client, "fault-0")["entitlements"]["premium"]["expires_at"] is not None
    refuse_writes.off()
    # RevenueCat retries what was not answered 200.
    retried = [client.post("/webhooks/revenuecat", data=rc.body(e), headers=RC_HEADERS).get_json() for e in events[10:]]
    assert retried == [{"status": "processed"}] * 20
    assert count_events(app) == 30
    assert all(api(client, f"fault-{n}")["is_premium"] for n in range(10))


def test_applying_refused_after_recording_is_deferred_then_retried(make_app, api, refuse_writes):
    app = make_app(REVENUECAT_WEBHOOK_AUTH=rc.AUTH, GATEWAY_API_KEYS=API_KEY)
    client, event = app.test_client(), rc.event("INITIAL_PURCHASE", user="fault-deferred")
    refuse_writes.on("subscriptions")
    assert client.post("/webhooks/revenuecat", data=rc.body(event), headers=RC_HEADERS).get_json() == \
        {"status": "deferred"}
    assert api(client, "fault-deferred")["is_premium"] is False
    refuse_writes.off()
    with app.extensions["gateway"].store.transaction() as tx:  # let the backoff pass
        tx.update_event(find_event(tx, "revenuecat", event["id"]).id, next_attempt_at=None)
    result = app.test_cli_runner().invoke(args=["events", "retry"])
    assert result.output.strip() == "processed: 1"
    assert api(client, "fault-deferred")["is_premium"] is True


def test_google_api_down_during_ingest_defers_and_the_retry_applies(google, play):
    play.subscribe("token-down-1", user="user-down", acknowledged=True)
    play.down = True
    assert google.push(subscription("token-down-1"), message_id="down-1").get_json() == {"status": "deferred"}
    assert google.premium("user-down") is None
    play.down = False
    assert google.retry() == "processed: 1"
    assert google.premium("user-down")["active"] is True


def test_a_process_killed_between_recording_and_applying_is_applied_by_the_retry_command(
        database_url, make_app, api, stripe_server):
    stripe_server.reset()
    secret, made = new_secret(), signup(stripe_server, "killed-user")
    gateway = Gunicorn({"DATABASE_URL": database_url, "STRIPE_WEBHOOK_SECRETS": secret, "LOG_LEVEL": "WARNING",
                        "STRIPE_API_KEY": stripe_server.api_key, "STRIPE_API_BASE": stripe_server.url,
                        "EVENTS_STALE_AFTER_SECONDS": "1"})
    try:
        stripe_server.hang(30)  # Stripe answers nothing: the request sits mid-apply, event recorded
        event = so.event("invoice.paid", made.invoice())
        body, headers = signed(event, secret)
        sender = threading.Thread(target=lambda: _ignore_errors(gateway.post, "/webhooks/stripe", body, headers))
        sender.start()
        _wait_for(lambda: stripe_server.calls("GET", f"/v1/subscriptions/{made.sub_id}") > 0)
        gateway.kill()
        sender.join(timeout=10)
        listed = gateway.flask("events", "list", "--source", "stripe")
        assert "received" in listed and event["id"] in listed
        stripe_server.recover()
        time.sleep(1.2)  # past EVENTS_STALE_AFTER_SECONDS
        assert gateway.flask("events", "retry").strip() == "processed: 1"
    finally:
        stripe_server.recover()
        gateway.stop()
    client = make_app(GATEWAY_API_KEYS=API_KEY).test_client()
    assert api(client, "killed-user")["is_premium"] is True


def test_a_graceful_reload_during_a_burst_loses_nothing(database_url, make_app):
    gateway = Gunicorn({"DATABASE_URL": database_url, "REVENUECAT_WEBHOOK_AUTH": rc.AUTH, "LOG_LEVEL": "WARNING"})
    events = renewals(400, users=40)
    answers, retries, lock = {}, [0], threading.Lock()

    def send(batch):
        for event in batch:
            answers[event["id"]] = _deliver(gateway, event, retries, lock)

    try:
        senders = [threading.Thread(target=send, args=(events[i::4],)) for i in range(4)]
        for thread in senders:
            thread.start()
        _wait_for(lambda: len(answers) >= 60)
        old_workers = gateway.workers()
        os.kill(gateway.master(), signal.SIGHUP)  # a deploy: new workers, old ones finish and exit
        for thread in senders:
            thread.join(timeout=120)
        assert not old_workers & gateway.workers()  # every worker was replaced mid-burst
    finally:
        gateway.stop()
    assert len(answers) == 400 and set(answers.values()) <= {"processed", "duplicate"}
    assert len(answers) - sum(1 for a in answers.values() if a == "processed") <= retries[0]
    app = make_app()
    assert count_events(app) == 400
    with app.extensions["gateway"].store.transaction() as tx:
        assert all(find_event(tx, "revenuecat", e["id"]) is not None for e in events)
    print(f"\nreload burst: 400 deliveries, {retries[0]} resent after a connection error or 503, lost: 0")


def _deliver(gateway: Gunicorn, event: dict, retries: list, lock) -> str:
    """Send as RevenueCat does: retry on a connection error or a non-200 answer."""
    for _ in range(50):
        try:
            status, answer = gateway.post("/webhooks/revenuecat", rc.body(event), RC_HEADERS, timeout=10)
            if status == 200:
                return answer["status"]
        except OSError:
            pass
        with lock:
            retries[0] += 1
        time.sleep(0.1)
    raise AssertionError(f"{event['id']} was never accepted")


def _ignore_errors(function, *args):
    try:
        function(*args)
    except OSError:
        pass


def _wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
