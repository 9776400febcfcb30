"""Entitlement change events: one per change a reader of the entitlement API would see."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from gateway.domain import entitlement_events as ev
from gateway.domain.entitlements import Grant
from gateway.domain.model import Status

NOW = datetime(2026, 12, 1, 12, tzinfo=timezone.utc)


def grant(status=Status.ACTIVE, days=30, **fields) -> Grant:
    return Grant(**{"name": "premium", "status": status, "expires_at": NOW + timedelta(days=days),
                    "will_renew": True, "source": "stripe", "product_id": "price_monthly",
                    "subscription_key": "sub_1", **fields})


@pytest.mark.parametrize("before, after, expected", [
    ([], [grant()], ev.GRANTED),
    ([grant(Status.EXPIRED, days=-1)], [grant()], ev.GRANTED),
    ([grant(days=-1)], [grant()], ev.GRANTED),  # lapsed by time, then renewed late
    ([grant()], [grant(days=60)], ev.RENEWED),
    ([grant()], [grant(will_renew=False)], ev.CHANGED),
    ([grant()], [grant(Status.GRACE_PERIOD, days=3)], ev.CHANGED),
    ([grant()], [grant(Status.REVOKED)], ev.REVOKED),
    ([grant()], [], ev.REVOKED),  # transferred away: the row goes
    ([grant()], [grant(Status.EXPIRED, days=-1)], ev.EXPIRED),
    ([grant()], [grant(Status.PAUSED)], ev.CHANGED),
    ([grant(Status.EXPIRED, days=-1)], [grant(Status.REVOKED, days=-1)], ev.CHANGED),
])
def test_each_kind_of_change_is_named(before, after, expected):
    (change,) = ev.changes("u1", before, after, NOW)
    assert (change.type, change.user_id, change.entitlement) == (expected, "u1", "premium")
    assert change.before == (ev.view(before[0], NOW) if before else None)
    assert change.after == (ev.view(after[0], NOW) if after else None)


def test_no_change_no_event():
    assert ev.changes("u1", [grant()], [grant()], NOW) == []
    # Another subscription granting the same view: nothing a reader would notice.
    assert ev.changes("u1", [grant()], [grant(subscription_key="sub_2")], NOW) == []


def test_each_entitlement_changes_on_its_own():
    before = [grant(), grant(name="family")]
    after = [grant(days=60), dataclasses.replace(grant(name="family"), status=Status.REVOKED)]
    assert [(c.entitlement, c.type) for c in ev.changes("u1", before, after, NOW)] == \
        [("family", ev.REVOKED), ("premium", ev.RENEWED)]


def test_expiry_by_time_is_an_event_of_its_own():
    lapsed = grant(days=-1)
    change = ev.expired("u1", lapsed, NOW)
    assert (change.type, change.before["active"], change.after["active"], change.after["status"]) == \
        (ev.EXPIRED, True, False, "expired")
