"""What the soak sends, as plain facts, and the oracle computed from them with the pure core.

Every delivery is a ``Spec``: the state one store subscription is in as of one instant.
Instants are distinct (one second apart), so newest-wins has one answer whatever the
order. Expiries sit days away from now, so judging them at read time cannot flicker.
"""
from __future__ import annotations

import dataclasses
import random
import uuid
from datetime import datetime, timedelta, timezone

from gateway.domain.catalog import Catalog
from gateway.domain.entitlements import derive
from gateway.domain.model import Snapshot, Status, newest

SOURCES = ("stripe", "apple", "google", "revenuecat")
PRODUCTS = {"stripe": "price_monthly", "apple": "com.example.premium.monthly",
            "google": "premium_monthly", "revenuecat": "com.example.premium.monthly"}
# (status, will_renew, expires in the future?) each source can express, by name.
STATES = {
    "stripe": {"active": (Status.ACTIVE, True, True), "cancel_at_period_end": (Status.ACTIVE, False, True),
               "past_due": (Status.GRACE_PERIOD, True, True), "canceled": (Status.EXPIRED, False, False)},
    "apple": {"renewing": (Status.ACTIVE, True, True), "auto_renew_off": (Status.ACTIVE, False, True),
              "expired": (Status.EXPIRED, False, False), "refunded": (Status.REVOKED, False, True)},
    "google": {"SUBSCRIPTION_STATE_ACTIVE": (Status.ACTIVE, True, True),
               "SUBSCRIPTION_STATE_CANCELED": (Status.ACTIVE, False, True),
               "SUBSCRIPTION_STATE_IN_GRACE_PERIOD": (Status.GRACE_PERIOD, True, True),
               "SUBSCRIPTION_STATE_EXPIRED": (Status.EXPIRED, False, False)},
    "revenuecat": {"RENEWAL": (Status.ACTIVE, True, True), "CANCELLATION": (Status.ACTIVE, False, True),
                   "BILLING_ISSUE": (Status.GRACE_PERIOD, True, True), "EXPIRATION": (Status.EXPIRED, False, False)},
}


@dataclasses.dataclass(frozen=True)
class Spec:
    source: str
    key: str
    user: str
    as_of: datetime
    state: str
    expires_at: datetime
    account: str

    @property
    def status(self) -> Status:
        return STATES[self.source][self.state][0]

    @property
    def will_renew(self) -> bool:
        return STATES[self.source][self.state][1]

    def snapshot(self) -> Snapshot:
        names = ("premium",) if self.source == "revenuecat" else None  # RevenueCat names its entitlements
        return Snapshot(self.source, self.key, self.as_of, self.status, PRODUCTS[self.source], self.expires_at,
                        self.will_renew, entitlements=names)


def plan(deliveries: int, seed: int = 7) -> list[Spec]:
    """``deliveries`` distinct deliveries over about deliveries/4 subscriptions of deliveries/8 users."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    start = now - timedelta(days=1, seconds=deliveries)
    users = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(max(4, deliveries // 8))]
    subscriptions = []
    for n in range(max(4, deliveries // 4)):
        source, user = SOURCES[n % 4], rng.choice(users)
        key = str(3_000_000_000 + n) if source == "apple" else f"soak-{source}-{n}"
        subscriptions.append((source, key, user, f"cus_soak{users.index(user)}"))
    specs = []
    for i in range(deliveries):
        source, key, user, account = subscriptions[i] if i < len(subscriptions) else rng.choice(subscriptions)
        state = rng.choice(sorted(STATES[source]))
        future = STATES[source][state][2]
        days = rng.randint(5, 40) if future else -rng.randint(2, 20)
        specs.append(Spec(source, key, user, start + timedelta(seconds=i), state,
                          now + timedelta(days=days, seconds=rng.randint(0, 3600)), account))
    return specs


def final_states(specs: list[Spec]) -> dict[tuple[str, str], Spec]:
    by_key: dict[tuple[str, str], list[Spec]] = {}
    for spec in specs:
        by_key.setdefault((spec.source, spec.key), []).append(spec)
    return {key: max(group, key=lambda s: s.as_of) for key, group in by_key.items()}


def oracle(specs: list[Spec], now: datetime) -> dict[str, dict[str, tuple]]:
    """Per user, per entitlement: what the entitlement API must answer, from the core alone:
    the newest snapshot of each subscription, then the entitlements derived from them."""
    by_key: dict[tuple[str, str], list[Snapshot]] = {}
    owners = {}
    for spec in specs:
        by_key.setdefault((spec.source, spec.key), []).append(spec.snapshot())
        owners[(spec.source, spec.key)] = spec.user
    held: dict[str, list[Snapshot]] = {}
    for key, snapshots in by_key.items():
        held.setdefault(owners[key], []).append(newest(snapshots))
    expected = {}
    for user, snapshots in held.items():
        grants = derive(snapshots, Catalog(products={}))
        expected[user] = {name: (g.is_active(now), g.status_at(now).value, g.expires_at, g.will_renew, g.source,
                                 g.product_id) for name, g in grants.items()}
    return expected
