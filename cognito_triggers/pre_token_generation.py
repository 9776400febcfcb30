"""Pre token generation trigger: put the user's entitlements into their tokens.

https://docs.aws.amazon.com/cognito/latest/developerguide/user-pool-lambda-pre-token-generation.html
Adds ``premium``, ``entitlements`` and ``premium_until`` (see ``entitlement_claims``) to the
ID token, and for trigger versions 2 and 3 to the access token as well.

If the gateway is not configured, errors, or does not answer within
``GATEWAY_TIMEOUT_SECONDS``, the event is returned without these claims: a sign-in must not
fail because the gateway is down, and apps read the claims' absence as "ask the gateway".
"""
from __future__ import annotations

import logging

from cognito_triggers import entitlement_claims, gateway_client, logs, settings
from cognito_triggers.budget import Deadline, within
from cognito_triggers.events import user_attributes

log = logging.getLogger(__name__)


def handler(event: dict, context) -> dict:
    logs.configure()
    # Client-credentials (M2M) events of version 3 have no user, hence no sub.
    sub = user_attributes(event).get("sub")
    base_url, api_key = settings.gateway_url(), settings.gateway_api_key()
    if not (sub and base_url and api_key):
        log.info("entitlement claims skipped", extra={"fields": {"sub": sub, "configured": bool(base_url and api_key)}})
        return event
    try:
        deadline = Deadline.for_invocation(context, settings.budget_seconds())
        timeout = deadline.allow(settings.gateway_timeout())
        answer = within(timeout, gateway_client.fetch_entitlements, base_url, api_key, sub, timeout)
        claims = entitlement_claims.claims_for(answer)  # an answer of another shape raises here
    except Exception as error:  # noqa: BLE001 - a sign-in must not fail on our account
        log.warning("entitlements unavailable, token issued without them",
                    extra={"fields": {"sub": sub, **logs.describe(error)}})
        return event
    return entitlement_claims.add_claims(event, claims)
