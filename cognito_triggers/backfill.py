"""Link every existing Cognito user to a Stripe customer: the repair for users the post
confirmation trigger missed (Stripe was down, AdminCreateUser users, users from before it).

The gateway's ``flask --app wsgi backfill-stripe-customers`` command wires this to real clients.
Safe to re-run: linked users are skipped, and ``StripeCustomers.ensure_customer`` finds
before it creates. A user whose account was deleted in the gateway is skipped too: the gateway
erased their personal data, and a customer made now would give it to Stripe again. This package
has no database (it also ships as the Lambda), so the caller says who was deleted
(``deleted``). No Flask here.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Collection, Iterator

from cognito_triggers import logs
from cognito_triggers.events import display_name
from cognito_triggers.settings import DEFAULT_ATTRIBUTE

#: ListUsers' largest page (https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_ListUsers.html).
PAGE_SIZE = 60
#: stripe-python's retries of each Stripe request (``StripeCustomers(max_network_retries=)``):
#: a connection error, a 409 or a 5xx passes, and a user should not fail on one.
STRIPE_RETRIES = 2
#: Seconds to wait before trying a user again after Stripe's 429, which stripe-python never
#: retries unless Stripe says to (``Stripe-Should-Retry``): a 429 is refused before it
#: executes, and ``ensure_customer`` searches before it creates, so trying again is safe.
RATE_LIMIT_WAITS = (1.0, 2.0, 4.0)


@dataclass
class Summary:
    seen: int = 0
    already_linked: int = 0
    created_or_linked: int = 0
    skipped_unconfirmed: int = 0
    skipped_deleted: int = 0
    failed: int = 0


def nobody_deleted(subs: list[str]) -> Collection[str]:
    """The default ``deleted``: no account was deleted (a caller without the gateway's database)."""
    return ()


def backfill_customers(cognito_client, customers, user_pool_id: str, attribute: str = DEFAULT_ATTRIBUTE,
                       dry_run: bool = False, echo: Callable[[str], None] = print,
                       deleted: Callable[[list[str]], Collection[str]] = nobody_deleted) -> Summary:
    """``customers`` is a ``StripeCustomers`` (or anything with ``find_customer``/``ensure_customer``).

    ``deleted(subs)`` names those of ``subs`` whose account was deleted (the gateway's
    tombstones). It is asked once per page of Cognito users, with the page's users still to
    link, before Stripe is asked about any of them; those it names are skipped, dry run or
    not. If it raises, each of those users is counted failed, nothing asked of Stripe for
    them, and the run goes on, as with a Stripe failure."""
    attribute = attribute if attribute.startswith("custom:") else f"custom:{attribute}"
    summary = Summary()
    for page in _pages(cognito_client, user_pool_id):
        to_link = []
        for user in page:
            summary.seen += 1
            attributes = {item["Name"]: item["Value"] for item in user.get("Attributes", [])}
            if attributes.get(attribute):
                summary.already_linked += 1
            elif user.get("UserStatus") == "UNCONFIRMED":
                # Not signed up yet: the post confirmation trigger links them when they confirm.
                summary.skipped_unconfirmed += 1
            else:
                to_link.append((user["Username"], attributes))
        for username, attributes in _standing(to_link, deleted, echo, summary):
            _link(cognito_client, customers, user_pool_id, attribute, username, attributes, dry_run, echo, summary)
    echo(f"{'dry run: ' if dry_run else ''}{summary}")
    return summary


def _standing(to_link: list[tuple[str, dict]], deleted, echo, summary) -> list[tuple[str, dict]]:
    """The users of ``to_link`` whose account was not deleted; the others counted and echoed."""
    if not to_link:
        return []
    try:
        gone = set(deleted([attributes.get("sub", "") for _, attributes in to_link]))
    except Exception as error:  # noqa: BLE001 - these users fail; the run goes on
        summary.failed += len(to_link)
        described = logs.describe(error)
        for username, _ in to_link:
            echo(f"{username}: failed: cannot tell whether the account was deleted in the gateway: "
                 f"{described['error']}: {described['detail']}")
        return []
    for username, attributes in to_link:
        if attributes.get("sub", "") in gone:
            summary.skipped_deleted += 1
            echo(f"{username}: account deleted in the gateway; not linked")
    return [(username, attributes) for username, attributes in to_link if attributes.get("sub", "") not in gone]


def _link(cognito_client, customers, pool_id, attribute, username, attributes, dry_run, echo, summary) -> None:
    for wait in (*RATE_LIMIT_WAITS, None):
        try:
            _link_once(cognito_client, customers, pool_id, attribute, username, attributes, dry_run, echo)
            summary.created_or_linked += 1
            return
        except Exception as error:  # noqa: BLE001 - one user's failure must not stop the run
            if wait is None or getattr(error, "http_status", None) != 429:
                summary.failed += 1
                echo(f"{username}: failed: {logs.describe(error)['error']}: {logs.describe(error)['detail']}")
                return
        echo(f"{username}: Stripe's rate limit; trying again in {wait:g} s")
        time.sleep(wait)


def _link_once(cognito_client, customers, pool_id, attribute, username, attributes, dry_run, echo) -> None:
    sub = attributes.get("sub", "")
    if dry_run:
        existing = customers.find_customer(sub)
        echo(f"{username}: would {'link ' + existing if existing else 'create a customer'}")
        return
    customer_id = customers.ensure_customer(sub, attributes.get("email"), display_name(attributes), username)
    cognito_client.admin_update_user_attributes(
        UserPoolId=pool_id, Username=username, UserAttributes=[{"Name": attribute, "Value": customer_id}])
    echo(f"{username}: linked {customer_id}")


def _pages(cognito_client, user_pool_id: str) -> Iterator[list[dict]]:
    token = None
    while True:
        page = cognito_client.list_users(UserPoolId=user_pool_id, Limit=PAGE_SIZE,
                                         **({"PaginationToken": token} if token else {}))
        yield page.get("Users", [])
        token = page.get("PaginationToken")
        if not token:
            return
