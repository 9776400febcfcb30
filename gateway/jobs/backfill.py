"""``flask --app wsgi backfill-stripe-customers``: a Stripe customer for every Cognito user.

The logic lives in ``cognito_triggers.backfill`` (shared with the Lambda package); this
wires it to a Cognito client, the gateway's Stripe settings, and the gateway's tombstones:
a user whose account was deleted here is not made a Stripe customer again.
"""
from __future__ import annotations

import re

import click
from flask import current_app
from flask.cli import with_appcontext

from cognito_triggers.backfill import STRIPE_RETRIES, backfill_customers
from cognito_triggers.stripe_customers import StripeCustomers
from gateway.store.port import Store


#: A user pool id: its region, "_", its own part (``us-east-1_AbC123``; the API's pattern is
#: ``[\w-]+_[0-9a-zA-Z]+``).
_POOL_ID = re.compile(r"(?P<region>[a-z]{2}(?:-[a-z]+)+-[0-9]+)_[0-9a-zA-Z]+")


def pool_region(user_pool_id: str) -> str:
    """The region a user pool id names: the pool is there, whatever COGNITO_REGION says (the
    region of the pool the client API accepts, which a backfill of another pool must not use)."""
    found = _POOL_ID.fullmatch(user_pool_id)
    if found is None:
        raise click.ClickException(f"{user_pool_id} is not a user pool id: one names its region, as us-east-1_AbC123")
    return found["region"]


def tombstones(store: Store):
    """``backfill_customers``'s ``deleted``: which of the subs have a tombstone, read at once
    for a page of users (``Transaction.deleted_among``). ``StoreUnavailable`` fails them."""
    def deleted(subs: list[str]) -> set[str]:
        with store.transaction(readonly=True) as tx:
            return tx.deleted_among(subs)
    return deleted


@click.command("backfill-stripe-customers")
@with_appcontext
@click.option("--user-pool-id", required=True, help="the Cognito user pool to page through")
@click.option("--attribute", help="the user attribute for the customer id (default: the setting "
              "COGNITO_STRIPE_ATTRIBUTE, itself custom:stripe_customer_id by default)")
@click.option("--dry-run", is_flag=True, help="search Stripe and report, change nothing")
def backfill_command(user_pool_id: str, attribute: str | None, dry_run: bool) -> None:
    """Ensure a Stripe customer for each user without one and write its id back (safe to re-run)."""
    import boto3  # here, not at the top: the web app's import path must not pay for boto3

    settings = current_app.extensions["gateway"].settings
    attribute = attribute or settings.cognito_stripe_attribute
    if not settings.stripe_api_key:
        raise click.ClickException("STRIPE_API_KEY is not set")
    region = pool_region(user_pool_id)
    if settings.cognito_region and settings.cognito_region != region:
        click.echo(f"{user_pool_id} is in {region}, not in COGNITO_REGION ({settings.cognito_region}): asking {region}")
    cognito = boto3.client("cognito-idp", region_name=region)
    customers = StripeCustomers(settings.stripe_api_key, settings.stripe_api_base, timeout=10.0,
                                max_network_retries=STRIPE_RETRIES)
    summary = backfill_customers(cognito, customers, user_pool_id, attribute, dry_run=dry_run, echo=click.echo,
                                 deleted=tombstones(current_app.extensions["gateway"].store))
    if summary.failed:
        raise click.ClickException(f"{summary.failed} users could not be linked; run again to retry them")
