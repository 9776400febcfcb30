"""``flask --app wsgi ...`` commands."""
from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from gateway.jobs import retry
from gateway.store.migrate import upgrade

events = AppGroup("events", help="The event log: retry deferred deliveries.")


def _services():
    return current_app.extensions["gateway"]


@click.command("migrate")
def migrate_command() -> None:
    """Bring the database schema up to date (idempotent)."""
    upgrade(_services().settings.database_url)
    click.echo("database schema is up to date")


@events.command("retry")
@click.option("--limit", default=100, show_default=True)
def retry_command(limit: int) -> None:
    """Apply the deferred events that are due, once."""
    services = _services()
    outcomes = retry.retry_due(services.ingest, services.providers, limit=limit)
    click.echo(", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())) or "nothing due")


@events.command("work")
@click.option("--idle-seconds", default=5.0, show_default=True)
def work_command(idle_seconds: float) -> None:
    """Retry deferred events until stopped (the Procfile's worker)."""
    services = _services()
    retry.work(services.ingest, services.providers, idle_seconds=idle_seconds)


def register(app: Flask) -> None:
    app.cli.add_command(migrate_command)
    app.cli.add_command(events)
