"""Client actions of the google source (not built yet)."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("google_purchases", __name__)
