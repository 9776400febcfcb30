"""Entitlements derived from a user's subscriptions, judged at an instant."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

from .catalog import Catalog
from .model import GRANTING, Snapshot, Status
from .terms import Term

_FAR_FUTURE = datetime.max


@dataclasses.dataclass(frozen=True)
class Grant:
    """One entitlement of one user, as granted by the best of its subscriptions."""

    name: str
    status: Status
    expires_at: datetime | None
    will_renew: bool
    source: str
    product_id: str | None
    subscription_key: str

    def is_active(self, now: datetime) -> bool:
        return self.status in GRANTING and (self.expires_at is None or now < self.expires_at)

    def status_at(self, now: datetime) -> Status:
        """The status a reader sees: a granting status past its end has expired."""
        return _seen(self.status, self.is_active(now))


def _seen(status: Status, active: bool) -> Status:
    return Status.EXPIRED if not active and status in GRANTING else status


def _strength(grant: Grant) -> tuple:
    # Time-independent order: a granting status beats any other, then the latest end
    # (no end is the latest), then a stable order of the rest so ties are deterministic.
    end = grant.expires_at.astimezone(timezone.utc).replace(tzinfo=None) if grant.expires_at else _FAR_FUTURE
    return (
        grant.status in GRANTING,
        end,
        grant.will_renew,
        grant.source,
        grant.subscription_key,
    )


def derive(subscriptions: list[Snapshot], catalog: Catalog) -> dict[str, Grant]:
    """The entitlement table rows of one user, from all of that user's subscriptions.

    Among the granting subscriptions the one with the latest end wins, so the stored
    choice stays right as time passes: when it has lapsed, so has every other. An
    entitlement with terms of its own (a Play add-on) has its own product, end and renewal.
    """
    best: dict[str, Grant] = {}
    for snapshot in subscriptions:
        names = snapshot.entitlements
        if names is None:
            names = catalog.entitlements_for(snapshot.source, snapshot.product_id)
        terms = {term.name: term for term in snapshot.entitlement_terms or ()}
        for name in names:
            own = terms.get(name) or Term(name, snapshot.product_id, snapshot.expires_at, snapshot.will_renew)
            grant = Grant(
                name=name,
                status=snapshot.status,
                expires_at=own.expires_at,
                will_renew=own.will_renew,
                source=snapshot.source,
                product_id=own.product_id,
                subscription_key=snapshot.key,
            )
            if name not in best or _strength(grant) > _strength(best[name]):
                best[name] = grant
    return best


def is_premium(grants, now: datetime) -> bool:
    return any(grant.is_active(now) for grant in grants)


def iso(value: datetime | None) -> str | None:
    """A time as the API writes it: UTC, ``Z``, milliseconds only when there are some."""
    if value is None:
        return None
    if value.tzinfo is not timezone.utc:  # the stores' times are in UTC already
        value = value.astimezone(timezone.utc)
    spec = "milliseconds" if value.microsecond else "seconds"
    return value.isoformat(timespec=spec)[:-6] + "Z"  # without its "+00:00"


def view(grant: Grant | None, now: datetime) -> dict | None:
    """One entitlement as the entitlement API shows it at ``now``."""
    if grant is None:
        return None
    active = grant.is_active(now)
    return {"active": active, "status": _seen(grant.status, active).value,
            "expires_at": iso(grant.expires_at), "will_renew": grant.will_renew,
            "source": grant.source, "product_id": grant.product_id}
