"""``DELETE /v1/me``: the signed-in user deletes their account (``gateway.accounts``)."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

bp = Blueprint("account", __name__)


@bp.delete("/v1/me")
def delete_me():
    services = current_app.extensions["gateway"]
    user_sub = services.cognito.user_sub(request.headers.get("Authorization"))
    return jsonify(services.accounts.delete(user_sub))
