"""How far the gateway's clock runs behind Stripe's, as learned from the ``Date`` of Stripe's
answers (``Snapshotter.answer_stamp``): what stamps a fetched subscription, so that it ranks
against events, which Stripe stamps by its own clock."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from gateway.providers.stripe_snapshots import Snapshotter
from tests.support.stripe_harness import CATALOG

ZERO = datetime(2026, 12, 7, 6, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return ZERO + timedelta(seconds=seconds)


def snapshotter() -> Snapshotter:
    return Snapshotter(CATALOG, None, clock=lambda: ZERO)


def stamps(answers: list[tuple[float, float | None]]) -> list[datetime]:
    """The stamp of each answer: (arrived by the gateway's clock, its ``Date`` by Stripe's)."""
    s = snapshotter()
    return [s.answer_stamp(at(arrived), None if answered is None else at(answered)) for arrived, answered in answers]


def test_a_fetch_is_stamped_past_its_answers_date_while_the_gateway_runs_behind():
    [stamp] = stamps([(10.4, 130)])  # the gateway's clock two minutes behind
    assert at(130) < stamp < at(131)


def test_one_answer_dated_far_ahead_stops_stamping_fetches_ahead_once_it_is_old():
    """A ``Date`` an hour ahead once (a proxy's, a host of Stripe's off): a fetch then is
    stamped past it, but three hours on, with answers in step, fetches are stamped by the
    gateway's clock again. Kept for the life of the process, the hour stamped every later
    fetch an hour ahead: each event of the hour after it was judged older than the fetch,
    and read from the API instead of its body."""
    first, ahead, *_, later = stamps([(0.3, 0), (10.3, 3610)] + [(60 * n + 0.3, 60 * n) for n in range(1, 181)])
    assert ahead > at(3610) and later - at(60 * 180 + 0.3) < timedelta(seconds=1)


def test_a_clock_set_right_stops_stamping_fetches_ahead():
    """The gateway ran 30 s behind, then its time synchronisation stepped it forward: a
    minute and a half on, fetches are stamped by its own clock again, not 30 s ahead."""
    behind = [(float(t), t + 30.0) for t in range(0, 100, 10)]
    set_right = [(t + 30.0, t + 30.0) for t in range(100, 200, 10)]
    *_, later = stamps(behind + set_right)
    assert later - at(190 + 30) < timedelta(seconds=1)


def test_stamps_never_go_back_while_what_was_learned_is_forgotten():
    """Forgetting is gradual: a later fetch is never stamped before an earlier one, so a state
    read after another is never judged older than it (and read again) by the same gateway."""
    answers = [(0.3, 0), (10.3, 3610), (20.3, 20), (30.3, None), (40.3, 40), (4000.0, 4000), (4000.5, None)]
    made = stamps(answers)
    assert made == sorted(made) and len(set(made)) == len(made)


def test_an_answer_without_a_date_is_stamped_by_what_recent_answers_showed():
    _, undated = stamps([(10.4, 130), (11.0, None)])
    assert undated > at(130)
