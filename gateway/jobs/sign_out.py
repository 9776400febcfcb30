"""Sign a user out of Cognito everywhere when an entitlement of theirs is revoked
(``COGNITO_SIGN_OUT_ON_REVOKE=true``), so that a premium claim in a token minted before a
refund cannot be refreshed for the refresh token's whole lifetime.

A consumer of the entitlement feed with its own cursor (``feed_cursors``, name
``cognito_sign_out``): each run reads the events after it, calls ``AdminUserGlobalSignOut``
(https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_AdminUserGlobalSignOut.html)
for each user with an ``entitlement.revoked`` among them, and moves the cursor past what
is done. Switched on for the first time, it starts at the feed's head: it signs out the
users revoked from then on, not every user ever refunded. ``Username`` is first the user's
sub, which Cognito accepts for a local user; a federated user (``Google_...``,
``SignInWithApple_...``) is known by their username only, so when the sub names no user the
username is looked up with ``ListUsers`` and its ``sub`` filter. A user Cognito does not
know by either (deleted there) is skipped; any other failure stops the run before that
event, and the next run tries it again: a user is signed out at least once, never skipped. Two workers running it at once
may both sign out the same user, which is harmless.

Switched off, its cursor holds nothing from the feed's retention, so switched on again after
a prune it may be behind the feed: the revocations deleted meanwhile would never be signed
out. It then signs no one out and holds the feed, logging an error, until an operator runs
``flask users sign-out-skip-gap`` (``find_gap``, ``skip_gap``): the revocations deleted are
gone, so the users revoked in the gap are found in what the retention leaves (entitlement
rows revoked, users deleted, transfers, since the gap began: ``store.sign_out_gap``), signed
out, and only then is the cursor moved to the oldest event kept. A revocation is never
passed over: a user the gap may have revoked is signed out, perhaps twice, which is harmless.

The Cognito call is made outside any database transaction. boto3 is imported only when
the consumer is built, never on the web app's import path.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from gateway.clock import utcnow
from gateway.domain.entitlement_events import REVOKED
from gateway.store.port import Store
from gateway.store.sign_out_gap import SignOutGap

log = logging.getLogger("gateway.sign_out")

CURSOR = "cognito_sign_out"
BATCH = 500
#: Seconds to connect and per read, and attempts per call: botocore's defaults (60, 60 and up
#: to 5 in legacy mode) let a silent endpoint hold the worker's other chores for minutes.
CONNECT_TIMEOUT, READ_TIMEOUT, ATTEMPTS = 2, 3, 2
#: How long before its cursor last moved the sign-out's gap is taken to begin. A run reads
#: at most ``BATCH`` events, the worker runs it every turn, and a Cognito call gives up
#: within seconds: the events it had read and not handled when it last moved (a failed
#: sign-out stops a run), or that were being written as it read, were written well within.
GAP_SLACK = timedelta(days=1)


class SignOutFailed(Exception):
    """Cognito did not sign the user out (throttled, unreachable, denied)."""


class CognitoSignOut:
    """``AdminUserGlobalSignOut`` through boto3's ``cognito-idp`` client."""

    def __init__(self, pool_id: str, region: str, client=None) -> None:
        import boto3
        from botocore.config import Config

        config = Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                        retries={"mode": "standard", "total_max_attempts": ATTEMPTS})
        self.pool_id = pool_id
        self.client = client or boto3.client("cognito-idp", region_name=region, config=config)

    def __call__(self, user_sub: str) -> bool:
        """True when signed out; False when the pool has no such user."""
        if self._sign_out(user_sub):
            return True
        username = self._username(user_sub)
        return username is not None and self._sign_out(username)

    def _sign_out(self, username: str) -> bool:
        answer = self._call("AdminUserGlobalSignOut", self.client.admin_user_global_sign_out,
                            UserPoolId=self.pool_id, Username=username)
        return answer is not None

    def _username(self, user_sub: str) -> str | None:
        """The username of the user with this sub (a federated user's), if any."""
        if '"' in user_sub or "\\" in user_sub:
            return None  # no sub Cognito issues has these, and they would change the filter
        answer = self._call("ListUsers", self.client.list_users,
                            UserPoolId=self.pool_id, Filter=f'sub = "{user_sub}"', Limit=1)
        users = (answer or {}).get("Users") or []
        return users[0]["Username"] if users else None

    @staticmethod
    def _call(name: str, call, **params) -> dict | None:
        """Cognito's answer to ``call(**params)``; None when it knows no such user."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call(**params)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "UserNotFoundException":
                return None
            raise SignOutFailed(f"{name} failed: {exc.response.get('Error', {}).get('Code')}") from None
        except BotoCoreError as exc:
            raise SignOutFailed(f"{name} did not answer: {type(exc).__name__}") from None


class SignOutOnRevoke:
    def __init__(self, store: Store, sign_out: Callable[[str], bool], clock: Callable[[], datetime] = utcnow,
                 batch: int = BATCH) -> None:
        self.store, self.sign_out, self.clock, self.batch = store, sign_out, clock, batch
        self._told: tuple[int, int] | None = None  # the gap this process logged

    def run_once(self) -> int:
        """Handle the next batch of the feed; returns how many events it moved past (0:
        caught up, the first sign-out failed, or behind the feed)."""
        with self.store.transaction(readonly=True) as tx:
            stored = tx.feed_cursor(CURSOR)
            # Just switched on: the revocations from now on, not the whole history.
            start = tx.feed_head()[0] if stored is None else stored
            events = tx.read_feed(start, self.batch)
            pruned = tx.feed_pruned_through()  # after the events: a prune committed meanwhile shows
        if start < pruned:
            self._tell_gap(start, pruned)
            return 0
        if stored is None:
            self._save(start)
        done, signed = start, set()
        for event in events:
            if event.type == REVOKED and event.user_id not in signed:
                if not self._sign_out(event.user_id):
                    break
                signed.add(event.user_id)
            done = event.position
        if done != start:
            self._save(done)
        return done - start

    def _tell_gap(self, start: int, pruned: int) -> None:
        if self._told != (start, pruned):
            self._told = (start, pruned)
            log.error("sign-out behind the feed; signing no one out until its gap is skipped", extra={"fields": {
                "position": start, "pruned_through": pruned,
                "action": "sign out the users revoked meanwhile, then: flask users sign-out-skip-gap"}})

    def _save(self, position: int) -> None:
        with self.store.transaction() as tx:
            tx.move_feed_cursor(CURSOR, position, self.clock())

    def _sign_out(self, user_sub: str) -> bool:
        """Whether the user is done with (signed out, or unknown to Cognito)."""
        try:
            if not self.sign_out(user_sub):
                log.info("user to sign out is not in the pool", extra={"fields": {"user_sub": user_sub}})
        except SignOutFailed as exc:
            log.warning("sign-out failed; retried on the next run",
                        extra={"fields": {"user_sub": user_sub, "error": str(exc)}})
            return False
        return True


def behind(store: Store) -> tuple[int, int] | None:
    """The sign-out's gap (its position, the highest deleted) while it is behind the feed,
    else None; whether it is switched on is the caller's to judge (``enabled``)."""
    with store.transaction(readonly=True) as tx:
        stored, pruned = tx.feed_cursor(CURSOR), tx.feed_pruned_through()
    return (stored, pruned) if stored is not None and stored < pruned else None


