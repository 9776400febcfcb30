"""A Customer Portal session asked for while the same account is deleted, the two requests
released together, against the local Stripe fake.

The portal reads the tombstone before it calls Stripe, unlocked; a deletion that committed
while Stripe was finding (or making) the customer and the session left the deleted user a
portal URL: their billing details, payment methods and any subscription still live under a
customer the gateway has let go. Stripe cannot expire a portal session, so the URL must not
be handed out: the portal reads the tombstone again under the user's lock once the session
exists. On PostgreSQL the two really overlap; on SQLite they queue on the one writer, which
must give the same answers. That read waits for a deletion holding the user's lock: one test
holds the deletion there, by the database alone, while the portal reads.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from gateway.store import tables
from tests.conftest import DATABASE
from tests.e2e.test_checkout_deletion_races import (
    DELAYS, HELD_BY_THE_DATABASE, ROUNDS, delete, while_held, while_the_deletion_holds_the_lock)
from tests.e2e.test_races import together
from tests.e2e.test_stripe_checkout import USER, checkout, client, env, portal  # noqa: F401 (fixtures)
from tests.support.stripe_gateway import fake, stripe_catalog, stripe_server  # noqa: F401 (fixtures)


def assert_no_url_once_deleted(client, cognito, api, opened, deleted, user=USER) -> None:
    assert deleted.status_code == 200, deleted.get_data(as_text=True)
    assert opened.status_code in (200, 403), opened.get_data(as_text=True)
    if opened.status_code == 403:
        assert opened.get_json()["error"] == "account_deleted" and "url" not in opened.get_json()
    assert api(client, user)["entitlements"] == {}
    again = portal(client, cognito, user=user)
    assert (again.status_code, again.get_json()["error"]) == (403, "account_deleted")


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_a_portal_past_its_first_check_when_the_deletion_commits_hands_out_no_url(
        client, cognito, fake, api, round_):
    assert checkout(client, cognito).status_code == 200  # the user's customer, linked
    found = fake.hold("/v1/customers/search", "GET")  # the portal has read the user, not deleted yet

    opened, deleted = together(lambda: portal(client, cognito), while_held(found, lambda: delete(client, cognito)))

    assert_no_url_once_deleted(client, cognito, api, opened, deleted)
    assert opened.status_code == 403, "a deleted user was handed a portal URL"
    assert len(fake.sessions("billing_portal.session")) == 1  # made by Stripe, its URL never shown


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_a_portal_session_made_while_the_deletion_commits_is_not_handed_out(client, cognito, fake, api, round_):
    assert checkout(client, cognito).status_code == 200
    made = fake.hold("/v1/billing_portal/sessions", "POST")  # Stripe makes it once the deletion answered

    opened, deleted = together(lambda: portal(client, cognito), while_held(made, lambda: delete(client, cognito)))

    assert_no_url_once_deleted(client, cognito, api, opened, deleted)
    assert opened.status_code == 403, "a deleted user was handed a portal URL"


def test_a_user_without_a_customer_deleted_meanwhile_gets_no_url(client, cognito, fake, api):
    user = "user-portal-new"
    found = fake.hold("/v1/customers/search", "GET")  # no customer found: one is made after the deletion

    opened, deleted = together(lambda: portal(client, cognito, user=user),
                               while_held(found, lambda: client.delete("/v1/me", headers=cognito.header(user))))

    assert_no_url_once_deleted(client, cognito, api, opened, deleted, user=user)
    assert opened.status_code == 403, "a deleted user was handed a portal URL"
    (customer,) = [c["id"] for c in fake.customers if c["metadata"]["cognito_sub"] == user]  # made after the tombstone
    with client.application.extensions["gateway"].store.transaction(readonly=True) as tx:
        assert tx.resolve("stripe", customer) is None  # linked to nobody...
        assert tx.deleted_accounts([("stripe", customer)]) == {("stripe", customer): user}  # ...kept with the tombstone


def test_a_portal_whose_tombstone_cannot_be_read_again_hands_out_no_url(client, cognito, fake, database_url):
    assert checkout(client, cognito).status_code == 200
    made = fake.hold("/v1/billing_portal/sessions", "POST")
    engine, renamed = sa.create_engine(database_url), []

    def rename(old: str, new: str) -> None:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"ALTER TABLE {old} RENAME TO {new}")
        renamed.append(new)

    def lose_the_tombstones():  # the database cannot answer the read under the lock
        assert made.read.wait(5), "the portal never reached Stripe"
        rename("deleted_users", "deleted_users_away")
        made.release()

    try:
        opened, _ = together(lambda: portal(client, cognito), lose_the_tombstones)
    finally:
        if renamed:
            rename("deleted_users_away", "deleted_users")
        engine.dispose()

    assert (opened.status_code, opened.get_json()["error"]) == (503, "store_unavailable")
    assert "url" not in opened.get_json() and len(fake.sessions("billing_portal.session")) == 1


#: How long the portal starts after the deletion in the free-running races: it reaches Stripe
#: around the deletion's commit.
PORTAL_DELAYS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.04, 0.06)


@pytest.mark.parametrize("delay", PORTAL_DELAYS)
def test_portal_and_deletion_released_together_hand_out_no_url_made_after_the_deletion(
        client, cognito, fake, api, delay):
    assert checkout(client, cognito).status_code == 200

    def deleting():
        return delete(client, cognito), time.monotonic()

    opened, (deleted, answered) = together(lambda: time.sleep(delay) or portal(client, cognito), deleting)

    assert_no_url_once_deleted(client, cognito, api, opened, deleted)
    made = [request.at for request in fake.requests if request.path == "/v1/billing_portal/sessions"]
    if opened.status_code == 200:  # its session was made, and read against the tombstone, before that committed
        assert made and made[0] < answered, "a portal URL made after the deletion answered was handed out"


@pytest.mark.parametrize("delay", DELAYS)
def test_portal_and_deletion_released_together_end_refused(client, cognito, fake, api, delay):
    assert checkout(client, cognito).status_code == 200

    opened, deleted = together(lambda: portal(client, cognito), lambda: time.sleep(delay) or delete(client, cognito))

    assert_no_url_once_deleted(client, cognito, api, opened, deleted)


@pytest.mark.skipif(DATABASE != "postgresql", reason=HELD_BY_THE_DATABASE)
@pytest.mark.parametrize("round_", range(ROUNDS))
def test_a_portal_rechecking_while_the_deletion_holds_the_users_lock_waits_for_its_tombstone(
        client, cognito, fake, api, database_url, round_):
    """The deletion has taken the user's lock and is about to write its tombstone when the
    portal, its session made, reads the tombstone again: that read waits for the deletion's
    commit and refuses. Read without the lock it would find no tombstone yet and hand out
    the URL. A tombstone of the same user, inserted by the test and not committed, holds the
    deletion's insert until it rolls back."""
    assert checkout(client, cognito).status_code == 200
    made = fake.hold("/v1/billing_portal/sessions", "POST")  # past its first read and the customer's link
    tombstone = {"user_sub": USER, "deleted_at": datetime.now(timezone.utc), "report": {}}

    opened, deleted, waited = while_the_deletion_holds_the_lock(
        database_url, made, tables.deleted_users, tombstone, lambda: portal(client, cognito), lambda: delete(client, cognito))

    assert_no_url_once_deleted(client, cognito, api, opened, deleted)
    assert opened.status_code == 403, "the portal read the tombstone past the deletion's lock and handed out its URL"
    assert waited is not None  # the portal's read waited for the deletion's lock
