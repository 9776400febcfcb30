"""COGNITO_SIGN_OUT_ON_REVOKE: a refund through the gateway signs the user out of Cognito
(moto's user pool: AdminUserGlobalSignOut revokes the user's refresh tokens), a change
that revokes nothing signs no one out, and the consumer is off by default."""
from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta

import boto3
import pytest
from botocore.exceptions import ClientError

from devtools import revenuecat as rc
from gateway.clock import utcnow
from gateway.jobs import sign_out
from gateway.jobs.expiry import ExpirySweep
from tests.cognito.conftest import REGION
from tests.e2e.test_feed_retention import prune, pruned_through
from tests.e2e.test_retention import run

RC_AUTH = "Bearer rc-webhook-secret-for-tests"
PASSWORD = "Passw0rd!23"


class Pool:
    """A moto pool signing in by email, as most apps' pools do: the username is the sub."""

    def __init__(self, sign_in_by_email: bool = True) -> None:
        self.client = boto3.client("cognito-idp", region_name=REGION)
        self.id = self.client.create_user_pool(
            PoolName="app", **({"UsernameAttributes": ["email"]} if sign_in_by_email else {}))["UserPool"]["Id"]
        self.app_client = self.client.create_user_pool_client(
            UserPoolId=self.id, ClientName="app", ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH",
                                                                     "ALLOW_REFRESH_TOKEN_AUTH"])["UserPoolClient"]["ClientId"]

    def user(self, email: str) -> tuple[str, str]:
        """A confirmed user signed in: (sub, refresh token)."""
        self.client.admin_create_user(UserPoolId=self.id, Username=email, MessageAction="SUPPRESS")
        self.client.admin_set_user_password(UserPoolId=self.id, Username=email, Password=PASSWORD, Permanent=True)
        attributes = self.client.admin_get_user(UserPoolId=self.id, Username=email)["UserAttributes"]
        sub = next(a["Value"] for a in attributes if a["Name"] == "sub")
        # Signed in by the username (the sub here): moto files a session under the name
        # given at sign-in, where Cognito files it under the user whichever alias was used.
        return sub, self.sign_in(sub)

    def sign_in(self, username: str) -> str:
        """A refresh token of the user."""
        tokens = self.client.admin_initiate_auth(
            UserPoolId=self.id, ClientId=self.app_client, AuthFlow="ADMIN_USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": PASSWORD})["AuthenticationResult"]
        return tokens["RefreshToken"]

    def federated_user(self, username: str) -> tuple[str, str]:
        """A user who signed in with a social or enterprise provider, named as Cognito names
        them (``Google_<id>``): (sub, refresh token). moto has no federation, so the user is
        made by AdminCreateUser under that name and signs in with a password; what matters
        here holds all the same: the user's name is not their sub."""
        self.client.admin_create_user(UserPoolId=self.id, Username=username, MessageAction="SUPPRESS")
        self.client.admin_set_user_password(UserPoolId=self.id, Username=username, Password=PASSWORD, Permanent=True)
        attributes = self.client.admin_get_user(UserPoolId=self.id, Username=username)["UserAttributes"]
        return next(a["Value"] for a in attributes if a["Name"] == "sub"), self.sign_in(username)

    def refreshes(self, refresh_token: str) -> bool:
        try:
            self.client.initiate_auth(ClientId=self.app_client, AuthFlow="REFRESH_TOKEN_AUTH",
                                      AuthParameters={"REFRESH_TOKEN": refresh_token})
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "NotAuthorizedException"
            return False
        return True


@pytest.fixture
def pool(aws_mock):
    return Pool()


def gateway(make_app, pool: Pool, **env):
    return make_app(COGNITO_USER_POOL_ID=pool.id, COGNITO_REGION=REGION, COGNITO_APP_CLIENT_IDS=pool.app_client,
                    REVENUECAT_WEBHOOK_AUTH=RC_AUTH, **env)


def deliver(app, kind: str, user: str, **fields) -> None:
    post(app, rc.event(kind, user, **fields))


def post(app, event: dict) -> None:
    answer = app.test_client().post("/webhooks/revenuecat", data=rc.body(event),
                                    headers={"Authorization": RC_AUTH, "Content-Type": "application/json"})
    assert answer.status_code == 200 and answer.get_json()["status"] == "processed", answer.get_data(as_text=True)


def consumer(app) -> sign_out.SignOutOnRevoke:
    found = sign_out.build(app.extensions["gateway"])
    assert found is not None
    return found


