"""Checkout and Customer Portal sessions for a signed-in user: the use case.

The user's Stripe customer is linked to the sub in our store before any session exists,
so every webhook about that customer finds its owner. A Checkout Session's URL is handed
out only once the session is recorded under the user's lock, against the tombstone
(``_hand_out``); the deletion, under the same lock, holds what it expired against those
records (``accounts.erase``). A portal session's URL is handed out only once the tombstone
is read again under that lock, after Stripe made the session (``_standing``). Stripe is
called with no lock held.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from gateway.apply import apply_translation
from gateway.domain.entitlement_events import Cause
from gateway.domain.catalog import Catalog
from gateway.domain.changes import Link, Translation
from gateway.domain import deletion
from gateway.domain.deletion import SESSION_LIFETIME
from gateway.domain.entitlements import Grant, iso
from gateway.errors import Conflict, Forbidden, Unavailable
from gateway.providers import stripe_checkout
from gateway.store.port import Store, StoreUnavailable, Transaction


class Checkout:
    def __init__(self, stripe: stripe_checkout.StripeCheckout, store: Store, catalog: Catalog,
                 clock: Callable[[], datetime]) -> None:
        self.stripe, self.store, self.catalog, self.clock = stripe, store, catalog, clock

    def checkout_session(self, user_sub: str, price_id: str, success_url: str, cancel_url: str) -> dict:
        _refuse_what_is_held(self._held(user_sub), self.catalog.entitlements_for("stripe", price_id))
        customer = self._customer_of(user_sub)
        session = self.stripe.checkout_session(customer, user_sub, price_id, success_url, cancel_url)
        self._hand_out(user_sub, session["id"], customer)
        return session

    def portal_session(self, user_sub: str, return_url: str) -> dict:
        """A portal URL, unless the account was deleted, before or while the session was made.
        Stripe cannot expire a portal session (its API only creates them): one made for a
        deletion that committed meanwhile is never shown, and Stripe lets it lapse unvisited.
        One handed out before the deletion commits stays usable for its short life; the
        deletion has cancelled the Stripe subscriptions by then."""
        self._held(user_sub)
        session = self.stripe.portal_session(self._customer_of(user_sub), return_url)
        try:
            standing = self._standing(user_sub)
        except StoreUnavailable as exc:
            raise Unavailable("the portal session cannot be checked right now", code="store_unavailable") from exc
        if not standing:
            raise _deleted()
        return session

    def _held(self, user_sub: str) -> dict[str, Grant]:
        """The entitlements the user holds now. A deleted account is refused before Stripe
        is asked for anything: it would make the user a customer again, and a subscription
        bought then would bill a user the tombstone grants nothing."""
        now = self.clock()
        try:
            with self.store.transaction(readonly=True) as tx:
                deleted = not deletion.stands(tx.deletion_report(user_sub))
                grants = [] if deleted else tx.entitlements_of(user_sub)
        except StoreUnavailable as exc:
            raise Unavailable("the user's entitlements cannot be read right now", code="store_unavailable") from exc
        if deleted:
            raise _deleted()
        return {grant.name: grant for grant in grants if grant.is_active(now)}

    def _hand_out(self, user_sub: str, session_id: str, customer: str) -> None:
        """Record the session, under the user's lock, unless the account was deleted since
        ``_held`` read it: the deletion that committed meanwhile had listed the open sessions
        before this one existed. Refused, or not recorded, the session is expired and its URL
        never handed out. No lock is held across Stripe's call: the deletion waits on this
        transaction alone, and one committed first is seen here."""
        now = self.clock()
        try:
            standing = self._standing(user_sub, lambda tx: tx.note_checkout_session(
                user_sub, session_id, customer, now, now - SESSION_LIFETIME))
        except StoreUnavailable as exc:
            self.stripe.expire_session(session_id)
            raise Unavailable("the checkout session cannot be stored right now", code="store_unavailable") from exc
        if not standing:
            self.stripe.expire_session(session_id)
            raise _deleted()

    def _standing(self, user_sub: str, note: Callable[[Transaction], None] = lambda tx: None) -> bool:
        """Whether the account stands, read against the tombstone under the user's lock, which
        the deletion holds while it records the tombstone: one committed before is seen, one
        committing waited for. Standing, ``note(tx)`` is written in the same transaction."""
        with self.store.transaction() as tx:
            tx.lock_users([user_sub])
            standing = deletion.stands(tx.deletion_report(user_sub))
            if standing:
                note(tx)
        return standing

    def _customer_of(self, user_sub: str) -> str:
        customer = self.stripe.ensure_customer(user_sub)
        now = self.clock()
        try:
            with self.store.transaction() as tx:
                apply_translation(tx, Translation(links=(Link("stripe", customer, user_sub, now),)),
                                  self.catalog, now, cause=Cause("checkout", "stripe"))
        except StoreUnavailable as exc:
            raise Unavailable("the customer link cannot be stored right now", code="store_unavailable") from exc
        return customer


def build_checkout(settings, store: Store, catalog: Catalog, clock: Callable[[], datetime]) -> Checkout | None:
    """``None`` without ``STRIPE_API_KEY``: the checkout and portal endpoints answer 503."""
    sessions = stripe_checkout.build(settings)
    return Checkout(sessions, store, catalog, clock) if sessions else None


def _refuse_what_is_held(held: dict[str, Grant], wanted: tuple[str, ...]) -> None:
    """A price whose every entitlement the user holds now, from any store, is not sold
    again: a second subscription would bill the user twice for the same thing (the App
    Store and Google Play refuse such a purchase too). A price granting more, an upgrade,
    is sold. This guards the session only: it decides nothing the user gets, and a
    purchase completed elsewhere while the session is open is still taken as it comes."""
    if wanted and all(name in held for name in wanted):
        owned = ", ".join(f"{name} (from {held[name].source}, until {iso(held[name].expires_at) or 'no end'})"
                          for name in wanted)
        raise Conflict(f"the user already holds what this price grants: {owned}; manage that "
                       "subscription where it was bought", code="already_entitled")


def _deleted() -> Forbidden:
    """The refusal of a checkout for an account deleted, before or while it was opened."""
    return Forbidden("the account was deleted; it can buy nothing", code="account_deleted")
