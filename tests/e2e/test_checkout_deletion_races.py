"""A Checkout Session opened while the same account is deleted, the two requests released
together, against the local Stripe fake.

The deletion expires the user's open sessions before it records the tombstone, outside any
transaction; a checkout that had read the user before the tombstone and opened its session
after that list left a session the deleted user could pay. Whatever the interleaving, no
session handed to the client may stay open once the deletion answered, and the deleted
user holds nothing. On PostgreSQL the two really overlap; on SQLite they queue on the one
writer, which must give the same answers. The checkout records its session under the user's
lock: one test holds the deletion inside its transaction, that lock taken, by the database
alone (``while_the_deletion_holds_the_lock``), while the checkout records.
"""
from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from gateway.store import tables
from gateway.store.postgres import _USER_LOCK
from tests.conftest import DATABASE
from tests.e2e.test_races import together
from tests.e2e.test_stripe_checkout import USER, checkout, client, env  # noqa: F401 (fixtures)
from tests.support.stripe_gateway import fake, stripe_catalog, stripe_server  # noqa: F401 (fixtures)

ROUNDS = 3
#: How long the deletion starts after the checkout in the free-running races.
DELAYS = (0.0, 0.01, 0.02, 0.04, 0.08)


def delete(client, cognito):
    return client.delete("/v1/me", headers=cognito.header(USER))


def while_held(held, call):
    """``call`` made while the other thread's Stripe request ``held`` waits for its answer,
    which is sent once ``call`` has ended."""
    def run():
        assert held.read.wait(5), "the other request never reached Stripe"
        try:
            return call()
        finally:
            held.release()
    return run


#: Why the tests that hold a deletion inside its transaction run on PostgreSQL alone.
HELD_BY_THE_DATABASE = ("SQLite runs one writer at a time: lock_users takes nothing there, and the test's "
                        "open write would stop the deletion before it took anything")
#: The backend waiting, on a lock of the kind given, for one that ``pid`` holds.
WAITING_ON = sa.text("SELECT pid FROM pg_locks WHERE NOT granted AND locktype = :kind "
                     "AND CAST(:pid AS int) = ANY(pg_blocking_pids(pid))")
#: Whether ``pid`` holds the user's lock (``lock_users``: one advisory lock per user).
HOLDS_USER_LOCK = sa.text("SELECT count(*) FROM pg_locks WHERE pid = :pid AND granted AND locktype = 'advisory' "
                          "AND classid = :space AND objid = CAST(hashtext(:user) AS oid)")


def waiting_on(watch, pid: int, kind: str, until: threading.Event | None = None) -> int | None:
    """The backend that waits for ``pid`` on a lock of ``kind``, once one does; ``None`` if
    ``until`` is set first."""
    deadline = time.monotonic() + 10
    while (waiter := watch.execute(WAITING_ON, {"pid": pid, "kind": kind}).scalar()) is None:
        if until is not None and until.is_set():
            return None
        assert time.monotonic() < deadline, f"nothing waited for backend {pid} on a {kind} lock"
        time.sleep(0.005)
    return waiter


def while_the_deletion_holds_the_lock(database_url, made, table, row, request, deletion):
    """``request`` finishing, its Stripe call ``made`` held, while ``deletion`` waits inside
    its transaction with the user's lock taken: the answers of both, and the backend seen
    waiting for the deletion's lock once Stripe answered ``request`` (``None``: it answered
    without waiting).

    The deletion is held by the database alone (PostgreSQL): the test's own transaction
    inserts ``row`` into ``table`` and does not commit; the deletion's insert of the same
    key waits for it, and goes on when it rolls back, once ``request`` waits or answered."""
    engine = sa.create_engine(database_url)
    blocker, watch = engine.connect(), engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    blocking, answered = threading.Event(), threading.Event()

    def requesting():
        try:
            return request()
        finally:
            answered.set()

    def deleting():
        assert blocking.wait(10), "the test's row was never inserted"
        return deletion()

    def conduct():
        try:
            assert made.read.wait(5), "the request never reached Stripe"
            held_by = blocker.execute(sa.text("SELECT pg_backend_pid()")).scalar()
            blocker.execute(sa.insert(table), row)
            blocking.set()
            deleting_pid = waiting_on(watch, held_by, "transactionid")
            assert watch.execute(HOLDS_USER_LOCK, {"pid": deleting_pid, "space": _USER_LOCK, "user": USER}).scalar()
            made.release()
            return waiting_on(watch, deleting_pid, "advisory", until=answered)
        finally:
            made.release()
            blocker.rollback()  # the deletion writes its row and commits

    try:
        return together(requesting, deleting, conduct)
    finally:
        blocker.close()
        watch.close()
        engine.dispose()


