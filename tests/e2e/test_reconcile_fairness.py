"""Reconcile at scale: a per-run ``--limit`` goes on where the previous run of the source
stopped, so every due subscription is read within ceil(D / L) runs; the cursor survives a
run killed midway; the store's rate is kept; progress shows on the console and in /metrics.

Driven through ``flask reconcile`` (in process, and once as a process killed mid-run)
against the local fake of RevenueCat's API, whose requests name the subscriber asked about.
"""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from devtools import revenuecat as rc
from devtools.apple_store import ms, now
from tests.e2e.conftest import API_KEY
from tests.e2e.reconcile_world import _revenuecat, revenuecat, soon  # noqa: F401 (fixtures)
from tests.e2e.test_metrics import METRICS_TOKEN, scrape, total
from tests.fakes.revenuecat_api import PREFIX

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = "com.example.premium.monthly"


class Gateway:
    """The gateway with RevenueCat configured against the fake; one subscription per user,
    keyed by its original transaction id."""

    def __init__(self, make_app, revenuecat, database_url: str, rate: str = "1000/s") -> None:
        self.env = {"GATEWAY_API_KEYS": API_KEY, "REVENUECAT_WEBHOOK_AUTH": rc.AUTH, **revenuecat.env(),
                    "RECONCILE_RATE_REVENUECAT": rate, "METRICS_TOKEN": METRICS_TOKEN}
        self.app, self.fake, self.database_url = make_app(**self.env), revenuecat, database_url

    def buy(self, transaction: str) -> str:
        """A purchase renewing within reconcile's window: its subscription is due every run."""
        user, expires = f"user-{transaction}", soon(6)
        event = rc.event("INITIAL_PURCHASE", user, transaction=transaction, aliases=[user],
                         at_ms=ms(now() - timedelta(days=29)), expiration_at_ms=ms(expires))
        answer = self.app.test_client().post("/webhooks/revenuecat", data=rc.body(event),
                                             headers={"Authorization": rc.AUTH})
        assert answer.get_json() == {"status": "processed"}
        self.fake.subscribe(user, PRODUCT, expires=expires)
        return transaction

    def lapsed(self, transaction: str, days: float = 10, retrying: bool = True) -> str:
        """A subscription whose period ended ``days`` ago, before reconcile's window: in
        billing retry still (due), or, ``retrying`` false, expired for good (never due)."""
        user, ended = f"user-{transaction}", now() - timedelta(days=days)
        kind = "BILLING_ISSUE" if retrying else "EXPIRATION"
        event = rc.event(kind, user, transaction=transaction, aliases=[user], at_ms=ms(ended),
                         expiration_at_ms=ms(ended), grace_period_expiration_at_ms=None,
                         expiration_reason="BILLING_ERROR")
        answer = self.app.test_client().post("/webhooks/revenuecat", data=rc.body(event),
                                             headers={"Authorization": rc.AUTH})
        assert answer.get_json() == {"status": "processed"}
        self.fake.subscribe(user, PRODUCT, expires=ended, billing_issue=ended if retrying else None,
                            first_bought=ended - timedelta(days=90))
        return transaction

    def reconcile(self, *args: str) -> tuple[str, list[str]]:
        """Run reconcile; its output and the transactions it asked the API about, in order
        (one worker unless ``args`` say otherwise: several finish out of order)."""
        start = len(self.fake.calls)
        result = self.app.test_cli_runner().invoke(args=["reconcile", "--source", "revenuecat", "--workers", "1",
                                                         *args])
        assert result.exit_code == 0, result.output
        return result.output, self.asked(start)

    def asked(self, start: int = 0) -> list[str]:
        return [path[len(PREFIX):].removeprefix("user-") for path in self.fake.calls[start:]]

    def metrics(self) -> str:
        return scrape(self.app.test_client())


@pytest.fixture
def gateway(make_app, revenuecat, database_url):
    return Gateway(make_app, revenuecat, database_url)


def keys(count: int, first: int = 7_100_000) -> list[str]:
    return [str(first + n) for n in range(count)]


def test_every_due_subscription_is_read_within_ceil_d_over_l_runs_and_none_twice_before(gateway):
    due, limit = [gateway.buy(key) for key in keys(23)], 5
    runs = [gateway.reconcile("--limit", str(limit)) for _ in range(2 * math.ceil(len(due) / limit))]

    asked = [run_asked for _, run_asked in runs]
    assert all(len(run) == limit for run in asked)
    assert all("revenuecat: checked 5, changed 0, unchanged 5, failed 0, limit reached 5" in output
               for output, _ in runs)
    first_cycle = [key for run in asked[:math.ceil(len(due) / limit)] for key in run]
    assert sorted(first_cycle[:len(due)]) == sorted(due)  # none read twice before all were read once
    window = math.ceil(len(due) / limit)
    for start in range(len(asked) - window + 1):  # any ceil(D/L) runs in a row read every one
        assert {key for run in asked[start:start + window] for key in run} == set(due), start


