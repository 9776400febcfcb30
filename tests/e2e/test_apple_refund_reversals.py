"""A reversed App Store refund gives the period back, even when REFUND_REVERSED was lost.

Apple shows a refund in the transaction while it stands (``revocationDate``,
``revocationReason``) and removes both when it reverses it: "refunds may be reversed in
some scenarios, in which case these fields will be removed from the transaction and you
should re-enable this content once more" (Apple, developer forums, thread 757986). So a view
of the refunded transaction signed after the newest view that showed the refund, without
it, tells the reversal: a notification of the subscription, or reconcile's read of Get All
Subscription Statuses. A view signed before it (a retry of an older notification) tells
nothing, whenever it arrives. Webhooks are lossy: until this, a lost REFUND_REVERSED left
the paying user revoked for good, and reconcile did not even read the subscription again.

Against the local fake of the App Store Server API; on SQLite and PostgreSQL
(``TEST_DATABASE``). Mutations these catch: ``Revocations.shown_reversed`` always False
(the old rule: every healing test fails); ``shows_revocation`` not set by
``apple_state._revocation`` (the same); the revoked branch of ``reconcile_due`` left out
(reconcile never reads the subscription: checked 0), or its bound dropped (the ended one is
read). The older-view tests guard the other way: a restore on any view without the refund,
or on a notification's ``signedDate`` where the transaction it carries is older
(``apple_state._signed`` returning ``as_of``).
"""
from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from devtools.apple_pki import mint_chain
from devtools.apple_store import ms, now
from tests.e2e.reconcile_world import *  # noqa: F401,F403 (fixtures)
from tests.e2e.reconcile_world import new_user
from tests.e2e.test_reconcile_unresolved import apple_statuses


@pytest.fixture(scope="module")
def chain():  # valid since before the backdated notifications below
    return mint_chain(valid_from=now() - timedelta(days=100))


class Refunded:
    """A monthly period bought four days ago (transaction ``key``), refunded two days ago;
    its notifications, each signed at its own time."""

    def __init__(self, world, user: str, key: str) -> None:
        self.world, self.user, self.key, store = world, user, key, world.apple
        self.bought, self.refunded = now() - timedelta(days=4), now() - timedelta(days=2)
        self.end = self.bought + timedelta(days=30)
        self.bought_body = store.body(store.notification(
            "SUBSCRIBED", "INITIAL_BUY", signed=self.bought, transaction=self.view(self.bought),
            renewal=store.renewal(key, signed=self.bought)))
        self.refund_body = store.body(store.notification(
            "REFUND", signed=self.refunded, status=5, transaction=self.view(self.refunded, revoked=self.refunded),
            renewal=store.renewal(key, auto_renew=False, signed=self.refunded)))

    def view(self, signed, **extra) -> dict:
        return self.world.apple.transaction(self.key, token=self.user, transaction_id=self.key, signed=signed,
                                            expires=self.end, **extra)

    def renewal_status(self, signed, **extra) -> bytes:
        """DID_CHANGE_RENEWAL_STATUS signed at ``signed``: the transaction as of then."""
        store = self.world.apple
        return store.body(store.notification("DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_ENABLED", signed=signed,
                                             transaction=self.view(signed, **extra),
                                             renewal=store.renewal(self.key, signed=signed)))

    def post(self, body: bytes) -> str:
        answer = self.world.apple_post(body)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return answer.get_json()["status"]

    def premium(self) -> tuple:
        got = self.world.premium(self.user)
        return got["status"], got["active"]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))), ids=lambda o: "".join(map(str, o)))
def test_a_later_view_without_the_refund_gives_the_period_back_in_any_order(world, order):
    """REFUND_REVERSED lost; the next notification of the subscription (signed after the
    refund, without ``revocationDate``) shows the reversal. Any order of delivery, each
    delivered twice, ends active: a late REFUND (signed before that view) does not undo it."""
    user, key = new_user(), f"3100000{''.join(map(str, order))}"
    sub = Refunded(world, user, key)
    bodies = [sub.bought_body, sub.refund_body, sub.renewal_status(now() - timedelta(hours=1))]
    for at in order:
        assert sub.post(bodies[at]) == "processed"
        assert sub.post(bodies[at]) == "duplicate"
    assert sub.premium() == ("active", True)


