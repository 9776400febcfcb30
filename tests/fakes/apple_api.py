"""A local fake of the App Store Server API that checks the bearer token as Apple does:
ES256 signature with the key's public half, header ``kid`` and ``typ``, ``iss``, ``aud``,
``bid``, ``iat`` and an ``exp`` at most 60 minutes later. Answers in Apple's wire format.
"""
from __future__ import annotations

import jwt

from devtools.servers import LocalServer

SUBSCRIPTIONS = "/inApps/v1/subscriptions/"


class FakeAppStoreServerApi:
    def __init__(self, public_key, *, issuer_id: str, key_id: str, bundle_id: str) -> None:
        self.public_key, self.issuer_id, self.key_id, self.bundle_id = public_key, issuer_id, key_id, bundle_id
        self.statuses: dict[str, dict] = {}  # transaction id -> StatusResponse
        self.history: list[list[dict]] = []  # pages of notificationHistory items
        self.rejections: list[str] = []
        self.server = LocalServer({"POST /inApps/v1/notifications/history": self._history, "*": self._subscriptions})

    @property
    def url(self) -> str:
        return self.server.url

    def _claims(self, request) -> dict | None:
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        try:
            header = jwt.get_unverified_header(token)
            if scheme != "Bearer" or header.get("kid") != self.key_id or header.get("typ") != "JWT":
                raise jwt.InvalidTokenError(f"bad header {header}")
            claims = jwt.decode(token, self.public_key, algorithms=["ES256"], audience="appstoreconnect-v1",
                                issuer=self.issuer_id, options={"require": ["iss", "iat", "exp", "aud", "bid"]})
            if claims["bid"] != self.bundle_id or not 0 < claims["exp"] - claims["iat"] <= 3600:
                raise jwt.InvalidTokenError(f"bad claims {claims}")
            return claims
        except jwt.InvalidTokenError as exc:
            self.rejections.append(str(exc))
            return None

    def _subscriptions(self, request):
        if self._claims(request) is None:
            return 401, b"Unauthenticated", {}
        if request.method != "GET" or not request.path.startswith(SUBSCRIPTIONS):
            return 404, {"errorCode": 4040000, "errorMessage": "Not found."}, {}
        found = self.statuses.get(request.path[len(SUBSCRIPTIONS):])
        if found is None:
            return 404, {"errorCode": 4040010, "errorMessage": "Transaction id not found."}, {}
        return 200, found, {}

    def _history(self, request):
        if self._claims(request) is None:
            return 401, b"Unauthenticated", {}
        body = request.json()
        if not isinstance(body, dict) or "startDate" not in body or "endDate" not in body:
            return 400, {"errorCode": 4000000, "errorMessage": "Bad request."}, {}
        page = int((request.query.get("paginationToken") or ["0"])[0])
        items = self.history[page] if page < len(self.history) else []
        more = page + 1 < len(self.history)
        answer = {"notificationHistory": items, "hasMore": more}
        if more:
            answer["paginationToken"] = str(page + 1)
        return 200, answer, {}

    def __enter__(self) -> "FakeAppStoreServerApi":
        self.server.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.server.__exit__(*exc)
