"""The RevenueCat transfers register's retention (EVENTS_RETENTION_DAYS, gateway/jobs/retention.py).

A transfer that found nothing to move is recorded, so that a purchase stamped before it and
delivered after it still goes to the new owner. The register used to grow forever: now a
transfer stamped before the cutoff goes, in batches, unless a delivery not applied yet
(deferred, failed, abandoned) may be stamped before it. Each test goes through the real
webhook, the real prune and the real command line."""
from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from devtools import revenuecat as rc
from gateway.clock import utcnow
from gateway.jobs import retention
from gateway.store import tables
from gateway.store.retention import Retention
from tests.e2e.conftest import API_KEY
from tests.e2e.test_retention import Transactions, app, send, store  # noqa: F401 (app, store: fixtures)

NOW = utcnow()
DAY, HOUR = timedelta(days=1), timedelta(hours=1)
CUTOFF = retention.cutoff(90, NOW)


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def transfer(app, from_users: list[str], to_user: str, at: datetime) -> None:
    assert send(app, rc.transfer(from_users, [to_user], at_ms=ms(at))) == "processed"


def register(store) -> set[str]:
    """The accounts the register holds a transfer from."""
    with Retention.of(store).engine.connect() as connection:
        return set(connection.execute(sa.select(tables.transfers.c.account)).scalars())


def premium(app, *users: str) -> list[str]:
    client = app.test_client()
    return [user for user in users if client.get(f"/v1/users/{user}/entitlements", headers={
        "Authorization": f"Bearer {API_KEY}"}).get_json()["is_premium"]]


def purchase(at_ms: int) -> dict:
    """A yearly purchase by user-1, still running."""
    return rc.event("INITIAL_PURCHASE", user="user-1", at_ms=at_ms, expiration_at_ms=ms(NOW + 30 * DAY))


def prune(store, batch: int = retention.BATCH) -> retention.Report:
    return retention.prune(Retention.of(store), CUTOFF, batch)


def test_transfers_stamped_before_the_cutoff_go_younger_ones_stay(app, store):
    stamps = {"ancient": NOW - 400 * DAY, "just-past": CUTOFF - timedelta(seconds=1),
              "just-inside": CUTOFF + timedelta(seconds=1), "young": NOW - DAY}
    for name, at in stamps.items():
        transfer(app, [f"from-{name}"], f"to-{name}", at)
    done = prune(store)
    assert register(store) == {"from-just-inside", "from-young"}  # before: all four, for ever
    assert done.transfers == 2


def test_the_register_goes_a_batch_per_transaction_even_rows_stamped_alike(app, store):
    transfer(app, [f"anonymous-{n:02}" for n in range(25)], "user-9", NOW - 200 * DAY)  # 25 rows, one stamp
    for n in range(12):
        transfer(app, [f"user-{n}"], "user-x", NOW - 100 * DAY + n * HOUR)
    transfer(app, ["user-young"], "user-x", NOW - DAY)
    with Transactions(Retention.of(store).engine) as watched:
        done = prune(store, batch=10)
    assert watched.deleting("transfers") == [10, 10, 10, 7]
    assert done.transfers == 37 and register(store) == {"user-young"}


@pytest.mark.parametrize("stamped", [NOW - HOUR, CUTOFF + HOUR], ids=["an hour ago", "just inside the retention"])
def test_a_purchase_delivered_late_after_a_prune_still_goes_to_the_transfers_new_owner(app, store, stamped):
    # The TRANSFER came first and found nothing (RevenueCat retries a failed delivery for
    # 2 h 35 min: the purchase it moved may come after it); a prune ran in between.
    transfer(app, ["user-1"], "user-2", stamped)
    transfer(app, ["someone"], "someone-else", NOW - 100 * DAY)
    assert prune(store).transfers == 1 and register(store) == {"user-1"}
    assert send(app, purchase(ms(stamped) - 60_000)) == "processed"
    assert premium(app, "user-1", "user-2") == ["user-2"]


def record(store, evt: dict, received_at: datetime, status: str) -> None:
    """A RevenueCat delivery recorded and not applied: answered 200 (RevenueCat will not
    send it again) and left to the retry worker or an operator."""
    body = rc.body(evt).decode()
    with store.transaction() as tx:
        tx.record_events([dict(source="revenuecat", event_id=evt["id"], event_type=evt["type"],
                               received_at=received_at, payload=body, data=json.loads(body)["event"],
                               status=status)])


@pytest.mark.parametrize("status, command", [
    ("failed", ("events", "replay", "--failed")),
    ("deferred", ("events", "retry")),
    ("received", ("events", "retry")),  # abandoned mid-request: the retry worker takes it
])
def test_a_delivery_not_applied_yet_keeps_the_transfers_it_may_need_whatever_their_age(app, store, status, command):
    received = NOW - 100 * DAY
    record(store, purchase(ms(received) - 60_000), received, status)
    transfer(app, ["user-1"], "user-2", received + DAY)  # finds nothing: the purchase is not applied
    transfer(app, ["someone"], "someone-else", received - 40 * DAY)  # long before it: goes
    assert prune(store).transfers == 1 and register(store) == {"user-1"}

    result = app.test_cli_runner().invoke(args=list(command))
    assert result.exit_code == 0 and "processed: 1" in result.output, result.output
    assert premium(app, "user-1", "user-2") == ["user-2"]
    assert prune(store).transfers == 1 and register(store) == set()  # applied: nothing holds it any more


def test_retention_zero_keeps_the_register(make_app):
    app = make_app(REVENUECAT_WEBHOOK_AUTH=rc.AUTH, EVENTS_RETENTION_DAYS="0")
    transfer(app, ["user-1"], "user-2", NOW - 5000 * DAY)
    output = app.test_cli_runner().invoke(args=["events", "prune"]).output
    assert "the event log is kept" in output and register(app.extensions["gateway"].store) == {"user-1"}
