"""Account deletion against the in-memory store, with purchases stored while it cancels:
what it records is decided on the subscriptions as its transaction holds them."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gateway.accounts import ROUNDS, AccountDeletion, StoreApis
from gateway.apply import apply_translation
from gateway.domain.catalog import Catalog
from gateway.domain.changes import Link, Translation
from gateway.domain.model import Snapshot, Status
from gateway.errors import Unavailable
from gateway.providers.stripe_api import StripeApiError
from tests.fakes.memory_store import MemoryStore

USER = "user-1"
NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)


def subscribe(store: MemoryStore, key: str) -> None:
    snapshot = Snapshot(source="stripe", key=key, as_of=NOW, status=Status.ACTIVE, product_id="price_monthly",
                        expires_at=NOW + timedelta(days=30), will_renew=True, user_sub=USER)
    with store.transaction() as tx:
        apply_translation(tx, Translation(snapshots=(snapshot,)), Catalog(products={}), NOW)


class BuyingStripe:
    """Stripe, where the user buys again while each of the next ``purchases`` cancellations
    is in flight (another tab): the new subscription is stored before the cancel answers."""

    def __init__(self, store: MemoryStore, purchases: int) -> None:
        self.store, self.purchases, self.cancelled = store, purchases, []

    def cancel_subscription(self, key: str, idempotency_key: str | None = None) -> dict:
        if key in self.cancelled:
            raise StripeApiError("already canceled", refused=True, status=400)
        self.cancelled.append(key)
        if self.purchases:
            self.purchases -= 1
            subscribe(self.store, f"sub_bought_while_{key}")
        return {"id": key, "status": "canceled"}

    def subscription(self, key: str) -> dict:
        return {"id": key, "status": "canceled" if key in self.cancelled else "active"}

    def open_checkout_sessions(self, customer: str) -> list[dict]:
        return []


def deletion(purchases: int) -> tuple[MemoryStore, BuyingStripe, AccountDeletion]:
    store = MemoryStore()
    subscribe(store, "sub_first")
    stripe = BuyingStripe(store, purchases)
    return store, stripe, AccountDeletion(store, StoreApis(stripe=stripe), lambda: NOW)


def test_a_subscription_stored_while_billing_is_stopped_is_cancelled_before_the_deletion_is_recorded():
    store, stripe, accounts = deletion(purchases=1)
    report = accounts.delete(USER)
    assert stripe.cancelled == ["sub_first", "sub_bought_while_sub_first"]
    assert [item["source"] for item in report["cancelled"]] == ["stripe", "stripe"]
    assert store.state.entitlements.get(USER, []) == []


def test_purchases_stored_in_every_round_leave_the_account_undeleted_and_the_next_ask_completes():
    store, stripe, accounts = deletion(purchases=ROUNDS)
    with pytest.raises(Unavailable) as refused:
        accounts.delete(USER)
    assert refused.value.code == "account_changing"
    with store.transaction(readonly=True) as tx:
        assert tx.deletion_report(USER) is None  # nothing recorded: ask again
    assert len(stripe.cancelled) == ROUNDS
    report = accounts.delete(USER)
    assert len(report["cancelled"]) == ROUNDS + 1 and len(stripe.cancelled) == ROUNDS + 1


def store_snapshot(store: MemoryStore, key: str, status: Status, as_of: datetime) -> None:
    snapshot = Snapshot(source="stripe", key=key, as_of=as_of, status=status, product_id="price_monthly",
                        expires_at=as_of + timedelta(days=30), will_renew=status == Status.ACTIVE, user_sub=USER)
    with store.transaction() as tx:
        apply_translation(tx, Translation(snapshots=(snapshot,)), Catalog(products={}), as_of)


def test_a_purchase_live_after_the_deletion_and_not_dealt_with_is_recorded_once_to_stop():
    store, stripe, accounts = deletion(purchases=0)
    store_snapshot(store, "sub_ended", Status.EXPIRED, NOW - timedelta(days=40))
    accounts.delete(USER)
    later = NOW + timedelta(minutes=1)

    store_snapshot(store, "sub_first", Status.ACTIVE, later)  # what the deletion cancelled: Stripe's late word
    store_snapshot(store, "sub_late", Status.ACTIVE, later)  # bought after the deletion
    store_snapshot(store, "sub_late", Status.ACTIVE, later + timedelta(seconds=1))  # and told of again
    store_snapshot(store, "sub_ended", Status.ACTIVE, later)  # ended then, bought again under its key

    with store.transaction(readonly=True) as tx:
        rows = tx.deleted_subscriptions_of(USER)
    assert [(row.key, row.outcome) for row in rows] == [
        ("sub_ended", "pending"), ("sub_first", "reported"), ("sub_late", "pending")]
    assert all(row.next_attempt_at == later for row in rows if row.outcome == "pending")
    assert store.state.entitlements.get(USER, []) == []


def test_a_subscription_the_deletion_dealt_with_is_recorded_again_when_it_ended_and_is_bought_again():
    store, stripe, accounts = deletion(purchases=0)
    accounts.delete(USER)  # sub_first: cancelled by the deletion, as Stripe will tell
    later = NOW + timedelta(minutes=1)
    store_snapshot(store, "sub_first", Status.ACTIVE, later)  # a renewal-like word of the same purchase
    assert [row.outcome for row in store.state.deleted_subscriptions.values()] == ["reported"]

    store_snapshot(store, "sub_first", Status.EXPIRED, later + timedelta(days=1))
    store_snapshot(store, "sub_first", Status.ACTIVE, later + timedelta(days=2))  # bought again under its key
    store_snapshot(store, "sub_first", Status.ACTIVE, later + timedelta(days=3))  # its next word: the same purchase

    (row,) = store.state.deleted_subscriptions.values()
    assert (row.outcome, row.found_at, row.next_attempt_at) == ("pending", later + timedelta(days=2),
                                                                later + timedelta(days=2))


def test_a_deleted_users_anonymous_revenuecat_id_holds_only_purchases_seen_until_the_deletion():
    """A store account kept by the tombstone makes a purchase naming nobody the deleted
    user's; a RevenueCat anonymous id (an app install's) only one seen until the deletion."""
    store, _, accounts = deletion(purchases=0)
    anonymous = "$RCAnonymousID:0f0e0d0c"
    with store.transaction() as tx:
        apply_translation(tx, Translation(links=(Link("revenuecat", anonymous, USER, NOW),
                                                 Link("stripe", "cus_1", USER, NOW))), Catalog(products={}), NOW)
    accounts.delete(USER)  # at NOW

    def bought(source: str, account: str, key: str, as_of: datetime) -> str | None:
        snapshot = Snapshot(source=source, key=key, as_of=as_of, status=Status.ACTIVE, product_id="monthly",
                            expires_at=as_of + timedelta(days=30), will_renew=True, account=account)
        with store.transaction() as tx:
            apply_translation(tx, Translation(snapshots=(snapshot,)), Catalog(products={}), NOW + timedelta(hours=1))
            return tx.get_subscription(source, key).owner

    assert bought("revenuecat", anonymous, "rc_before", NOW - timedelta(minutes=1)) == USER
    assert bought("revenuecat", anonymous, "rc_since", NOW + timedelta(minutes=1)) is None
    assert bought("stripe", "cus_1", "sub_since", NOW + timedelta(minutes=1)) == USER
    assert sorted(row.key for row in store.state.deleted_subscriptions.values()
                  if row.outcome == "pending") == ["rc_before", "sub_since"]


class CheckoutStripe:
    """Stripe's Checkout Sessions, where a checkout hands the user ``late`` sessions out while
    the deletion's list of the open ones is in flight (recorded, as ``gateway.checkout`` does)."""

    def __init__(self, store: MemoryStore, late: int = 0) -> None:
        self.store, self.late, self.open, self.listed = store, late, {}, []

    def hand_out(self, session_id: str, customer: str) -> None:
        self.open[session_id] = customer
        with self.store.transaction() as tx:
            tx.note_checkout_session(USER, session_id, customer, NOW, NOW - timedelta(days=1))

    def open_checkout_sessions(self, customer: str) -> list[dict]:
        self.listed.append(customer)
        answer = [{"id": session} for session, owner in sorted(self.open.items()) if owner == customer]
        if self.late:
            self.late -= 1
            self.hand_out(f"cs_during_list_{self.late}", customer)
        return answer

    def expire_checkout_session(self, session_id: str) -> dict:
        if self.open.pop(session_id, None) is None:
            raise StripeApiError("not open", refused=True, status=400)
        return {"id": session_id, "status": "expired"}


