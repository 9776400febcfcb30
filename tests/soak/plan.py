"""What the soak sends, as plain facts in each store's own terms, fixed before anything is sent.

A ``Fact`` is one delivery: a state a store showed (a Stripe subscription, an App Store
transaction, a RevenueCat event) or something a store did (a refund of a Stripe invoice, a
dispute, a voided Play order, a refunded App Store transaction). ``wire.py`` renders each
fact as the store sends it and arranges what the Stripe and Play API fakes answer;
``oracle.py`` computes from the same facts, with the stores' documented semantics alone,
what the gateway must answer once every fact is delivered, in any order.

Design rules, so that the answer has exactly one value whatever the order and timing:

- Stripe's and Google's APIs answer one final state per subscription (``Plan.finals``),
  arranged before the first delivery, so what the gateway fetches never depends on when.
  Stripe's final state is the newest state its subscription events show.
- Timestamps in bodies are distinct (one second apart), except twins: two states of one
  subscription at one instant, one of them ``expired``, so that the more final one wins.
  All of them lie more than a day in the past, before any fetch the gateway makes.
- Each subscription has one ended period and three periods to come, 30 days apart, whose
  ends lie ``index`` seconds past a whole number of days from ``base``: no two
  subscriptions share an end, so the entitlement API's choice among a user's subscriptions
  (the granting one with the latest end, else the latest end) has one answer.

Imports nothing from the gateway (``test_oracle.py`` checks that, for the oracle too).
"""
from __future__ import annotations

import dataclasses
import random
import uuid
from datetime import datetime, timedelta, timezone

SOURCES = ("stripe", "apple", "google", "revenuecat")
DAY = timedelta(days=1)
ENDED = 0  #: period index of the period that ended before any delivery; 1, 2, 3 are to come
FUTURE = (1, 2, 3)
LATEST_INVOICE = 1  #: Stripe: the subscription's latest_invoice is its invoice 1; invoice 0 paid the period before
CURRENT_ORDER = 2  #: Google: order 2 (``..1``) paid the current period; orders 0 and 1 paid earlier periods

STRIPE_STATES = ("active", "cancel_at_period_end", "past_due", "canceled")
GOOGLE_STATES = ("SUBSCRIPTION_STATE_ACTIVE", "SUBSCRIPTION_STATE_CANCELED", "SUBSCRIPTION_STATE_IN_GRACE_PERIOD",
                 "SUBSCRIPTION_STATE_ON_HOLD", "SUBSCRIPTION_STATE_EXPIRED")
APPLE_STATES = ("renewing", "auto_renew_off", "expired")
REVENUECAT_STATES = ("RENEWAL", "CANCELLATION", "BILLING_ISSUE", "EXPIRATION")
#: States shown with the ended period; every other state shows a period to come.
ENDED_STATES = frozenset({"canceled", "SUBSCRIPTION_STATE_ON_HOLD", "SUBSCRIPTION_STATE_EXPIRED", "expired",
                          "EXPIRATION"})
STATES = {"stripe": STRIPE_STATES, "google": GOOGLE_STATES, "apple": APPLE_STATES, "revenuecat": REVENUECAT_STATES}

#: Kinds of fact per store.
KINDS = {
    "stripe": ("subscription", "refund", "partial_refund", "dispute_opened", "dispute_won", "dispute_lost", "inquiry"),
    "google": ("notify", "void"),
    "apple": ("notification", "refund", "refund_reversed"),
    "revenuecat": ("event", "refund", "refund_reversed"),
}


