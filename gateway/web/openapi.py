"""``GET /openapi.json``: the OpenAPI 3 document of ``/v1`` and the webhooks, generated
with apispec from the marshmallow schemas the views use (request bodies) and
``schemas.py`` (answers, webhook bodies). Built once per process, on first request.
"""
from __future__ import annotations

import functools

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, jsonify

from gateway.web import checkout, purchases, schemas

bp = Blueprint("openapi", __name__)

SECURITY = {
    "cognito": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "A Cognito ID or access token of the configured pool and app clients."},
    "apiKey": {"type": "http", "scheme": "bearer", "description": "One of GATEWAY_API_KEYS."},
    "googlePubSub": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                     "description": "The Pub/Sub push OIDC token: issuer Google, audience "
                                    "GOOGLE_PUBSUB_AUDIENCE, email GOOGLE_PUBSUB_SERVICE_ACCOUNT (verified)."},
    "revenuecat": {"type": "apiKey", "in": "header", "name": "Authorization",
                   "description": "The whole header value set in RevenueCat, one of REVENUECAT_WEBHOOK_AUTH."},
}
STRIPE_SIGNATURE = {"name": "Stripe-Signature", "in": "header", "required": True, "schema": {"type": "string"},
                    "description": "t=<unix time>,v1=<HMAC-SHA256>; 300 s tolerance; any of STRIPE_WEBHOOK_SECRETS."}

#: A 503 says when to ask again where the gateway knows: a Checkout Session for the same
#: user still being made by another request (Stripe's idempotency key in use).
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before asking again, when known",
                               "schema": {"type": "integer", "minimum": 1}}}

# (path, source, body schema, what authenticates it): the four webhook endpoints.
WEBHOOKS = [
    ("/webhooks/stripe", "stripe", "StripeEvent", {"parameters": [STRIPE_SIGNATURE]}),
    ("/webhooks/apple", "apple", "AppleNotification", {"description": "The x5c chain of the JWS is the proof."}),
    ("/webhooks/google", "google", "PubSubPush", {"security": [{"googlePubSub": []}]}),
    ("/webhooks/revenuecat", "revenuecat", "RevenueCatWebhook", {"security": [{"revenuecat": []}]}),
]


def _answers(schema: str, *errors: int, **descriptions) -> dict:
    """200 and the ``errors``; 400 always, since every route refuses a NUL in its URL (web/errors.py)."""
    answers = {"200": {"description": descriptions.get("ok", "OK"), "content": _json(schema)}}
    descriptions.setdefault("e400", "malformed: the body, the query, or a NUL character in the URL")
    for status in sorted({400, *errors}):
        answers[str(status)] = {"description": descriptions.get(f"e{status}", "see error"), "content": _json("Error")}
    if 503 in errors:
        answers["503"]["headers"] = RETRY_AFTER
    return answers


def _json(schema: str) -> dict:
    return {"application/json": {"schema": schema}}


def _body(schema: str) -> dict:
    return {"required": True, "content": _json(schema)}


def _webhook(source: str, body: str, auth: dict) -> dict:
    return {"post": {
        "tags": ["webhooks"], "summary": f"Receive a {source} delivery", "security": [], **auth,
        "requestBody": _body(body),
        "responses": _answers("WebhookAnswer", 400, 401, 413, 503, ok="stored (and applied unless deferred)",
                              e400="verified but malformed", e401="bad signature, token or header",
                              e413="larger than MAX_BODY_BYTES",
                              e503="source not configured, or the event cannot be stored now: retry"),
    }}


def _client_action(summary: str, body: str, ok: str, *errors: int) -> dict:
    return {"post": {"tags": ["client"], "summary": summary, "security": [{"cognito": []}],
                     "requestBody": _body(body), "responses": _answers(ok, 400, 401, *errors, 413, 503,
                                                                       e413="larger than MAX_BODY_BYTES")}}


def _delete_me() -> dict:
    return {"delete": {
        "tags": ["client"], "summary": "Delete the caller's account: stop billing, erase personal data",
        "description": "Idempotent: asked again, answers the first report, with each purchase made after "
                       "the deletion (after_deletion: true), cancelled where the store lets the gateway. The "
                       "caller's open Stripe Checkout Sessions are expired. 503: a store's API or the "
                       "database could not answer; nothing was deleted (asked again: a purchase made after "
                       "the deletion is not cancelled yet), ask again.",
        "security": [{"cognito": []}], "responses": _answers("DeletionReport", 401, 503)}}


