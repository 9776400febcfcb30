"""``FakeStripe`` plus the billing endpoints the gateway calls.

Adds subscriptions, invoices and charges (retrieve), the Invoice Payments list
(https://docs.stripe.com/api/invoice-payment/list), the Refunds list by charge
(https://docs.stripe.com/api/refunds/list), Checkout Sessions
(https://docs.stripe.com/api/checkout/sessions/create, list and expire) and Customer Portal sessions
(https://docs.stripe.com/api/customer_portal/sessions/create). Objects a test arranges
are rendered as the API version our client pins renders them (basil and later).
"""
from __future__ import annotations

import time

from tests.fakes.stripe_api import FakeStripe, Request, StripeError, StripeState, paged

API_KEY = "sk_test_gateway_4242"


#: Lines an invoice embeds; the rest are at ``GET /v1/invoices/{id}/lines``.
EMBEDDED_LINES = 10


def register_billing(fake: FakeStripe) -> None:
    for kind, path in (("subscription", "subscriptions"), ("charge", "charges")):
        fake.route("GET", f"/v1/{path}/{{id}}")(lambda state, request, id, kind=kind: (200, state.get(kind, id)))

    @fake.route("GET", "/v1/invoices/{id}")
    def get_invoice(state, request, id):
        """The invoice with its first lines only, ``has_more`` telling of the rest."""
        invoice = state.get("invoice", id)
        lines = invoice.get("lines") or {}
        data = lines.get("data") or []
        shown = {**lines, "data": data[:EMBEDDED_LINES], "has_more": len(data) > EMBEDDED_LINES}
        return 200, {**invoice, "lines": shown} if "lines" in invoice else invoice

    @fake.route("GET", "/v1/invoices/{id}/lines")
    def list_invoice_lines(state, request, id):
        """https://docs.stripe.com/api/invoices/invoice_lines: pages after ``starting_after``."""
        data = (state.get("invoice", id).get("lines") or {}).get("data") or []
        return paged(request, data, f"/v1/invoices/{id}/lines")

    @fake.route("GET", "/v1/invoice_payments")
    def list_invoice_payments(state, request):
        """https://docs.stripe.com/api/invoice-payment/list: ``invoice`` or ``payment`` filters."""
        wanted = request.params.get("payment") or {}
        data = [p for p in state.objects["invoice_payment"].values()
                if all(p["payment"].get(key) == value for key, value in wanted.items())
                and request.params.get("invoice") in (None, p["invoice"])]
        return paged(request, data, "/v1/invoice_payments")

    @fake.route("GET", "/v1/refunds")
    def list_refunds(state, request):
        """https://docs.stripe.com/api/refunds/list: newest first, ``charge`` or
        ``payment_intent`` filters."""
        wanted = {key: request.params[key] for key in ("charge", "payment_intent") if key in request.params}
        data = sorted((r for r in state.objects["refund"].values()
                       if all(r.get(key) == value for key, value in wanted.items())),
                      key=lambda r: (r["created"], r["id"]), reverse=True)
        return paged(request, data, "/v1/refunds")

    @fake.route("POST", "/v1/checkout/sessions")
    def create_checkout_session(state, request):
        params = request.params
        if params.get("mode") not in ("payment", "setup", "subscription"):
            raise StripeError(400, "invalid_request_error", "Missing required param: mode.", "parameter_missing", "mode")
        items = params.get("line_items") or []
        if params["mode"] == "subscription" and not (items and items[0].get("price")):
            raise StripeError(400, "invalid_request_error", "You must provide line_items.", param="line_items")
        if params.get("customer"):
            state.get("customer", params["customer"])
        session_id = state.new_id("cs_test")
        return 200, state.add("checkout.session", {
            "id": session_id, "object": "checkout.session", "mode": params["mode"], "status": "open",
            "customer": params.get("customer"), "client_reference_id": params.get("client_reference_id"),
            "metadata": params.get("metadata") or {}, "success_url": params.get("success_url"),
            "cancel_url": params.get("cancel_url"), "subscription": None, "livemode": False,
            "created": int(time.time()), "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            "params": params})

    @fake.route("GET", "/v1/checkout/sessions")
    def list_checkout_sessions(state, request):
        """https://docs.stripe.com/api/checkout/sessions/list: newest first, ``customer`` and
        ``status`` (``open``, ``complete``, ``expired``) filters."""
        wanted = {key: request.params[key] for key in ("customer", "status") if key in request.params}
        data = sorted((session for session in state.objects["checkout.session"].values()
                       if all(session.get(key) == value for key, value in wanted.items())),
                      key=lambda session: session["created"], reverse=True)
        return paged(request, [_rendered(session) for session in data], "/v1/checkout/sessions")

    @fake.route("POST", "/v1/checkout/sessions/{id}/expire")
    def expire_checkout_session(state, request, id):
        """https://docs.stripe.com/api/checkout/sessions/expire: an open session only; Stripe
        refuses any other with this message."""
        session = state.get("checkout.session", id)
        if session["status"] != "open":
            raise StripeError(400, "invalid_request_error", 'Only Checkout Sessions with a status in ["open"] can be '
                              f"expired. This Checkout Session has a status of `{session['status']}`.")
        session.update(status="expired", url=None)
        state.counts["checkout.session.expired"] += 1
        return 200, _rendered(session)

    @fake.route("POST", "/v1/billing_portal/sessions")
    def create_portal_session(state, request):
        customer = state.get("customer", request.params.get("customer") or "")
        return 200, state.add("billing_portal.session", {
            "id": state.new_id("bps"), "object": "billing_portal.session", "customer": customer["id"],
            "return_url": request.params.get("return_url"), "livemode": False, "created": int(time.time()),
            "url": f"https://billing.stripe.com/p/session/test_{state.new_id('ps')}"})


def _rendered(session: dict) -> dict:
    """A session as Stripe shows it: without the parameters the fake keeps for tests."""
    return {key: value for key, value in session.items() if key != "params"}


class StripeBilling(FakeStripe):
    """``with StripeBilling() as fake``: arrange objects with ``put`` and ``pay``."""

    def __init__(self, api_key: str = API_KEY) -> None:
        super().__init__(api_key)
        register_billing(self)

    def reset(self) -> None:
        """Forget every object, request and switch, so one server can serve many tests."""
        self.state = StripeState()
        self.requests.clear()
        self._replays.clear()
        self.recover()

    def put(self, obj: dict) -> dict:
        self.state.objects[obj["object"]][obj["id"]] = obj
        return obj

    def pay(self, invoice_id: str, payment_intent: str, amount: int = 999, is_default: bool = True,
            status: str = "paid") -> None:
        """Record that ``payment_intent`` paid ``amount`` of ``invoice_id``, as the Invoice
        Payments API shows (https://docs.stripe.com/api/invoice-payment/object)."""
        self.put({"id": self.state.new_id("inpay"), "object": "invoice_payment", "amount_paid": amount,
                  "amount_requested": amount, "currency": "usd", "invoice": invoice_id,
                  "is_default": is_default, "livemode": False,
                  "status": status, "payment": {"type": "payment_intent", "payment_intent": payment_intent}})

    def requests_to(self, path_prefix: str) -> list[Request]:
        return [request for request in self.requests if request.path.startswith(path_prefix)]

    def sessions(self, kind: str = "checkout.session") -> list[dict]:
        return list(self.state.objects[kind].values())

    def complete(self, session_id: str, subscription_id: str) -> dict:
        """The customer paid: the session is ``complete`` with its ``subscription``."""
        session = self.state.get("checkout.session", session_id)
        session.update(status="complete", subscription=subscription_id, url=None)
        return session