@dataclasses.dataclass(frozen=True)
class Sub:
    """One store subscription, held by one user throughout."""

    index: int
    source: str
    key: str  # Stripe sub_..., App Store originalTransactionId, Play purchase token, RevenueCat original_transaction_id
    user: str
    account: str  # the Stripe customer
    ends: tuple[datetime, ...]  # ends[ENDED] in the past, ends[1..3] to come

    def invoice(self, k: int) -> str:
        return f"in_soak{self.index}x{k}"

    def charge(self, k: int) -> str:
        return f"ch_soak{self.index}x{k}"

    def payment_intent(self, k: int) -> str:
        return f"pi_soak{self.index}x{k}"

    def order(self, k: int) -> str:
        """Play order ids: the first order, then each renewal's with ``..0``, ``..1``, ..."""
        first = f"GPA.{3000 + self.index}-4137-0319-36762"
        return first if k == 0 else f"{first}..{k - 1}"

    def transaction(self, period: int) -> str:
        """The transaction of one period: the App Store's transactionId, RevenueCat's transaction_id."""
        return str(int(self.key) * 10 + period) if self.source == "apple" else f"{self.key}.{period}"


@dataclasses.dataclass(frozen=True)
class Fact:
    """One delivery. ``at`` is the store's timestamp in the body (Stripe ``created``, App
    Store ``signedDate``, RevenueCat ``event_timestamp_ms``, Play ``eventTimeMillis``)."""

    n: int  # unique: event ids are made from it
    sub: Sub
    kind: str  # one of KINDS[sub.source]
    at: datetime
    state: str | None = None  # the state a state-carrying fact shows, in the store's terms
    period: int | None = None  # the period that state, refund or reversal concerns
    invoice: int | None = None  # Stripe: whose payment was refunded or disputed
    dispute: str | None = None  # Stripe: the dispute's id
    order: int | None = None  # Google: the order voided
    listed: bool = True  # Google: Play's voided purchases list shows the void


@dataclasses.dataclass(frozen=True)
class Final:
    """What Stripe's or Google's API answers for a subscription, from before the first delivery."""

    state: str
    period: int


@dataclasses.dataclass(frozen=True)
class Plan:
    now: datetime
    users: tuple[str, ...]
    subs: tuple[Sub, ...]
    facts: tuple[Fact, ...]
    finals: dict[tuple[str, str], Final]  # (source, key) of every Stripe and Google subscription

    def voided(self) -> set[tuple[str, str]]:
        """(purchase token, order id) pairs Play's voided purchases list shows."""
        return {(f.sub.key, f.sub.order(f.order)) for f in self.facts if f.kind == "void" and f.listed}


def stripe_finals(facts) -> dict[tuple[str, str], Final]:
    """Stripe holds each subscription in the newest state its events showed."""
    newest: dict[tuple[str, str], Fact] = {}
    for fact in facts:
        key = (fact.sub.source, fact.sub.key)
        if fact.kind == "subscription" and (key not in newest or fact.at > newest[key].at):
            newest[key] = fact
    return {key: Final(fact.state, fact.period) for key, fact in newest.items()}


