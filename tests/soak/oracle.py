"""An independent oracle: what the entitlement API must answer after every fact of a plan is
delivered, in any order, computed from the stores' documented semantics and the README's
rules alone. It imports nothing from the gateway (``test_oracle.py`` checks that), so a bug
in the gateway's merge cannot hide in it.

The rules, stated plainly:

- Per subscription, the newest state wins by the store's timestamp; equal timestamps: the
  more final state (pending < active < grace_period < billing_retry < paused < expired <
  revoked). A state the gateway reads from Stripe's or Play's API is as of the read, later
  than every timestamp a body carries (``FETCHED``); the plan fixes what those APIs answer.
- A refund, chargeback or void takes back the period ending at E, the subscription's
  expiry as the revoking delivery shows it. The subscription is revoked if any revocation
  not given back has E on or after the newest state's expiry; a later period grants again.
- Stripe: a full refund of invoice I revokes ``refunded:I``, a dispute D opened or lost
  ``disputed:D``, both only when I is the subscription's latest invoice; a dispute won gives
  ``disputed:D`` back and nothing else; an inquiry does nothing until it escalates into a
  chargeback (same D, status ``needs_response``), which revokes as one opened; a partial refund only
  makes the gateway read the subscription. Google: a void of order O revokes ``voided:O``
  when Play's voided purchases list shows it and O paid the current period; one the list
  does not show is ignored. App Store: a transaction with a revocationDate is revoked, cause
  ``refunded:<transactionId>``, and takes back that transaction's period only (another
  transaction, even one ending sooner, grants); REFUND_REVERSED gives that back, and so does
  a view of that transaction signed after every view showing the refund (Apple removes the
  revocationDate of a refund it reverses; the reversal's own notification may be lost); a REFUND or
  REFUND_REVERSED of a period that had ended when signed is ignored (the plan's notifications
  carry no renewalDate, which would tell the latest purchase). RevenueCat: CANCELLATION for
  CUSTOMER_SUPPORT revokes ``refunded:<transaction_id>``; REFUND_REVERSED grants and gives
  that back.
- A user holds ``premium`` if a subscription grants it (active or grace_period, expiry to
  come). The row shows the granting subscription with the latest expiry, else the
  subscription with the latest expiry; a granting status past its expiry reads ``expired``.
"""
from __future__ import annotations

import collections
import dataclasses
from datetime import datetime, timezone

from tests.soak.plan import CURRENT_ORDER, LATEST_INVOICE, Fact, Final, Plan, Sub

FINALITY = {"pending": 0, "active": 1, "grace_period": 2, "billing_retry": 3, "paused": 4, "expired": 5, "revoked": 6}
GRANTING = frozenset({"active", "grace_period"})
#: The instant of a state the gateway fetched from a store's API: after any body's timestamp.
FETCHED = datetime.max.replace(tzinfo=timezone.utc)

# What each store's states mean for access (README "Sources"; the stores' documentation).
STRIPE = {"active": "active", "cancel_at_period_end": "active", "past_due": "grace_period", "canceled": "expired"}
GOOGLE = {"SUBSCRIPTION_STATE_ACTIVE": "active", "SUBSCRIPTION_STATE_CANCELED": "active",
          "SUBSCRIPTION_STATE_IN_GRACE_PERIOD": "grace_period", "SUBSCRIPTION_STATE_ON_HOLD": "billing_retry",
          "SUBSCRIPTION_STATE_EXPIRED": "expired"}
REVENUECAT = {"RENEWAL": "active", "CANCELLATION": "active", "BILLING_ISSUE": "grace_period",
              "EXPIRATION": "expired"}


@dataclasses.dataclass(frozen=True)
class View:
    """One state of a subscription, as one delivery shows it."""

    as_of: datetime
    status: str
    expires_at: datetime
    fact: int | None  # the fact that showed it (None: a fetch)
    payment: str | None = None  # App Store: the transaction that paid for the period shown

    def order(self) -> tuple:
        return (self.as_of, FINALITY[self.status])


