"""``flask reconcile --source google`` reads Play's voided purchases list from where its last
complete read stopped and applies each subscription void through the notification's own
path: a void notified before Play listed it (ignored then), or never notified, is applied;
one both notified and listed is applied once."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from devtools.google_play import ORDER
from devtools.google_pubsub import envelope, subscription, voided
from tests.conftest import DATABASE
from tests.e2e.conftest import API_KEY
from tests.e2e.reconcile_world import *  # noqa: F401,F403 (fixtures)
from tests.e2e.reconcile_world import new_user
from tests.e2e.test_races import together

CURSOR = "google.voids"


def purchased(world, play, push_signer, token, user, order=ORDER):
    play.subscribe(token, user=user, acknowledged=True, days=20, order=order)  # not due for a re-read
    assert push(world, push_signer, subscription(token)) == "processed"
    assert world.premium(user)["status"] == "active"


def push(world, push_signer, notification, message_id=None) -> str:
    answer = world.client.post("/webhooks/google", data=envelope(notification, message_id),
                               headers=push_signer.headers())
    return answer.get_json()["status"]


def reconcile(world) -> str:
    code, output = world.reconcile("--source", "google")
    assert code == 0, output
    return output


def feed(world, user) -> list[tuple[str, str]]:
    answer = world.client.get("/v1/events", query_string={"after": 0, "limit": 1000},
                              headers={"Authorization": f"Bearer {API_KEY}"})
    return [(e["type"], e["after"] and e["after"]["status"]) for e in answer.get_json()["events"]
            if e["user_id"] == user]


def cursor(world) -> str | None:
    with world.app.extensions["gateway"].store.transaction(readonly=True) as tx:
        return tx.reconcile_cursor(CURSOR)


def start_ms(query) -> int:
    return int(query["startTime"])


def test_a_void_play_lists_only_after_its_notification_is_applied_by_reconcile(world, play, push_signer):
    user, token = new_user(), "token-void-late"
    purchased(world, play, push_signer, token, user)
    assert push(world, push_signer, voided(token), "m-void-late") == "ignored"  # not listed yet
    assert world.premium(user)["status"] == "active"
    play.void(token, at=datetime.now(timezone.utc) - timedelta(hours=2))  # listed now, voided before

    output = reconcile(world)

    assert "voids applied 1" in output and "failed 0" in output
    assert world.premium(user)["status"] == "revoked"
    assert feed(world, user) == [("entitlement.granted", "active"), ("entitlement.revoked", "revoked")]


def test_a_void_whose_notification_never_came_is_applied_by_reconcile(world, play, push_signer):
    user, token = new_user(), "token-void-lost"
    purchased(world, play, push_signer, token, user)
    play.void(token)
    assert "voids applied 1" in reconcile(world)
    assert world.premium(user)["status"] == "revoked"
    # Play goes on showing the voided period: the next notification of it does not give it back.
    assert push(world, push_signer, subscription(token, kind=2)) == "processed"
    assert world.premium(user)["status"] == "revoked"


def test_a_void_notified_and_listed_is_applied_once(world, play, push_signer):
    user, token = new_user(), "token-void-twice"
    purchased(world, play, push_signer, token, user)
    play.void(token)
    assert push(world, push_signer, voided(token)) == "processed"
    gets = len(play.gets)

    assert "voids held 1" in reconcile(world)
    assert "voids held 1" in reconcile(world)  # the overlap lists it again

    assert len(play.gets) == gets  # held: not read again
    assert feed(world, user) == [("entitlement.granted", "active"), ("entitlement.revoked", "revoked")]


def test_a_void_listed_then_notified_is_applied_once(world, play, push_signer):
    user, token = new_user(), "token-void-listed-first"
    purchased(world, play, push_signer, token, user)
    play.void(token)
    assert "voids applied 1" in reconcile(world)
    assert push(world, push_signer, voided(token)) == "processed"
    assert world.premium(user)["status"] == "revoked"
    assert feed(world, user) == [("entitlement.granted", "active"), ("entitlement.revoked", "revoked")]


def test_a_listed_void_of_an_older_renewal_order_leaves_the_current_period(world, play, push_signer):
    user, token = new_user(), "token-void-older"
    purchased(world, play, push_signer, token, user, order=f"{ORDER}..1")
    play.void(token, ORDER)  # the first period's order, long renewed
    output = reconcile(world)
    assert "voids unchanged 1" in output and "voids applied" not in output
    assert world.premium(user)["status"] == "active"
    assert feed(world, user) == [("entitlement.granted", "active")]


def test_voids_on_several_pages_are_all_applied(world, play, push_signer):
    users = {f"token-void-page-{n}": new_user() for n in range(5)}
    for token, user in users.items():
        purchased(world, play, push_signer, token, user)
        play.void(token)
    play.void("token-one-time", "GPA.1111-2222-3333-44444", one_time=True)  # a one-time product's
    play.voids_page = 2

    output = reconcile(world)

    assert "voids applied 5" in output, output
    assert all(world.premium(user)["status"] == "revoked" for user in users.values())
    queries = play.voided_queries
    assert [q.get("type") for q in queries] == ["1"] * 3 and [("token" in q) for q in queries] == [False, True, True]
    assert "token-one-time" in play.gets and "voids not a subscription 1" in output


def test_the_cursor_moves_after_a_complete_read_and_the_next_read_overlaps_it(world, play, push_signer):
    before = datetime.now(timezone.utc)
    reconcile(world)
    first = play.voided_queries[-1]
    # The first read asks for all Play keeps (30 days); the cursor is the moment it asked.
    assert abs(start_ms(first) / 1000 - (before - timedelta(days=30)).timestamp()) < 3600
    saved = datetime.fromisoformat(cursor(world))
    assert before <= saved <= datetime.now(timezone.utc)

    reconcile(world)

    assert start_ms(play.voided_queries[-1]) == int((saved - timedelta(days=1)).timestamp() * 1000)


def test_play_api_errors_leave_the_cursor_where_it_was(world, play, push_signer):
    user, token = new_user(), "token-void-errors"
    purchased(world, play, push_signer, token, user)
    reconcile(world)
    saved = cursor(world)
    for n in range(2):
        play.void(f"token-void-other-{n}", f"GPA.0000-0000-0000-0000{n}", one_time=True)
    play.void(token)
    play.voids_page = 1

    for fail in ("fail_voided", "fail_voided_pages", "fail_gets"):  # the list, a later page, a purchase
        setattr(play, fail, 1)
        code, output = world.reconcile("--source", "google")
        assert code == 1 and "failed voids" in output, (fail, output)
        assert cursor(world) == saved and getattr(play, fail) == 0, fail
        # Nothing is applied from a list read in part; the voids read whole are applied.
        assert world.premium(user)["status"] == ("revoked" if fail == "fail_gets" else "active"), fail

    starts = {start_ms(q) for q in play.voided_queries[1:] if "token" not in q}
    assert len(starts) == 1  # every run after the first asked from the same cursor
    assert "voids held 1" in reconcile(world)
    assert cursor(world) > saved


@pytest.mark.skipif(DATABASE != "postgresql", reason="SQLite has one writer at a time")
@pytest.mark.parametrize("round_", range(6))
def test_a_void_listed_notified_and_a_renewal_notification_released_together_apply_it_once(
        world, make_app, play, push_signer, round_):
    """Reconcile applying a listed void, the void's own notification and a renewal
    notification of the same period, each through a gateway of its own (one process
    batches concurrent deliveries into one transaction), all three reading Play together
    (``gate``), one or another a little later by a delay that varies by round. The void is
    decided by the merge under the subscription's lock, on what the row holds then: the
    period ends revoked, with one ``entitlement.revoked``, whichever commits first."""
    user, token = new_user(), f"token-void-race-{round_}"
    purchased(world, play, push_signer, token, user)
    play.void(token)
    notified, renewed = (make_app(GATEWAY_API_KEYS=API_KEY, **push_signer.env(), **play.env()).test_client()
                         for _ in range(2))
    delays = [0.0, 0.0, 0.0]
    delays[round_ % 3] = (round_ // 3 + 1) * 0.003
    play.gate(3)
    answers = together(
        lambda: time.sleep(delays[0]) or reconcile(world),
        lambda: time.sleep(delays[1]) or notified.post("/webhooks/google", data=envelope(voided(token)),
                                                      headers=push_signer.headers()),
        lambda: time.sleep(delays[2]) or renewed.post("/webhooks/google", data=envelope(subscription(token, 2)),
                                                     headers=push_signer.headers()))
    assert play.gates_opened == 1  # all three read Play before any wrote
    assert [answer.get_json()["status"] for answer in answers[1:]] == ["processed", "processed"]
    assert "failed 0" in answers[0]
    assert world.premium(user)["status"] == "revoked"
    assert feed(world, user) == [("entitlement.granted", "active"), ("entitlement.revoked", "revoked")]
    assert "voids held 1" in reconcile(world)  # applied: the next run does not read it again
