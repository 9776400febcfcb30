"""A local HTTP fake of the Google Play Developer API and of Google's OAuth token endpoint.

Speaks the real wire format of purchases.subscriptionsv2.get (SubscriptionPurchaseV2),
purchases.subscriptions.acknowledge (empty 200), purchases.subscriptionsv2.cancel (empty 200,
the purchase then ``SUBSCRIPTION_STATE_CANCELED``), purchases.voidedpurchases.list (below)
and the service-account JWT-bearer grant
(https://developers.google.com/identity/protocols/oauth2/service-account#httprest), whose
assertion it verifies against a service-account key minted at test time.
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import re
import threading
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization

from devtools.google_pubsub import PACKAGE, mint_key
from devtools.servers import Held, LocalServer

ACCESS_TOKEN = "ya29.test-play-access-token"
ORDER = "GPA.3333-4137-0319-36762"
#: voidedpurchases.list: how far back Play lists (``startTime`` "cannot be older than 30 days")
#: and the most voids a page holds (``maxResults``: default and maximum 1000).
VOIDS_KEPT_MS, VOIDS_PAGE = 30 * 86_400_000, 1000  # the first order of a purchase; a renewal adds "..0", "..1", ...
SCOPE = "https://www.googleapis.com/auth/androidpublisher"
_GET = re.compile(r"/androidpublisher/v3/applications/([^/]+)/purchases/subscriptionsv2/tokens/([^/]+)")
_VOIDED = re.compile(r"/androidpublisher/v3/applications/([^/]+)/purchases/voidedpurchases")
_CANCEL = re.compile(r"/androidpublisher/v3/applications/([^/]+)/purchases/subscriptionsv2/tokens/([^/]+):cancel")
CANCELLATION_TYPES = ("USER_REQUESTED_STOP_RENEWALS", "DEVELOPER_REQUESTED_STOP_PAYMENTS")
_ACK = re.compile(r"/androidpublisher/v3/applications/([^/]+)/purchases/subscriptions/([^/]+)/tokens/([^/]+):acknowledge")


def rfc3339(when: dt.datetime) -> str:
    """Google's timestamps carry nanoseconds."""
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def _error(status: int, message: str, reason: str = "error") -> tuple:
    return status, {"error": {"code": status, "message": message, "errors": [
        {"message": message, "domain": "androidpublisher", "reason": reason}]}}, {}


