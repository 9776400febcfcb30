"""A small local fake of the Stripe API reads the gateway makes while applying events:
subscriptions, customers, invoices, charges by id, invoice payments by PaymentIntent
(https://docs.stripe.com/api/invoice-payment/list) and refunds by charge
(https://docs.stripe.com/api/refunds/list); and the cancellation of a subscription
(``DELETE /v1/subscriptions/{id}``, https://docs.stripe.com/api/subscriptions/cancel); Checkout
Sessions listed by customer and status and expired
(https://docs.stripe.com/api/checkout/sessions/list, .../expire). Objects are whatever the demo put
there, rendered as Stripe renders them (``stripe_objects``); errors in Stripe's shape.
"""
from __future__ import annotations

import re
import threading
import time
from urllib.parse import parse_qsl

from devtools.servers import Held, LocalServer

_BY_ID = re.compile(r"/v1/(subscriptions|customers|invoices|charges)/([^/]+)")
_EXPIRE = re.compile(r"/v1/checkout/sessions/([^/]+)/expire")


def _error(status: int, message: str, kind: str = "invalid_request_error") -> tuple:
    return status, {"error": {"type": kind, "message": message}}, {}


class StripeFake:
    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.objects: dict[str, dict] = {}
        self._lock = threading.Lock()
        self.cancels: list[str] = []  # subscriptions cancelled, in order
        self.fail_cancels = 0  # the next N cancellations answer 500
        self._held_cancel: Held | None = None
        self.server = LocalServer({"*": self._route})

    @property
    def url(self) -> str:
        return self.server.url

    def put(self, *objects: dict) -> None:
        """Stripe's state changes (the demo's sender does this before each event)."""
        with self._lock:
            self.objects.update((obj["id"], obj) for obj in objects)

    def hold_cancel(self) -> Held:
        """Execute the next cancellation only on ``release()``: a slow call, during which
        the rest of the world goes on."""
        self._held_cancel = held = Held()
        return held

    def _route(self, request) -> tuple:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "Invalid API Key provided.", "authentication_error")
        if request.method == "DELETE" and (found := _BY_ID.fullmatch(request.path)) \
                and found.group(1) == "subscriptions":
            return self._cancel(found.group(2))
        if request.method == "POST" and (found := _EXPIRE.fullmatch(request.path)):
            return self._expire(found.group(1))
        if request.method != "GET":
            return _error(404, f"Unrecognized request URL ({request.method}: {request.path}).")
        found = _BY_ID.fullmatch(request.path)
        if found:
            obj = self.objects.get(found.group(2))
            return (200, obj, {}) if obj else _error(404, f"No such object: '{found.group(2)}'")
        if request.path == "/v1/invoice_payments":
            return 200, self._invoice_payments(request), {}
        if request.path == "/v1/refunds":
            return 200, self._refunds(request), {}
        if request.path == "/v1/checkout/sessions":
            return 200, self._sessions(request), {}
        return _error(404, f"Unrecognized request URL (GET: {request.path}).")

    def _cancel(self, sub_id: str) -> tuple:
        held, self._held_cancel = self._held_cancel, None
        if held:
            held.reached()
        with self._lock:
            if self.fail_cancels:
                self.fail_cancels -= 1
                return _error(500, "An unknown error occurred", "api_error")
            sub = self.objects.get(sub_id)
            if sub is None:
                return _error(404, f"No such subscription: '{sub_id}'")
            if sub.get("status") == "canceled":
                return _error(400, "A canceled subscription can only update its cancellation_details.")
            now = int(time.time())
            sub = {**sub, "status": "canceled", "canceled_at": now, "ended_at": now, "cancel_at_period_end": False}
            self.objects[sub_id] = sub
            self.cancels.append(sub_id)
            return 200, sub, {}

    def _sessions(self, request) -> dict:
        """https://docs.stripe.com/api/checkout/sessions/list by ``customer`` and ``status``."""
        query = {k: v[0] for k, v in request.query.items()}
        data = [obj for obj in self.objects.values() if obj.get("object") == "checkout.session"
                and all(obj.get(name) == query[name] for name in ("customer", "status") if name in query)]
        return {"object": "list", "data": data, "has_more": False, "url": "/v1/checkout/sessions"}

    def _expire(self, session_id: str) -> tuple:
        """https://docs.stripe.com/api/checkout/sessions/expire: an open session only."""
        with self._lock:
            session = self.objects.get(session_id)
            if session is None:
                return _error(404, f"No such checkout.session: '{session_id}'")
            if session.get("status") != "open":
                return _error(400, 'Only Checkout Sessions with a status in ["open"] can be expired. '
                                   f"This Checkout Session has a status of `{session.get('status')}`.")
            self.objects[session_id] = session = {**session, "status": "expired", "url": None}
            return 200, session, {}

    def _invoice_payments(self, request) -> dict:
        query = dict(parse_qsl(request.body.decode() or "")) | {k: v[0] for k, v in request.query.items()}
        wanted = query.get("payment[payment_intent]")
        data = [obj for obj in self.objects.values() if obj.get("object") == "invoice_payment"
                and obj["payment"].get("payment_intent") == wanted]
        return {"object": "list", "data": data[:1], "has_more": False, "url": "/v1/invoice_payments"}

    def _refunds(self, request) -> dict:
        query = dict(parse_qsl(request.body.decode() or "")) | {k: v[0] for k, v in request.query.items()}
        data = sorted((obj for obj in self.objects.values() if obj.get("object") == "refund"
                       and obj.get("charge") == query.get("charge")), key=lambda obj: obj["created"], reverse=True)
        return {"object": "list", "data": data, "has_more": False, "url": "/v1/refunds"}

    def __enter__(self) -> "StripeFake":
        self.server.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.server.__exit__(*exc)
