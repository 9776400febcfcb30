"""A value the database refuses for good is not an outage, on either database.

The refusal is real: a unique index the gateway does not know of, added for the test, which
SQLite and PostgreSQL both enforce. An outage (a write refused by a trigger, as a full disk
would) stays ``StoreUnavailable``, a 503 and a deferred event.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from devtools import revenuecat as rc
from gateway.apply import apply_translation
from gateway.domain.catalog import Catalog
from gateway.domain.changes import Translation
from gateway.domain.model import Snapshot, Status
from gateway.store.port import StoreRefused, StoreUnavailable
from gateway.store.sql import SqlStore, make_engine
from tests.e2e.conftest import refuse_writes  # noqa: F401 (a fixture)

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
HEADERS = {"Authorization": rc.AUTH, "Content-Type": "application/json"}


@pytest.fixture
def unique_product(database_url):
    """At most one subscription per product_id: a rule only the database knows."""
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE UNIQUE INDEX test_one_per_product ON subscriptions (product_id)")
    yield
    with engine.begin() as connection:  # PostgreSQL keeps its schema between tests
        connection.exec_driver_sql("DROP INDEX test_one_per_product")
    engine.dispose()


@pytest.fixture
def store(database_url):
    store = SqlStore(make_engine(database_url))
    yield store
    store.engine.dispose()


def _snapshot(key: str) -> Snapshot:
    return Snapshot(source="stripe", key=key, as_of=T0, status=Status.ACTIVE, product_id="price_same",
                    expires_at=T0 + timedelta(days=30), will_renew=True, user_sub="alice")


def test_a_constraint_broken_is_store_refused_and_commits_nothing(store, unique_product):
    with store.transaction() as tx:
        apply_translation(tx, Translation(snapshots=(_snapshot("sub_a"),)), Catalog(products={}), T0)
    with pytest.raises(StoreRefused, match="UniqueViolation|IntegrityError"):
        with store.transaction() as tx:
            tx.record_event(source="stripe", event_id="evt_refused", event_type="t", received_at=T0,
                            payload="{}", data={})
            apply_translation(tx, Translation(snapshots=(_snapshot("sub_b"),)), Catalog(products={}), T0)
    with store.transaction(readonly=True) as tx:
        assert tx.find_event("stripe", "evt_refused") is None and tx.get_subscription("stripe", "sub_b") is None


def test_a_refused_write_is_still_an_outage(store, refuse_writes):
    refuse_writes.on("events")
    with pytest.raises(StoreUnavailable):
        with store.transaction() as tx:
            tx.record_event(source="stripe", event_id="evt_full", event_type="t", received_at=T0,
                            payload="{}", data={})
    refuse_writes.off()


def _event(app, event_id: str):
    with app.extensions["gateway"].store.transaction(readonly=True) as tx:
        return tx.find_event("revenuecat", event_id)


def test_a_delivery_the_database_refuses_fails_at_once_and_answers_400(make_app, unique_product):
    app = make_app(REVENUECAT_WEBHOOK_AUTH=rc.AUTH)
    client = app.test_client()
    first = rc.event("INITIAL_PURCHASE", user="user-a", transaction="2000001")
    assert client.post("/webhooks/revenuecat", data=rc.body(first), headers=HEADERS).get_json() == \
        {"status": "processed"}
    second = rc.event("INITIAL_PURCHASE", user="user-b", transaction="2000002")  # same product: refused
    answer = client.post("/webhooks/revenuecat", data=rc.body(second), headers=HEADERS)
    assert (answer.status_code, answer.get_json()["error"]) == (400, "store_refused")
    event = _event(app, second["id"])
    assert (event.status, event.attempts, event.next_attempt_at) == ("failed", 1, None)  # not deferred
    assert "refused by the database" in event.last_error
    again = client.post("/webhooks/revenuecat", data=rc.body(second), headers=HEADERS)
    assert again.get_json() == {"status": "duplicate"}  # a resend is not retried either
    result = app.test_cli_runner().invoke(args=["events", "retry"])
    assert result.exit_code == 0, result.output
    assert _event(app, second["id"]).status == "failed"


def test_an_outage_still_defers(make_app, refuse_writes):
    app = make_app(REVENUECAT_WEBHOOK_AUTH=rc.AUTH)
    refuse_writes.on("subscriptions")
    delivery = rc.event("INITIAL_PURCHASE", user="user-c", transaction="2000003")
    answer = app.test_client().post("/webhooks/revenuecat", data=rc.body(delivery), headers=HEADERS)
    refuse_writes.off()
    assert answer.get_json() == {"status": "deferred"}
    assert _event(app, delivery["id"]).status == "deferred"
