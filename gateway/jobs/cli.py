"""``flask --app wsgi ...`` commands: migrate, and the event log's retry, replay and pruning."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from gateway.clock import utcnow
from gateway.domain.catalog import SOURCES
from gateway.domain.deletion import SESSION_LIFETIME
from gateway.domain.events import STATUSES
from gateway.jobs import retention, retry, worker
from gateway.store import migrate
from gateway.store.retention import Retention

events = AppGroup("events", help="The event log: list, show, retry, replay and prune deliveries.")


def _services():
    return current_app.extensions["gateway"]


def _stale_after(services) -> timedelta:
    """``EVENTS_STALE_AFTER_SECONDS``, as read into the settings at start."""
    return timedelta(seconds=services.settings.events_stale_after_seconds)


class _Time(click.ParamType):
    name = "time"

    def convert(self, value, param, ctx):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time, e.g. 2026-11-22T10:00:00Z", param, ctx)
        # In UTC: SQLite compares stored times as text, so an offset must not reach it.
        return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@click.command("migrate")
@click.option("--lock-timeout", type=float, default=migrate.LOCK_TIMEOUT, show_default=True,
              help="seconds a migration waits for a lock before it is tried again")
@click.option("--attempts", type=int, default=migrate.ATTEMPTS, show_default=True)
@with_appcontext
def migrate_command(lock_timeout, attempts) -> None:
    """Bring the database schema up to date (idempotent)."""
    try:
        migrate.upgrade(_services().settings.database_url, lock_timeout=lock_timeout, attempts=attempts)
    except migrate.MigrationBlocked as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("database schema is up to date")


@events.command("list")
@click.option("--source", type=click.Choice(SOURCES))
@click.option("--status", type=click.Choice(STATUSES))
@click.option("--since", type=_Time(), help="received at or after this time")
@click.option("--limit", default=50, show_default=True)
def list_command(source, status, since, limit) -> None:
    """Recent deliveries, newest first."""
    with _services().store.transaction() as tx:
        found = tx.search_events(source=source, status=status, since=since, limit=limit)
    for e in found:
        error = f"  {e.last_error.splitlines()[0][:80]}" if e.last_error else ""
        click.echo(f"{e.id:>8}  {e.received_at:%Y-%m-%dT%H:%M:%SZ}  {e.source:<10} {e.status:<9} "
                   f"{e.attempts:>2}  {e.event_type}  {e.event_id}{error}")


@events.command("show")
@click.argument("event_pk", type=int)
def show_command(event_pk: int) -> None:
    """One delivery with its payload and outcome."""
    with _services().store.transaction() as tx:
        event = tx.get_event(event_pk)
    if event is None:
        raise click.ClickException(f"no event {event_pk}")
    fields = {k: (v.isoformat() if isinstance(v, datetime) else v)
              for k, v in vars(event).items() if k not in ("payload", "data")}
    click.echo(json.dumps({**fields, "data": event.data}, indent=2, default=str))


@events.command("replay")
@click.argument("event_pks", nargs=-1, type=int)
@click.option("--failed", is_flag=True, help="every failed delivery")
@click.option("--since", type=_Time(), help="every delivery received at or after this time")
@click.option("--source", type=click.Choice(SOURCES))
def replay_command(event_pks, failed, since, source) -> None:
    """Apply stored deliveries again: safe, since applying is idempotent and newest-wins."""
    if not (event_pks or failed or since):
        raise click.UsageError("name event ids, or use --failed or --since")
    services = _services()
    with services.store.transaction() as tx:
        chosen = [tx.get_event(pk) for pk in event_pks]
        if failed or since:
            chosen += tx.search_events(source=source, status="failed" if failed else None, since=since,
                                       limit=1_000_000)
    missing = [pk for pk, e in zip(event_pks, chosen) if e is None]
    if missing:
        raise click.ClickException(f"no event {', '.join(map(str, missing))}")
    unique = {event.id: event for event in chosen}.values()  # named and matched by --since: once
    outcomes = retry.replay(services.ingest, services.providers, sorted(unique, key=lambda e: e.id))
    click.echo(", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())) or "nothing to replay")


@events.command("retry")
@click.option("--limit", default=100, show_default=True)
def retry_command(limit: int) -> None:
    """Apply the deferred deliveries that are due, once."""
    services = _services()
    outcomes = retry.retry_due(services.ingest, services.providers, limit=limit,
                               stale_after=_stale_after(services))
    click.echo(", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())) or "nothing due")


@events.command("prune")
@click.option("--dry-run", is_flag=True, help="count what would be deleted, delete nothing")
@click.option("--batch", type=click.IntRange(1, 10_000), default=retention.BATCH, show_default=True,
              help="rows deleted per transaction")
def prune_command(dry_run: bool, batch: int) -> None:
    """Delete finished deliveries, delivered outgoing webhooks and RevenueCat transfers
    older than EVENTS_RETENTION_DAYS, the feed's events older than FEED_RETENTION_DAYS, and
    the Checkout Sessions Stripe has expired (whatever either says), a batch per transaction
    (gateway/jobs/retention.py)."""
    services = _services()
    settings, now = services.settings, utcnow()
    before, feed_before = retention.cutoff(settings.events_retention_days, now), \
        retention.cutoff(settings.feed_retention_days, now)
    store, consumers, sessions_before = Retention.of(services.store), retention.feed_consumers(settings), \
        now - SESSION_LIFETIME
    if dry_run:
        click.echo(_would_prune(store, before, feed_before, consumers, sessions_before))
        return
    done = retention.prune(store, before, batch, feed_cutoff=feed_before, cursors=consumers,
                           sessions_before=sessions_before)
    log = (f"events {done.events}, their evidence rows {done.evidence}, delivered webhooks {done.deliveries}, "
           f"transfers {done.transfers}, " if before else "")
    feed = f"feed events {done.feed}, " if before or feed_before else ""
    click.echo(f"{_kept(before, feed_before)}deleted: {log}{feed}expired checkout sessions "
               f"{done.checkout_sessions}; {done.transactions} transactions, "
               f"the longest {done.longest_seconds * 1000:.0f} ms")


def _kept(before, feed_before) -> str:
    """What the retention settings keep whole, said before what was deleted."""
    if before is None and feed_before is None:
        return "EVENTS_RETENTION_DAYS and FEED_RETENTION_DAYS are 0: every event is kept; "
    return "" if before else "EVENTS_RETENTION_DAYS is 0: the event log is kept; "


def _would_prune(store: Retention, before, feed_before, consumers: tuple[str, ...], sessions_before) -> str:
    sessions = f"expired checkout sessions {store.checkout_sessions_due(sessions_before)}"
    feed = "feed events kept" if feed_before is None else \
        f"feed events {store.feed_due(store.feed_bound(feed_before, consumers))}"
    if before is None:
        return f"would delete: {feed}, {sessions} (the event log is kept)"
    due = store.due(before, store.newest_event(), retention.kept_for_unapplied(store))
    return (f"would delete: events {due.events}, their evidence rows {due.evidence}, "
            f"delivered webhooks {due.deliveries}, transfers {due.transfers}, {feed}, {sessions} "
            f"(received, delivered or stamped before {before:%Y-%m-%dT%H:%M:%SZ}; sessions handed out "
            f"before {sessions_before:%Y-%m-%dT%H:%M:%SZ})")


@events.command("work")
@click.option("--idle-seconds", default=1.0, show_default=True)
@click.option("--once", is_flag=True, help="one turn of every chore, then exit")
def work_command(idle_seconds: float, once: bool) -> None:
    """The Procfile's worker, until stopped: retry deferred deliveries, report entitlements
    that lapsed by time, stop purchases made after an account deletion, send the outgoing webhooks,
    prune the event log (gateway/jobs/worker.py)."""
    services = _services()
    worker.run(worker.chores(services, _stale_after(services)), idle_seconds=idle_seconds, once=once)


def register(app: Flask) -> None:
    from gateway.jobs.backfill import backfill_command
    from gateway.jobs.reconcile import register as register_reconcile
    from gateway.jobs.users_cli import users
    from gateway.jobs.webhooks_cli import webhooks

    app.cli.add_command(migrate_command)
    app.cli.add_command(events)
    app.cli.add_command(backfill_command)
    app.cli.add_command(users)
    app.cli.add_command(webhooks)
    register_reconcile(app)
