"""Snapshots from verified App Store transaction and renewal info (plain dicts, raw values).

The state comes from the signed data, not from the notification type: Apple documents the
transaction (https://developer.apple.com/documentation/appstoreserverapi/jwstransactiondecodedpayload)
and renewal info (.../jwsrenewalinfodecodedpayload) as the truth of the subscription as of
their signing, and a type such as DID_FAIL_TO_RENEW says only what changed.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from gateway.domain.catalog import Catalog
from gateway.domain.changes import Translation, ignored
from gateway.domain.model import Snapshot, Status
from gateway.errors import Malformed
from gateway.providers import wire

SOURCE = "apple"
AUTO_RENEWABLE = "Auto-Renewable Subscription"
NON_CONSUMABLE = "Non-Consumable"
#: The subscription's status as the App Store states it, as of the notification's signedDate
#: (``data.status``) or the statuses call (``lastTransactions.status``):
#: https://developer.apple.com/documentation/appstoreservernotifications/status
STATUS_ACTIVE, STATUS_EXPIRED, STATUS_BILLING_RETRY, STATUS_GRACE_PERIOD, STATUS_REVOKED = 1, 2, 3, 4, 5
#: The lengths of Billing Grace Period Apple offers, chosen per app in App Store Connect:
#: https://developer.apple.com/news/releases/?id=01302023a
GRACE_LENGTHS = (timedelta(days=3), timedelta(days=16), timedelta(days=28))
#: The grace assumed, from the lapsed period's end, for a subscription the App Store says is in
#: its grace period without saying until when (APPLE_GRACE_PERIOD_DAYS): the shortest.
SHORTEST_GRACE = GRACE_LENGTHS[0]


def instant(ms) -> datetime | None:
    """An Apple timestamp (UNIX milliseconds) as an aware datetime."""
    if ms is None:
        return None
    return wire.from_millis(ms, "an App Store timestamp", code="apple_malformed")


def owner_of(transaction: dict) -> str | None:
    """appAccountToken is the UUID the app set at purchase: our Cognito sub, lower case.
    Anything else names no one; purchase registration can still link the subscription."""
    token = transaction.get("appAccountToken")
    try:
        return str(uuid.UUID(token.strip())) if isinstance(token, str) else None
    except ValueError:
        return None


def _text(value) -> bool:
    """A non-empty string that fits the store's identifier columns."""
    return isinstance(value, str) and 0 < len(value) <= 255


def store_status(value) -> int | None:
    """An App Store status (1 to 5), or ``None`` for one absent or of no known meaning."""
    return value if type(value) is int and STATUS_ACTIVE <= value <= STATUS_REVOKED else None


def _subscription_state(transaction: dict, renewal: dict, as_of: datetime, status: int | None,
                        grace: timedelta) -> tuple[Status, datetime | None, bool]:
    expires_at = instant(transaction.get("expiresDate"))
    will_renew = renewal.get("autoRenewStatus") == 1
    if transaction.get("revocationDate") is not None:  # refunded or revoked: access ends now
        return Status.REVOKED, expires_at, False
    if expires_at is None or as_of < expires_at:  # no end: a non-consumable, held for good
        return Status.ACTIVE, expires_at, will_renew
    grace_end = _grace_end(renewal, expires_at, as_of, status, grace)
    if grace_end is not None and as_of < grace_end:
        return Status.GRACE_PERIOD, grace_end, will_renew
    if renewal.get("isInBillingRetryPeriod") is True or status in (STATUS_BILLING_RETRY, STATUS_GRACE_PERIOD):
        return Status.BILLING_RETRY, expires_at, will_renew
    return Status.EXPIRED, expires_at, False


