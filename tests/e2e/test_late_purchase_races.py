"""Purchases made after an account deletion, stopped by two parties at once: two workers
(gateways of their own, each its own connections), or a worker and the deletion asked
again (``DELETE /v1/me``), released together by a barrier. Whoever wins, Stripe is asked
to cancel the subscription once: the request log of the Stripe fake is the judge."""
from __future__ import annotations

import threading
import time
import uuid

import pytest

from devtools import scenarios
from gateway.clock import utcnow
from gateway.late_purchases import LatePurchases
from tests.conftest import DATABASE
from tests.e2e.test_account_deletion import fakes, gateway_env, late_rows, late_stripe_subscription, world  # noqa: F401
from tests.e2e.test_races import together

pytestmark = pytest.mark.skipif(DATABASE != "postgresql", reason="SQLite has one writer at a time")

ROUNDS = 6


def deleted_with_a_late_purchase(world) -> tuple[str, str]:
    """A user who subscribed, deleted the account, then bought again: the late purchase
    recorded pending. The user and the late subscription's id."""
    user = str(uuid.uuid4())
    scenarios.stripe(world, "subscribe", user)
    assert world.delete(user).status_code == 200
    late = late_stripe_subscription(world, user)
    assert [(row.key, row.outcome) for row in late_rows(world, user)] == [(late["id"], "pending")]
    return user, late["id"]


def cancel_requests(fakes, sub_id: str) -> int:  # noqa: F811 (the fixture's name)
    """How many times Stripe was asked to cancel ``sub_id`` (DELETE /v1/subscriptions/<id>)."""
    return sum(1 for request in fakes.stripe.server.requests
               if request.method == "DELETE" and request.path == f"/v1/subscriptions/{sub_id}")


def worker(app):
    """The worker's chore, as ``flask events work`` runs it, on ``app``'s store."""
    services = app.extensions["gateway"]
    return LatePurchases(services.store, services.accounts.stop, utcnow).run_once


def delayed(round_: int, first, second):
    """``first`` and ``second``, one of them a little later by a delay that varies by round."""
    delays = [(round_ % 3) * 0.004, 0.0][::1 if round_ % 2 else -1]
    return (lambda: time.sleep(delays[0]) or first()), (lambda: time.sleep(delays[1]) or second())


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_workers_claiming_one_late_purchase_cancel_it_at_stripe_once(
        world, make_app, fakes, database_url, round_):  # noqa: F811
    user, sub_id = deleted_with_a_late_purchase(world)
    other = make_app(**gateway_env(fakes, database_url))
    tried = together(*delayed(round_, worker(world.app), worker(other)))
    assert sorted(tried) == [0, 1]
    assert cancel_requests(fakes, sub_id) == 1
    assert [row.outcome for row in late_rows(world, user)] == ["cancelled"]


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_the_deletion_asked_again_and_the_worker_stop_one_late_purchase_at_stripe_once(
        world, make_app, fakes, database_url, round_):  # noqa: F811
    """The deletion asked again stops what is still pending itself; the worker stops what is
    due. On the same row at once, one of them does it, and the answer reports it cancelled
    or leaves it out while the worker holds it (pending), never two cancels."""
    user, sub_id = deleted_with_a_late_purchase(world)
    other = make_app(**gateway_env(fakes, database_url))
    answer, _ = together(*delayed(round_, lambda: world.delete(user), worker(other)))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert cancel_requests(fakes, sub_id) == 1
    assert [row.outcome for row in late_rows(world, user)] == ["cancelled"]
    late = [item for item in answer.get_json()["cancelled"] if item.get("after_deletion")]
    assert len(late) <= 1 and answer.get_json()["user_must_cancel"] == []
    assert [item for item in world.delete(user).get_json()["cancelled"] if item.get("after_deletion")] == [
        {"source": "stripe", "store": "Stripe", "product_id": late_product(world, user), "after_deletion": True}]


def late_product(world, user: str) -> str:
    (row,) = late_rows(world, user)
    return row.product_id


def test_the_deletion_asked_again_while_the_workers_cancel_is_in_flight_does_not_cancel_again(
        world, make_app, fakes, database_url):  # noqa: F811
    """The worker has claimed the late purchase and Stripe is slow to answer its cancel:
    the deletion asked meanwhile finds the row pending, leased to the worker."""
    user, sub_id = deleted_with_a_late_purchase(world)
    other = make_app(**gateway_env(fakes, database_url))
    held = fakes.stripe.hold_cancel()
    tried = {}
    working = threading.Thread(target=lambda: tried.update(n=worker(other)()))
    working.start()
    assert held.read.wait(10)
    answer = world.delete(user)
    held.release()
    working.join(10)
    assert answer.status_code == 200 and tried == {"n": 1}
    assert cancel_requests(fakes, sub_id) == 1
    assert [row.outcome for row in late_rows(world, user)] == ["cancelled"]
