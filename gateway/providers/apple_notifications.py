"""App Store Server Notifications V2: ``POST /webhooks/apple`` with ``{"signedPayload": JWS}``.

Wire format: https://developer.apple.com/documentation/appstoreservernotifications/responsebodyv2
The decoded payload (responseBodyV2DecodedPayload) carries its own signed transaction and
renewal info, verified here too. A retry carries the same ``notificationUUID``; Apple
retries a notification that is not answered 200 (in Production five more times, from one
to 72 hours apart), so 503 is the answer for "try again later".
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime, timedelta

from gateway.config import ConfigError
from gateway.domain.catalog import Catalog
from gateway.domain.changes import Link, Translation, ignored
from gateway.domain.events import Event
from gateway.errors import Malformed
from gateway.providers import Delivery, Lookup, wire
from gateway.providers.apple_chains import load_roots
from gateway.providers.apple_state import (SHORTEST_GRACE, SOURCE, STATUS_GRACE_PERIOD, instant, owner_of,
                                           store_status, translate_transaction)
from gateway.providers.apple_trust import AppleVerifier
from gateway.providers.unconfigured import Unconfigured

# Types whose signed transaction and renewal info describe a subscription (or a
# non-consumable) as of the notification; the state is read from those, not from the type.
# https://developer.apple.com/documentation/appstoreservernotifications/notificationtype
STATE_TYPES = frozenset({
    "SUBSCRIBED", "DID_RENEW", "DID_CHANGE_RENEWAL_PREF", "DID_CHANGE_RENEWAL_STATUS", "OFFER_REDEEMED",
    "DID_FAIL_TO_RENEW", "GRACE_PERIOD_EXPIRED", "EXPIRED", "REFUND", "REFUND_DECLINED", "REFUND_REVERSED",
    "REVOKE", "PRICE_INCREASE", "RENEWAL_EXTENDED", "RENEWAL_EXTENSION", "ONE_TIME_CHARGE",
    # Advanced Commerce API subscriptions: the transaction is the state all the same.
    "METADATA_UPDATE", "MIGRATION", "PRICE_CHANGE",
})
# Everything else is recorded and ignored: TEST, CONSUMPTION_REQUEST (Apple asks for
# consumption data; the refund decision comes as REFUND or REFUND_DECLINED),
# EXTERNAL_PURCHASE_TOKEN, RESCIND_CONSENT, RENEWAL_EXTENSION:SUMMARY (no transaction),
# and types Apple adds later.
PURCHASE_REGISTRATION = "PURCHASE_REGISTRATION"
#: Notifications about one refunded or revoked transaction (a period), not the subscription's
#: state. A purchaser's refund revokes the family members' transactions of that period too
#: (https://developer.apple.com/documentation/appstoreserverapi/revocationreason): their
#: REVOKE may carry a past renewal as the purchaser's REFUND does.
PERIOD_TYPES = frozenset({"REFUND", "REFUND_DECLINED", "REFUND_REVERSED", "REVOKE"})


def event_type(notification: dict) -> str:
    kind, subtype = notification.get("notificationType"), notification.get("subtype")
    return f"{kind}:{subtype}" if subtype else str(kind)


class AppleNotifications:
    source = SOURCE

    def __init__(self, verifier: AppleVerifier, catalog: Catalog, grace: timedelta = SHORTEST_GRACE) -> None:
        self.verifier = verifier
        self.catalog = catalog
        self.grace = grace  # assumed for a grace period stated without its end (apple_state._grace_end)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> Delivery:
        text, signed = _signed_payload(body)
        notification = self.verifier.notification(signed)
        data = {"notification": notification, **self._signed_parts(notification)}
        if not isinstance(notification.get("notificationType"), str) or \
                not isinstance(notification.get("subtype"), (str, type(None))):
            raise Malformed("notificationType and subtype must be strings", code="apple_malformed")
        event_id = notification.get("notificationUUID")
        if not isinstance(event_id, str) or not 0 < len(event_id) <= 255:
            raise Malformed("the notification has no notificationUUID", code="apple_malformed")
        self.translate_data(data)  # a delivery that cannot apply is refused before it is stored
        return Delivery(SOURCE, event_id, event_type(notification)[:128], text, data)

    def translate(self, event: Event, lookup: Lookup) -> Translation:
        return self.translate_data(event.data)

    def translate_data(self, data: dict) -> Translation:
        notification, transaction = data["notification"], data.get("transaction")
        kind = event_type(notification)
        if notification.get("notificationType") not in STATE_TYPES:
            return ignored(f"{kind} carries no subscription state")
        if not transaction:
            return ignored(f"{kind} carries no transaction")
        as_of = instant(notification.get("signedDate"))
        about_a_period = notification.get("notificationType") in PERIOD_TYPES
        if about_a_period and _past_period(transaction, data.get("renewal"), as_of):
            # The notification carries the refunded transaction, which may be a renewal
            # long past: its revocationDate is that period's, not the subscription's.
            return ignored(f"{kind} concerns a period that had ended or was renewed; the current one is unaffected")
        return translate_transaction(transaction, data.get("renewal"), as_of, kind, self.catalog,
                                     status=_status(notification), grace=self.grace)

    def purchase(self, signed_transaction: str) -> tuple[str, Translation]:
        """A StoreKit 2 transaction the app sends: its key and the snapshot as of its signing."""
        transaction = self.verifier.transaction(signed_transaction)
        key = transaction.get("originalTransactionId")
        if not isinstance(key, str) or not key:
            raise Malformed("the transaction has no originalTransactionId", code="apple_malformed")
        as_of, expires = instant(transaction.get("signedDate")), instant(transaction.get("expiresDate"))
        if as_of and expires and expires < as_of:
            # Without the renewal info, a lapsed period says nothing of what followed it (a
            # grace period, billing retry, a renewal): it counts as of its end, older than
            # any of those. Refunded, its revocation still takes back that period.
            as_of = expires
        translation = translate_transaction(transaction, None, as_of, PURCHASE_REGISTRATION, self.catalog)
        owner = owner_of(transaction)
        if owner and not translation.snapshots:
            # Granting nothing itself (an upgraded transaction), it still names whose purchase it is.
            translation = dataclasses.replace(translation, links=(Link(SOURCE, key, owner, as_of),))
        return key, translation

    def _signed_parts(self, notification: dict) -> dict:
        """The notification's transaction and renewal info, verified in its environment."""
        part = notification.get("data")
        if not isinstance(part, dict):
            return {}
        environment, found = part.get("environment"), {}
        if isinstance(part.get("signedTransactionInfo"), str):
            found["transaction"] = self.verifier.transaction(part["signedTransactionInfo"], environment)
        if isinstance(part.get("signedRenewalInfo"), str):
            found["renewal"] = self.verifier.renewal(part["signedRenewalInfo"], environment)
        return found


