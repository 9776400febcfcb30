"""A local fake of RevenueCat's REST API v1 ``GET /v1/subscribers/{app_user_id}``.

Answers in the Customer Info Model (https://www.revenuecat.com/docs/api-v1/customer-info-model):
``{"request_date", "request_date_ms", "subscriber": {"original_app_user_id", "entitlements",
"subscriptions", ...}}`` with ISO 8601 times; checks ``Authorization: Bearer <secret key>``.
Switches: ``down`` (503), ``down_after`` (503 once this many calls were answered), ``throttle`` (the next N calls answer 429 with Retry-After),
``hold()`` (the next answer is read at once and sent on release).
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote

import copy

from devtools.servers import Held, LocalServer

API_KEY = "sk_rc_test_reconcile"
PREFIX = "/v1/subscribers/"


def iso(when: datetime | None) -> str | None:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if when else None


class FakeRevenueCat:
    def __init__(self) -> None:
        self.subscribers: dict[str, dict] = {}
        self.down, self.throttle, self.retry_after = False, 0, "1"
        self.down_after: int | None = None
        self.calls: list[str] = []
        self._held: Held | None = None
        self.server = LocalServer({"*": self._route})

    def subscribe(self, user: str, product: str, *, expires: datetime, entitlement: str = "premium",
                  refunded: datetime | None = None, unsubscribed: datetime | None = None,
                  sandbox: bool = False, billing_issue: datetime | None = None,
                  first_bought: datetime | None = None) -> None:
        """The app user's latest purchase of a monthly ``product``, ending at ``expires``,
        first bought at ``first_bought``, else when an earlier call for this product said,
        else now (a purchase is never dated after the period it pays for); ``billing_issue``:
        when the payment of its renewal began failing."""
        subscriber = self.subscribers.setdefault(user, {
            "original_app_user_id": user, "first_seen": iso(datetime.now(timezone.utc)),
            "management_url": None, "non_subscriptions": {}, "other_purchases": {},
            "entitlements": {}, "subscriptions": {}, "subscriber_attributes": {}})
        earlier = subscriber["subscriptions"].get(product, {}).get("original_purchase_date")
        original = iso(first_bought) if first_bought else earlier or iso(datetime.now(timezone.utc))
        period_start = iso(expires - timedelta(days=30))
        subscriber["subscriptions"][product] = {
            "expires_date": iso(expires), "purchase_date": period_start,
            "original_purchase_date": original, "ownership_type": "PURCHASED",
            "period_type": "normal", "store": "app_store", "is_sandbox": sandbox,
            "unsubscribe_detected_at": iso(unsubscribed), "billing_issues_detected_at": iso(billing_issue),
            "grace_period_expires_date": None, "refunded_at": iso(refunded), "auto_resume_date": None,
            "store_transaction_id": "2000000999"}
        subscriber["entitlements"][entitlement] = {
            "expires_date": iso(expires), "grace_period_expires_date": None,
            "product_identifier": product, "purchase_date": period_start}

    def buy_once(self, user: str, product: str, *, at: datetime) -> None:
        """A purchase that does not renew (a lifetime unlock): listed under non_subscriptions."""
        subscriber = self.subscribers.setdefault(user, {
            "original_app_user_id": user, "first_seen": iso(at), "management_url": None, "non_subscriptions": {},
            "other_purchases": {}, "entitlements": {}, "subscriptions": {}, "subscriber_attributes": {}})
        subscriber["non_subscriptions"].setdefault(product, []).append(
            {"id": f"np_{len(subscriber['non_subscriptions'])}", "purchase_date": iso(at), "store": "play_store",
             "is_sandbox": False, "store_transaction_id": "GPA.0000-0000-0000-00001"})

    def hold(self) -> Held:
        """Read the subscriber for the next request at once, but answer only on
        ``release()``: an answer slow to arrive, with the state of when it was read."""
        self._held = Held()
        return self._held

    def env(self) -> dict[str, str]:
        return {"REVENUECAT_API_KEY": API_KEY, "REVENUECAT_API_BASE": self.server.url}

    def _route(self, request) -> tuple:
        self.calls.append(request.path)
        if self.down or (self.down_after is not None and len(self.calls) > self.down_after):
            return 503, {"code": 7110, "message": "Service unavailable."}, {}
        if self.throttle:
            self.throttle -= 1
            return 429, {"code": 7117, "message": "Rate limit exceeded."}, {"Retry-After": self.retry_after}
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return 401, {"code": 7225, "message": "Invalid API key."}, {}
        if request.method != "GET" or not request.path.startswith(PREFIX):
            return 404, {"code": 7259, "message": "Not found."}, {}
        user = unquote(request.path[len(PREFIX):])
        subscriber = copy.deepcopy(self.subscribers.get(user)) or {"original_app_user_id": user, "entitlements": {},
                                                                   "subscriptions": {}}
        now = time.time()
        if (held := self._held) is not None:
            self._held = None  # one answer only
            held.reached()
        return 200, {"request_date": iso(datetime.now(timezone.utc)), "request_date_ms": int(now * 1000),
                     "subscriber": subscriber}, {}

    def __enter__(self) -> "FakeRevenueCat":
        self.server.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.server.__exit__(*exc)
