"""The Stripe source wired to the in-memory store and the local Stripe fake, for unit tests.

Deliveries go through the real ingest use case (verify, record, apply) with real
signatures; the Stripe API is the local HTTP fake, never a patch.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from devtools.stripe_signing import new_secret, signed
from gateway.domain.catalog import parse_catalog
from gateway.ingest import Ingest
from gateway.jobs.retry import retry_due
from gateway.providers.stripe_api import StripeHttpApi
from gateway.providers.stripe_events import StripeEvents
from tests.fakes.memory_store import MemoryStore
from gateway.web.presenters import entitlements_answer
from tests.support.events import find_event

CATALOG_DOCUMENT = {
    "entitlements": {"premium": {"stripe": ["price_monthly", "price_yearly"]},
                     "family": {"stripe": ["prod_family"]}},
    "default": None,
}
CATALOG = parse_catalog(CATALOG_DOCUMENT)


class StripeHarness:
    def __init__(self, fake=None, timeout: float = 2.0, behind: timedelta = timedelta(0)) -> None:
        """``behind``: how far the gateway's clock runs behind Stripe's (the fake's, and the
        ``created`` of the events tests make)."""
        self.secret = new_secret()
        self.fake = fake
        api = StripeHttpApi(fake.api_key, fake.url, timeout=timeout) if fake else None
        self.source = StripeEvents((self.secret,), CATALOG, api, clock=lambda: datetime.now(timezone.utc) - behind)
        self.store = MemoryStore()
        self.skew = -behind
        self.ingest = Ingest(self.store, CATALOG, clock=lambda: datetime.now(timezone.utc) + self.skew)

    def deliver(self, event: dict) -> str:
        body, headers = signed(event, self.secret)
        return self.ingest.receive(self.source, body, headers)

    def retry(self):
        """Run the retry worker once the longest backoff (six hours) has passed."""
        self.skew += timedelta(hours=7)
        return retry_due(self.ingest, {"stripe": self.source})

    def answer(self, user: str) -> dict:
        with self.store.transaction() as tx:
            grants = tx.entitlements_of(user)
        return entitlements_answer(user, grants, datetime.now(timezone.utc))

    def stored(self, key: str):
        with self.store.transaction() as tx:
            return tx.get_subscription("stripe", key)

    def event(self, event_id: str):
        with self.store.transaction() as tx:
            return find_event(tx, "stripe", event_id)
