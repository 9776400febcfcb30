"""Client actions of the stripe source (not built yet)."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("checkout", __name__)
