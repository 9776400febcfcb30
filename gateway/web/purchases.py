"""POST /v1/purchases/apple and /v1/purchases/google: the signed-in user claims a store
purchase made without our user on it. One view; per store only the body and the provider
call differ.

- Apple, for purchases made without ``appAccountToken`` (or before the app set it): the
  app sends StoreKit 2's ``Transaction.jwsRepresentation``
  (https://developer.apple.com/documentation/storekit/verificationresult/jwsrepresentation-21vgo),
  verified like any App Store JWS; its ``originalTransactionId`` is linked to the caller.
- Google, for purchases made without ``obfuscatedAccountId`` (or before the app set it):
  the app sends the ``purchaseToken`` and product id of its ``Purchase``
  (https://developer.android.com/reference/com/android/billingclient/api/Purchase). The
  gateway fetches the purchase from Google, links the token to the caller, acknowledges
  it and answers the caller's entitlements. A failed acknowledgement answers 503 so that
  the app retries the call (linking again is harmless); the purchase's notification, if
  it arrives, acknowledges it too.
"""
from __future__ import annotations

import marshmallow as ma
from flask import Blueprint, current_app, jsonify, request

from gateway.apply import reading_again
from gateway.clock import utcnow
from gateway.domain.reads import StaleRead
from gateway.errors import Conflict, NotConfigured, Unavailable
from gateway.purchases import register_purchase
from gateway.web.bodies import load_body
from gateway.web.presenters import entitlements_answer

bp = Blueprint("purchases", __name__)


class ApplePurchaseBody(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    signedTransaction = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=65536))


class GooglePurchaseBody(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    purchaseToken = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=255))
    productId = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=255))


# A store's claim: (provider, request body, caller, lookup) -> (key, translation, what to
# do once the purchase is registered).
def _apple(provider, body: dict, user_sub: str, lookup):
    """The verified transaction's key and translation; nothing to do once registered."""
    key, translation = provider.purchase(body["signedTransaction"])
    return key, translation, lambda: None


def _google(provider, body: dict, user_sub: str, lookup):
    """The fetched purchase's key and translation; acknowledged once registered."""
    key, translation, purchase = provider.purchase(body["purchaseToken"], body["productId"], lookup)
    if any(link.user_sub != user_sub for link in translation.links):
        raise Conflict("the purchase replaces one of another user", code="purchase_owned_by_another_user")
    return key, translation, lambda: provider.acknowledge(key, purchase)


@bp.post("/v1/purchases/apple")
def register_apple():
    return _register("apple", ApplePurchaseBody(), _apple)


@bp.post("/v1/purchases/google")
def register_google():
    # A Google token is a purchase that its upgrades go with (Link.carries).
    return _register("google", GooglePurchaseBody(), _google, carries=True)


def _register(source: str, schema: ma.Schema, claim, carries: bool = False):
    """The view of both stores: the caller, the store's claim, the registration, the answer."""
    services = current_app.extensions["gateway"]
    user_sub = services.cognito.user_sub(request.headers.get("Authorization"))
    provider = services.providers.get(source)
    if not hasattr(provider, "purchase"):
        raise NotConfigured(f"the {source} source is not configured")
    body = load_body(schema, "malformed_purchase")

    def attempt():  # read again while the purchase changes under the registration (apply.reading_again)
        key, translation, registered = claim(provider, body, user_sub, services.ingest.lookup)
        return registered, register_purchase(services.store, services.catalog, utcnow, source=source, key=key,
                                             user_sub=user_sub, translation=translation, carries=carries)

    try:
        registered, grants = reading_again(attempt)
    except StaleRead as exc:
        raise Unavailable("the purchase kept changing while it was read; retry",
                          code="purchase_changing") from exc
    registered()
    return jsonify(entitlements_answer(user_sub, grants, utcnow()))
