"""A small local fake of the Stripe API reads the gateway makes while applying events:
subscriptions, customers, invoices, charges by id, and invoice payments by PaymentIntent
(https://docs.stripe.com/api/invoice-payment/list). Objects are whatever the demo put
there, rendered as Stripe renders them (``stripe_objects``); errors in Stripe's shape.
"""
from __future__ import annotations

import re
import threading
from urllib.parse import parse_qsl

from devtools.servers import LocalServer

_BY_ID = re.compile(r"/v1/(subscriptions|customers|invoices|charges)/([^/]+)")


def _error(status: int, message: str, kind: str = "invalid_request_error") -> tuple:
    return status, {"error": {"type": kind, "message": message}}, {}


class StripeFake:
    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.objects: dict[str, dict] = {}
        self._lock = threading.Lock()
        self.server = LocalServer({"*": self._route})

    @property
    def url(self) -> str:
        return self.server.url

    def put(self, *objects: dict) -> None:
        """Stripe's state changes (the demo's sender does this before each event)."""
        with self._lock:
            self.objects.update((obj["id"], obj) for obj in objects)

    def _route(self, request) -> tuple:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "Invalid API Key provided.", "authentication_error")
        if request.method != "GET":
            return _error(404, f"Unrecognized request URL ({request.method}: {request.path}).")
        found = _BY_ID.fullmatch(request.path)
        if found:
            obj = self.objects.get(found.group(2))
            return (200, obj, {}) if obj else _error(404, f"No such object: '{found.group(2)}'")
        if request.path == "/v1/invoice_payments":
            return 200, self._invoice_payments(request), {}
        return _error(404, f"Unrecognized request URL (GET: {request.path}).")

    def _invoice_payments(self, request) -> dict:
        query = dict(parse_qsl(request.body.decode() or "")) | {k: v[0] for k, v in request.query.items()}
        wanted = query.get("payment[payment_intent]")
        data = [obj for obj in self.objects.values() if obj.get("object") == "invoice_payment"
                and obj["payment"].get("payment_intent") == wanted]
        return {"object": "list", "data": data[:1], "has_more": False, "url": "/v1/invoice_payments"}

    def __enter__(self) -> "StripeFake":
        self.server.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.server.__exit__(*exc)
