"""``flask --app wsgi reconcile``: re-read subscriptions from each store's API and repair drift.

What is read: per source, the subscriptions expiring between ``--since-days`` ago and
``--ahead-days`` ahead, those whose owner is still unknown, and those the store has not
settled (billing retry, grace period, paused, pending, or active and renewing with their
period over) however long ago their period ended, up to the store's own bound
(``unresolved.SETTLED_WITHIN``), so that a recovery or renewal whose webhook was lost is
seen (``Transaction.subscriptions_to_reconcile``); at most ``--limit`` a run, starting after the key where the source's previous run stopped (its cursor) and
wrapping around to the first key: with D due and a limit L, every one is read within
ceil(D / L) runs, none starved.
For the App Store also the notifications Apple failed to deliver; for Google Play the voids
Play listed since the last complete read (``reconcile_google``). Each answer becomes a
snapshot stamped with its fetch time and is applied through ``apply_translation`` in a
transaction of its own: one subscription is either repaired whole or not at all. A store API that fails counts its subscriptions as
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

from gateway.apply import apply_translation, reading_again
from gateway.domain.entitlement_events import Cause
from gateway.clock import utcnow
from gateway.domain.catalog import SOURCES
from gateway.domain.model import Subscription, merge_snapshot
from gateway.domain.unresolved import SETTLED_WITHIN
from gateway.jobs import reconcile_sources as sources
from gateway.jobs.reconcile_apple import apple_checker
from gateway.jobs.reconcile_google import google_checker
from gateway.jobs.reconcile_http import ThrottledSession, TokenBucket
from gateway.jobs.reconcile_progress import Progress
from gateway.jobs.reconcile_report import Tally, describe, state_of
from gateway.jobs.reconcile_stripe import stripe_checker
from gateway.store.port import StoreRefused, StoreUnavailable

log = logging.getLogger("gateway.reconcile")

#: After this many failures in a row without a success, a source is taken to be down and
#: its remaining subscriptions fail at once instead of each waiting out a timeout.
DOWN_AFTER = 8
#: Most subscriptions re-read per source and run (``--limit``), from the source's cursor on.
LIMIT = 10_000


class Reconciler:
    def __init__(self, services, checkers: dict, clock, workers: int = 4, limit: int = LIMIT,
                 echo=lambda line: None, progress_every: float = 10.0) -> None:
        self.services, self.checkers, self.clock, self.workers = services, checkers, clock, workers
        self.limit, self.echo, self.progress_every = limit, echo, progress_every
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
            unresolved_from = now - max(since, SETTLED_WITHIN[source])
            due = self._due(source, tally, (now - since, now + ahead, unresolved_from))
            progress = Progress(source, [s.snapshot.key for s in due], self._saver(source, dry_run),
                                self.echo, self.progress_every)
            work += [(checker, tally, progress, subscription) for subscription in due]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            list(pool.map(lambda item: self._check(*item, dry_run), work))
        for source, tally in tallies.items():
            acknowledged = getattr(self.checkers[source], "acknowledged", 0)
            if acknowledged:
                tally.extra["acknowledged"] = acknowledged
        return tallies

    def _due(self, source: str, tally: Tally, bounds: tuple[datetime, datetime, datetime]) -> list[Subscription]:
        """Up to ``limit`` of the subscriptions due (``bounds``: expiring from, to, and
        unresolved since), those after the cursor first, then from the first key on (a
        short read after the cursor holds all of those)."""
        expires_from, expires_to, unresolved_from = bounds
        try:
            with self.services.store.transaction(readonly=True) as tx:
                after = tx.reconcile_cursor(source)
                due = tx.subscriptions_to_reconcile(source, expires_from, expires_to, self.limit, after,
                                                    unresolved_from)
                if after is not None and len(due) < self.limit:
                    seen = {s.snapshot.key for s in due}
                    wrapped = tx.subscriptions_to_reconcile(source, expires_from, expires_to, self.limit - len(due),
                                                            None, unresolved_from)
                    due += [s for s in wrapped if s.snapshot.key not in seen]
        except StoreUnavailable as exc:
            tally.failed += 1
            tally.errors.append(f"the database cannot be read: {exc}")
            return []
        if len(due) >= self.limit:  # said, not silently cut: the rest waits for the next runs
            tally.extra["limit reached"] = self.limit
            log.warning("reconcile limit reached", extra={"fields": {"source": source, "limit": self.limit}})
        return due

    def _saver(self, source: str, dry_run: bool):
        def save(last_key: str) -> None:
            if dry_run:  # a dry run writes nothing, its cursor included
                return
            try:
                with self.services.store.transaction() as tx:
                    tx.move_reconcile_cursor(source, last_key, self.clock())
            except (StoreUnavailable, StoreRefused) as exc:  # the next run reads these again: harmless
                log.warning("reconcile cursor not saved", extra={"fields": {"source": source, "error": str(exc)}})
        return save

    def _recover(self, checker, tally: Tally, since: timedelta, now: datetime) -> None:
        """What the store's notifications missed (the App Store's history, Google Play's
        voided purchases): a second chance; the statuses run whatever it ends in."""
        label = checker.recovers
        try:
            outcomes = checker.recover(self.services.ingest, since, now)
        except Exception as exc:
            tally.failed += 1
            tally.errors.append(f"{label}: {exc}")
            return
        for outcome, count in outcomes.items():
            tally.extra[f"{label} {outcome}"] = count
        if outcomes.get("failed"):
            tally.failed += outcomes["failed"]
            tally.errors.append(f"{label}: {outcomes['failed']} failed (logged); the next run reads them again")

    def _check(self, checker, tally: Tally, progress: Progress, current: Subscription, dry_run: bool) -> None:
        key = current.snapshot.key
        if tally.streak >= DOWN_AFTER:  # from the start or midway: the rest is not asked
            error = RuntimeError(f"skipped: the API is down (it failed {DOWN_AFTER} calls in a row)")
            progress.done(key, self._failed(checker, tally, key, error), visited=False)
            return
        try:
            before, after = reading_again(
                lambda: self._apply(current, checker.fetch(current, self.services.ingest.lookup, dry_run), dry_run))
        except Exception as exc:
            progress.done(key, self._failed(checker, tally, key, exc))
            return
        progress.done(key, self._counted(checker, tally, key, before, after, dry_run))

    def _failed(self, checker, tally: Tally, key: str, exc: Exception) -> str:
        log.warning("reconcile failed", extra={"fields": {
            "source": checker.source, "key": key, "error": str(exc)[:300]}})
        with self.lock:
            tally.checked, tally.failed, tally.streak = tally.checked + 1, tally.failed + 1, tally.streak + 1
            tally.errors.append(f"{key}: {str(exc)[:200]}")
        return "failed"

    def _counted(self, checker, tally: Tally, key: str, before: tuple, after: tuple, dry_run: bool) -> str:
        # A checker may say why a subscription changed, and count it apart (``notes``).
        label, why = getattr(checker, "notes", {}).get(key, (None, None))
        with self.lock:
            tally.checked, tally.streak = tally.checked + 1, 0
            if before == after:
                tally.unchanged += 1
                return "unchanged"
            tally.changed += 1
            tally.drift.append(describe(key, before, after) + (f" ({why})" if why else ""))
            if label:
                tally.extra[label] = tally.extra.get(label, 0) + 1
        log.warning("drift repaired" if not dry_run else "drift found", extra={"fields": {
            "source": checker.source, "key": key, "before": before[:3], "after": after[:3],
            **({"why": why} if why else {})}})
        return "changed"

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

    def session(source: str) -> ThrottledSession:  # one bucket per store, shared by the run's workers
        return ThrottledSession(bucket=TokenBucket(getattr(s, f"reconcile_rate_{source}")))

    return {
        "stripe": stripe_checker(s, catalog, session("stripe"), clock, services.store),
        "apple": apple_checker(s, providers.get("apple"), catalog, session("apple"), clock),
        "google": google_checker(s, providers.get("google"), session("google"), clock),
        "revenuecat": sources.revenuecat_checker(s, catalog, session("revenuecat"), clock),
    }


@click.command("reconcile")
@click.option("--source", "chosen", type=click.Choice(SOURCES), multiple=True, help="default: every source")
@click.option("--dry-run", is_flag=True, help="report drift without repairing it or acknowledging")
@click.option("--since-days", default=3.0, show_default=True, help="expired up to this many days ago")
@click.option("--ahead-days", default=1.0, show_default=True, help="expiring within this many days")
@click.option("--workers", default=4, show_default=True, help="API calls in flight at once")
@click.option("--limit", default=LIMIT, show_default=True, type=click.IntRange(min=1),
              help="most subscriptions per source and run; the next run goes on from there")
@click.option("--progress-every", default=10.0, show_default=True, help="seconds between progress lines")
@with_appcontext
def reconcile_command(chosen, dry_run, since_days, ahead_days, workers, limit, progress_every) -> None:
    """Re-read subscriptions from each store's API and repair what drifted."""
    services = current_app.extensions["gateway"]
    checkers = build_checkers(services, utcnow)
    reconciler = Reconciler(services, checkers, utcnow, workers, limit, click.echo, progress_every)
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
