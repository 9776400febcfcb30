"""The worker's pruning chore is no busy loop: at most once an hour, and again at once only
while the previous turn stopped with a backlog. Driven by a hand-written fake of the
retention's SQL and a fake clock: nothing sleeps."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from gateway.jobs.retention import Pruner
from gateway.store.retention import Batch

NOW = datetime(2027, 3, 1, tzinfo=timezone.utc)


class FakeRetention:
    """Holds ``events`` prunable events; records each batch asked for."""

    pause = 0.0

    def __init__(self, events: int) -> None:
        self.events, self.asked = events, []

    def newest_event(self) -> int:
        return 10**9

    def events_batch(self, cutoff, after, below, limit) -> Batch:
        self.asked.append(("events", cutoff, limit))
        taken = min(self.events, limit)
        self.events -= taken
        return Batch(taken, taken, NOW - timedelta(days=100) if taken else None)

    def deliveries_batch(self, cutoff, after, limit) -> Batch:
        self.asked.append(("deliveries", cutoff, limit))
        return Batch(0)

    def unapplied_since(self) -> dict:
        return {}

    def transfers_batch(self, cutoff, kept, after, limit) -> Batch:
        self.asked.append(("transfers", cutoff, limit))
        return Batch(0)

    def checkout_sessions_batch(self, before, limit) -> Batch:
        self.asked.append(("checkout_sessions", before, limit))
        return Batch(0)


class Clock:
    def __init__(self) -> None:
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds


def test_it_prunes_at_the_first_turn_then_not_again_within_the_hour():
    fake, clock = FakeRetention(events=3), Clock()
    pruner = Pruner(fake, 90, clock=lambda: NOW, monotonic=clock, batch=10, max_batches=5)
    assert pruner.run_once() == 3
    assert fake.asked == [("checkout_sessions", NOW - timedelta(hours=24), 10)] + [
        (kind, NOW - timedelta(days=90), 10) for kind in ("events", "deliveries", "transfers")]
    fake.events = 7
    for seconds in (1, 60, 3599):
        clock.seconds = 1000.0 + seconds
        assert pruner.run_once() == 0
    assert len(fake.asked) == 4  # not even asked
    clock.seconds = 1000.0 + 3600
    assert pruner.run_once() == 7


def test_a_backlog_is_taken_a_few_batches_per_turn_on_consecutive_turns():
    fake, clock = FakeRetention(events=45), Clock()
    pruner = Pruner(fake, 90, clock=lambda: NOW, monotonic=clock, batch=10, max_batches=2)
    done = [pruner.run_once() for _ in range(4)]  # no time passes: due again at once while full
    assert done == [20, 20, 5, 0]
    assert [kind for kind, _, _ in fake.asked].count("events") == 5  # 2 + 2 + 1, then none: not due
