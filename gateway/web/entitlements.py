"""Entitlement reads: the signed-in user's own, or any user's with an API key.

Every app launch makes one of these, so the views read the app and the request once each
(``_get_current_object``): each attribute read through Flask's ``current_app`` or
``request`` proxy costs a lookup of its own, some 8,000 instructions (bench/README.md).
"""
from __future__ import annotations

from flask import Blueprint, Flask, current_app, request

from gateway.clock import utcnow
from gateway.store.port import StoreUnavailable
from gateway.errors import Unavailable
from gateway.web.presenters import entitlements_answer

bp = Blueprint("entitlements", __name__)


def answer_for(app: Flask, user_sub: str):
    try:
        grants = app.extensions["gateway"].store.entitlements_of(user_sub)
    except StoreUnavailable as exc:
        raise Unavailable("entitlements cannot be read right now", code="store_unavailable") from exc
    return app.json.response(entitlements_answer(user_sub, grants, utcnow()))  # what ``jsonify`` does


@bp.get("/v1/me/entitlements")
def mine():
    app = current_app._get_current_object()
    authorization = request._get_current_object().headers.get("Authorization")
    return answer_for(app, app.extensions["gateway"].cognito.user_sub(authorization))


@bp.get("/v1/users/<user_sub>/entitlements")
def of_user(user_sub: str):
    app = current_app._get_current_object()
    authorization = request._get_current_object().headers.get("Authorization")
    app.extensions["gateway"].api_keys.check(authorization)
    return answer_for(app, user_sub)
