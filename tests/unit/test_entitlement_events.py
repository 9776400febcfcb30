"""Entitlement change events: one per change a reader of the entitlement API would see."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from gateway.domain import entitlement_events as ev
from gateway.domain.entitlements import Grant, view
from gateway.domain.model import Status

NOW = datetime(2026, 12, 1, 12, tzinfo=timezone.utc)
NEVER_SWEPT = NOW - timedelta(days=365)  # the expiry sweep's mark, long before anything lapsed
CAUSE = ev.Cause("delivery", "stripe", "evt_1")


def grant(status=Status.ACTIVE, days=30, **fields) -> Grant:
    return Grant(**{"name": "premium", "status": status, "expires_at": NOW + timedelta(days=days),
                    "will_renew": True, "source": "stripe", "product_id": "price_monthly",
                    "subscription_key": "sub_1", **fields})


def events(before, after, reported_through=NEVER_SWEPT):
    return ev.events("u1", ev.changed(before, after), NOW, CAUSE, reported_through)


@pytest.mark.parametrize("before, after, expected", [
    ([], [grant()], ev.GRANTED),
    ([grant(Status.EXPIRED, days=-1)], [grant()], ev.GRANTED),
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
    (change,) = events(before, after)
    assert (change.type, change.user_id, change.entitlement) == (expected, "u1", "premium")
    assert change.before == (view(before[0], NOW) if before else None)
    assert change.after == (view(after[0], NOW) if after else None)
    assert (change.cause, change.occurred_at, change.position) == (CAUSE.as_dict(), NOW, None)


def test_a_late_renewal_is_a_renewal_until_the_sweep_reported_the_lapse():
    lapsed, renewed = grant(days=-1), grant(days=29)
    assert [e.type for e in events([lapsed], [renewed])] == [ev.RENEWED]
    assert [e.type for e in events([lapsed], [renewed], reported_through=NOW)] == [ev.GRANTED]
    # A store's expiry of a row that lapsed unreported is the feed's "expired".
    assert [e.type for e in events([lapsed], [grant(Status.EXPIRED, days=-1)])] == [ev.EXPIRED]


def test_no_change_no_event():
    assert events([grant()], [grant()]) == []
    # Another subscription granting the same view: nothing a reader would notice.
    assert events([grant()], [grant(subscription_key="sub_2")]) == []


def test_each_entitlement_changes_on_its_own():
    before = [grant(), grant(name="family")]
    after = [grant(days=60), dataclasses.replace(grant(name="family"), status=Status.REVOKED)]
    assert [(c.entitlement, c.type) for c in events(before, after)] == \
        [("family", ev.REVOKED), ("premium", ev.RENEWED)]


def test_expiry_by_time_is_an_event_of_its_own():
    lapsed = grant(days=-1)
    change = ev.expired("u1", lapsed)
    assert (change.type, change.before["active"], change.after["active"], change.after["status"]) == \
        (ev.EXPIRED, True, False, "expired")
    assert change.occurred_at == lapsed.expires_at and change.cause["kind"] == "expiry"


def test_the_wire_body_carries_every_field():
    (change,) = events([], [grant()])
    body = dataclasses.replace(change, position=7).body()
    assert body == {"id": change.id, "type": ev.GRANTED, "position": "7", "user_id": "u1", "entitlement": "premium",
                    "before": None, "after": view(grant(), NOW), "cause": CAUSE.as_dict(),
                    "occurred_at": "2026-12-01T12:00:00Z"}
    assert change.id.startswith("evt_") and len(change.id) == 36
