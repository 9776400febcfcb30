"""POST /v1/purchases/apple: the signed-in user claims an App Store purchase.

For purchases made without ``appAccountToken`` (or before the app set it): the app sends
StoreKit 2's ``Transaction.jwsRepresentation``
(https://developer.apple.com/documentation/storekit/verificationresult/jwsrepresentation-21vgo),
verified like any App Store JWS; its ``originalTransactionId`` is linked to the caller.
"""
from __future__ import annotations

import marshmallow as ma
from flask import Blueprint, current_app, jsonify, request

from gateway.errors import NotConfigured
from gateway.ingest import utcnow
from gateway.purchases import register_purchase
from gateway.web.bodies import load_body
from gateway.web.presenters import entitlements_answer

bp = Blueprint("apple_purchases", __name__)


class _PurchaseSchema(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    signedTransaction = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=65536))


@bp.post("/v1/purchases/apple")
def register():
    services = current_app.extensions["gateway"]
    user_sub = services.cognito.user_sub(request.headers.get("Authorization"))
    provider = services.providers.get("apple")
    if not hasattr(provider, "purchase"):
        raise NotConfigured("the apple source is not configured")
    key, translation = provider.purchase(load_body(_PurchaseSchema(), "malformed_purchase")["signedTransaction"])
    grants = register_purchase(services.store, services.catalog, utcnow, source="apple", key=key,
                               user_sub=user_sub, translation=translation)
    return jsonify(entitlements_answer(user_sub, grants, utcnow()))

