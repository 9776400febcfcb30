"""``flask webhooks ...``: the outgoing webhooks' endpoints, deliveries and replay,
skipping the gap the feed's retention left to an endpoint behind it (``Outbox.skip_gap``),
and dropping a delivery whose event is gone (``Outbox.drop``)."""
from __future__ import annotations

import logging

import click
from flask import current_app
from flask.cli import AppGroup

from gateway.clock import utcnow
from gateway.domain.webhooks import DELIVERED, FAILED, PENDING, STATUSES
from gateway.outbound.worker import Deliverer
from gateway.store.outbox import Outbox

log = logging.getLogger("gateway.outbound")
webhooks = AppGroup("webhooks", help="Outgoing webhooks: endpoints, deliveries, replay, skipping a gap, "
                                     "dropping what cannot be sent, one round of sending.")


def _outbox() -> Outbox:
    return Outbox.of(current_app.extensions["gateway"].store)


@webhooks.command("list")
def list_command() -> None:
    """The endpoints (those of OUTBOUND_WEBHOOKS once the worker has run) and their deliveries."""
    outbox = _outbox()
    counts, behind = outbox.counts(), outbox.behind()
    for e in outbox.endpoints():
        held = counts.get(e.name, {})
        tally = "  ".join(f"{status} {held.get(status, 0)}" for status in (PENDING, FAILED, DELIVERED))
        types = ",".join(e.types) if e.types else "every type"
        click.echo(f"{e.name:<20} {'enabled' if e.enabled else 'disabled':<8} {e.origin:<5}  {tally}  "
                   f"{types}  {e.url}")
        if e.name in behind:
            position, pruned = behind[e.name]
            click.echo(f"  BEHIND THE FEED: events after {position} through {pruned} were deleted before it "
                       f"fanned them out; it sends nothing until `flask webhooks skip-gap {e.name}`")


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
                   f"{d.event_type or '(event pruned)':<20} {d.user_sub}{error}")


@webhooks.command("replay")
@click.option("--endpoint", help="the failed deliveries of this endpoint")
@click.option("--position", "positions", type=int, multiple=True, help="the failed delivery of this feed position")
@click.option("--failed", is_flag=True, help="every failed delivery")
def replay_command(endpoint, positions, failed) -> None:
    """Send parked (failed) deliveries again, now, each user's in feed order."""
    if not (endpoint or positions or failed):
        raise click.UsageError("name --endpoint or --position, or use --failed")
    outbox = _outbox()
    count = outbox.replay(utcnow(), endpoint, tuple(positions))
    click.echo(f"replayed {count} {'delivery' if count == 1 else 'deliveries'}")
    for name, position, user_sub in outbox.unsendable(endpoint, tuple(positions)):
        click.echo(f"  not replayed: {name} {position} ({user_sub}): its event was deleted, so it cannot be sent; "
                   f"resync {user_sub} at the receiver, then `flask webhooks drop {name} {position}`")


@webhooks.command("drop")
@click.argument("name")
@click.argument("positions", type=int, nargs=-1, required=True)
def drop_command(name, positions) -> None:
    """Delete failed deliveries whose event is gone, so their users' later ones go on.

    Such a delivery cannot be sent, and holds back the user's later deliveries to the
    endpoint: resync the user at the receiver (GET /v1/users/<sub>/entitlements) first.
    A delivery that can still be sent is not dropped: replay it."""
    dropped = _outbox().drop(name, tuple(positions))
    for position, user_sub in sorted(dropped.items()):
        log.warning("webhook delivery dropped",
                    extra={"fields": {"endpoint": name, "position": position, "user_sub": user_sub}})
        click.echo(f"{name}: dropped {position} ({user_sub}); {user_sub}'s later deliveries go on")
    left = sorted(set(positions) - set(dropped))
    if left:
        raise click.ClickException(f"not dropped: {', '.join(map(str, left))}: no failed delivery of {name} there "
                                   "whose event is gone (one that can be sent is replayed instead)")


@webhooks.command("skip-gap")
@click.argument("name")
def skip_gap_command(name) -> None:
    """Let an endpoint behind the feed go on from the oldest event kept.

    Its receiver never got the events the retention deleted: resync it first (each user's
    GET /v1/users/<sub>/entitlements), then run this."""
    outbox = _outbox()
    if name not in {e.name for e in outbox.endpoints()}:
        raise click.ClickException(f"no endpoint {name}")
    gap = outbox.skip_gap(name, utcnow())
    if gap is None:
        click.echo(f"{name} is not behind the feed: nothing skipped")
        return
    log.warning("webhook endpoint gap skipped",
                extra={"fields": {"endpoint": name, "after": gap[0], "through": gap[1]}})
    click.echo(f"{name}: skipped the events after {gap[0]} through {gap[1]}; it goes on after {gap[1]}")


@webhooks.command("deliver")
def deliver_command() -> None:
    """One round of the worker's sending: fan out, then attempt what is due."""
    made = Deliverer.build(current_app.extensions["gateway"]).run_once()
    click.echo(f"{made} {'attempt' if made == 1 else 'attempts'}")
