"""Post confirmation trigger: make sure each newly confirmed user has one Stripe customer,
and write its id to the user attribute ``custom:stripe_customer_id``.

https://docs.aws.amazon.com/cognito/latest/developerguide/user-pool-lambda-post-confirmation.html
Cognito sends ``PostConfirmation_ConfirmSignUp`` both for a user's ConfirmSignUp and for an
administrator's AdminConfirmSignUp, so the two are treated the same.
``PostConfirmation_ConfirmForgotPassword`` passes through. Users made by AdminCreateUser never
reach this trigger; the gateway's ``backfill-stripe-customers`` command links them.

The event is always returned unchanged. Raising would fail the user's sign-up, so a failure
is logged instead and repaired later: checkout creates a missing customer, and the backfill
command links it.
"""
from __future__ import annotations

import logging

from cognito_triggers import aws, logs, settings, stripe_key
from cognito_triggers.budget import Deadline, within
from cognito_triggers.events import ConfirmedUser, user_attributes
from cognito_triggers.stripe_customers import StripeCustomers

CONFIRM_SIGN_UP = "PostConfirmation_ConfirmSignUp"

log = logging.getLogger(__name__)


def handler(event: dict, context) -> dict:
    logs.configure()
    if event.get("triggerSource") != CONFIRM_SIGN_UP:
        return event
    sub = user_attributes(event).get("sub")
    try:
        deadline = Deadline.for_invocation(context, settings.budget_seconds())
        within(deadline.remaining(), link_customer, ConfirmedUser.from_event(event), deadline)
    except Exception as error:  # noqa: BLE001 - see the module docstring: sign-up must not fail
        log.warning("stripe customer not linked", extra={"fields": {"sub": sub, **logs.describe(error)}})
    return event


def link_customer(user: ConfirmedUser, deadline: Deadline) -> None:
    attribute = settings.stripe_attribute()
    if user.attributes.get(attribute):
        # Trust a link made before (another attempt, checkout, the backfill): re-deriving it
        # could only make a second customer for a user whose first has no metadata.
        log.info("already linked", extra={"fields": {"sub": user.sub}})
        return
    api_key = stripe_key.stripe_api_key()
    if not api_key:
        log.warning("stripe not configured", extra={"fields": {"sub": user.sub}})
        return
    customers = StripeCustomers(api_key, settings.stripe_api_base(),
                                timeout=lambda: deadline.allow(settings.stripe_timeout(), reserve=aws.WORST_CALL))
    customer_id = customers.ensure_customer(user.sub, user.email, user.name, user.username)
    deadline.require(aws.WORST_CALL)
    aws.client("cognito-idp").admin_update_user_attributes(
        UserPoolId=user.pool_id, Username=user.username,
        UserAttributes=[{"Name": attribute, "Value": customer_id}],
    )
    log.info("stripe customer linked", extra={"fields": {"sub": user.sub, "customer": customer_id}})
