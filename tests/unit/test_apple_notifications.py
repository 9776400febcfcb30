"""The App Store adapter with the ingest use case on the in-memory store."""
from __future__ import annotations

import itertools
import json
import uuid
from datetime import timedelta

import pytest

from devtools.apple_pki import mint_chain
from devtools.apple_store import AppStore, now
from gateway.config import from_env
from gateway.domain.catalog import Catalog
from gateway.ingest import Ingest
from gateway.providers.apple_notifications import AppleNotifications, build
from gateway.providers.unconfigured import Unconfigured
from tests.fakes.memory_store import MemoryStore

USER = str(uuid.uuid4())


@pytest.fixture(scope="module")
def chain():
    return mint_chain()


@pytest.fixture(scope="module")
def provider(chain, tmp_path_factory) -> AppleNotifications:
    root = chain.write_root(tmp_path_factory.mktemp("roots"))
    return build(from_env(AppStore(chain).env(root)), Catalog(products={}))


@pytest.fixture
def store(chain):
    return AppStore(chain)


def test_without_a_bundle_id_the_source_is_unconfigured():
    assert isinstance(build(from_env({}), Catalog(products={})), Unconfigured)


def test_delivery_is_keyed_by_notification_uuid_and_typed_with_its_subtype(provider, store):
    notification = store.notification("DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_DISABLED",
                                      transaction=store.transaction("1", token=USER))
    body = store.body(notification)
    delivery = provider.verify(body, {})
    assert (delivery.source, delivery.event_id, delivery.event_type) == (
        "apple", notification["notificationUUID"], "DID_CHANGE_RENEWAL_STATUS:AUTO_RENEW_DISABLED")
    assert delivery.payload == body.decode()
    assert set(delivery.data) == {"notification", "transaction"}


def test_stored_event_translates_without_verifying_again(provider, store):
    delivery = provider.verify(store.body(store.notification(
        "DID_RENEW", transaction=store.transaction("2", token=USER), renewal=store.renewal("2"))), {})
    stored = json.loads(json.dumps(delivery.data))  # what the JSON column gives back to the retry worker
    assert provider.translate_data(stored) == provider.translate_data(delivery.data)
    assert provider.translate_data(stored).snapshots[0].user_sub == USER


def _history(store) -> list[bytes]:
    start = now() - timedelta(hours=1)
    at = [start + timedelta(minutes=m) for m in range(4)]
    return [store.body(n) for n in (
        store.notification("SUBSCRIBED", "INITIAL_BUY", signed=at[0], transaction=store.transaction("9", token=USER, signed=at[0])),
        store.notification("DID_RENEW", signed=at[1], transaction=store.transaction("9", token=USER, signed=at[1])),
        store.notification("REFUND", signed=at[2], transaction=store.transaction("9", token=USER, signed=at[2], revoked=at[2])),
        store.notification("DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_DISABLED", signed=at[1],
                           transaction=store.transaction("9", token=USER, signed=at[1]),
                           renewal=store.renewal("9", auto_renew=False)),
    )]


def test_any_order_of_the_same_notifications_ends_in_the_same_state(provider, store):
    ends = set()
    for order in itertools.permutations(_history(store)):
        memory = MemoryStore()
        ingest = Ingest(memory, Catalog(products={}))
        for body in order + order[:1]:  # with a redelivery
            ingest.receive(provider, body, {})
        with memory.transaction() as tx:
            subscription = tx.get_subscription("apple", "9")
            ends.add((subscription.snapshot.status.value, subscription.owner, tuple(tx.entitlements_of(USER))))
    assert len(ends) == 1 and next(iter(ends))[0] == "revoked"
