"""Reconcile's token bucket, judged on its decisions against a clock the test moves (no
sleeping, nothing timed), and the RECONCILE_RATE_* settings it is built from."""
from __future__ import annotations

import sys
import threading

import pytest

from gateway.config import ConfigError, from_env
from gateway.jobs.reconcile_http import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def most_in_any_window(times: list[float], seconds: float) -> int:
    """The most requests sent within any ``seconds`` (a window (t - seconds, t])."""
    times, best, first = sorted(times), 0, 0
    for last, t in enumerate(times):
        while times[first] <= t - seconds:
            first += 1
        best = max(best, last - first + 1)
    return best


def test_requests_asked_at_once_are_spaced_one_over_the_rate_apart():
    clock = Clock()
    bucket = TokenBucket(rate=50, clock=clock)
    waits = [bucket.reserve() for _ in range(200)]
    assert waits == pytest.approx([n / 50 for n in range(200)])


def test_google_plays_quota_of_3000_a_minute_is_never_passed():
    clock = Clock()
    bucket = TokenBucket(rate=from_env({"RECONCILE_RATE_GOOGLE": "3000/min"}).reconcile_rate_google, clock=clock)
    sent = []
    for _ in range(9000):  # three minutes of work, asked for far faster than allowed
        sent.append(clock.now + bucket.reserve())
        clock.now += 0.001
    assert most_in_any_window(sent, 60.0) <= 3000 + 1  # the quota, and the bucket's one token
    assert sent[-1] - sent[0] == pytest.approx(8999 / 50)


def test_an_idle_bucket_banks_no_more_than_its_burst():
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=3, clock=clock)
    clock.now += 3600  # an hour idle
    assert [bucket.reserve() for _ in range(5)] == pytest.approx([0, 0, 0, 0.1, 0.2])


def test_time_passing_pays_the_tokens_owed():
    clock = Clock()
    bucket = TokenBucket(rate=4, clock=clock)
    assert [bucket.reserve() for _ in range(3)] == pytest.approx([0, 0.25, 0.5])
    clock.now += 0.5
    assert bucket.reserve() == pytest.approx(0.25)  # the third's slot has come; the fourth is next


def test_threads_sharing_a_bucket_never_get_the_same_slot():
    clock = Clock()
    bucket = TokenBucket(rate=20, clock=clock)
    waits: list[float] = []
    lock = threading.Lock()

    def worker():
        for _ in range(1000):
            wait = bucket.reserve()
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can: races show
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert sorted(waits) == pytest.approx([n / 20 for n in range(8000)])


def test_the_bucket_sleeps_what_it_decided():
    clock, slept = Clock(), []
    bucket = TokenBucket(rate=2, clock=clock, sleep=slept.append)
    for _ in range(3):
        bucket.take()
    assert slept == pytest.approx([0.5, 1.0])


@pytest.mark.parametrize("raw, per_second", [("50", 50), ("50/s", 50), ("3000/min", 50), ("3600/h", 1),
                                             ("2.5/s", 2.5), ("90 / minute", 1.5)])
def test_a_rate_is_read_per_second_minute_or_hour(raw, per_second):
    assert from_env({"RECONCILE_RATE_APPLE": raw}).reconcile_rate_apple == pytest.approx(per_second)


def test_each_store_has_a_default_below_its_documented_limit():
    settings = from_env({})
    assert settings.reconcile_rate_stripe <= 25  # per endpoint, live mode (sandbox: 25 overall)
    assert settings.reconcile_rate_apple <= 50  # Get All Subscription Statuses, Production
    assert settings.reconcile_rate_google <= 3000 / 60  # per bucket and minute
    assert 0 < settings.reconcile_rate_revenuecat <= 480 / 60


@pytest.mark.parametrize("raw", ["0", "-3/s", "fast", "5/day", "nan", "inf"])
def test_a_bad_rate_stops_the_start_naming_the_variable(raw):
    with pytest.raises(ConfigError, match="RECONCILE_RATE_STRIPE"):
        from_env({"RECONCILE_RATE_STRIPE": raw})


def test_a_hold_keeps_every_request_back_until_it_ends_then_spaced_at_the_rate():
    clock = Clock()
    sent: list[float] = []

    def sleep(seconds: float) -> None:
        clock.now += seconds

    bucket = TokenBucket(rate=4, clock=clock, sleep=sleep)
    early = bucket.reserve()  # a thread's place, taken before the 429 came back
    bucket.hold(2.0)
    clock.now += early
    assert clock() < 1002.0
    for _ in range(3):
        bucket.take()
        sent.append(clock.now)
    assert sent[0] >= 1002.0 - 1e-6
    assert [b - a for a, b in zip(sent, sent[1:])] == pytest.approx([0.25, 0.25])
