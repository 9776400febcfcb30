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
from gateway.store.sql import sql_store
from tests.e2e.conftest import refuse_writes  # noqa: F401 (a fixture)
from tests.support.events import find_event, record_event

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
HEADERS = {"Authorization": rc.AUTH, "Content-Type": "application/json"}


def unique_index(database_url, name: str, table: str, column: str):
    """A unique index only the database knows, dropped afterwards (PostgreSQL keeps its
    schema between tests)."""
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE UNIQUE INDEX {name} ON {table} ({column})")
    yield
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP INDEX {name}")
    engine.dispose()


@pytest.fixture
def unique_product(database_url):
    """At most one subscription per product_id: a rule only the database knows."""
    yield from unique_index(database_url, "test_one_per_product", "subscriptions", "product_id")


@pytest.fixture
def store(database_url):
    store = sql_store(database_url)
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
            record_event(tx, source="stripe", event_id="evt_refused", event_type="t", received_at=T0,
                         payload="{}", data={})
            apply_translation(tx, Translation(snapshots=(_snapshot("sub_b"),)), Catalog(products={}), T0)
    with store.transaction(readonly=True) as tx:
        assert find_event(tx, "stripe", "evt_refused") is None and tx.get_subscription("stripe", "sub_b") is None


def test_a_refused_write_is_still_an_outage(store, refuse_writes):
    refuse_writes.on("events")
    with pytest.raises(StoreUnavailable):
        with store.transaction() as tx:
            record_event(tx, source="stripe", event_id="evt_full", event_type="t", received_at=T0,
                         payload="{}", data={})
    refuse_writes.off()


def _event(app, event_id: str):
    with app.extensions["gateway"].store.transaction(readonly=True) as tx:
        return find_event(tx, "revenuecat", event_id)


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


def test_a_client_action_the_database_refuses_answers_400_not_503(make_app, unique_product, cognito, tmp_path):
    from devtools.apple_pki import mint_chain
    from devtools.apple_store import AppStore

    chain = mint_chain()
    store = AppStore(chain)
    app = make_app(**store.env(chain.write_root(tmp_path)), **cognito.env())
    client = app.test_client()

    def register(user: str, original: str):
        return client.post("/v1/purchases/apple", json={"signedTransaction": chain.sign(store.transaction(original))},
                           headers=cognito.header(user))

    assert register("0c5b2d6e-7f1a-4e8b-9c3d-2a1b0f9e8d7c", "3000001").status_code == 200
    answer = register("1d6c3e7f-8a2b-4f9c-8d4e-3b2c1a0f9e8d", "3000002")  # same product: refused
    assert (answer.status_code, answer.get_json()["error"]) == (400, "store_refused")
    with app.extensions["gateway"].store.transaction(readonly=True) as tx:
        assert tx.get_subscription("apple", "3000002") is None


@pytest.fixture
def unique_event_type(database_url):
    """At most one event per type: the event row itself is what the database refuses."""
    yield from unique_index(database_url, "test_one_per_type", "events", "event_type")


def test_a_delivery_whose_own_row_is_refused_answers_400_and_stores_nothing(make_app, unique_event_type):
    app = make_app(REVENUECAT_WEBHOOK_AUTH=rc.AUTH)
    client = app.test_client()
    assert client.post("/webhooks/revenuecat", data=rc.body(rc.event("TEST")), headers=HEADERS).status_code == 200
    second = rc.event("TEST")
    answer = client.post("/webhooks/revenuecat", data=rc.body(second), headers=HEADERS)
    assert (answer.status_code, answer.get_json()["error"]) == (400, "store_refused")
    assert _event(app, second["id"]) is None