def _feed() -> dict:
    answers = _answers("FeedPage", 400, 401, 410, 503, e410="cursor_expired: the retention (FEED_RETENTION_DAYS) "
                       "deleted events after this cursor; read the users' entitlements again, then read on from "
                       "`newest` (or without `after`)")
    answers["410"]["content"] = _json("CursorExpired")
    return {"get": {
        "tags": ["events"], "summary": "The entitlement feed: every change, in commit order",
        "security": [{"apiKey": []}], "parameters": [
            {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0},
             "description": "the cursor: the `next` of the previous page (left out: from the oldest event kept; "
                            "410 once events after it were deleted)"},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
            {"name": "wait", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 25},
             "description": "seconds to wait for an event when there is none yet (long poll)"}],
        "responses": answers}}


def _paths() -> dict[str, dict]:
    user = {"name": "user_sub", "in": "path", "required": True, "schema": {"type": "string"}}
    paths = {path: _webhook(source, body, auth) for path, source, body, auth in WEBHOOKS}
    paths.update({
        "/v1/me/entitlements": {"get": {"tags": ["entitlements"], "summary": "The caller's entitlements",
                                        "security": [{"cognito": []}],
                                        "responses": _answers("EntitlementsAnswer", 401, 503)}},
        "/v1/users/{user_sub}/entitlements": {"get": {
            "tags": ["entitlements"], "summary": "A user's entitlements (server to server)",
            "security": [{"apiKey": []}], "parameters": [user],
            "responses": _answers("EntitlementsAnswer", 401, 503)}},
        "/v1/users/{user_sub}/history": {"get": {
            "tags": ["entitlements"], "summary": "A user's entitlements, subscriptions and deliveries",
            "security": [{"apiKey": []}], "parameters": [
                user, {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                {"name": "before", "in": "query", "schema": {"type": "integer", "minimum": 1}}],
            "responses": _answers("HistoryAnswer", 400, 401, 503)}},
        "/v1/events": _feed(),
        "/v1/me": _delete_me(),
        "/v1/checkout/sessions": _client_action("A Stripe Checkout Session for the caller", "CheckoutBody",
                                                "CheckoutSession", 403, 409, 502),
        "/v1/billing-portal/sessions": _client_action("A Stripe billing portal session", "PortalBody",
                                                      "PortalSession", 403, 502),
        "/v1/purchases/apple": _client_action("Claim an App Store purchase", "ApplePurchaseBody",
                                              "EntitlementsAnswer", 409),
        "/v1/purchases/google": _client_action("Claim a Google Play purchase", "GooglePurchaseBody",
                                               "EntitlementsAnswer", 404, 409),
        "/healthz": {"get": {"tags": ["operations"], "security": [], "responses": _answers("Health")}},
        "/readyz": {"get": {"tags": ["operations"], "security": [], "responses": _answers("Health", 503)}},
    })
    return paths


@functools.cache
def document() -> dict:
    spec = APISpec(title="Subscription entitlement gateway", version="1", openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin()],
                   info={"description": "Webhooks of Stripe, the App Store, Google Play and RevenueCat in; "
                                        "one entitlement answer per Cognito user out."})
    named = {"CheckoutBody": checkout.CheckoutBody, "PortalBody": checkout.PortalBody,
             "ApplePurchaseBody": purchases.ApplePurchaseBody,
             "GooglePurchaseBody": purchases.GooglePurchaseBody}
    for name in ("Entitlement", "EntitlementsAnswer", "HistoryAnswer", "Error", "WebhookAnswer",
                 "CheckoutSession", "PortalSession", "Health", "StripeEvent", "AppleNotification",
                 "PubSubPush", "RevenueCatWebhook", "FeedPage", "CursorExpired", "DeletionReport"):
        named[name] = getattr(schemas, name)
    for name, schema in named.items():
        spec.components.schema(name, schema=schema)
    for name, scheme in SECURITY.items():
        spec.components.security_scheme(name, scheme)
    for path, operations in _paths().items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(document())
