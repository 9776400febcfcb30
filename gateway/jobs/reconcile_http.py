"""HTTP for reconciliation: honour a store's 429 Retry-After, within a bounded wait.

Reconciliation reads many subscriptions in a row, so it is the job that meets rate
limits: Stripe (https://docs.stripe.com/rate-limits), the App Store Server API
(https://developer.apple.com/documentation/appstoreserverapi/identifying-rate-limits), the
Play Developer API quotas and RevenueCat all answer 429 when it is too fast. A 429 is
waited out (Retry-After seconds, else a short backoff) at most ``attempts`` times and never
longer than ``max_wait`` at once; after that the 429 goes back to the client, which raises,
and the subscription counts as failed for this run (the next run reads it again).
"""
from __future__ import annotations

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


class ThrottledSession(requests.Session):
    def __init__(self, max_wait: float = MAX_WAIT, attempts: int = ATTEMPTS,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__()
        self.max_wait, self.attempts, self.sleep = max_wait, attempts, sleep
        self.throttled = 0  # how many 429s were waited out, for the run's summary

    def request(self, method, url, *args, **kwargs):
        for attempt in range(1, self.attempts + 1):
            response = super().request(method, url, *args, **kwargs)
            if response.status_code != 429 or attempt == self.attempts:
                return response
            wait = retry_after(response.headers.get("Retry-After"), default=float(2 ** attempt))
            if wait > self.max_wait:
                return response  # longer than we may wait: failed now, read again next run
            self.throttled += 1
            response.close()
            self.sleep(wait)
        return response
