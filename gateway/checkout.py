"""Checkout and Customer Portal sessions for a signed-in user: the use case.

The user's Stripe customer is linked to the sub in our store before any session exists,
so every webhook about that customer finds its owner.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from gateway.apply import apply_translation
from gateway.domain.entitlement_events import Cause
from gateway.domain.catalog import Catalog
from gateway.domain.changes import Link, Translation
from gateway.domain.entitlements import iso
from gateway.errors import Conflict, Unavailable
from gateway.providers import stripe_checkout
from gateway.store.port import Store, StoreUnavailable


class Checkout:
    def __init__(self, stripe: stripe_checkout.StripeCheckout, store: Store, catalog: Catalog,
                 clock: Callable[[], datetime]) -> None:
        self.stripe, self.store, self.catalog, self.clock = stripe, store, catalog, clock

    def checkout_session(self, user_sub: str, price_id: str, success_url: str, cancel_url: str) -> dict:
        self._refuse_what_is_held(user_sub, price_id)
        customer = self._customer_of(user_sub)
        return self.stripe.checkout_session(customer, user_sub, price_id, success_url, cancel_url)

    def portal_session(self, user_sub: str, return_url: str) -> dict:
        return self.stripe.portal_session(self._customer_of(user_sub), return_url)

    def _refuse_what_is_held(self, user_sub: str, price_id: str) -> None:
        """A price whose every entitlement the user holds now, from any store, is not sold
        again: a second subscription would bill the user twice for the same thing (the App
        Store and Google Play refuse such a purchase too). A price granting more, an upgrade,
        is sold. This guards the session only: it decides nothing the user gets, and a
        purchase completed elsewhere while the session is open is still taken as it comes."""
        now = self.clock()
        try:
            held = {grant.name: grant for grant in self.store.entitlements_of(user_sub) if grant.is_active(now)}
        except StoreUnavailable as exc:
            raise Unavailable("the user's entitlements cannot be read right now", code="store_unavailable") from exc
        wanted = self.catalog.entitlements_for("stripe", price_id)
        if wanted and all(name in held for name in wanted):
            owned = ", ".join(f"{name} (from {held[name].source}, until {iso(held[name].expires_at) or 'no end'})"
                              for name in wanted)
            raise Conflict(f"the user already holds what this price grants: {owned}; manage that "
                           "subscription where it was bought", code="already_entitled")

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
