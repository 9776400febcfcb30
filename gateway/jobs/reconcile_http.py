"""HTTP for reconciliation: honour a store's 429 Retry-After, within a bounded wait.

Reconciliation reads many subscriptions in a row, so it is the job that meets rate
limits: Stripe (https://docs.stripe.com/rate-limits), the App Store Server API
(https://developer.apple.com/documentation/appstoreserverapi/identifying-rate-limits), the
Play Developer API quotas and RevenueCat all answer 429 when it is too fast. A 429 is
waited out (Retry-After seconds, else a short backoff) at most ``attempts`` times and never
longer than ``max_wait`` at once; after that the 429 goes back to the client, which raises,
and the subscription counts as failed for this run (the next run reads it again).

Better than meeting a 429 is not causing one: every request, a retry included, first takes a
token from the source's ``TokenBucket``, which the run's worker threads share, so the run
stays within the rate configured for the store (``RECONCILE_RATE_<SOURCE>``). A 429's wait
holds that bucket, so none of the workers asks before the Retry-After is over (until
2026-12-06 only the thread that met it waited, and the others kept asking).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

import requests

MAX_WAIT = 30.0
ATTEMPTS = 3


def retry_after(value: str | None, default: float) -> float:
    """Seconds to wait from a Retry-After header (delta-seconds; an HTTP date is rare here)."""
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


class TokenBucket:
    """At most ``burst`` requests at once and ``rate`` a second after that, whatever the
    number of threads asking: in any span of t seconds, at most ``burst + rate * t``.

    A request takes a token now and is told how long to wait for it; tokens owed go
    negative, so waiting threads are served in the order they asked, each ``1 / rate``
    after the one before. An idle bucket fills up to ``burst``, never more: a quota per
    minute is not spent in its first second.
    """

    def __init__(self, rate: float, burst: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate, self.burst, self.clock, self.sleep = rate, burst, clock, sleep
        self.tokens, self.stamp = burst, clock()
        self.resume_at = float("-inf")  # a store's Retry-After: nothing is sent before it
        self.lock = threading.Lock()

    def reserve(self) -> float:
        """Take a token; the seconds to wait before sending (0: at once)."""
        with self.lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= 1
            return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def take(self) -> None:
        while True:
            wait = self.reserve()
            if wait > 0:
                self.sleep(wait)
            if self.clock() >= self.resume_at - 1e-6:
                return
            # Reserved before a hold that now covers it: a place in line after the hold.

    def hold(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (a store's Retry-After tells the client, not one
        thread): requests taken from now on are spaced from its end, and one that reserved
        its time before the hold takes a new place after it."""
        with self.lock:
            now = self.clock()
            self.resume_at = max(self.resume_at, now + seconds)
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens = min(self.tokens, 1 - (self.resume_at - now) * self.rate)


class ThrottledSession(requests.Session):
    def __init__(self, max_wait: float = MAX_WAIT, attempts: int = ATTEMPTS,
                 sleep: Callable[[float], None] = time.sleep, bucket: TokenBucket | None = None) -> None:
        super().__init__()
        self.max_wait, self.attempts, self.sleep, self.bucket = max_wait, attempts, sleep, bucket
        self.throttled = 0  # how many 429s were waited out, for the run's summary

    def request(self, method, url, *args, **kwargs):
        for attempt in range(1, self.attempts + 1):
            if self.bucket is not None:
                self.bucket.take()
            response = super().request(method, url, *args, **kwargs)
            if response.status_code != 429 or attempt == self.attempts:
                return response
            wait = retry_after(response.headers.get("Retry-After"), default=float(2 ** attempt))
            if wait > self.max_wait:
                return response  # longer than we may wait: failed now, read again next run
            self.throttled += 1
            response.close()
            if self.bucket is not None:
                self.bucket.hold(wait)  # every worker of the source waits it out, at the next take()
            else:
                self.sleep(wait)
        return response
