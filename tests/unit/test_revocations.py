"""Revocations a store shows while they stand (the App Store's ``revocationDate``): a view of
the period stamped after the newest view showing one, without it, gives it back; anything
else stays as final as a refund is. Mutations these catch: ``shown_reversed`` always False
(the old rule), its ``>`` made ``>=`` or ``<``, ``_latest`` keeping the oldest stamp, and
``shows_revocation`` counted for a store that does not set it (Stripe's refund undone)."""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest

from gateway.domain.model import Snapshot, Status, merge_snapshot
from gateway.domain.revocations import Revocations

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
END = T0 + timedelta(days=30)
CAUSE = "refunded:t1"


def view(hours: float, status=Status.ACTIVE, source="apple", signed: float | None = None, **kw) -> Snapshot:
    """A view stamped ``hours`` after T0, showing what was signed ``signed`` hours after it
    (by default then too)."""
    at = T0 + timedelta(hours=hours)
    shown = T0 + timedelta(hours=hours if signed is None else signed)
    return Snapshot(source, "1000", at, status, "monthly", END, status is Status.ACTIVE,
                    period_id="t1", shown_as_of=shown if source == "apple" else None, **kw)


def refund(hours: float, source="apple") -> Snapshot:
    return view(hours, Status.REVOKED, source, revokes=CAUSE, shows_revocation=source == "apple")


def merged(snapshots):
    held = None
    for snapshot in snapshots:
        held = merge_snapshot(held, snapshot)
    return held


def test_the_stamp_is_the_newest_view_that_showed_the_refund_in_any_order():
    first, second = Revocations().seeing(refund(1)), Revocations().seeing(refund(3))
    assert first.seeing(refund(3)) == second.seeing(refund(1))
    assert second.seeing(refund(1)).shown == {(CAUSE, T0 + timedelta(hours=3))}


@pytest.mark.parametrize("hours, held", [(2, CAUSE), (3, CAUSE), (4, None)])
def test_only_a_view_stamped_after_the_newest_showing_the_refund_gives_it_back(hours, held):
    revocations = Revocations().seeing(refund(1)).seeing(refund(3))
    assert revocations.holding(view(hours)) == held


def test_any_order_and_duplicates_of_the_same_views_end_the_same():
    views = [view(0), refund(1), view(0.5), view(2), refund(1)]
    ends = {merged(order) for order in itertools.permutations(views)}
    assert len(ends) == 1
    (end,) = ends
    assert (end.snapshot.status, end.latest.as_of) == (Status.ACTIVE, T0 + timedelta(hours=2))


def test_a_later_notification_showing_a_transaction_signed_before_the_refund_gives_nothing_back():
    """The view is as new as what it shows: a notification signed after the refund that
    carries the transaction as signed before it tells nothing of a reversal."""
    revocations = Revocations().seeing(refund(1))
    assert revocations.holding(view(2, signed=0.5)) == CAUSE
    assert revocations.holding(view(2, signed=1.5)) is None
    assert revocations.holding(view(2, source="google")) == CAUSE  # not known: nothing


def test_without_the_later_view_the_refund_stands_in_any_order():
    for order in itertools.permutations([view(0), refund(1), view(0.5)]):
        assert merged(order).snapshot.status is Status.REVOKED


def test_a_refund_the_store_does_not_show_stays_final():
    """Stripe goes on showing a refunded subscription as active: its later views say nothing."""
    held = merged([view(0, source="stripe"), refund(1, source="stripe"), view(2, source="stripe")])
    assert held.revocations.shown == frozenset()
    assert held.snapshot.status is Status.REVOKED