@pytest.mark.parametrize("late", [False, True], ids=["in_order", "retried_late"])
def test_a_view_signed_before_the_refund_gives_nothing_back(world, late):
    """A notification signed before the refund, without ``revocationDate`` (Apple retrying
    an older one), is an older view: the refund stands, whether it came before or after."""
    user, key = new_user(), f"310001{int(late)}"
    sub = Refunded(world, user, key)
    older = sub.renewal_status(sub.refunded - timedelta(hours=1))
    for body in ([sub.bought_body, sub.refund_body, older] if late else [sub.bought_body, older, sub.refund_body]):
        assert sub.post(body) == "processed"
    assert sub.premium() == ("revoked", False)


def test_a_later_notification_carrying_the_transaction_as_signed_before_the_refund_gives_nothing_back(world):
    """The view is as new as the transaction it carries (its own ``signedDate``): a
    notification signed after the refund that carries the transaction as signed before it
    tells nothing of a reversal."""
    user, key, store = new_user(), "3100015", world.apple
    sub = Refunded(world, user, key)
    carried = store.body(store.notification(
        "DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_DISABLED", signed=now(),
        transaction=sub.view(sub.bought), renewal=store.renewal(key, auto_renew=False)))
    for body in (sub.bought_body, sub.refund_body, carried):
        assert sub.post(body) == "processed"
    assert sub.premium() == ("revoked", False)


def test_a_view_showing_the_refund_again_after_the_reversal_revokes_again(world):
    """Refunded, reversed (seen by a later view), then refunded again: the newest view
    decides, in any order; the stamp kept is the newest view that showed the refund."""
    user, key = new_user(), "3100020"
    sub = Refunded(world, user, key)
    reversed_, again = now() - timedelta(days=1), now() - timedelta(hours=2)
    bodies = [sub.bought_body, sub.refund_body, sub.renewal_status(reversed_),
              sub.renewal_status(again, revocationDate=ms(again), revocationReason=0)]
    for body in reversed(bodies):
        assert sub.post(body) == "processed"
    assert sub.premium() == ("revoked", False)


def test_reconcile_reads_a_revoked_subscription_again_and_sees_the_reversal(world, apple_api):
    """REFUND_REVERSED lost, and no other notification: the daily reconcile reads the revoked
    subscription again while its period lasts (here 26 days more, far past the window of
    ``--since-days`` and ``--ahead-days``) and Get All Subscription Statuses shows the
    transaction without its refund: the period is given back."""
    user, key = new_user(), "3100030"
    sub = Refunded(world, user, key)
    for body in (sub.bought_body, sub.refund_body):
        assert sub.post(body) == "processed"
    assert sub.premium() == ("revoked", False)
    apple_api.statuses[key] = apple_statuses(world, key, sub.view(now()), world.apple.renewal(key), status=1)

    code, output = world.reconcile("--source", "apple")

    assert code == 0, output
    assert "apple: checked 1, changed 1" in output, output
    assert sub.premium() == ("active", True)
    code, output = world.reconcile("--source", "apple")  # settled: not read again
    assert "apple: checked 0" in output, output


def test_reconcile_leaves_a_refund_that_stands(world, apple_api):
    """Read again, the transaction still shows the refund: it stays revoked."""
    user, key = new_user(), "3100040"
    sub = Refunded(world, user, key)
    for body in (sub.bought_body, sub.refund_body):
        sub.post(body)
    standing = sub.view(now(), revocationDate=ms(sub.refunded), revocationReason=0)
    apple_api.statuses[key] = apple_statuses(world, key, standing, world.apple.renewal(key, auto_renew=False), 5)

    code, output = world.reconcile("--source", "apple")

    assert code == 0 and "apple: checked 1" in output, output
    assert sub.premium() == ("revoked", False)


def test_reconcile_does_not_read_a_refund_whose_period_ended(world, apple_api):
    """Bounded: a refunded period that ended before the window gives nothing back to grant,
    and is not read again every day for ever."""
    user, key, store = new_user(), "3100050", world.apple
    ended, refunded = now() - timedelta(days=10), now() - timedelta(days=20)
    view = store.transaction(key, token=user, signed=refunded, expires=ended, revoked=refunded)
    refund = store.notification("REFUND", signed=refunded, status=5, transaction=view,
                                renewal=store.renewal(key, auto_renew=False, signed=refunded, renewalDate=ms(ended)))
    assert world.apple_post(store.body(refund)).get_json() == {"status": "processed"}

    code, output = world.reconcile("--source", "apple")

    assert code == 0 and "apple: checked 0" in output, output