class _Builder:
    def __init__(self, rng: random.Random, base: datetime) -> None:
        self.rng, self.base, self.tick, self.facts, self.disputes = rng, base, 0, [], 0

    def add(self, sub: Sub, kind: str, *, twin: bool = False, **fields) -> None:
        if not twin:
            self.tick += 1
        self.facts.append(Fact(len(self.facts), sub, kind, self.base + timedelta(seconds=self.tick), **fields))

    def state(self, sub: Sub, kind: str, state: str | None = None, *, twin: bool = False) -> None:
        state = state or self.rng.choice(STATES[sub.source])
        period = ENDED if state in ENDED_STATES else self.rng.choice(FUTURE)
        self.add(sub, kind, twin=twin, state=state, period=period)

    def opening(self, sub: Sub) -> None:
        if sub.source == "google":
            self.add(sub, "notify")
        else:
            self.state(sub, {"stripe": "subscription", "apple": "notification", "revenuecat": "event"}[sub.source])

    def more(self, sub: Sub) -> None:
        getattr(self, sub.source)(sub, self.rng.random())

    def stripe(self, sub: Sub, r: float) -> None:
        rng = self.rng
        if r < 0.45:
            self.state(sub, "subscription")
        elif r < 0.62:
            self.add(sub, "refund", invoice=LATEST_INVOICE if rng.random() < 0.75 else 0)
        elif r < 0.67:
            self.add(sub, "partial_refund", invoice=LATEST_INVOICE)
        elif r < 0.95:
            self.disputes += 1
            dispute, invoice = f"dp_soak{self.disputes}", LATEST_INVOICE if rng.random() < 0.8 else 0
            self.add(sub, "dispute_opened", invoice=invoice, dispute=dispute)
            outcome = rng.choice(("open", "won", "lost"))
            if outcome != "open":
                self.add(sub, f"dispute_{outcome}", invoice=invoice, dispute=dispute)
        else:
            self.disputes += 1
            dispute = f"dp_soak{self.disputes}"
            self.add(sub, "inquiry", invoice=LATEST_INVOICE, dispute=dispute)
            if self.disputes % 2:  # every other one escalates into a chargeback, under the same id
                self.add(sub, "dispute_escalated", invoice=LATEST_INVOICE, dispute=dispute)

    def google(self, sub: Sub, r: float) -> None:
        if r < 0.6:
            self.add(sub, "notify")
        else:
            order = CURRENT_ORDER if self.rng.random() < 0.6 else self.rng.choice((0, 1))
            self.add(sub, "void", order=order, listed=self.rng.random() < 0.9)

    def apple(self, sub: Sub, r: float) -> None:
        self._body_store(sub, r, "notification", ended_refunds=True)

    def revenuecat(self, sub: Sub, r: float) -> None:
        self._body_store(sub, r, "event", ended_refunds=False)

    def _body_store(self, sub: Sub, r: float, kind: str, ended_refunds: bool) -> None:
        rng = self.rng
        if r < 0.5:
            self.state(sub, kind)
        elif r < 0.8:
            period = rng.choice(FUTURE)
            self.add(sub, "refund", period=period)
            if rng.random() < 0.4:
                self.add(sub, "refund_reversed", period=period)
            elif period == 2:  # a view of the refunded period signed later, without the refund
                self.add(sub, kind, state=next(s for s in STATES[sub.source] if s not in ENDED_STATES), period=period)
        elif r < 0.87 and ended_refunds:
            self.add(sub, "refund", period=ENDED)  # Apple sends the refunded transaction: an old renewal
        else:  # twins: a state to come and the ended state at one instant
            granting = [s for s in STATES[sub.source] if s not in ENDED_STATES]
            self.state(sub, kind, rng.choice(granting))
            self.state(sub, kind, next(s for s in STATES[sub.source] if s in ENDED_STATES), twin=True)


def plan(deliveries: int, seed: int = 7) -> Plan:
    """About ``deliveries`` facts over deliveries/4 subscriptions of deliveries/8 users."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    base = now - DAY - timedelta(seconds=deliveries)
    users = tuple(str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(max(4, deliveries // 8)))
    count = max(8, deliveries // 4)
    if count >= 86_400:
        raise ValueError("period ends are unique per subscription only below 86,400 subscriptions")
    subs = []
    for index in range(count):
        source, user = SOURCES[index % 4], rng.choice(users)
        key = str(3_000_000_000 + index) if source == "apple" else f"soak-{source}-{index}"
        offset = timedelta(seconds=index)
        first = base + rng.randint(6, 15) * DAY + offset
        ends = (base - rng.randint(2, 20) * DAY + offset, first, first + 30 * DAY, first + 60 * DAY)
        subs.append(Sub(index, source, key, user, f"cus_soak{users.index(user)}", ends))
    builder = _Builder(rng, base)
    for sub in subs:
        builder.opening(sub)
    while len(builder.facts) < deliveries:
        builder.more(rng.choice(subs))
    facts = tuple(builder.facts)
    if max(f.at for f in facts) >= min(s.ends[1] for s in subs) or max(f.at for f in facts) >= now - DAY / 2:
        raise ValueError("too many deliveries: timestamps would reach the periods to come or the present")
    finals = stripe_finals(facts)
    for sub in subs:
        if sub.source == "google":
            state = rng.choice(GOOGLE_STATES)
            finals[("google", sub.key)] = Final(state, ENDED if state in ENDED_STATES else rng.choice(FUTURE))
    return Plan(now, users, tuple(subs), facts, finals)