@dataclasses.dataclass
class Outcome:
    """Everything the deliveries of one subscription showed and did, in no order."""

    sub: Sub
    views: list[View] = dataclasses.field(default_factory=list)
    # (cause, E); App Store (cause, E, transaction, when a view showed it)
    taken: set[tuple] = dataclasses.field(default_factory=set)
    given_back: set[str] = dataclasses.field(default_factory=set)
    notes: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # for coverage()

    def newest(self) -> View | None:
        if not self.views:
            return None
        best = max(self.views, key=View.order)
        rivals = {(v.status, v.expires_at) for v in self.views if v.order() == best.order()}
        if len(rivals) > 1:  # the plan must leave one answer; if not, the plan is wrong, not the gateway
            raise ValueError(f"{self.sub.source} {self.sub.key}: states tie at {best.as_of}: {sorted(rivals)}")
        return best

    def live(self) -> list[tuple]:
        return sorted(taken for taken in self.taken if taken[0] not in self.given_back)

    @staticmethod
    def holds(taken: tuple, view: View) -> bool:
        """Whether a revocation takes back the period ``view`` shows: the same payment's,
        where both name one; else any period ending no later than the one it took. The App
        Store shows a refund in every view while it stands: a view signed after one that
        showed it, without it, tells a reversal, and that one view gives nothing back."""
        if len(taken) == 4 and view.as_of > taken[3]:
            return False
        if len(taken) >= 3 and view.payment is not None:
            return taken[2] == view.payment
        return taken[1] >= view.expires_at

    def effective(self) -> tuple[str, datetime, str] | None:
        """(status, expires_at, why) the subscription counts as, or None if never seen."""
        newest = self.newest()
        if newest is None:
            return None
        if newest.status == "revoked":
            return "revoked", newest.expires_at, f"the newest state (fact {newest.fact}) is revoked"
        holding = [taken[0] for taken in self.live() if self.holds(taken, newest)]
        if holding:
            return "revoked", newest.expires_at, f"{holding[0]} takes back the period ending {newest.expires_at}"
        shown = "read from the store's API" if newest.fact is None else f"fact {newest.fact}"
        return newest.status, newest.expires_at, f"the newest state ({shown})"


def outcomes(plan: Plan) -> dict[tuple[str, str], Outcome]:
    _check_stripe(plan)
    voided = plan.voided()
    found = {(s.source, s.key): Outcome(s) for s in plan.subs}
    for fact in plan.facts:
        outcome = found[(fact.sub.source, fact.sub.key)]
        {"stripe": _stripe, "google": _google, "apple": _apple, "revenuecat": _revenuecat}[fact.sub.source](
            fact, plan, voided, outcome)
    return found


def _check_stripe(plan: Plan) -> None:
    """What makes the gateway's choice between a Stripe body and a fetch irrelevant."""
    newest: dict[str, Fact] = {}
    for fact in plan.facts:
        if fact.kind == "subscription" and (fact.sub.key not in newest or fact.at > newest[fact.sub.key].at):
            newest[fact.sub.key] = fact
    for key, fact in newest.items():
        if plan.finals.get(("stripe", key)) != Final(fact.state, fact.period):
            raise ValueError(f"plan: Stripe's API must hold {key} as its newest event shows it ({fact.state})")


def _fetched(plan: Plan, sub: Sub, states: dict) -> View:
    final = plan.finals[(sub.source, sub.key)]
    return View(FETCHED, states[final.state], sub.ends[final.period], None)


def _stripe(fact: Fact, plan: Plan, voided, outcome: Outcome) -> None:
    sub = fact.sub
    if fact.kind == "subscription":
        # From the body when it is newer than what the gateway holds, else fetched: the
        # plan keeps Stripe's state equal to the newest body, so either way means the same.
        outcome.views.append(View(fact.at, STRIPE[fact.state], sub.ends[fact.period], fact.n))
        return
    if fact.kind == "inquiry":
        outcome.notes["inquiry, ignored"] += 1
        return
    fetched = _fetched(plan, sub, STRIPE)
    outcome.views.append(fetched)  # every payment event makes the gateway read the subscription
    latest = fact.invoice == LATEST_INVOICE
    if fact.kind == "refund" and latest:
        outcome.taken.add((f"refunded:{sub.invoice(fact.invoice)}", fetched.expires_at))
    elif fact.kind in ("dispute_opened", "dispute_escalated", "dispute_lost") and latest:
        outcome.taken.add((f"disputed:{fact.dispute}", fetched.expires_at))
    elif fact.kind == "dispute_won":
        outcome.given_back.add(f"disputed:{fact.dispute}")
    elif fact.kind != "partial_refund" and not latest:
        outcome.notes["payment of an older invoice returned"] += 1


def _google(fact: Fact, plan: Plan, voided, outcome: Outcome) -> None:
    sub = fact.sub
    if fact.kind == "notify":
        outcome.views.append(_fetched(plan, sub, GOOGLE))
        return
    order = sub.order(fact.order)
    if (sub.key, order) not in voided:
        outcome.notes["void not listed, ignored"] += 1
        return
    fetched = _fetched(plan, sub, GOOGLE)
    outcome.views.append(fetched)
    if fact.order == CURRENT_ORDER:
        outcome.taken.add((f"voided:{order}", fetched.expires_at))
    else:
        outcome.notes["void of an older order"] += 1


