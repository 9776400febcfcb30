"""The ``worker`` process of the Procfile (``flask events work``): the gateway's own chores
in one loop. Each chore does what is due and says how much it did; when none did anything
the loop sleeps ``idle_seconds``. A chore that fails (the database failing over, a bug)
is logged and tried again on the next turn; it never stops the others or the process.

The chores: the retry of deferred deliveries, the expiry sweep (``expiry.py``), the
cancellation of purchases made after an account deletion (``gateway.late_purchases``), the
outgoing webhooks and the Cognito sign-outs, each when configured, and the event log's and
the feed's pruning (``retention.py``, at most once an hour unless it has a backlog).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

from gateway.store.port import StoreUnavailable

log = logging.getLogger("gateway.worker")

Chore = Callable[[], int]


def run(chores: dict[str, Chore], idle_seconds: float = 1.0, once: bool = False) -> None:
    """Run every chore in turn until stopped (``once``: one turn)."""
    while True:
        busy = False
        for name, chore in chores.items():
            try:
                done = chore()
            except StoreUnavailable as exc:  # the database is down or failing over: wait, do not exit
                log.warning("chore cannot reach the database", extra={"fields": {"chore": name, "error": str(exc)}})
                continue
            except Exception:  # noqa: BLE001 - logged with its trace; the next turn tries again
                log.exception("chore failed", extra={"fields": {"chore": name}})
                continue
            if done:
                log.info("chore done", extra={"fields": {"chore": name, "count": done}})
                busy = True
        if once:
            return
        if not busy:
            time.sleep(idle_seconds)


def chores(services, stale_after) -> dict[str, Chore]:
    """The worker's chores for these services (``app.Services``)."""
    from gateway.clock import utcnow
    from gateway.jobs import retry, sign_out
    from gateway.jobs.expiry import ExpirySweep
    from gateway.jobs.retention import Pruner, feed_consumers
    from gateway.late_purchases import LatePurchases
    from gateway.outbound.worker import Deliverer
    from gateway.store.retention import Retention

    found: dict[str, Chore] = {
        "retry": lambda: sum(retry.retry_due(services.ingest, services.providers, stale_after=stale_after).values()),
        "expiry": ExpirySweep(services.store).run_once,
        "webhooks": Deliverer.build(services).run_once,  # every run: endpoints added on the admin page too
        "late_purchases": LatePurchases(services.store, services.accounts.stop, utcnow).run_once,
    }
    consumer = sign_out.build(services)  # None unless COGNITO_SIGN_OUT_ON_REVOKE and a pool
    if consumer:
        found["cognito_sign_out"] = consumer.run_once
    # With both retentions 0 the logs are kept whole; the expired Checkout Sessions go still.
    settings = services.settings
    found["events_prune"] = Pruner(Retention.of(services.store), settings.events_retention_days,
                                   feed_days=settings.feed_retention_days, cursors=feed_consumers(settings)).run_once
    return found
