"""The Pub/Sub push envelope and the DeveloperNotification inside it. No I/O.

Envelope: https://cloud.google.com/pubsub/docs/push#receive_push
Notification: https://developer.android.com/google/play/billing/rtdn-reference
    {"message": {"data": base64(DeveloperNotification), "messageId", "publishTime",
                 "attributes"}, "subscription": "projects/.../subscriptions/..."}
Pub/Sub delivers at least once; ``messageId`` is the event id we dedupe on.
"""
from __future__ import annotations

import base64
import binascii
from datetime import datetime

from gateway.errors import Malformed
from gateway.providers import wire

MEMBERS = ("subscriptionNotification", "oneTimeProductNotification", "voidedPurchaseNotification",
           "pendingRefundReviewNotification", "testNotification")

# SubscriptionNotification.notificationType, as the reference lists them. Every type is
# handled alike (fetch the purchase, snapshot it); the names only label the event log.
SUBSCRIPTION_TYPES = {
    1: "SUBSCRIPTION_RECOVERED", 2: "SUBSCRIPTION_RENEWED", 3: "SUBSCRIPTION_CANCELED",
    4: "SUBSCRIPTION_PURCHASED", 5: "SUBSCRIPTION_ON_HOLD", 6: "SUBSCRIPTION_IN_GRACE_PERIOD",
    7: "SUBSCRIPTION_RESTARTED", 8: "SUBSCRIPTION_PRICE_CHANGE_CONFIRMED", 9: "SUBSCRIPTION_DEFERRED",
    10: "SUBSCRIPTION_PAUSED", 11: "SUBSCRIPTION_PAUSE_SCHEDULE_CHANGED", 12: "SUBSCRIPTION_REVOKED",
    13: "SUBSCRIPTION_EXPIRED", 17: "SUBSCRIPTION_ITEMS_CHANGED", 18: "SUBSCRIPTION_CANCELLATION_SCHEDULED",
    19: "SUBSCRIPTION_PRICE_CHANGE_UPDATED", 20: "SUBSCRIPTION_PENDING_PURCHASE_CANCELED",
    22: "SUBSCRIPTION_PRICE_STEP_UP_CONSENT_UPDATED",
}
ONE_TIME_TYPES = {1: "ONE_TIME_PRODUCT_PURCHASED", 2: "ONE_TIME_PRODUCT_CANCELED"}
#: VoidedPurchaseNotification.productType
VOIDED_SUBSCRIPTION, VOIDED_ONE_TIME = 1, 2


def parse_push(body: bytes) -> dict:
    """What the event log keeps of a push: the message's ids and its decoded notification."""
    document = wire.parse_object(body)
    message = document.get("message")
    if not isinstance(message, dict):
        raise Malformed('the body must be a Pub/Sub push {"message": {...}, "subscription"}', code="malformed_push")
    message_id = message.get("messageId") or message.get("message_id")
    if not isinstance(message_id, str) or not 0 < len(message_id) <= 255:
        raise Malformed("the message needs a messageId", code="malformed_push")
    notification = _decode(message.get("data"))
    check(notification)
    return {"messageId": message_id, "publishTime": message.get("publishTime") or message.get("publish_time"),
            "subscription": document.get("subscription"), "attributes": message.get("attributes") or {},
            "notification": notification}


def _decode(data: object) -> dict:
    try:
        decoded = base64.b64decode(data if isinstance(data, str) else "", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Malformed(f"message.data is not base64: {exc}", code="malformed_notification") from None
    return wire.parse_object(decoded, "message.data (a DeveloperNotification)", code="malformed_notification")


def member(notification: dict) -> str | None:
    """The one notification member present (they are mutually exclusive)."""
    return next((name for name in MEMBERS if isinstance(notification.get(name), dict)), None)


def event_type(notification: dict) -> str:
    name = member(notification)
    if name is None:
        return "unknown"
    if name not in ("subscriptionNotification", "oneTimeProductNotification"):
        return name
    kind = notification[name].get("notificationType")
    names = SUBSCRIPTION_TYPES if name == "subscriptionNotification" else ONE_TIME_TYPES
    label = names.get(kind, str(kind)) if isinstance(kind, int) and not isinstance(kind, bool) else "unknown"
    return f"{name}.{label}"[:128]


def check(notification: dict) -> None:
    """Refuse, before it is stored, a notification we would not be able to apply."""
    if not isinstance(notification.get("packageName"), str):
        raise Malformed("the notification needs a packageName", code="malformed_notification")
    name = member(notification)
    body = notification.get(name) if name else None
    if name in ("subscriptionNotification", "voidedPurchaseNotification"):
        token = body.get("purchaseToken")
        if not isinstance(token, str) or not 0 < len(token) <= 255:
            raise Malformed(f"{name} needs a purchaseToken", code="malformed_notification")
    if name == "voidedPurchaseNotification":
        event_time(notification)


def event_time(notification: dict) -> datetime:
    """``eventTimeMillis``: a string of digits on the wire (a long in the reference)."""
    raw = notification.get("eventTimeMillis")
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    digits = isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 20
    if isinstance(raw, bool) or not (isinstance(raw, int) or digits):
        raise Malformed("the notification needs eventTimeMillis", code="malformed_notification")
    return wire.from_millis(int(raw), "eventTimeMillis", code="malformed_notification")
