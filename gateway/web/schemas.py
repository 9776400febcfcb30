"""Marshmallow schemas of what the HTTP API answers, and of the webhook bodies as each
store sends them. They describe; the views and providers stay the ones that decide
(answers are built by ``presenters``, webhook bodies are verified on their raw bytes).
The OpenAPI document (``openapi.py``) is generated from them.

The client actions' request bodies are not here: they live beside their views
(``checkout.CheckoutBody``...) and the document imports them from there.
"""
from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from gateway.domain.catalog import SOURCES
from gateway.domain.entitlement_events import TYPES as FEED_TYPES

STATUSES = ["active", "grace_period", "billing_retry", "paused", "expired", "revoked", "pending"]


def _text(description: str, **kwargs) -> fields.String:
    return fields.String(metadata={"description": description}, **kwargs)


class Entitlement(ma.Schema):
    active = fields.Boolean(required=True, metadata={"description": "judged at read time"})
    status = fields.String(required=True, validate=ma.validate.OneOf(STATUSES))
    expires_at = fields.DateTime(required=True, allow_none=True, metadata={"description": "null: no end"})
    will_renew = fields.Boolean(required=True, allow_none=True)
    source = fields.String(required=True, validate=ma.validate.OneOf(SOURCES))
    product_id = fields.String(required=True, allow_none=True)


class EntitlementsAnswer(ma.Schema):
    user_id = _text("the Cognito sub", required=True)
    is_premium = fields.Boolean(required=True, metadata={"description": "true when any entitlement is active"})
    entitlements = fields.Dict(keys=fields.String(), values=fields.Nested(Entitlement), required=True,
                               metadata={"description": "by entitlement name; empty for an unknown user"})


class HistorySubscription(ma.Schema):
    source, key = fields.String(required=True), fields.String(required=True)
    status, raw_status = fields.String(required=True), fields.String(allow_none=True)
    product_id = fields.String(allow_none=True)
    expires_at, as_of = fields.DateTime(allow_none=True), fields.DateTime(allow_none=True)
    will_renew = fields.Boolean(allow_none=True)
    environment = fields.String(allow_none=True)
    owner_as_of = fields.DateTime(allow_none=True)
    entitlements, chosen_for = fields.List(fields.String()), fields.List(fields.String())
    explanation = fields.String(allow_none=True)
    evidence = fields.List(fields.Integer())


class HistoryDelivery(ma.Schema):
    id = fields.Integer(required=True)
    source, event_id, type, status = (fields.String(required=True) for _ in range(4))
    received_at = fields.DateTime(required=True)
    attempts = fields.Integer(required=True)
    last_error = fields.String(allow_none=True)
    processed_at = fields.DateTime(allow_none=True)
    subscriptions = fields.List(fields.Dict(keys=fields.String(), values=fields.String()))


class HistoryAnswer(EntitlementsAnswer):
    subscriptions = fields.List(fields.Nested(HistorySubscription), required=True)
    deliveries = fields.List(fields.Nested(HistoryDelivery), required=True)
    next_before = fields.Integer(allow_none=True, metadata={"description": "pass as ?before= for older deliveries"})


class FeedEvent(ma.Schema):
    id = _text("evt_...: the same id in the feed and in the webhook-id header", required=True)
    type = fields.String(required=True, validate=ma.validate.OneOf(FEED_TYPES))
    position = _text("the event's place in the feed; pass the last one seen as ?after=", required=True)
    user_id = fields.String(required=True)
    entitlement = fields.String(required=True, allow_none=True, metadata={"description": "null for user.deleted"})
    before = fields.Nested(Entitlement, required=True, allow_none=True)
    after = fields.Dict(required=True, allow_none=True, metadata={
        "description": "the entitlement as the entitlement API showed it then (null: gone); "
                       "for user.deleted, {report}"})
    cause = fields.Dict(required=True, metadata={
        "description": "{kind: delivery|reconcile|purchase|checkout|expiry|deletion|gateway, source, event_id}"})
    occurred_at = fields.DateTime(required=True)


class FeedPage(ma.Schema):
    events = fields.List(fields.Nested(FeedEvent), required=True)
    next = _text("the cursor to ask from next (?after=)", required=True)
    has_more = fields.Boolean(required=True, metadata={"description": "a full page: ask again at once"})


class DeletedSubscription(ma.Schema):
    source = fields.String(required=True, validate=ma.validate.OneOf(SOURCES))
    store = _text("the store's name, e.g. App Store", required=True)
    product_id = fields.String(required=True, allow_none=True)
    reason = _text("user_must_cancel only: must_cancel_in_store (App Store, RevenueCat), "
                   "store_api_not_configured, or store_refused")
    after_deletion = fields.Boolean(metadata={
        "description": "present and true for a purchase made after the deletion (stored once the account was "
                       "gone): answered when the deletion is asked again"})


class DeletionReport(ma.Schema):
    cancelled = fields.List(fields.Nested(DeletedSubscription), required=True, metadata={
        "description": "billing stopped by the gateway: Stripe cancelled at once, Google Play cancelled "
                       "(DEVELOPER_REQUESTED_STOP_PAYMENTS)"})
    user_must_cancel = fields.List(fields.Nested(DeletedSubscription), required=True, metadata={
        "description": "subscriptions only the user can cancel, in the store's own settings"})


class Error(ma.Schema):
    error = _text("a stable code, e.g. invalid_signature, source_not_configured", required=True)
    message = _text("for people; may change")


class CursorExpired(Error):
    oldest = _text("the lowest cursor still valid: where the feed starts without `after`", required=True)
    newest = _text("the cursor of the newest event: read on from here once the entitlements are read again",
                   required=True)


class WebhookAnswer(ma.Schema):
    status = fields.String(required=True, validate=ma.validate.OneOf(["processed", "duplicate", "ignored", "deferred"]))


class CheckoutSession(ma.Schema):
    id = _text("the Checkout Session id (cs_...)", required=True)
    url = fields.Url(required=True, metadata={"description": "where to send the user"})


class PortalSession(ma.Schema):
    url = fields.Url(required=True)


class Health(ma.Schema):
    status = fields.String(required=True, validate=ma.validate.OneOf(["ok", "unavailable"]))
    error, message = fields.String(), fields.String()


# Webhook bodies, as each store sends them (documentation only: verified on raw bytes).
class _StoreBody(ma.Schema):
    class Meta:
        unknown = ma.INCLUDE  # stores add fields; the gateway reads tolerantly


class StripeEvent(_StoreBody):
    id = _text("evt_...", required=True)
    object = fields.String(validate=ma.validate.Equal("event"))
    type = fields.String(required=True)
    created = fields.Integer(required=True)
    api_version = fields.String()
    data = fields.Dict(required=True, metadata={"description": "{object, previous_attributes}"})


class AppleNotification(_StoreBody):
    signedPayload = _text("App Store Server Notification V2, a JWS signed with the x5c chain", required=True)


class PubSubMessage(_StoreBody):
    data = _text("base64 of the Play DeveloperNotification JSON", required=True)
    messageId = fields.String(required=True)
    publishTime = fields.String()
    attributes = fields.Dict(keys=fields.String(), values=fields.String())


class PubSubPush(_StoreBody):
    message = fields.Nested(PubSubMessage, required=True)
    subscription = fields.String()


class RevenueCatWebhook(_StoreBody):
    api_version = fields.String()
    event = fields.Dict(required=True, metadata={"description": "id, type, app_user_id, event_timestamp_ms..."})