def link_customer(store: MemoryStore, customer: str) -> None:
    with store.transaction() as tx:
        apply_translation(tx, Translation(links=(Link("stripe", customer, USER, NOW),)), Catalog(products={}), NOW)


def test_a_session_handed_out_while_the_open_ones_are_listed_sends_the_deletion_round_again():
    store = MemoryStore()
    link_customer(store, "cus_1")
    stripe = CheckoutStripe(store, late=1)
    stripe.hand_out("cs_before", "cus_1")

    AccountDeletion(store, StoreApis(stripe=stripe), lambda: NOW).delete(USER)

    assert stripe.open == {} and stripe.listed == ["cus_1", "cus_1"]
    with store.transaction(readonly=True) as tx:
        assert tx.deletion_report(USER) is not None and tx.checkout_sessions_of(USER, NOW - timedelta(days=1)) == {}


def test_a_session_handed_out_under_a_customer_no_longer_linked_is_expired_too():
    store = MemoryStore()
    stripe = CheckoutStripe(store)
    stripe.hand_out("cs_unlinked", "cus_unlinked")

    AccountDeletion(store, StoreApis(stripe=stripe), lambda: NOW).delete(USER)

    assert stripe.open == {} and stripe.listed == ["cus_unlinked"]


def test_sessions_stripe_has_expired_by_now_are_not_asked_about():
    store = MemoryStore()
    stripe = CheckoutStripe(store)
    with store.transaction() as tx:
        tx.note_checkout_session(USER, "cs_old", "cus_old", NOW - timedelta(hours=25), NOW - timedelta(days=2))

    AccountDeletion(store, StoreApis(stripe=stripe), lambda: NOW).delete(USER)

    assert stripe.listed == []
