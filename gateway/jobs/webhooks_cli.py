"""``flask webhooks ...``: the outgoing webhooks' endpoints, deliveries and replay."""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from gateway.clock import utcnow
from gateway.domain.webhooks import DELIVERED, FAILED, PENDING, STATUSES
from gateway.outbound.worker import Deliverer
from gateway.store.outbox import Outbox

webhooks = AppGroup("webhooks", help="Outgoing webhooks: endpoints, deliveries, replay, one round of sending.")


def _outbox() -> Outbox:
    return Outbox.of(current_app.extensions["gateway"].store)


@webhooks.command("list")
def list_command() -> None:
    """The endpoints (those of OUTBOUND_WEBHOOKS once the worker has run) and their deliveries."""
    outbox = _outbox()
    counts = outbox.counts()
    for e in outbox.endpoints():
        held = counts.get(e.name, {})
        tally = "  ".join(f"{status} {held.get(status, 0)}" for status in (PENDING, FAILED, DELIVERED))
        types = ",".join(e.types) if e.types else "every type"
        click.echo(f"{e.name:<20} {'enabled' if e.enabled else 'disabled':<8} {e.origin:<5}  {tally}  "
                   f"{types}  {e.url}")


@webhooks.command("deliveries")
@click.option("--endpoint", help="of this endpoint only")
@click.option("--status", type=click.Choice(STATUSES))
@click.option("--limit", default=50, show_default=True)
def deliveries_command(endpoint, status, limit) -> None:
    """Deliveries, the newest feed events first."""
    for d in _outbox().deliveries(endpoint, status, limit):
        at = d.delivered_at or d.next_attempt_at
        when = f"{at:%Y-%m-%dT%H:%M:%SZ}" if at else "-"
        error = f"  {d.last_error}" if d.last_error else ""
        click.echo(f"{d.endpoint:<20} {d.position:>8}  {d.status:<9} {d.attempts:>3}  {when:<20}  "
                   f"{d.event_type:<20} {d.user_sub}{error}")


@webhooks.command("replay")
@click.option("--endpoint", help="the failed deliveries of this endpoint")
@click.option("--position", "positions", type=int, multiple=True, help="the failed delivery of this feed position")
@click.option("--failed", is_flag=True, help="every failed delivery")
def replay_command(endpoint, positions, failed) -> None:
    """Send parked (failed) deliveries again, now, each user's in feed order."""
    if not (endpoint or positions or failed):
        raise click.UsageError("name --endpoint or --position, or use --failed")
    count = _outbox().replay(utcnow(), endpoint, tuple(positions))
    click.echo(f"replayed {count} {'delivery' if count == 1 else 'deliveries'}")


@webhooks.command("deliver")
def deliver_command() -> None:
    """One round of the worker's sending: fan out, then attempt what is due."""
    made = Deliverer.build(current_app.extensions["gateway"]).run_once()
    click.echo(f"{made} {'attempt' if made == 1 else 'attempts'}")
