"""``flask --app wsgi reconcile``: re-read subscriptions from each store's API and repair drift.

What is read: per source, the subscriptions expiring between ``--since-days`` ago and
``--ahead-days`` ahead, those whose owner is still unknown and those still pending
(``Transaction.subscriptions_to_reconcile``); for the App Store also the notifications
Apple failed to deliver. Each answer becomes a snapshot stamped with its fetch time and is
applied through ``apply_translation`` in a transaction of its own: one subscription is
either repaired whole or not at all. A store API that fails counts its subscriptions as
failed and the command exits 1 at the end; the other sources go on.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from gateway.apply import apply_translation
from gateway.domain.entitlement_events import Cause
from gateway.clock import utcnow
from gateway.domain.catalog import SOURCES
from gateway.domain.model import Subscription, merge_snapshot
from gateway.jobs import reconcile_sources as sources
from gateway.jobs.reconcile_apple import apple_checker
from gateway.jobs.reconcile_http import ThrottledSession
from gateway.jobs.reconcile_report import Tally, describe, state_of
from gateway.store.port import StoreUnavailable

log = logging.getLogger("gateway.reconcile")

#: After this many failures in a row without a success, a source is taken to be down and
#: its remaining subscriptions fail at once instead of each waiting out a timeout.
DOWN_AFTER = 8
#: Most subscriptions re-read per source and run, in key order.
LIMIT = 10_000


class Reconciler:
    def __init__(self, services, checkers: dict, clock, workers: int = 4) -> None:
        self.services, self.checkers, self.clock, self.workers = services, checkers, clock, workers
        self.lock = threading.Lock()

    def run(self, chosen, since: timedelta, ahead: timedelta, dry_run: bool) -> dict[str, Tally]:
        now, tallies, work = self.clock(), {}, []
        for source in chosen:
            tallies[source] = tally = Tally()
            checker = self.checkers[source]
            if isinstance(checker, str):
                tally.skipped = checker
                continue
            if hasattr(checker, "recover") and not dry_run:
                self._recover(checker, tally, since, now)
            try:
                with self.services.store.transaction(readonly=True) as tx:
                    due = tx.subscriptions_to_reconcile(source, now - since, now + ahead, limit=LIMIT)
            except StoreUnavailable as exc:
                tally.failed += 1
                tally.errors.append(f"the database cannot be read: {exc}")
                continue
            if len(due) >= LIMIT:  # said, not silently cut: the rest waits for the next run
                tally.extra["limit reached"] = LIMIT
                log.warning("reconcile limit reached", extra={"fields": {"source": source, "limit": LIMIT}})
            work += [(checker, tally, subscription) for subscription in due]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            list(pool.map(lambda item: self._check(*item, dry_run), work))
        for source, tally in tallies.items():
            acknowledged = getattr(self.checkers[source], "acknowledged", 0)
            if acknowledged:
                tally.extra["acknowledged"] = acknowledged
        return tallies

    def _recover(self, checker, tally: Tally, since: timedelta, now: datetime) -> None:
        try:
            for outcome, count in checker.recover(self.services.ingest, since, now).items():
                tally.extra[f"history {outcome}"] = count
        except Exception as exc:  # the history is a second chance; statuses still run
            tally.failed += 1
            tally.errors.append(f"notification history: {exc}")

    def _check(self, checker, tally: Tally, current: Subscription, dry_run: bool) -> None:
        key = current.snapshot.key
        try:
            if tally.streak >= DOWN_AFTER and tally.checked == tally.failed:
                raise RuntimeError("skipped: the API failed every call so far")
            translation = checker.fetch(current, self.services.ingest.lookup, dry_run)
            before, after = self._apply(current, translation, dry_run)
        except Exception as exc:
            log.warning("reconcile failed", extra={"fields": {
                "source": checker.source, "key": key, "error": str(exc)[:300]}})
            with self.lock:
                tally.checked, tally.failed, tally.streak = tally.checked + 1, tally.failed + 1, tally.streak + 1
                tally.errors.append(f"{key}: {str(exc)[:200]}")
            return
        with self.lock:
            tally.checked, tally.streak = tally.checked + 1, 0
            if before == after:
                tally.unchanged += 1
                return
            tally.changed += 1
            tally.drift.append(describe(key, before, after))
        log.warning("drift repaired" if not dry_run else "drift found", extra={"fields": {
            "source": checker.source, "key": key, "before": before[:3], "after": after[:3]}})

    def _apply(self, current: Subscription, translation, dry_run: bool) -> tuple[tuple, tuple]:
        source, key = current.snapshot.source, current.snapshot.key
        if dry_run:
            after = current
            for snapshot in translation.snapshots:
                after = merge_snapshot(after, snapshot) if snapshot.key == key else after
            return state_of(current), state_of(after)
        with self.services.store.transaction() as tx:
            before = tx.get_subscription(source, key)
            apply_translation(tx, translation, self.services.catalog, self.clock(), cause=Cause("reconcile", source))
            return state_of(before), state_of(tx.get_subscription(source, key))


def build_checkers(services, clock) -> dict:
    s, catalog, providers = services.settings, services.catalog, services.providers
    return {
        "stripe": sources.stripe_checker(s, catalog, ThrottledSession(), clock),
        "apple": apple_checker(s, providers.get("apple"), catalog, ThrottledSession(), clock),
        "google": sources.google_checker(s, providers.get("google"), ThrottledSession(), clock),
        "revenuecat": sources.revenuecat_checker(s, catalog, ThrottledSession(), clock),
    }


@click.command("reconcile")
@click.option("--source", "chosen", type=click.Choice(SOURCES), multiple=True, help="default: every source")
@click.option("--dry-run", is_flag=True, help="report drift without repairing it or acknowledging")
@click.option("--since-days", default=3.0, show_default=True, help="expired up to this many days ago")
@click.option("--ahead-days", default=1.0, show_default=True, help="expiring within this many days")
@click.option("--workers", default=4, show_default=True, help="API calls in flight at once")
@with_appcontext
def reconcile_command(chosen, dry_run, since_days, ahead_days, workers) -> None:
    """Re-read subscriptions from each store's API and repair what drifted."""
    services = current_app.extensions["gateway"]
    checkers = build_checkers(services, utcnow)
    reconciler = Reconciler(services, checkers, utcnow, workers)
    tallies = reconciler.run(chosen or SOURCES, timedelta(days=since_days), timedelta(days=ahead_days), dry_run)
    for source, tally in tallies.items():
        click.echo(tally.line(source) + (" (dry run)" if dry_run and not tally.skipped else ""))
        for line in tally.drift:
            click.echo(f"  drift {line}")
        for line in tally.errors[:20]:
            click.echo(f"  failed {line}")
        log.info("reconciled", extra={"fields": {"source": source, "checked": tally.checked,
                 "changed": tally.changed, "unchanged": tally.unchanged, "failed": tally.failed,
                 "skipped": tally.skipped, "dry_run": dry_run, **tally.extra}})
    # A source asked for by name but not configured is a failure too: cron should notice.
    if any(t.failed or (chosen and t.skipped) for t in tallies.values()):
        raise click.exceptions.Exit(1)


def register(app: Flask) -> None:
    app.cli.add_command(reconcile_command)