def _past_period(transaction: dict, renewal: dict | None, as_of: datetime | None) -> bool:
    """Whether a later purchase followed ``transaction``: a renewal, which the App Store
    makes "slightly before it expires", a resubscription. The renewal info's renewalDate is
    "the expiration date of the most recent auto-renewable subscription purchase, including
    renewals": a later one than this transaction's end is another period's, and one equal
    to it makes this the latest purchase, even ended: the one a billing grace period or
    billing retry stands on, whose refund takes them back (StoreKit's current entitlements
    are the latest transaction of a subscription subscribed or in its grace period, and
    "products that the App Store has refunded or revoked don't appear" there). Without a
    renewalDate, a period that had ended may have been followed by another.
    https://developer.apple.com/documentation/appstoreservernotifications/renewaldate"""
    ended = instant(transaction.get("expiresDate"))
    if ended is None:
        return False
    latest_end = instant((renewal or {}).get("renewalDate"))
    if latest_end is not None:
        return latest_end > ended
    return bool(as_of and ended <= as_of)


def _status(notification: dict) -> int | None:
    """The subscription's status as of the notification: ``data.status``, or for a payload
    without one (App Store Server Notifications before 2.8), the billing grace period that
    DID_FAIL_TO_RENEW's GRACE_PERIOD subtype announces."""
    part = notification.get("data")
    stated = store_status(part.get("status")) if isinstance(part, dict) else None
    if stated is None and event_type(notification) == "DID_FAIL_TO_RENEW:GRACE_PERIOD":
        return STATUS_GRACE_PERIOD
    return stated


def _signed_payload(body: bytes) -> tuple[str, str]:
    document = wire.parse_object(body)
    if not isinstance(document.get("signedPayload"), str):
        raise Malformed('the body must be {"signedPayload": "<JWS>"}', code="malformed_notification")
    return body.decode("utf-8"), document["signedPayload"]


def build(settings, catalog: Catalog):
    if not settings.apple_bundle_id:
        return Unconfigured(SOURCE)
    roots = load_roots(settings.apple_root_certs)
    try:
        verifier = AppleVerifier(
            roots, bundle_id=settings.apple_bundle_id,
            app_apple_id=settings.apple_app_apple_id, environments=settings.apple_environments,
            online_checks=settings.apple_online_checks)
    except ValueError as exc:  # Apple's verifier needs the app id to check Production data
        raise ConfigError(f"APPLE_APP_APPLE_ID is required when APPLE_ENVIRONMENTS includes Production ({exc})") from None
    return AppleNotifications(verifier, catalog, timedelta(days=settings.apple_grace_period_days))
