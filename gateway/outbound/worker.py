"""Sends the entitlement feed to the endpoints, signed, in order per user, at least once.

``Deliverer.run_once`` queues the new feed events for each endpoint (``Outbox.fan_out``),
then claims due deliveries and POSTs each event's JSON body (``FeedEvent.body``) with the
Standard Webhooks headers (``signing``): ``webhook-id`` is the feed event's id, the same on
every retry, so a receiver dedupes on it. Any 2xx is delivered; anything else (no
connection, a timeout, a redirect, which is never followed, 4xx, 5xx) is tried again with
exponential backoff and jitter, and parked ``failed`` after three days
(``domain.webhooks.retry_at``) until an operator replays it. The target is checked again
before every attempt, since DNS answers change. An endpoint's parked deliveries are logged
once when it gets some, again only as they grow (``_tell_parked``).
"""
from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import requests

from gateway.clock import utcnow
from gateway.domain.webhooks import Endpoint, retry_at
from gateway.store.outbox import TAKEN_OVER, Claimed, Outbox

from . import endpoints, signing, targets, transport

log = logging.getLogger("gateway.outbound")

#: Errors are kept this short on the delivery's row.
MAX_ERROR = 200
#: While an endpoint's parked deliveries keep growing (a receiver down for days parks one
#: user's head delivery after another), a line about them at most this often.
PARKED_TOLD_EVERY = timedelta(hours=1)
#: The positions a parked line names for ``flask webhooks drop``; the admin lists them all.
PARKED_SHOWN = 20


