"""Stripe webhooks: one event per delivery, verified by ``stripe_webhook``, then
translated into snapshots and links.

Event types: https://docs.stripe.com/api/events/types. A retry carries the same event
``id``; deliveries are neither ordered nor unique (https://docs.stripe.com/webhooks#event-ordering),
which ``stripe_snapshots`` deals with.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime

from gateway.clock import utcnow
from gateway.domain.catalog import Catalog
from gateway.domain.changes import Link, Translation, ignored
from gateway.domain.events import Event
from gateway.errors import Malformed, NotConfigured
from gateway.providers import Delivery, Lookup
from gateway.providers import stripe_objects
from gateway.providers import stripe_webhook
from gateway.providers.stripe_api import StripeApi, StripeHttpApi
from gateway.providers.stripe_snapshots import Snapshotter

SOURCE = stripe_objects.SOURCE

SUBSCRIPTION_TYPES = frozenset(f"customer.subscription.{kind}" for kind in
                               ("created", "updated", "deleted", "paused", "resumed"))
CUSTOMER_TYPES = frozenset({"customer.created", "customer.updated"})
INVOICE_TYPES = frozenset({"invoice.paid", "invoice.payment_failed"})
# A dispute is judged by its status on every event of it: an inquiry (warning_*) that
# escalates into a chargeback keeps its id and says so by charge.dispute.updated and
# charge.dispute.funds_withdrawn; what it takes back is one cause, whichever tells first.
PAYMENT_TYPES = {"charge.refunded": "refunded", "charge.dispute.created": "disputed",
                 "charge.dispute.updated": "disputed", "charge.dispute.funds_withdrawn": "disputed",
                 "charge.dispute.closed": "disputed"}
# A refund can fail after it was made (the card was closed) or be canceled: its amount goes
# back to the charge. Endpoints are told by charge.refund.updated and, in newer API
# versions, refund.failed and refund.updated; each is judged by the refund's status.
REFUND_TYPES = frozenset({"charge.refund.updated", "refund.failed", "refund.updated"})
#: Statuses of a refund that returned nothing; both are final.
UNDONE = frozenset({"failed", "canceled"})
#: Payments of an invoice that Stripe refunds (https://docs.stripe.com/api/invoice-payment/object#invoice_payment_object-payment-type);
#: a ``payment_record`` (paid outside Stripe) is refunded outside it too.
REFUNDABLE = frozenset({"charge", "payment_intent"})
ACTED_ON = SUBSCRIPTION_TYPES | CUSTOMER_TYPES | INVOICE_TYPES | set(PAYMENT_TYPES) | REFUND_TYPES \
    | {"checkout.session.completed"}


class StripeEvents:
    source = SOURCE
    #: Translating reads what is stored (ordering) and may call Stripe: record first.
    translates_offline = False

    def __init__(self, secrets: tuple[str, ...], catalog: Catalog, api: StripeApi | None = None,
                 clock: Callable[[], datetime] = utcnow, livemode: bool | None = None) -> None:
        self.secrets = secrets
        self.snapshots = Snapshotter(catalog, api, clock)
        #: The mode of STRIPE_API_KEY (``key_livemode``): events of the other mode apply nothing.
        self.livemode = livemode

    def verify(self, body: bytes, headers: Mapping[str, str]) -> Delivery:
        if not self.secrets:
            raise NotConfigured("Stripe is not configured (STRIPE_WEBHOOK_SECRETS)")
        text = stripe_webhook.verified_text(body, headers.get("Stripe-Signature"), self.secrets)
        event = stripe_webhook.parse(text, ACTED_ON)
        return Delivery(SOURCE, event["id"], event["type"], text, event)

    def translate(self, event: Event, lookup: Lookup) -> Translation:
        translation = self._translated(event.data, lookup)
        if not translation.is_empty:
            return translation
        # Named, so that one about a deleted user is erased (``customer.deleted``: the
        # customer object as it was, https://docs.stripe.com/api/events/types).
        obj = event.data["data"]["object"]
        customer = stripe_objects.ref(obj if obj.get("object") == "customer" else obj.get("customer"))
        return ignored(translation.ignored_reason, [stripe_objects.cognito_sub(obj)], [(SOURCE, customer)])

    def _translated(self, data: dict, lookup: Lookup) -> Translation:
        kind, obj, created = data["type"], data["data"]["object"], stripe_objects.when(data["created"])
        if data.get("account") not in (None, ""):
            # A Connect endpoint's event: its objects are the connected account's, which the
            # gateway's key reads only as that account (https://docs.stripe.com/connect/webhooks).
            return ignored(f"an event of the connected account {data['account']}: "
                           "the gateway serves the platform's own account, not Connect accounts")
        if isinstance(data.get("livemode"), bool) and self.livemode is not None and data["livemode"] != self.livemode:
            # An endpoint of each mode may point here: a test card must not grant a live user.
            return ignored(f"a {MODES[data['livemode']]}-mode event; STRIPE_API_KEY is for {MODES[self.livemode]} mode")
        if kind in SUBSCRIPTION_TYPES:
            return self.snapshots.from_event(obj, created, lookup)
        if kind in CUSTOMER_TYPES:
            sub = stripe_objects.cognito_sub(obj)
            return Translation(links=(Link(SOURCE, obj["id"], sub, created),)) if sub else \
                ignored("the customer carries no metadata.cognito_sub")
        if kind == "checkout.session.completed":
            return self._checkout(obj, created, lookup)
        if kind in INVOICE_TYPES:
            subscription_id = stripe_objects.invoice_subscription(obj)
            return self.snapshots.fetched(subscription_id, lookup) if subscription_id else \
                ignored("the invoice bills no subscription")
        if kind in PAYMENT_TYPES:
            return self._payment_returned(obj, PAYMENT_TYPES[kind], lookup)
        if kind in REFUND_TYPES:
            return self._refund_undone(obj, lookup)
        return ignored(f"{kind} is not an event type the gateway acts on")

    def _checkout(self, session: dict, created: datetime, lookup: Lookup) -> Translation:
        if session.get("mode") != "subscription":
            return ignored(f"a {session.get('mode')}-mode Checkout Session grants no subscription")
        # The session's metadata is set by whoever created it through the API (the gateway
        # does). client_reference_id is too, except in a Payment Link, where anyone can put
        # it in the link's URL: there it would hand a paying customer to someone else.
        reference = session.get("client_reference_id") if not session.get("payment_link") else None
        user_sub = stripe_objects.cognito_sub(session) or (reference if isinstance(reference, str) and reference else None)
        customer, subscription_id = stripe_objects.ref(session.get("customer")), stripe_objects.ref(session.get("subscription"))
        links = (Link(SOURCE, customer, user_sub, created),) if user_sub and customer else ()
        if subscription_id is None or self.snapshots.api is None:
            return Translation(links=links) if links else ignored("the session names no user or subscription")
        fetched = self.snapshots.fetched(subscription_id, lookup)
        return Translation(snapshots=fetched.snapshots, links=links + fetched.links)

    def _payment_returned(self, obj: dict, reason: str, lookup: Lookup) -> Translation:
        """A refund or dispute: find the subscription through the invoice the payment paid.

        A full refund takes back the period the invoice paid for (its first or a renewal
        invoice: ``billing_reason``, and its lines' period), named by the refunds that
        make it full (``_refunds_standing``), whether or not a later
        invoice, such as a proration's, became the latest; a proration invoice paid for
        no period and takes nothing back. A dispute takes it back when it is
        opened; closed as won, the money came back and the dispute gives back what it
        took (only that: a refund of the same period still holds); closed as lost, it
        stays taken. An inquiry (``warning_*``, no money taken yet) changes nothing."""
        revokes = restores = None
        if reason == "disputed":
            status, dispute = obj.get("status"), obj.get("id")
            if isinstance(status, str) and status.startswith("warning_"):
                return ignored(f"an inquiry ({status}), not a chargeback")
            if not isinstance(dispute, str) or not dispute:
                raise Malformed("the dispute has no id", code="stripe_malformed")
            if status == "won":
                restores = f"disputed:{dispute}"
            else:
                revokes = f"disputed:{dispute}"
        refunded = obj if reason == "refunded" and stripe_objects.fully_refunded(obj) else None
        return self._returned(self._invoice_of_payment(obj), lookup, revokes, restores, refunded)

    def _returned(self, invoice_id: str | None, lookup: Lookup, revokes: str | None,
                  restores: str | None, refunded: dict | None = None) -> Translation:
        """``refunded``: a charge refunded in full, which revokes while its invoice is
        (``_refunds_standing``); a partial refund leaves access as it is."""
        api = self.snapshots.require_api("find the invoice of a payment")
        invoice = api.invoice(invoice_id) if invoice_id else {}
        subscription_id = stripe_objects.invoice_subscription(invoice)
        if subscription_id is None:
            return ignored("the payment paid no subscription invoice")
        if refunded is not None:
            revokes = self._refunds_standing(refunded, invoice)
        period = stripe_objects.invoice_period(invoice, self.snapshots.catalog)
        if revokes and not stripe_objects.pays_period(invoice, period):
            revokes = None  # a proration or an extra charge returned: the period stays paid for
        return self.snapshots.fetched(subscription_id, lookup, revokes, invoice_id, restores, period)

    def _refunds_standing(self, charge: dict, invoice: dict) -> str | None:
        """The cause of an invoice refunded in full, named by the refunds that make it so as
        Stripe shows them now (``refunded:re_1``, ``refunded:re_1+re_2``): one of them that
        fails later gives it back, and a new refund after that is another cause. ``None``
        when those not failed or canceled no longer add up to what was paid. An invoice
        paid by several payments (basil+) is refunded in full when all of them are; one
        paid by ``charge`` alone, when it is."""
        api = self.snapshots.require_api("list the refunds of a payment")
        amount, paid = charge.get("amount"), invoice.get("amount_paid")
        if isinstance(amount, int) and isinstance(paid, int) and paid > amount:
            refunds, amount = [r for kind, paid_by in _payments(api, invoice["id"])
                               for r in api.refunds_of(kind, paid_by)], paid
        else:
            refunds = api.refunds_of("charge", charge["id"])
        standing = [r for r in refunds if r.get("status") not in UNDONE]
        ids = sorted(r["id"] for r in standing if isinstance(r.get("id"), str) and r["id"])
        amounts = [r.get("amount") for r in standing]
        if not ids or not all(isinstance(a, int) for a in amounts) or not isinstance(amount, int) \
                or sum(amounts) < amount:
            return None
        return "refunded:" + "+".join(ids)

    def _refund_undone(self, refund: dict, lookup: Lookup) -> Translation:
        """A refund failed or canceled returned nothing: it gives back the full refund it
        was part of (``refunded:<refund>``, whichever is told first). A cause taken before
        refunds were named (``refunded:<invoice>``) is given back too while the charge, as
        Stripe shows it now, is not refunded in full. Other updates change nothing."""
        status = refund.get("status")
        if status not in UNDONE:
            return ignored(f"a refund {status}: only its failure or cancellation changes access")
        invoice_id = self._invoice_of_payment(refund)
        translation = self._returned(invoice_id, lookup, None, f"refunded:{refund['id']}")
        charge_id = stripe_objects.ref(refund.get("charge"))
        if not translation.snapshots or not charge_id or \
                stripe_objects.fully_refunded(self.snapshots.require_api("read a charge").charge(charge_id)):
            return translation
        legacy = dataclasses.replace(translation.snapshots[0], restores=f"refunded:{invoice_id}")
        return dataclasses.replace(translation, snapshots=translation.snapshots + (legacy,))

    def _invoice_of_payment(self, obj: dict, fetch_charge: bool = True) -> str | None:
        # Before basil a charge names its invoice; since basil the Invoice Payments API
        # maps the PaymentIntent to it. A dispute or a refund names its charge and PaymentIntent.
        invoice_id = stripe_objects.ref(obj.get("invoice"))
        if invoice_id:
            return invoice_id
        api = self.snapshots.require_api("find the invoice of a payment")
        payment_intent = stripe_objects.ref(obj.get("payment_intent"))
        if payment_intent:
            return api.invoice_of_payment_intent(payment_intent)
        charge_id = stripe_objects.ref(obj.get("charge")) if fetch_charge else None
        return self._invoice_of_payment(api.charge(charge_id), fetch_charge=False) if charge_id else None


def _payments(api: StripeApi, invoice_id: str) -> list[tuple[str, str]]:
    """The (``charge`` or ``payment_intent``, id) of each payment that paid the invoice."""
    found = []
    for payment in api.payments_of_invoice(invoice_id):
        paid_by = payment.get("payment") if payment.get("status") == "paid" else None
        kind = paid_by.get("type") if isinstance(paid_by, dict) else None
        if kind in REFUNDABLE and isinstance(paid_by.get(kind), str) and paid_by[kind]:
            found.append((kind, paid_by[kind]))
    return found


#: A mode by whether it is live, as an object's ``livemode`` and its stored ``environment`` name it.
MODES = {True: "live", False: "test"}


def key_livemode(api_key: str | None) -> bool | None:
    """Whether a secret (``sk_``) or restricted (``rk_``) key reads live-mode objects, by its
    prefix; ``None`` when not told. Each mode has its own keys and objects of one mode are
    not accessible to the other: https://docs.stripe.com/keys"""
    prefix = (api_key or "")[:8]
    return {"sk_live_": True, "rk_live_": True, "sk_test_": False, "rk_test_": False}.get(prefix)


def build(settings, catalog: Catalog) -> StripeEvents:
    api = StripeHttpApi(settings.stripe_api_key, settings.stripe_api_base) if settings.stripe_api_key else None
    return StripeEvents(settings.stripe_webhook_secrets, catalog, api, livemode=key_livemode(settings.stripe_api_key))