def test_a_refund_signs_the_user_out_everywhere(make_app, pool):
    app = gateway(make_app, pool, COGNITO_SIGN_OUT_ON_REVOKE="true")
    refunded, kept = pool.user("refunded@example.com"), pool.user("kept@example.com")
    assert consumer(app).run_once() == 0  # the worker starts: from the feed's head on
    deliver(app, "INITIAL_PURCHASE", refunded[0], transaction="rc-1")
    deliver(app, "INITIAL_PURCHASE", kept[0], transaction="rc-2")
    deliver(app, "CANCELLATION", refunded[0], transaction="rc-1", cancel_reason="CUSTOMER_SUPPORT")
    assert pool.refreshes(refunded[1])  # until the worker's consumer runs

    assert consumer(app).run_once() == 3
    assert not pool.refreshes(refunded[1])
    assert pool.refreshes(kept[1])
    assert consumer(app).run_once() == 0  # the cursor is past them


def test_a_refunded_federated_user_is_signed_out_though_the_sub_is_not_their_name(make_app, aws_mock):
    """AdminUserGlobalSignOut takes a username or an alias; the sub only for a local user,
    a federated user (Google_..., SignInWithApple_...) by their username
    (https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_AdminUserGlobalSignOut.html).
    The feed names users by sub, so such a user is found by ListUsers' ``sub`` filter."""
    pool = Pool(sign_in_by_email=False)  # moto finds no user by sub here; Cognito no federated one
    app = gateway(make_app, pool, COGNITO_SIGN_OUT_ON_REVOKE="true")
    sub, refresh = pool.federated_user("Google_107691234567890123456")
    consumer(app).run_once()
    deliver(app, "INITIAL_PURCHASE", sub, transaction="rc-g")
    deliver(app, "CANCELLATION", sub, transaction="rc-g", cancel_reason="CUSTOMER_SUPPORT")

    assert consumer(app).run_once() == 2
    assert not pool.refreshes(refresh)


def test_a_change_that_revokes_nothing_signs_no_one_out(make_app, pool):
    app = gateway(make_app, pool, COGNITO_SIGN_OUT_ON_REVOKE="true")
    sub, refresh = pool.user("renewing@example.com")
    consumer(app).run_once()
    deliver(app, "INITIAL_PURCHASE", sub, transaction="rc-3")
    deliver(app, "RENEWAL", sub, transaction="rc-3", expiration_at_ms=int(time.time() * 1000) + 60 * 86400_000)
    deliver(app, "CANCELLATION", sub, transaction="rc-3", cancel_reason="UNSUBSCRIBE")  # renewal off, access kept

    assert consumer(app).run_once() >= 2
    assert pool.refreshes(refresh)


def test_a_failed_sign_out_is_retried_and_an_unknown_user_skipped(make_app, pool):
    app = gateway(make_app, pool, COGNITO_SIGN_OUT_ON_REVOKE="true")
    sub, refresh = pool.user("retried@example.com")
    consumer(app).run_once()
    for user in ("not-in-the-pool", sub):
        deliver(app, "INITIAL_PURCHASE", user, transaction=f"rc-{user}")
        deliver(app, "CANCELLATION", user, transaction=f"rc-{user}", cancel_reason="CUSTOMER_SUPPORT")
    broken = consumer(app)
    broken.sign_out = sign_out.CognitoSignOut("eu-west-1_NoSuchPool", REGION)  # Cognito answers an error

    assert broken.run_once() == 1  # past the first purchase only: its revocation failed
    assert pool.refreshes(refresh)
    assert consumer(app).run_once() == 3  # the unknown user skipped, the other signed out
    assert not pool.refreshes(refresh)


