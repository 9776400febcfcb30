"""``python -m devtools receive``: the example receiver of the README, run against the demo.

It verifies each webhook with the Standard Webhooks library and the demo's secret, prints
one line per event (and the event as JSON with ``--json``), and answers 204. The same code
is what the README shows a backend should do.
"""
from __future__ import annotations

import json

import click
from flask import Flask, abort, request
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def receiver(secret: str, as_json: bool = False) -> Flask:
    app = Flask("entitlement-receiver")
    hook = Webhook(secret)
    seen: set[str] = set()

    @app.post("/hooks/entitlements")
    def entitlements():
        try:
            event = hook.verify(request.get_data(), request.headers)  # signature and 5-minute window
        except WebhookVerificationError:
            abort(401)
        if request.headers["webhook-id"] in seen:  # at least once: a retry after a lost answer
            return "", 204
        seen.add(request.headers["webhook-id"])
        after = event["after"] or {}
        click.echo(json.dumps(event) if as_json else
                   f"{event['position']:>5}  {event['type']:<22} {event['user_id']}  {event['entitlement'] or ''}"
                   f"  active={after.get('active')} until={after.get('expires_at')}  cause={event['cause']['kind']}")
        return "", 204

    return app