def _grace_end(renewal: dict, expires_at: datetime, as_of: datetime, status: int | None,
               grace: timedelta) -> datetime | None:
    """When the grace period of a lapsed period ends, if it is in one. The renewal info says so
    by billing retry with a gracePeriodExpiresDate; the App Store's status 4 (billing grace
    period) says so too. Apple has sent it without that date: the end is then assumed
    ``grace`` after the period's end or, the App Store saying grace period still after that,
    the shortest longer length Apple offers that it has not outlived (none if ``grace`` is 0)."""
    stated = instant(renewal.get("gracePeriodExpiresDate"))
    said = status == STATUS_GRACE_PERIOD
    if stated is not None and (said or renewal.get("isInBillingRetryPeriod") is True):
        return stated
    if not (said and grace):
        return None
    ends = [expires_at + length for length in (grace, *(g for g in GRACE_LENGTHS if g > grace))]
    return next((end for end in ends if as_of < end), ends[-1])


def _period_id(transaction: dict) -> str | None:
    """The transaction that paid for the period: each renewal, resubscription and plan
    change is a new one under the same originalTransactionId."""
    transaction_id = transaction.get("transactionId")
    return transaction_id if _text(transaction_id) else None


def _signed(transaction: dict, as_of: datetime) -> datetime:
    """When the App Store signed the transaction shown: a notification may carry one signed
    before it; a view counts as of the earlier of the two (``Snapshot.shown_as_of``)."""
    signed = instant(transaction.get("signedDate")) if type(transaction.get("signedDate")) is int else None
    return min(signed, as_of) if signed else as_of


def _revocation(transaction: dict, raw_status: str) -> dict:
    """A refunded transaction takes back its period, named by its transactionId; a
    REFUND_REVERSED notification gives that back. The App Store shows the refund in every
    view of the transaction while it stands, and a reversal removes ``revocationDate`` and
    ``revocationReason`` from it (Apple's answer on the developer forums, thread 757986:
    "these fields will be removed from the transaction and you should re-enable this
    content"), so a view signed after the newest one showing the refund, without it, gives
    it back too (``Revocations.shown``), even when REFUND_REVERSED was lost; a view signed
    before it restores nothing, whenever it arrives."""
    transaction_id = transaction.get("transactionId")
    if not _text(transaction_id):
        transaction_id = transaction.get("originalTransactionId")
    cause = f"refunded:{transaction_id}"
    if transaction.get("revocationDate") is not None:
        return {"revokes": cause, "shows_revocation": True}
    if raw_status.startswith("REFUND_REVERSED"):
        return {"restores": cause}
    return {}


def translate_transaction(transaction: dict, renewal: dict | None, as_of: datetime | None,
                          raw_status: str, catalog: Catalog, *, status: int | None = None,
                          grace: timedelta = SHORTEST_GRACE) -> Translation:
    """The snapshot of the subscription ``transaction`` belongs to, as of ``as_of``; ``status``
    is the App Store's (``store_status``) as of then, when known."""
    kind, product_id = transaction.get("type"), transaction.get("productId")
    if not (product_id is None or _text(product_id)):
        raise Malformed("the transaction's productId must be a string", code="apple_malformed")
    if transaction.get("isUpgraded") is True:
        return ignored("an upgraded transaction: the transaction that replaced it carries the state")
    if kind == NON_CONSUMABLE and not catalog.knows(SOURCE, product_id or ""):
        return ignored(f"non-consumable {product_id!r} is not in the catalog")
    if kind not in (AUTO_RENEWABLE, NON_CONSUMABLE):
        return ignored(f"a {kind or 'typeless'} purchase grants no subscription")
    key = transaction.get("originalTransactionId")
    if not _text(key) or as_of is None:
        raise Malformed("the transaction needs an originalTransactionId and a signedDate",
                        code="apple_malformed")
    if kind == AUTO_RENEWABLE and transaction.get("expiresDate") is None:
        raise Malformed("a subscription transaction needs an expiresDate", code="apple_malformed")
    state, expires_at, will_renew = _subscription_state(transaction, renewal or {}, as_of, status, grace)
    snapshot = Snapshot(
        source=SOURCE, key=key, as_of=as_of, status=state, product_id=product_id,
        expires_at=expires_at, will_renew=will_renew, user_sub=owner_of(transaction),
        account=key, environment=transaction.get("environment"), raw_status=raw_status[:64],
        period_id=_period_id(transaction), shown_as_of=_signed(transaction, as_of),
        **_revocation(transaction, raw_status),
    )
    return Translation(snapshots=(snapshot,))
