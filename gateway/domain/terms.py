"""An entitlement's own terms within a subscription that grants several (a Play purchase
with add-ons: one line item per product, each with its own end and renewal)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import NamedTuple

_NO_END = datetime.min.replace(tzinfo=timezone.utc)


class Term(NamedTuple):
    """One entitlement's product, end and renewal, where they are not its subscription's."""

    name: str
    product_id: str | None
    expires_at: datetime | None
    will_renew: bool


def rank(terms: tuple[Term, ...] | None) -> tuple:
    """``terms`` as a part of ``model.precedence``: ordered, never a ``None`` beside a value,
    and nothing of the snapshot's time (``reads.stale_read`` compares states without it)."""
    return tuple((t.name, t.expires_at is None, t.expires_at or _NO_END, not t.will_renew, t.product_id is None,
                  t.product_id or "") for t in terms or ())