class FakePlay:
    def __init__(self, package: str = PACKAGE) -> None:
        self.package, self.key = package, None
        self.reset()
        self.server = LocalServer({"*": self._route})

    def reset(self) -> None:
        """Forget every purchase and call: a fresh Google for the next test."""
        self.purchases: dict[str, dict] = {}
        self.acks: list[tuple[str, str]] = []  # successful acknowledgements: (product, token)
        self.fail_acks = 0  # the next N acknowledgements answer 500
        self.cancels: list[tuple[str, str]] = []  # successful subscriptionsv2.cancel: (token, cancellationType)
        self.fail_cancels = 0  # the next N cancellations answer 500
        self.down = False  # every call answers 503
        self.gets: list[str] = []
        self.grants: list[dict] = []  # verified service-account assertions
        self.voids: list[dict] = []  # VoidedPurchase resources, in the order Play recorded them
        self.voids_page = VOIDS_PAGE  # a page holds at most this many (Play may send fewer than asked)
        self.voided_queries: list[dict] = []  # each voidedpurchases.list request's query
        self.fail_voided = 0  # the next N voidedpurchases.list requests answer 500
        self.fail_voided_pages = 0  # the next N requests for a further page (with ``token``) answer 500
        self.fail_gets = 0  # the next N subscriptionsv2.get requests answer 500
        self._gate: threading.Barrier | None = None
        self.gates_opened = 0  # how many gates every party passed together
        self._held: Held | None = None

    def subscribe(self, token: str, state: str = "SUBSCRIPTION_STATE_ACTIVE", *, product: str = "premium_monthly",
                  user: str | None = None, acknowledged: bool = False, days: float = 30, auto_renew: bool = True,
                  linked: str | None = None, test: bool = False, order: str = ORDER) -> dict:
        """Store (or replace) the purchase behind ``token``; ``order`` paid its current
        period (a renewal's order is the first order's id with ``..0``, ``..1``, ...)."""
        now = dt.datetime.now(dt.timezone.utc)
        purchase = {
            "kind": "androidpublisher#subscriptionPurchaseV2", "regionCode": "US",
            "startTime": rfc3339(now - dt.timedelta(days=1)), "subscriptionState": state,
            "latestOrderId": order,
            "acknowledgementState": "ACKNOWLEDGEMENT_STATE_" + ("ACKNOWLEDGED" if acknowledged else "PENDING"),
            "lineItems": [{"productId": product, "expiryTime": rfc3339(now + dt.timedelta(days=days)),
                           "autoRenewingPlan": {"autoRenewEnabled": auto_renew},
                           "offerDetails": {"basePlanId": "monthly"}, "latestSuccessfulOrderId": order}],
        }
        if user:
            purchase["externalAccountIdentifiers"] = {"obfuscatedExternalAccountId": user}
        if linked:
            purchase["linkedPurchaseToken"] = linked
        if test:
            purchase["testPurchase"] = {}
        self.purchases[token] = purchase
        return purchase

    def gate(self, parties: int, timeout: float = 3.0) -> None:
        """Hold the next ``parties`` subscriptionsv2 reads until all have arrived, then
        answer them together: concurrent readers all read before any writes back."""
        self._gate = threading.Barrier(parties, timeout=timeout)

    def hold(self) -> Held:
        """Read the purchase for the next subscriptionsv2 request at once, but answer it
        only on ``release()``: an answer slow to arrive, with the state of when it was read."""
        self._held = Held()
        return self._held

    def void(self, token: str, order: str = ORDER, *, at: dt.datetime | None = None,
             one_time: bool = False) -> dict:
        """Record ``order`` of ``token`` as voided (refunded) ``at``, listed from now on: Play
        lists a void by when it recorded it, which may be later than ``voidedTimeMillis``."""
        now = dt.datetime.now(dt.timezone.utc)
        at = at or now
        voided = {"kind": "androidpublisher#voidedPurchase", "purchaseToken": token, "orderId": order,
                  "purchaseTimeMillis": str(int((at - dt.timedelta(days=1)).timestamp() * 1000)),
                  "voidedTimeMillis": str(int(at.timestamp() * 1000)), "voidedSource": 1, "voidedReason": 1,
                  "_recorded": int(now.timestamp() * 1000), "_subscription": not one_time}
        self.voids.append(voided)
        return voided

    def env(self, service_account: bool = False) -> dict[str, str]:
        if service_account:
            return {"GOOGLE_PLAY_API_BASE": self.server.url, "GOOGLE_SERVICE_ACCOUNT_JSON": json.dumps(self.key_info())}
        return {"GOOGLE_PLAY_API_BASE": self.server.url, "GOOGLE_PLAY_ACCESS_TOKEN": ACCESS_TOKEN}

    def key_info(self) -> dict:
        """A service-account key file as the Cloud console downloads it, minted now."""
        self.key = self.key or mint_key()
        pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
        return {"type": "service_account", "project_id": "example-project", "private_key_id": "k1",
                "private_key": pem, "client_email": "play-api@example-project.iam.gserviceaccount.com",
                "client_id": "1", "token_uri": f"{self.server.url}/token"}

    def _route(self, request) -> tuple:
        if self.down:
            return _error(503, "Backend Error", "backendError")
        if request.method == "POST" and request.path == "/token":
            return self._grant(request)
        if request.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
            return _error(401, "Request had invalid authentication credentials.", "unauthorized")
        if request.method == "GET" and (found := _VOIDED.fullmatch(request.path)):
            return self._voided(found.group(1), request)
        if request.method == "GET" and (found := _GET.fullmatch(request.path)):
            return self._get(*found.groups())
        if request.method == "POST" and (found := _CANCEL.fullmatch(request.path)):
            return self._cancel(*found.groups(), request)
        if request.method == "POST" and (found := _ACK.fullmatch(request.path)):
            return self._acknowledge(*found.groups())
        return _error(404, "Not Found", "notFound")

    def _get(self, package: str, token: str) -> tuple:
        self.gets.append(token)
        if self.fail_gets:
            self.fail_gets -= 1
            return _error(500, "Internal error encountered.", "backendError")
        if (gate := self._gate) is not None:
            try:
                if gate.wait() == 0:
                    self._gate, self.gates_opened = None, self.gates_opened + 1  # one round only
            except threading.BrokenBarrierError:
                pass
        if package != self.package:
            return _error(400, "Invalid Value", "invalid")
        if token not in self.purchases:
            return _error(404, "The purchase token was not found.", "purchaseTokenNotFound")
        answer = copy.deepcopy(self.purchases[token])
        if (held := self._held) is not None:
            self._held = None  # one answer only
            held.reached()
        return 200, answer, {}

    def _voided(self, package: str, request) -> tuple:
        """purchases.voidedpurchases.list: oldest first, by when Play recorded each void
        (``startTime``/``endTime`` filter on that, not on ``voidedTimeMillis``); ``type=1``
        lists subscription orders beside one-time ones, the default 0 one-time ones only; a
        page token carries the first request's window, whose times it then ignores."""
        query = {name: values[0] for name, values in request.query.items()}
        self.voided_queries.append(query)
        failing = "fail_voided_pages" if "token" in query and self.fail_voided_pages else "fail_voided"
        if getattr(self, failing):
            setattr(self, failing, getattr(self, failing) - 1)
            return _error(500, "Internal error encountered.", "backendError")
        if package != self.package:
            return _error(400, "Invalid Value", "invalid")
        now = int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)
        try:
            kind = int(query.get("type", 0))
            size = min(int(query.get("maxResults", VOIDS_PAGE)), self.voids_page)
            start, since, until = (int(part) for part in query["token"].split(".")) if "token" in query else (
                0, int(query.get("startTime", now - VOIDS_KEPT_MS)), int(query.get("endTime", now)))
        except ValueError:
            return _error(400, "Invalid Value", "invalid")
        if "token" not in query and since < now - VOIDS_KEPT_MS:
            return _error(400, "startTime is too old: voided purchases are kept 30 days.", "invalid")
        shown = (v for v in self.voids if since <= v["_recorded"] <= until and (kind == 1 or not v["_subscription"]))
        listed = sorted(shown, key=lambda v: v["_recorded"])
        page = [{k: v for k, v in item.items() if not k.startswith("_")} for item in listed[start:start + size]]
        answer: dict = {"pageInfo": {"totalResults": len(page), "resultPerPage": size, "startIndex": start},
                        "voidedPurchases": page}
        if start + size < len(listed):
            answer["tokenPagination"] = {"nextPageToken": f"{start + size}.{since}.{until}"}
        return 200, answer, {}

    def _purchase(self, package: str, token: str, failures: str) -> tuple[dict | None, tuple | None]:
        """The purchase a write names, or the error Play answers: a 500 while ``failures``
        (the name of a counter) lasts, a 404 for a token of another app or none."""
        if getattr(self, failures):
            setattr(self, failures, getattr(self, failures) - 1)
            return None, _error(500, "Internal error encountered.", "backendError")
        purchase = self.purchases.get(token)
        if package != self.package or purchase is None:
            return None, _error(404, "The purchase token was not found.", "purchaseTokenNotFound")
        return purchase, None

    def _acknowledge(self, package: str, product: str, token: str) -> tuple:
        purchase, error = self._purchase(package, token, "fail_acks")
        if error:
            return error
        if product not in {item["productId"] for item in purchase["lineItems"]}:
            return _error(400, "The subscription purchase is not owned by the user.", "subscriptionNotOwnedByUser")
        purchase["acknowledgementState"] = "ACKNOWLEDGEMENT_STATE_ACKNOWLEDGED"
        self.acks.append((product, token))
        return 200, b"", {}

    def _cancel(self, package: str, token: str, request) -> tuple:
        """purchases.subscriptionsv2.cancel: the body names a ``cancellationContext``."""
        purchase, error = self._purchase(package, token, "fail_cancels")
        if error:
            return error
        try:
            kind = json.loads(request.body or b"{}")["cancellationContext"]["cancellationType"]
        except (ValueError, KeyError, TypeError):
            kind = None
        if kind not in CANCELLATION_TYPES:
            return _error(400, "Invalid value at 'cancellation_context.cancellation_type'.", "invalid")
        purchase["subscriptionState"] = "SUBSCRIPTION_STATE_CANCELED"
        purchase["canceledStateContext"] = {"developerInitiatedCancellation": {}}
        for item in purchase["lineItems"]:
            item["autoRenewingPlan"] = {**item.get("autoRenewingPlan", {}), "autoRenewEnabled": False}
        self.cancels.append((token, kind))
        return 200, b"", {}

    def _grant(self, request) -> tuple:
        form = {name: values[0] for name, values in parse_qs(request.body.decode()).items()}
        try:
            # google-auth addresses the assertion to Google's token endpoint, whatever token_uri says.
            claims = jwt.decode(form.get("assertion", ""), self.key.public_key(), algorithms=["RS256"],
                                audience=["https://oauth2.googleapis.com/token", f"{self.server.url}/token"])
        except (jwt.InvalidTokenError, AttributeError):
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, {}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" or SCOPE not in claims.get("scope", ""):
            return 400, {"error": "invalid_scope", "error_description": "Invalid OAuth scope."}, {}
        self.grants.append(claims)
        return 200, {"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"}, {}

    def __enter__(self) -> "FakePlay":
        self.server.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.server.__exit__(*exc)
