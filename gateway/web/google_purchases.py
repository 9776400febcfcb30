"""POST /v1/purchases/google: the signed-in user claims a Google Play subscription.

For purchases made without ``obfuscatedAccountId`` (or before the app set it): the app
sends the ``purchaseToken`` and product id of its ``Purchase``
(https://developer.android.com/reference/com/android/billingclient/api/Purchase). The
gateway fetches the purchase from Google, links the token to the caller, acknowledges it
and answers the caller's entitlements. A failed acknowledgement answers 503 so that the
app retries the call (linking again is harmless); the purchase's notification, if it
arrives, acknowledges it too.
"""
from __future__ import annotations

import marshmallow as ma
from flask import Blueprint, current_app, jsonify, request

from gateway.errors import Conflict, NotConfigured
from gateway.ingest import utcnow
from gateway.purchases import register_purchase
from gateway.web.bodies import load_body
from gateway.web.presenters import entitlements_answer

bp = Blueprint("google_purchases", __name__)


class _PurchaseSchema(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    purchaseToken = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=255))
    productId = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=255))


@bp.post("/v1/purchases/google")
def register():
    services = current_app.extensions["gateway"]
    user_sub = services.cognito.user_sub(request.headers.get("Authorization"))
    provider = services.providers.get("google")
    if not hasattr(provider, "purchase"):
        raise NotConfigured("the google source is not configured")
    body = load_body(_PurchaseSchema(), "malformed_purchase")
    key, translation, purchase = provider.purchase(body["purchaseToken"], body["productId"], services.ingest.lookup)
    if any(link.user_sub != user_sub for link in translation.links):
        raise Conflict("the purchase replaces one of another user", code="purchase_owned_by_another_user")
    grants = register_purchase(services.store, services.catalog, utcnow, source="google", key=key,
                               user_sub=user_sub, translation=translation)
    provider.acknowledge(key, purchase)
    return jsonify(entitlements_answer(user_sub, grants, utcnow()))