def test_a_cognito_that_never_answers_holds_the_worker_seconds_not_minutes(monkeypatch):
    """The sign-out is one chore of the worker's loop, in turn with the retry of deferred
    deliveries, the expiry sweep and the outgoing webhooks. botocore's defaults (60 s to
    connect, 60 s per read, up to 5 attempts in legacy mode:
    https://boto3.amazonaws.com/v1/documentation/api/latest/guide/retries.html) let an
    endpoint gone silent hold them all for about five minutes a turn."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # connections queue, nothing answers
        monkeypatch.setenv("AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER", f"http://127.0.0.1:{silent.getsockname()[1]}")
        call = sign_out.CognitoSignOut("eu-west-1_Silent", REGION)
        outcome: dict = {}

        def sign_out_once() -> None:
            try:
                call("3c8f4a1e-5b2d-4e61-9a0f-7d2c1b9e8a11")
            except sign_out.SignOutFailed as exc:
                outcome["error"] = str(exc)

        worker = threading.Thread(target=sign_out_once, daemon=True)
        worker.start()
        worker.join(15)

    assert not worker.is_alive(), "the sign-out still waits for Cognito after 15 s"
    assert "did not answer" in outcome["error"]


def test_switched_on_it_starts_at_the_feed_head_not_the_history(make_app, pool):
    app = gateway(make_app, pool, COGNITO_SIGN_OUT_ON_REVOKE="true")
    earlier, later = pool.user("earlier@example.com"), pool.user("later@example.com")
    for user, transaction in ((earlier[0], "rc-e"), (later[0], "rc-l")):
        deliver(app, "INITIAL_PURCHASE", user, transaction=transaction)
    deliver(app, "CANCELLATION", earlier[0], transaction="rc-e", cancel_reason="CUSTOMER_SUPPORT")
    assert consumer(app).run_once() == 0  # refunded before the switch: not signed out now
    deliver(app, "CANCELLATION", later[0], transaction="rc-l", cancel_reason="CUSTOMER_SUPPORT")
    assert consumer(app).run_once() == 1
    assert pool.refreshes(earlier[1]) and not pool.refreshes(later[1])


def test_skipping_the_gap_signs_out_the_users_revoked_in_it_and_no_one_else(make_app, pool):
    """Switched off, the sign-out holds nothing of the feed: the retention deletes the
    revocations it has not read, and nothing says who they named. Skipping the gap signs
    out who the state shows lost access since it began: a refund, a deletion, a transfer."""
    app = gateway(make_app, pool, COGNITO_SIGN_OUT_ON_REVOKE="true")
    refunded, deleted, moved, kept, later = (pool.user(f"{name}@example.com")
                                             for name in ("refunded", "deleted", "moved", "kept", "later"))
    bought = int(time.time() * 1000) - 60_000
    for user, _ in (refunded, deleted, moved, kept):
        deliver(app, "INITIAL_PURCHASE", user, transaction=f"rc-{user}", at_ms=bought)
    assert consumer(app).run_once() == 0  # on: from the head; then switched off
    deliver(app, "CANCELLATION", refunded[0], transaction=f"rc-{refunded[0]}", cancel_reason="CUSTOMER_SUPPORT")
    run(app, "users", "delete", deleted[0])
    post(app, rc.transfer([moved[0]], [later[0]], at_ms=bought + 1000))
    deliver(app, "CANCELLATION", kept[0], transaction=f"rc-{kept[0]}", cancel_reason="UNSUBSCRIBE")
    assert prune_all(app) > 0  # off: its cursor holds nothing
    assert pruned_through(store_of(app)) > cursor(app)  # behind the feed

    output = run(app, "users", "sign-out-skip-gap")

    assert [pool.refreshes(refresh) for _, refresh in (refunded, deleted, moved)] == [False, False, False]
    assert sorted(line.split()[0] for line in output.splitlines() if line.endswith("signed out")) == \
        sorted([refunded[0], deleted[0], moved[0]])
    assert pool.refreshes(kept[1]) and pool.refreshes(later[1])  # renewal off: access kept; given access
    assert "it goes on after" in output and cursor(app) == pruned_through(store_of(app))
    assert consumer(app).run_once() >= 1 and pool.refreshes(kept[1])
    assert "not behind the feed" in run(app, "users", "sign-out-skip-gap")


def test_listing_the_gap_signs_out_no_one_and_skips_nothing(make_app, pool):
    app = gateway(make_app, pool, COGNITO_SIGN_OUT_ON_REVOKE="true")
    refunded = pool.user("refunded@example.com")
    deliver(app, "INITIAL_PURCHASE", refunded[0], transaction="rc-r")
    consumer(app).run_once()
    deliver(app, "CANCELLATION", refunded[0], transaction="rc-r", cancel_reason="CUSTOMER_SUPPORT")
    deliver(app, "INITIAL_PURCHASE", "someone-else", transaction="rc-s")  # the newest event, kept
    assert prune_all(app) > 0

    output = run(app, "users", "sign-out-skip-gap", "--list")

    assert refunded[0] in output.splitlines() and pool.refreshes(refunded[1])
    assert sign_out.find_gap(store_of(app)).users == [refunded[0]]
    assert consumer(app).run_once() == 0  # still behind the feed
    with pytest.raises(sign_out.SignOutFailed):  # Cognito answers an error: the gap stays
        sign_out.skip_gap(store_of(app), sign_out.find_gap(store_of(app)),
                          sign_out.CognitoSignOut("eu-west-1_NoSuchPool", REGION), utcnow())
    assert sign_out.find_gap(store_of(app)) is not None
    # A gap that began later than the refund, by the operator's word, does not name it.
    assert refunded[0] not in run(app, "users", "sign-out-skip-gap", "--list",
                                  "--since", (utcnow() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"))


def store_of(app):
    return app.extensions["gateway"].store


def cursor(app) -> int:
    with store_of(app).transaction(readonly=True) as tx:
        return tx.feed_cursor(sign_out.CURSOR)


def prune_all(app) -> int:
    """The feed's retention with a cutoff past every event, once the expiry sweep has passed
    them all: what the sign-out, switched off, has not read goes but the newest event."""
    ExpirySweep(store_of(app)).run_once()
    return prune(store_of(app), cutoff=utcnow() + timedelta(days=1)).feed


def test_sign_out_is_off_by_default(make_app, pool):
    assert sign_out.build(gateway(make_app, pool).extensions["gateway"]) is None