def test_subscriptions_in_billing_retry_since_before_the_window_share_the_same_fairness(gateway):
    """Due by its period's end or unsettled at the store since long before (interleaved
    keys), every one is read within ceil(D / L) runs, none twice before all were read once,
    and one expired for good is never read. Catches the unsettled left out of the query
    after the cursor wraps around (``_due``'s second read), or out altogether."""
    renewing = [gateway.buy(key) for key in keys(12, first=7_050_000)[::2]]
    retrying = [gateway.lapsed(key) for key in keys(12, first=7_050_000)[1::2]]
    gone = [gateway.lapsed(key, retrying=False) for key in keys(3, first=7_050_100)]
    due, limit = sorted(renewing + retrying), 5
    window = math.ceil(len(due) / limit)

    runs = [gateway.reconcile("--limit", str(limit)) for _ in range(2 * window + 1)]

    asked = [run_asked for _, run_asked in runs]
    assert all(len(run) == limit for run in asked), asked
    assert not set(gone) & {key for run in asked for key in run}
    first_cycle = [key for run in asked[:window] for key in run]
    assert sorted(first_cycle[:len(due)]) == due
    for start in range(len(asked) - window + 1):
        assert {key for run in asked[start:start + window] for key in run} == set(due), start


def test_a_subscription_bought_behind_the_cursor_is_read_when_the_runs_wrap_around(gateway):
    due, limit = [gateway.buy(key) for key in keys(10, first=7_200_100)], 4
    assert gateway.reconcile("--limit", str(limit))[1] == due[:4]
    late = gateway.buy("7200050")  # sorts before every key read so far

    second, third = gateway.reconcile("--limit", str(limit))[1], gateway.reconcile("--limit", str(limit))[1]

    assert second == due[4:8]
    assert third == due[8:] + [late, due[0]]  # the end, then around to the first keys


def test_a_limit_above_the_due_reads_each_once_from_the_cursor_around(gateway):
    due = [gateway.buy(key) for key in keys(6, first=7_300_000)]
    gateway.reconcile("--limit", "4")
    output, asked = gateway.reconcile("--limit", "100")
    assert asked == due[4:] + due[:4]
    assert "checked 6, changed 0, unchanged 6, failed 0" in output and "limit reached" not in output


