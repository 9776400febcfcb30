"""Client actions of the apple source (not built yet)."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("apple_purchases", __name__)
