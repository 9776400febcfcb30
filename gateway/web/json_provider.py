"""Flask's JSON, with the compact encoder of every answer built once.

``json.dumps`` with any argument of its own builds a new ``JSONEncoder`` at each call;
Flask passes several for every answer (``jsonify``). The encoder holds nothing between
calls, so one serves every request, and the bytes are those ``json.dumps`` writes.
"""
from __future__ import annotations

import json
from typing import Any

from flask.json.provider import DefaultJSONProvider

_COMPACT = {"separators": (",", ":")}  # what Flask's ``response`` asks for, out of debug mode


class JsonProvider(DefaultJSONProvider):
    sort_keys = False  # the answers' keys in the documented order

    def __init__(self, app) -> None:
        super().__init__(app)
        self._compact = json.JSONEncoder(default=self.default, ensure_ascii=self.ensure_ascii,
                                         sort_keys=self.sort_keys, **_COMPACT)

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if kwargs == _COMPACT:
            return self._compact.encode(obj)
        return super().dumps(obj, **kwargs)