def test_a_run_killed_midway_leaves_the_cursor_after_what_it_finished(gateway, tmp_path):
    """A process killed with SIGKILL (no cleanup runs): the next run starts after the last
    subscription the dead one finished, not from the first key again."""
    due = [gateway.buy(key) for key in keys(12, first=7_400_000)]
    gateway.app.extensions["gateway"].store.engine.dispose()  # the child writes to the same database
    env = {**os.environ, **gateway.env, "DATABASE_URL": gateway.database_url, "RECONCILE_RATE_REVENUECAT": "5/s",
           "PYTHONPATH": str(ROOT), "PATH": f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}"}
    start = len(gateway.fake.calls)
    child = subprocess.Popen(["flask", "--app", "wsgi", "reconcile", "--source", "revenuecat", "--workers", "1"],
                             cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(gateway.fake.calls) - start < 6 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    killed_after = gateway.asked(start)
    assert 6 <= len(killed_after) < len(due), child.stderr.read().decode()[-2000:]
    assert killed_after == due[:len(killed_after)]

    output, asked = gateway.reconcile("--limit", "3")

    finished = due.index(asked[0])  # the dead run finished all before this one
    assert len(killed_after) - 2 <= finished <= len(killed_after)  # at most the one in flight is read again
    assert asked == due[finished:finished + 3]


def test_the_store_rate_is_kept_by_all_workers_together(make_app, revenuecat, database_url):
    gateway, rate = Gateway(make_app, revenuecat, database_url, rate="10/s"), 10
    due = [gateway.buy(key) for key in keys(25, first=7_500_000)]
    start = len(revenuecat.server.requests)

    output, asked = gateway.reconcile("--workers", "8")

    assert sorted(asked) == sorted(due) and "checked 25, changed 0, unchanged 25, failed 0" in output
    times = sorted(request.received_at for request in revenuecat.server.requests[start:])
    # A token bucket of one: 25 requests need 24 intervals of 1/10 s (a slow machine only adds).
    assert times[-1] - times[0] >= (len(times) - 1) / rate - 0.1
    busiest = max(sum(1 for t in times if first <= t < first + 1.0) for first in times)
    assert busiest <= rate + 2, busiest  # 10 a second, plus the burst of one and some jitter


def test_progress_is_printed_per_source_and_counted_in_the_metrics(gateway):
    due = [gateway.buy(key) for key in keys(4, first=7_600_000)]
    before = gateway.metrics()

    output, _ = gateway.reconcile("--progress-every", "0")

    for count in range(1, len(due) + 1):
        assert f"revenuecat: {count} of 4 checked ({25 * count}%), " in output
    assert "/s, failed 0" in output
    after = gateway.metrics()
    checked = total(after, "gateway_reconcile_subscriptions_total", source="revenuecat", outcome="unchanged") \
        - total(before, "gateway_reconcile_subscriptions_total", source="revenuecat", outcome="unchanged")
    assert checked == len(due)
    assert total(after, "gateway_reconcile_progress_ratio", source="revenuecat") == 1.0
    assert total(after, "gateway_reconcile_rate_per_second", source="revenuecat") > 0


def test_a_dry_run_leaves_the_cursor_where_it_was(gateway):
    due = [gateway.buy(key) for key in keys(6, first=7_700_000)]
    assert gateway.reconcile("--limit", "2", "--dry-run")[1] == due[:2]
    assert gateway.reconcile("--limit", "2")[1] == due[:2]
    assert gateway.reconcile("--limit", "2")[1] == due[2:4]


def test_subscriptions_skipped_while_the_store_was_down_are_read_first_next_run(gateway):
    """Failures count as read (one that always fails must not hold every later one back), but
    those skipped once the source was declared down were never asked about."""
    due = [gateway.buy(key) for key in keys(12, first=7_800_000)]
    gateway.fake.down = True
    result = gateway.app.test_cli_runner().invoke(args=["reconcile", "--source", "revenuecat", "--workers", "1"])
    assert result.exit_code == 1 and "checked 12, changed 0, unchanged 0, failed 12" in result.output
    assert "skipped: the API is down" in result.output
    gateway.fake.down = False

    output, asked = gateway.reconcile("--limit", "4")

    assert asked == due[8:]  # the first eight were asked (and failed); the rest comes first now


def test_a_store_that_goes_down_midway_is_declared_down_and_the_rest_is_read_first_next_run(gateway):
    """An outage that starts after some successes: once the API has failed DOWN_AFTER calls in
    a row the source is down, and the subscriptions not yet asked about hold the cursor (they
    were not read; a run that marks each one failed would pass the cursor over all of them)."""
    due = [gateway.buy(key) for key in keys(20, first=7_900_000)]
    start = len(gateway.fake.calls)
    gateway.fake.down_after = start + 4  # four answers, then 503 for good
    result = gateway.app.test_cli_runner().invoke(args=["reconcile", "--source", "revenuecat", "--workers", "1"])
    assert result.exit_code == 1 and "checked 20, changed 0, unchanged 4, failed 16" in result.output
    assert "skipped: the API is down" in result.output
    assert gateway.asked(start) == due[:12]  # the later ones were not asked, each waiting out a failure
    gateway.fake.down_after = None

    output, asked = gateway.reconcile("--limit", "4")

    assert asked == due[12:16]  # the first twelve were asked; the ones never asked come first now


def test_a_429_holds_back_every_worker_for_its_retry_after(make_app, revenuecat, database_url):
    """Retry-After tells the client, not one thread, when to ask again: while one worker waits
    it out, the others send nothing either."""
    gateway = Gateway(make_app, revenuecat, database_url, rate="1000/s")
    due = [gateway.buy(key) for key in keys(8, first=7_950_000)]
    start = len(revenuecat.server.requests)
    revenuecat.throttle, revenuecat.retry_after = 1, "1"

    output, asked = gateway.reconcile("--workers", "4")

    assert "checked 8, changed 0, unchanged 8, failed 0" in output
    times = [request.received_at for request in revenuecat.server.requests[start:]]
    throttled = times[0]  # the first request was answered 429, Retry-After: 1
    early = [t - throttled for t in times[1:] if t - throttled < 0.95]
    # Only the other three workers' requests already on their way when the 429 came back.
    assert len(early) <= 3 and all(t < 0.2 for t in early), early
