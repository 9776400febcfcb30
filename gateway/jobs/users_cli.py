"""``flask users delete <sub>``: delete an account at its owner's request (``gateway.accounts``),
as ``DELETE /v1/me`` does for a signed-in user; support's way in when the app cannot. And
``flask users sign-out-skip-gap``: the sign-out on revocation behind the feed goes on
(``sign_out.skip_gap``)."""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

import click
from flask import current_app
from flask.cli import AppGroup

from gateway.clock import utcnow
from gateway.errors import GatewayError
from gateway.jobs import sign_out

log = logging.getLogger("gateway.sign_out")

users = AppGroup("users", help="Users: delete an account at its owner's request; let the sign-out on revocation "
                               "skip a gap in the feed.")


@users.command("delete")
@click.argument("user_sub")
def delete_command(user_sub: str) -> None:
    """Cancel what the gateway can cancel, erase the user's personal data, print the report.

    Idempotent: run again, it prints the first report with the purchases made since,
    stopping first those still pending, and calls no other store."""
    try:
        report = current_app.extensions["gateway"].accounts.delete(user_sub)
    except GatewayError as exc:  # a store's API or the database: the message says what holds; run it again
        raise click.ClickException(f"{exc.code}: {exc.message}") from None
    click.echo(json.dumps(report, indent=2))


@users.command("sign-out-skip-gap")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]), default=None,
              help="UTC time the gap began, when earlier than a day before the sign-out last went on "
                   "(it was failing or far behind when switched off).")
@click.option("--list", "list_only", is_flag=True, help="Print the gap and its users; sign out no one, skip nothing.")
def sign_out_skip_gap_command(since: datetime | None, list_only: bool) -> None:
    """Let the sign-out on revocation (COGNITO_SIGN_OUT_ON_REVOKE) go on from the oldest
    event kept, once behind the feed.

    The feed's retention deleted events it had not read while it was off. The users whose
    access may have been revoked among them (an entitlement revoked, the user deleted, a
    purchase transferred away, since the gap began) are signed out first; then the sign-out
    goes on. A failure stops before the skip: run it again."""
    services = current_app.extensions["gateway"]
    gap = sign_out.find_gap(services.store, since and since.replace(tzinfo=timezone.utc))
    if gap is None:
        click.echo("the sign-out is not behind the feed: nothing skipped")
        return
    click.echo(f"sign-out: the events after {gap.after} through {gap.through} were deleted unread; "
               f"{len(gap.users)} users revoked, deleted or transferred from since {gap.since.isoformat()}")
    consumer = None if list_only else sign_out.build(services)
    if consumer is None:
        click.echo("\n".join(gap.users) if gap.users else "(none)")
        if not list_only:
            raise click.ClickException("COGNITO_SIGN_OUT_ON_REVOKE is off or COGNITO_USER_POOL_ID unset: "
                                       "no one signed out, nothing skipped")
        return
    _skip(services.store, gap, consumer.sign_out)


def _skip(store, gap: sign_out.Gap, cognito) -> None:
    def told(user_sub: str, known: bool) -> None:
        click.echo(f"{user_sub} {'signed out' if known else 'not in the pool'}")

    try:
        moved = sign_out.skip_gap(store, gap, cognito, utcnow(), told)
    except sign_out.SignOutFailed as exc:
        raise click.ClickException(f"{exc}; nothing skipped: run it again") from None
    if not moved:
        raise click.ClickException("the sign-out's cursor moved meanwhile: nothing skipped, run it again")
    log.warning("sign-out gap skipped", extra={"fields": {"after": gap.after, "through": gap.through,
                                                          "since": gap.since.isoformat(), "users": len(gap.users)}})
    click.echo(f"sign-out: skipped the events after {gap.after} through {gap.through}; it goes on after {gap.through}")
