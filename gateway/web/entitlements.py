"""Entitlement reads: the signed-in user's own, or any user's with an API key."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from gateway.clock import utcnow
from gateway.store.port import StoreUnavailable
from gateway.errors import Unavailable
from gateway.web.presenters import entitlements_answer

bp = Blueprint("entitlements", __name__)


def answer_for(user_sub: str):
    services = current_app.extensions["gateway"]
    try:
        grants = services.store.entitlements_of(user_sub)
    except StoreUnavailable as exc:
        raise Unavailable("entitlements cannot be read right now", code="store_unavailable") from exc
    return jsonify(entitlements_answer(user_sub, grants, utcnow()))


@bp.get("/v1/me/entitlements")
def mine():
    user_sub = current_app.extensions["gateway"].cognito.user_sub(request.headers.get("Authorization"))
    return answer_for(user_sub)


@bp.get("/v1/users/<user_sub>/entitlements")
def of_user(user_sub: str):
    current_app.extensions["gateway"].api_keys.check(request.headers.get("Authorization"))
    return answer_for(user_sub)