class Deliverer:
    """One worker's sending. ``run_once`` is safe to call from several processes at once."""

    def __init__(self, outbox: Outbox, configured: list[Endpoint], *, allow_private: bool = False,
                 timeout: float = 10.0, threads: int = 8, batch: int = 64, max_attempts: int = 1000,
                 clock: Callable[[], datetime] = utcnow, jitter: Callable[[], float] = random.random) -> None:
        self.outbox, self.configured, self.allow_private = outbox, configured, allow_private
        self.timeout, self.threads, self.batch, self.max_attempts = timeout, threads, batch, max_attempts
        self.clock, self.jitter = clock, jitter
        self._synced = False
        self._told: set[tuple[str, int, int]] = set()  # gaps logged by this process
        self._parked_told: dict[str, tuple[int, datetime]] = {}  # endpoint: (parked, when) last logged
        self.session = transport.session(threads, allow_private)

    @classmethod
    def build(cls, services) -> Deliverer:
        """From the app's ``Services``: its store's database and the settings' endpoints."""
        settings = services.settings
        return cls(Outbox.of(services.store), endpoints.configured(settings),
                   allow_private=settings.outbound_allow_private_targets, timeout=settings.outbound_timeout_seconds)

    def sync(self) -> None:
        """Write ``OUTBOUND_WEBHOOKS`` into the endpoints table (done by the first run)."""
        self.outbox.sync(self.configured, self.clock())
        self._synced = True

    def run_once(self, now: datetime | None = None) -> int:
        """Fan out, then attempt every due delivery (up to ``max_attempts``); returns the
        number of attempts made. ``now`` shifts the schedule (tests pass a later one);
        signatures always carry the real time of the attempt."""
        shift = now - self.clock() if now else timedelta(0)
        if not self._synced:
            self.sync()
        self.outbox.fan_out(self.clock() + shift)
        self._tell_gaps()
        made = 0
        while made < self.max_attempts:
            # Each round leased from its own start: a run, or a round, may outlast a lease
            # taken earlier, and another worker would send what this one is sending.
            count, at = min(self.batch, self.max_attempts - made), self.clock() + shift
            claimed = self.outbox.claim(at, at + self.lease(count), count)
            if not claimed:
                break
            if len(claimed) == 1:
                tried = [self._attempt(claimed[0], shift)]
            else:  # one per (endpoint, user): sending them side by side keeps each user's order
                with ThreadPoolExecutor(min(self.threads, len(claimed)), "webhook") as pool:
                    tried = list(pool.map(lambda c: self._attempt(c, shift), claimed))
            for (claimed_one, error, later), status in zip(tried, self.outbox.settle(tried, self.clock() + shift)):
                _log(claimed_one, error, later, status)
            made += len(claimed)
        self._tell_parked(self.clock() + shift)
        return made

    def _tell_gaps(self) -> None:
        """Log each enabled endpoint the feed's retention has passed, once per process: it
        sends nothing until an operator resyncs its receiver and skips the gap."""
        for name, (position, pruned) in self.outbox.behind(enabled_only=True).items():
            if (name, position, pruned) not in self._told:
                self._told.add((name, position, pruned))
                log.error("webhook endpoint behind the feed; sending nothing until its gap is skipped", extra={
                    "fields": {"endpoint": name, "position": position, "pruned_through": pruned,
                               "action": f"resync the receiver, then: flask webhooks skip-gap {name}"}})

    def _tell_parked(self, now: datetime) -> None:
        """Log each endpoint's parked deliveries (whichever worker parked them) once
        per process when it gets some, then again only when their number has grown and
        ``PARKED_TOLD_EVERY`` has passed: never a line per turn. A number that fell (a drop,
        a replay) is remembered, so what is parked after that is told again."""
        parked = self.outbox.parked()
        for name in set(parked) | set(self._parked_told):
            (count, gone), (told, at) = parked.get(name, (0, 0)), self._parked_told.get(name, (0, now))
            if count > told and (told == 0 or now - at >= PARKED_TOLD_EVERY):
                self._parked_told[name] = (count, now)
                self._log_parked(name, count, gone)
            elif count == 0:
                del self._parked_told[name]
            elif count < told:
                self._parked_told[name] = (count, at)

    def _log_parked(self, name: str, count: int, gone: int) -> None:
        actions = []
        if gone:
            positions = [position for _, position, _ in self.outbox.unsendable(name)]
            shown = " ".join(map(str, positions[:PARKED_SHOWN])) + (" ..." if len(positions) > PARKED_SHOWN else "")
            actions.append(f"resync their users at the receiver, then: flask webhooks drop {name} {shown}")
        if count > gone:
            actions.append(f"fix the receiver, then: flask webhooks replay --endpoint {name}")
        log.warning("webhook deliveries parked; their users' later deliveries wait until an operator acts",
                    extra={"fields": {"endpoint": name, "parked": count, "event_gone": gone,
                                      "action": "; ".join(actions)}})

    def lease(self, count: int) -> timedelta:
        """Longer than ``count`` attempts take on this worker's threads (each up to its
        connect and read timeouts, queued behind the others of its thread), so a lease
        ends only when its worker has died."""
        return timedelta(seconds=-(-count // self.threads) * 2 * self.timeout + 60)

    def _attempt(self, claimed: Claimed, shift: timedelta) -> tuple[Claimed, str | None, datetime | None]:
        error = self.post(claimed.endpoint, claimed.event.id, json.dumps(claimed.event.body()))
        # The next try counts from this one's end, not from when the run began.
        return claimed, error, None if error is None else retry_at(
            claimed.attempts, claimed.queued_at, self.clock() + shift, self.jitter())

    def post(self, endpoint: Endpoint, message_id: str, body: str) -> str | None:
        """One attempt; None when the receiver took it, else why not (short)."""
        try:
            targets.check(endpoint.url, self.allow_private)
        except targets.TargetRefused as exc:
            return f"target refused: {exc}"[:MAX_ERROR]
        sent = signing.headers(message_id, body, endpoint.secrets, self.clock())
        try:
            with self.session.post(endpoint.url, data=body.encode(), headers=sent, allow_redirects=False,
                                   timeout=(self.timeout, self.timeout), stream=True) as response:
                status = response.status_code
        except requests.Timeout:
            return f"timed out after {self.timeout:g}s"
        except requests.RequestException as exc:
            return f"{type(exc).__name__}: {_reason(exc)}"[:MAX_ERROR]
        if 200 <= status < 300:
            return None
        return f"HTTP {status} (redirect not followed)" if 300 <= status < 400 else f"HTTP {status}"


def _log(claimed: Claimed, error: str | None, later: datetime | None, status: str) -> None:
    fields = {"endpoint": claimed.endpoint.name, "event_id": claimed.event.id, "position": claimed.event.position,
              "attempt": claimed.attempts, "status": status}
    if status == TAKEN_OVER:  # its lease lapsed: the worker that took it over records the outcome
        log.warning("webhook outcome dropped", extra={"fields": {**fields, "error": error}})
    elif error is None:
        log.info("webhook delivered", extra={"fields": fields})
    else:
        log.warning("webhook not delivered",
                    extra={"fields": {**fields, "error": error, "retry_at": later and later.isoformat()}})


def _reason(exc: Exception) -> str:
    """The innermost cause of a requests error: "[Errno 111] Connection refused", not a
    page of urllib3's wrapping."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    return str(exc).rsplit(": ", 1)[-1] or type(exc).__name__
