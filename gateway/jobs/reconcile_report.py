"""What a reconciliation run found, per source: the counts and the drift it printed."""
from __future__ import annotations

import dataclasses

from gateway.domain.model import Subscription


@dataclasses.dataclass
class Tally:
    checked: int = 0
    changed: int = 0
    unchanged: int = 0
    failed: int = 0
    drift: list[str] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)
    extra: dict[str, int] = dataclasses.field(default_factory=dict)
    skipped: str | None = None
    streak: int = 0

    def line(self, source: str) -> str:
        if self.skipped:
            return f"{source}: skipped ({self.skipped})"
        extra = "".join(f", {k} {v}" for k, v in sorted(self.extra.items()))
        return (f"{source}: checked {self.checked}, changed {self.changed}, unchanged {self.unchanged}, "
                f"failed {self.failed}{extra}")


def state_of(subscription: Subscription | None) -> tuple:
    if subscription is None:
        return (None, None, None, None, None)
    s = subscription.snapshot
    return (s.status.value, s.expires_at, s.will_renew, s.product_id, subscription.owner)


def describe(key: str, before: tuple, after: tuple) -> str:
    def when(value):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else "none"
    parts = [f"{before[0]} -> {after[0]}"] if before[0] != after[0] else []
    parts += [f"expires {when(before[1])} -> {when(after[1])}"] if before[1] != after[1] else []
    parts += [f"will_renew {before[2]} -> {after[2]}"] if before[2] != after[2] else []
    parts += [f"owner {'known' if after[4] else 'unknown'}"] if before[4] != after[4] else []
    return f"{key}: {', '.join(parts) or 'product ' + str(after[3])}"
