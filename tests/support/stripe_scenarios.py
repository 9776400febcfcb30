"""A user who subscribed through Checkout, as Stripe holds it and as its events show it."""
from __future__ import annotations

import dataclasses
import time

from devtools import stripe_objects as so


@dataclasses.dataclass
class Signup:
    user: str
    customer: str
    sub_id: str
    invoice_id: str
    charge_id: str
    payment_intent: str
    start: int
    end: int
    named: bool  # whether the subscription's metadata names the user

    def subscription(self, shape: str = "basil", **fields) -> dict:
        fields = {"latest_invoice": self.invoice_id, "start": self.start, "end": self.end,
                  "cognito_sub": self.user if self.named else None, **fields}
        return so.subscription(shape, sub_id=self.sub_id, customer=self.customer, **fields)

    def invoice(self, shape: str = "basil", **fields) -> dict:
        fields = {"billing_reason": "subscription_create", "period": (self.start, self.end), **fields}
        return so.invoice(shape, invoice_id=self.invoice_id, customer=self.customer,
                          subscription_id=self.sub_id, charge=self.charge_id,
                          payment_intent=self.payment_intent, **fields)

    def charge(self, shape: str = "basil", **fields) -> dict:
        return so.charge(shape, charge_id=self.charge_id, customer=self.customer,
                         invoice_id=self.invoice_id, payment_intent=self.payment_intent, **fields)

    def refund(self, fake, amount: int = 999, status: str = "succeeded", refund_id: str | None = None) -> dict:
        """Stripe refunds ``amount`` of the first invoice's charge (``refund``)."""
        return refund(fake, self.charge_id, self.payment_intent, amount, status, refund_id)

    def session(self) -> dict:
        return so.checkout_session(session_id=so.new_id("cs_test"), customer=self.customer,
                                   subscription_id=self.sub_id, client_reference_id=self.user)

    def burst(self, shape: str) -> list[dict]:
        """What Stripe sends for one Checkout signup, within about two seconds."""
        t = int(time.time()) - 5
        return [
            so.event("checkout.session.completed", self.session(), shape=shape, created=t + 2),
            so.event("customer.subscription.created", self.subscription(shape, status="incomplete"),
                     shape=shape, created=t),
            so.event("invoice.paid", self.invoice(shape), shape=shape, created=t + 1),
            so.event("customer.subscription.updated", self.subscription(shape), shape=shape, created=t + 1,
                     previous={"status": "incomplete"}),
        ]


def refund(fake, charge_id: str, payment_intent: str | None, amount: int = 999, status: str = "succeeded",
           refund_id: str | None = None) -> dict:
    """A refund of ``charge_id`` as Stripe holds it, made or changed (``refund_id`` of one
    made before, now ``failed``: its amount is back on the charge); the charge's
    ``amount_refunded`` is what its refunds not failed or canceled add up to."""
    made = fake.put(so.refund(refund_id=refund_id or so.new_id("re"), charge_id=charge_id,
                              payment_intent=payment_intent, amount=amount, status=status))
    charge = fake.state.objects["charge"][charge_id]
    standing = sum(r["amount"] for r in fake.state.objects["refund"].values()
                   if r["charge"] == charge_id and r["status"] not in ("failed", "canceled"))
    fake.put({**charge, "amount_refunded": standing, "refunded": standing >= charge["amount"]})
    return made


def signup(fake, user: str = "user-1", *, named: bool = True, customer_names_user: bool = False) -> Signup:
    """Arrange Stripe's side: a customer, an active subscription, its paid first invoice."""
    start = int(time.time()) - 60
    made = Signup(user=user, customer=so.new_id("cus"), sub_id=so.new_id("sub"), invoice_id=so.new_id("in"),
                  charge_id=so.new_id("ch"), payment_intent=so.new_id("pi"), start=start,
                  end=start + 30 * so.DAY, named=named)
    fake.put(so.customer(customer_id=made.customer, cognito_sub=user if customer_names_user else None,
                         created=start - 60))  # the customer is made before it subscribes
    fake.put(made.subscription())
    fake.put(made.invoice())
    fake.put(made.charge())
    fake.pay(made.invoice_id, made.payment_intent)
    return made
