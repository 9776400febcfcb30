"""Client actions of the stripe source: Checkout and Customer Portal sessions."""
from __future__ import annotations

import marshmallow as ma
from flask import Blueprint, current_app, jsonify, request

from gateway.checkout import Checkout
from gateway.errors import Malformed, NotConfigured
from gateway.web.bodies import load_body

bp = Blueprint("checkout", __name__)

_URL = {"required": True, "schemes": {"http", "https"}, "require_tld": False,
        "validate": ma.validate.Length(max=2048)}


class CheckoutBody(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    price_id = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=255))
    success_url = ma.fields.Url(**_URL)
    cancel_url = ma.fields.Url(**_URL)


class PortalBody(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    return_url = ma.fields.Url(**_URL)


def _checkout() -> Checkout:
    checkout = current_app.extensions["gateway"].checkout  # built once, by create_app
    if checkout is None:
        raise NotConfigured("Stripe is not configured (STRIPE_API_KEY)", code="stripe_not_configured")
    return checkout


def _caller() -> str:
    return current_app.extensions["gateway"].cognito.user_sub(request.headers.get("Authorization"))


@bp.post("/v1/checkout/sessions")
def create_checkout_session():
    user_sub = _caller()
    body = load_body(CheckoutBody(), "invalid_body")
    # A product id (prod_...) may be in the catalog too, but Checkout sells prices only.
    if not body["price_id"].startswith("price_") or \
            not current_app.extensions["gateway"].catalog.knows("stripe", body["price_id"]):
        raise Malformed(f"price {body['price_id']!r} grants no entitlement in the catalog", code="unknown_price")
    return jsonify(_checkout().checkout_session(user_sub, **body))


@bp.post("/v1/billing-portal/sessions")
def create_portal_session():
    user_sub = _caller()
    body = load_body(PortalBody(), "invalid_body")
    return jsonify(_checkout().portal_session(user_sub, body["return_url"]))
