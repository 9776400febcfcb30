"""``flask users delete <sub>``: delete an account at its owner's request (``gateway.accounts``),
as ``DELETE /v1/me`` does for a signed-in user; support's way in when the app cannot."""
from __future__ import annotations

import json

import click
from flask import current_app
from flask.cli import AppGroup

from gateway.errors import GatewayError

users = AppGroup("users", help="Users: delete an account at its owner's request.")


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