def assert_nothing_payable_survives(client, cognito, fake, api, opened, deleted) -> None:
    assert deleted.status_code == 200, deleted.get_data(as_text=True)
    assert opened.status_code in (200, 403), opened.get_data(as_text=True)
    if opened.status_code == 403:
        assert opened.get_json()["error"] == "account_deleted"
    still_open = [s["id"] for s in fake.sessions() if s["status"] == "open" and s["client_reference_id"] == USER]
    assert still_open == [], f"a deleted user's session is payable (checkout answered {opened.status_code})"
    assert api(client, USER)["entitlements"] == {}
    again = checkout(client, cognito)
    assert (again.status_code, again.get_json()["error"]) == (403, "account_deleted")


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_a_session_opened_after_the_deletion_listed_the_open_ones_is_expired(client, cognito, fake, api, round_):
    assert checkout(client, cognito).status_code == 200  # the user's customer, linked, and a first session
    listed = fake.hold("/v1/checkout/sessions", "GET")  # the deletion's list of open sessions, held

    opened, deleted = together(while_held(listed, lambda: checkout(client, cognito)), lambda: delete(client, cognito))

    assert_nothing_payable_survives(client, cognito, fake, api, opened, deleted)
    assert opened.status_code == 200  # handed out before the tombstone: the deletion went round for it
    assert {s["id"]: s["status"] for s in fake.sessions()}[opened.get_json()["id"]] == "expired"
    assert fake.calls("GET", "/v1/checkout/sessions") == 2


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_a_checkout_past_its_first_check_when_the_deletion_commits_hands_out_no_session(
        client, cognito, fake, api, round_):
    assert checkout(client, cognito).status_code == 200
    found = fake.hold("/v1/customers/search", "GET")  # the checkout has read the user, not deleted yet

    opened, deleted = together(lambda: checkout(client, cognito), while_held(found, lambda: delete(client, cognito)))

    assert_nothing_payable_survives(client, cognito, fake, api, opened, deleted)
    assert opened.status_code == 403  # it was opened after the tombstone: refused, and expired


@pytest.mark.parametrize("delay", DELAYS)
def test_checkout_and_deletion_released_together_leave_nothing_payable(client, cognito, fake, api, delay):
    assert checkout(client, cognito).status_code == 200

    opened, deleted = together(lambda: checkout(client, cognito),
                               lambda: time.sleep(delay) or delete(client, cognito))

    assert_nothing_payable_survives(client, cognito, fake, api, opened, deleted)


@pytest.mark.skipif(DATABASE != "postgresql", reason=HELD_BY_THE_DATABASE)
@pytest.mark.parametrize("round_", range(ROUNDS))
def test_a_checkout_recording_while_the_deletion_holds_the_users_lock_waits_for_its_commit(
        client, cognito, fake, api, database_url, round_):
    """The deletion, under the user's lock, has read the sessions recorded (none) and is
    about to keep the user's customer with the tombstone when the checkout, its session
    made, records it: that record waits for the deletion's commit, finds the tombstone and
    expires the session. Recorded without the lock, it would be handed out, unknown to the
    deletion, and payable. The test's own row for that customer, not committed, holds the
    deletion's insert until it rolls back."""
    assert checkout(client, cognito).status_code == 200
    (customer,) = [c["id"] for c in fake.customers if c["metadata"]["cognito_sub"] == USER]
    made = fake.hold("/v1/checkout/sessions", "POST")  # past its first read and the customer's link
    kept = {"source": "stripe", "account": customer, "user_sub": USER}

    opened, deleted, waited = while_the_deletion_holds_the_lock(
        database_url, made, tables.deleted_accounts, kept, lambda: checkout(client, cognito),
        lambda: delete(client, cognito))

    assert_nothing_payable_survives(client, cognito, fake, api, opened, deleted)
    assert opened.status_code == 403, "the checkout recorded its session past the deletion's lock and handed it out"
    assert waited is not None  # the checkout's record waited for the deletion's lock