def _apple(fact: Fact, plan: Plan, voided, outcome: Outcome) -> None:
    end = fact.sub.ends[fact.period]
    if fact.kind in ("refund", "refund_reversed") and end <= fact.at:
        outcome.notes["refund of an ended period, ignored"] += 1  # Apple sent an old renewal
        return
    payment = fact.sub.transaction(fact.period)
    cause = f"refunded:{payment}"
    if fact.kind == "refund":
        outcome.views.append(View(fact.at, "revoked", end, fact.n, payment))
        outcome.taken.add((cause, end, payment, fact.at))
        return
    outcome.views.append(View(fact.at, "active" if fact.at < end else "expired", end, fact.n, payment))
    if fact.kind == "refund_reversed":
        outcome.given_back.add(cause)
    elif any(taken[0] == cause and taken[3] < fact.at for taken in outcome.taken):
        outcome.notes["refund shown reversed by a later view"] += 1


def _revenuecat(fact: Fact, plan: Plan, voided, outcome: Outcome) -> None:
    end = fact.sub.ends[fact.period]
    cause = f"refunded:{fact.sub.transaction(fact.period)}"
    if fact.kind == "refund":
        outcome.views.append(View(fact.at, "revoked", end, fact.n))
        outcome.taken.add((cause, end))
    elif fact.kind == "refund_reversed":
        outcome.views.append(View(fact.at, "active", end, fact.n))
        outcome.given_back.add(cause)
    else:
        outcome.views.append(View(fact.at, REVENUECAT[fact.state], end, fact.n))


@dataclasses.dataclass(frozen=True)
class Row:
    """The ``premium`` entitlement as the API must show it."""

    active: bool
    status: str
    expires_at: datetime
    source: str


def expected(plan: Plan, now: datetime, found: dict | None = None) -> dict[str, Row | None]:
    """Per user of the plan: the ``premium`` row the API must show, or None for no row."""
    found = found if found is not None else outcomes(plan)
    held: dict[str, list[tuple[Sub, tuple]]] = collections.defaultdict(list)
    for outcome in found.values():
        effective = outcome.effective()
        if effective is not None:
            held[outcome.sub.user].append((outcome.sub, effective))
    answer: dict[str, Row | None] = {}
    for user in plan.users:
        rows = [Row(status in GRANTING and now < end, status, end, sub.source) for sub, (status, end, _) in held[user]]
        if not rows:
            answer[user] = None
            continue
        best = max(rows, key=lambda row: (row.active, row.expires_at))
        if sum((row.active, row.expires_at) == (best.active, best.expires_at) for row in rows) > 1:
            raise ValueError(f"user {user}: two subscriptions tie for the row")
        answer[user] = dataclasses.replace(best, status="expired") if best.status in GRANTING and not best.active \
            else best
    return answer


def explain(plan: Plan, user: str, found: dict) -> str:
    """The user's subscriptions, their facts and what the oracle made of them."""
    lines = []
    facts = collections.defaultdict(list)
    for fact in plan.facts:
        facts[(fact.sub.source, fact.sub.key)].append(fact)
    for key, outcome in found.items():
        if outcome.sub.user != user:
            continue
        api = f"; the API answers {plan.finals[key]}" if key in plan.finals else ""
        lines.append(f"  {key[0]} {key[1]}: {outcome.effective()}{api}; revocations {outcome.live()}, "
                     f"given back {sorted(outcome.given_back)}")
        for fact in facts[key]:
            detail = {k: v for k, v in dataclasses.asdict(fact).items()
                      if k not in ("sub", "n", "at") and v is not None and not (k == "listed" and v)}
            lines.append(f"    fact {fact.n} at {fact.at:%H:%M:%S} {detail}")
    return "\n".join(lines)


def coverage(found: dict) -> collections.Counter:
    """How often each case the soak is meant to exercise ended up deciding a subscription."""
    cases: collections.Counter = collections.Counter()
    for (source, _), outcome in found.items():
        effective, newest = outcome.effective(), outcome.newest()
        if effective is None:
            cases[f"{source}: never seen"] += 1
            continue
        if effective[0] == "revoked" and newest.status != "revoked":
            cases[f"{source}: revoked by a revocation held"] += 1
        elif effective[0] == "revoked":
            cases[f"{source}: revoked, newest state"] += 1
        if effective[0] != "revoked" and outcome.live():
            cases[f"{source}: granted again by a later period"] += 1
        if effective[0] != "revoked" and outcome.taken and not outcome.live():
            cases[f"{source}: every revocation given back"] += 1
        for note, count in outcome.notes.items():
            cases[f"{source}: {note}"] += count
    return cases
