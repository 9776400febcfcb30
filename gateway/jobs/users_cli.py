"""``flask users delete <sub>``: delete an account at its owner's request (``gateway.accounts``),
as ``DELETE /v1/me`` does for a signed-in user; support's way in when the app cannot. And
``flask users sign-out-skip-gap``: the sign-out on revocation behind the feed goes on
(``sign_out.skip_gap``)."""
from __future__ import annotations

import json
import logging

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
def sign_out_skip_gap_command() -> None:
    """Let the sign-out on revocation (COGNITO_SIGN_OUT_ON_REVOKE) go on from the oldest
    event kept, once behind the feed.

    The feed's retention deleted events it had not read while it was off: sign out the
    users revoked in that time yourself (their entitlements' status is revoked), then run this."""
    gap = sign_out.skip_gap(current_app.extensions["gateway"].store, utcnow())
    if gap is None:
        click.echo("the sign-out is not behind the feed: nothing skipped")
        return
    log.warning("sign-out gap skipped", extra={"fields": {"after": gap[0], "through": gap[1]}})
    click.echo(f"sign-out: skipped the events after {gap[0]} through {gap[1]}; it goes on after {gap[1]}")