@dataclasses.dataclass(frozen=True)
class Gap:
    """The events the sign-out lost to the feed's retention: those after ``after`` through
    ``through``, and the users whose access may have been revoked among them, found from
    ``since`` in what the retention leaves (``store.sign_out_gap``)."""

    after: int
    through: int
    since: datetime
    users: list[str]


def find_gap(store: Store, since: datetime | None = None) -> Gap | None:
    """The sign-out's gap, None when it is not behind the feed. The gap's events were
    written after its cursor last moved, except those it had read and not handled then (a
    change in flight, a run cut short): ``GAP_SLACK`` before, unless ``since`` says when."""
    found = SignOutGap.of(store).cursor(CURSOR)
    if found is None or found[0] >= found[2]:
        return None
    position, moved_at, pruned = found
    since = moved_at - GAP_SLACK if since is None else since
    return Gap(position, pruned, since, SignOutGap.of(store).revoked_since(since))


def skip_gap(store: Store, gap: Gap, sign_out: Callable[[str], bool], now: datetime,
             told: Callable[[str, bool], None] = lambda user, known: None) -> bool:
    """Sign out every user of ``gap`` (``told`` each: signed out, or not in the pool), then
    move the cursor past the gap, to the oldest event kept; whether it moved it (no: it was
    moved meanwhile). A failure raises ``SignOutFailed`` with the cursor where it was: run
    again, the users are signed out again, which is harmless."""
    for user_sub in gap.users:
        told(user_sub, sign_out(user_sub))
    with store.transaction() as tx:
        if tx.feed_cursor(CURSOR) != gap.after:
            return False
        tx.move_feed_cursor(CURSOR, gap.through, now)
    return True


def enabled(settings) -> bool:
    """Whether ``COGNITO_SIGN_OUT_ON_REVOKE`` is on and the pool set."""
    return bool(settings.cognito_sign_out_on_revoke and settings.cognito_user_pool_id)


def build(services) -> SignOutOnRevoke | None:
    """The consumer, or ``None`` unless it is ``enabled``."""
    settings = services.settings
    if not enabled(settings):
        return None
    return SignOutOnRevoke(services.store, CognitoSignOut(settings.cognito_user_pool_id, settings.cognito_region))
