"""An in-memory Stripe behind a real HTTP server on 127.0.0.1, speaking Stripe's wire format.

Requests carry ``Authorization: Bearer sk_test_...`` and form-encoded parameters in bracket
notation (``metadata[cognito_sub]=...``, ``expand[]=...``, ``items[0][price]=...``); answers are
Stripe-shaped JSON objects, and errors ``{"error": {"type", "message", ...}}``
(https://docs.stripe.com/api/errors). POSTs honour ``Idempotency-Key``
(https://docs.stripe.com/api/idempotent_requests): the status and body of a request that began
executing are saved under its key, errors and ``500`` included, and replayed to every later
request with the key and the same parameters, with the header ``Idempotent-Replayed: true``;
other parameters answer ``400 idempotency_error``. Every answer carries ``Date``, Stripe's clock to
the second (``time.time()``, the clock tests stamp events' ``created`` by). A key still executing answers 409
``idempotency_key_in_use`` to any other request with it, and saves nothing; nor does a request
refused before it executes (``fail_with``, ``refuse_next``: a validation failure, an outage in
front of the API).

To add a resource, write functions ``(state, request, **path_params) -> (status, body)`` and
register them with ``fake.route(method, "/v1/things/{id}")``, as ``register_customers`` does.
Switches: ``fail_with(500)``, ``fail_executing(path)``, ``hang(seconds)``, ``gate(path_prefix, parties)``, ``hold(path)``,
``refuse_next(method, path, error)``, ``recover()``. Counters: ``requests``,
``calls(method, path)``, ``state.counts``.
"""
from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from devtools.servers import Held, write_body


class StripeError(Exception):
    def __init__(self, status: int, type: str, message: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        # Stripe links every error code to its page.
        doc_url = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}" if code else None
        self.status = status
        self.fields = {"type": type, "message": message, "code": code, "param": param, "doc_url": doc_url}

    def body(self) -> dict:
        return {"error": {k: v for k, v in self.fields.items() if v is not None}}


def decode_form(text: str) -> dict:
    """Stripe's bracket notation to nested dicts and lists."""
    root: dict = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        names = [key.split("[", 1)[0]] + re.findall(r"\[([^\]]*)\]", key)
        node = root
        for name in names[:-1]:
            node = node.setdefault(name, {})
        if names[-1] == "":
            node.setdefault("", []).append(value)
        else:
            node[names[-1]] = value
    return _listify(root)


def _listify(node):
    if not isinstance(node, dict):
        return node
    if set(node) == {""}:
        return node[""]
    if node and all(key.isdigit() for key in node):
        return [_listify(node[key]) for key in sorted(node, key=int)]
    return {key: _listify(value) for key, value in node.items()}


@dataclass
class Request:
    method: str
    path: str
    params: dict
    headers: dict
    status: int | None = None  # Stripe's answer, once given
    replayed: str | None = None  # its Idempotent-Replayed header
    at: float = field(default_factory=time.monotonic)  # when it arrived


class StripeState:
    """Stripe's objects by kind (``"customer"`` -> id -> object) and counters of what happened."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, dict]] = defaultdict(dict)
        self.counts: Counter = Counter()
        #: Stripe's search shows new objects within a minute, not at once (https://docs.stripe.com/search#data-freshness).
        self.search_lag = 0.0

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{uuid.uuid4().hex[:14]}"

    def add(self, kind: str, obj: dict) -> dict:
        self.objects[kind][obj["id"]] = obj
        self.counts[f"{kind}.created"] += 1
        return obj

    def get(self, kind: str, object_id: str) -> dict:
        if object_id not in self.objects[kind]:
            raise StripeError(404, "invalid_request_error", f"No such {kind}: '{object_id}'", "resource_missing", "id")
        return self.objects[kind][object_id]

    def search(self, kind: str, query: str) -> list[dict]:
        """Search query language subset: ``field:'v'`` and ``metadata['k']:'v'`` clauses joined by AND."""
        clauses = []
        for clause in re.split(r"\s+AND\s+", query.strip()):
            match = re.fullmatch(r"(\w+)(?:\['([^']+)'\])?:'((?:[^'\\]|\\.)*)'", clause)
            if not match:
                raise StripeError(400, "invalid_request_error", f"Unsupported search query: {query}", param="query")
            clauses.append((match[1], match[2], re.sub(r"\\(.)", r"\1", match[3])))
        indexed_before = time.time() - self.search_lag
        found = [obj for obj in self.objects[kind].values() if obj.get("created", 0) <= indexed_before
                 and all(_field(obj, name, key) == value for name, key, value in clauses)]
        return sorted(found, key=lambda obj: obj.get("created", 0), reverse=True)


def _field(obj: dict, name: str, key: str | None):
    value = obj.get(name)
    return (value or {}).get(key) if key else value


def paged(request: Request, data: list[dict], url: str) -> tuple[int, dict]:
    """A page of ``data``: ``limit`` objects after the id ``starting_after``
    (https://docs.stripe.com/api/pagination)."""
    after = request.params.get("starting_after")
    if after is not None:
        data = data[[item["id"] for item in data].index(after) + 1:]
    limit = int(request.params.get("limit", 10))
    return 200, {"object": "list", "data": data[:limit], "has_more": len(data) > limit, "url": url}


def _created_within(obj: dict, bounds) -> bool:
    """The ``created`` filter of list endpoints: a timestamp, or ``gt``/``gte``/``lt``/``lte``."""
    if bounds is None:
        return True
    if not isinstance(bounds, dict):
        return obj["created"] == int(bounds)
    tests = {"gt": int.__gt__, "gte": int.__ge__, "lt": int.__lt__, "lte": int.__le__}
    return all(tests[name](obj["created"], int(value)) for name, value in bounds.items())


def register_customers(fake: "FakeStripe") -> None:
    """https://docs.stripe.com/api/customers: create, list, search, retrieve, update."""

    @fake.route("POST", "/v1/customers")
    def create(state, request):
        params = request.params
        return 200, state.add("customer", {
            "id": state.new_id("cus"), "object": "customer", "address": None, "balance": 0,
            "created": int(time.time()), "currency": None, "default_source": None, "delinquent": False,
            "description": params.get("description"), "email": params.get("email"), "invoice_prefix": None,
            "livemode": False, "metadata": dict(params.get("metadata") or {}), "name": params.get("name"),
            "phone": params.get("phone"), "preferred_locales": [], "shipping": None, "tax_exempt": "none",
            "test_clock": None})

    @fake.route("GET", "/v1/customers")
    def list_all(state, request):
        """Newest first, and current: unlike search, a list shows an object as soon as it exists
        (https://docs.stripe.com/search#data-freshness)."""
        email = request.params.get("email")
        found = [customer for customer in state.objects["customer"].values()
                 if _created_within(customer, request.params.get("created"))
                 and (email is None or customer.get("email") == email)]
        found.sort(key=lambda customer: customer["created"], reverse=True)
        return paged(request, found, "/v1/customers")

    @fake.route("GET", "/v1/customers/search")
    def search(state, request):
        if "query" not in request.params:
            raise StripeError(400, "invalid_request_error", "Missing required param: query.", "parameter_missing", "query")
        data = state.search("customer", request.params["query"])[: int(request.params.get("limit", 10))]
        return 200, {"object": "search_result", "url": "/v1/customers/search", "has_more": False,
                     "next_page": None, "data": data}

    @fake.route("GET", "/v1/customers/{id}")
    def retrieve(state, request, id):
        return 200, state.get("customer", id)

    @fake.route("POST", "/v1/customers/{id}")
    def update(state, request, id):
        customer = state.get("customer", id)
        for name, value in request.params.items():
            if name == "metadata":
                customer["metadata"].update(value)
                customer["metadata"] = {k: v for k, v in customer["metadata"].items() if v != ""}
            else:
                customer[name] = value
        return 200, customer


class FakeStripe:
    """``FakeStripe(api_key).start()``; point the client at ``url``; ``stop()`` when done."""

    def __init__(self, api_key: str = "sk_test_fake_4242") -> None:
        self.api_key = api_key
        self.state = StripeState()
        self.routes: list[tuple[str, re.Pattern, object]] = []
        self.requests: list[Request] = []
        self.outage_status: int | None = None
        self.delay = 0.0
        self.drip: float | None = None  # send the body a byte at a time, this many seconds apart
        self._replays: dict[str, tuple[str, int, dict]] = {}
        self._executing: set[str] = set()  # idempotency keys of requests not answered yet
        self.keys_in_use = 0  # requests answered 409 idempotency_key_in_use
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._gate: tuple[str, threading.Barrier] | None = None
        self.gates_opened = 0  # how many gates every party passed together
        self._held: dict[str, tuple[Held, str | None]] = {}
        self._refusals: dict[tuple[str, str], StripeError] = {}
        self._failures: dict[str, tuple[StripeError, bool]] = {}
        self._server: ThreadingHTTPServer | None = None
        register_customers(self)

    def route(self, method: str, pattern: str):
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")

        def register(function):
            self.routes.append((method, regex, function))
            return function
        return register

    # Switches and counters for tests.
    def fail_with(self, status: int = 500) -> None:
        self.outage_status = status

    def hang(self, seconds: float) -> None:
        self.delay = seconds

    def gate(self, path_prefix: str, parties: int, timeout: float = 3.0, exact: bool = False) -> None:
        """Hold the next ``parties`` GETs of ``path_prefix`` (``exact``: of that path alone) until
        all of them have arrived, then answer them together: concurrent readers all read before
        any writes back."""
        self._gate = (path_prefix, threading.Barrier(parties, timeout=timeout), exact)

    def _pass_gate(self, request: Request) -> None:
        gate = self._gate
        if gate is None or request.method != "GET" or not request.path.startswith(gate[0]):
            return
        prefix, barrier, exact = gate
        if exact and request.path != prefix:
            return
        try:
            if barrier.wait() == 0:
                self._gate, self.gates_opened = None, self.gates_opened + 1  # one round only
        except threading.BrokenBarrierError:
            pass

    def hold(self, path: str, method: str | None = None) -> Held:
        """Answer the next GET of ``path`` as the object is when it arrives, but send the
        answer only on ``release()``: an answer slow to come back. A POST of ``path`` is
        executed only on ``release()``: until then its idempotency key is in use. ``method``:
        hold the next request of that method alone."""
        held = Held()
        self._held[path] = (held, method)
        return held

    def trickle(self, seconds_per_byte: float) -> None:
        """Answer, but slowly: each byte alone, so no socket read ever times out."""
        self.drip = seconds_per_byte

    def search_lag(self, seconds: float) -> None:
        self.state.search_lag = seconds

    def release_after_key_in_use(self, held: Held, timeout: float = 5.0) -> None:
        """Release ``held`` once Stripe has answered another request 409 because its key
        was in use: a rival request met the held one before it ended."""
        def wait() -> None:
            deadline = time.monotonic() + timeout
            while not self.keys_in_use and time.monotonic() < deadline:
                time.sleep(0.01)
            held.release()
        threading.Thread(target=wait, daemon=True).start()

    def fail_executing(self, path: str, status: int = 500, creates: bool = False) -> None:
        """The next POST of ``path`` begins executing, then fails with ``status``: Stripe saves
        that answer under the request's idempotency key and replays it for as long as it keeps
        the key. ``creates``: the object is made all the same (a 500's outcome is unknown)."""
        self._failures[path] = (StripeError(status, "api_error", "An unknown error occurred."), creates)

    def refuse_next(self, method: str, path: str, error: StripeError) -> None:
        """Answer the next ``method path`` with ``error`` instead of executing it."""
        self._refusals[(method, path)] = error

    def recover(self) -> None:
        self.outage_status, self.delay, self._gate, self.gates_opened = None, 0.0, None, 0
        self._refusals.clear()
        self._failures.clear()
        self.keys_in_use = 0

    def calls(self, method: str, path: str) -> int:
        return sum(1 for request in self.requests if (request.method, request.path) == (method, path))

    @property
    def customers(self) -> list[dict]:
        return list(self.state.objects["customer"].values())

    def add_customer(self, **fields) -> dict:
        """A customer made out of band (the dashboard, another system), without an HTTP call."""
        return self.handle(Request("POST", "/v1/customers", fields, {}))[1]

    # The server.
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeStripe":
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FakeStripe":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def answer(self, request: Request) -> tuple[int, dict, dict]:
        """(status, body, headers) for one HTTP request, after the switches and the key check."""
        status, body, headers = self._answer(request)
        request.status, request.replayed = status, headers.get("Idempotent-Replayed")
        return status, body, headers

    def _answer(self, request: Request) -> tuple[int, dict, dict]:
        self.requests.append(request)
        self._pass_gate(request)
        if self.delay:
            self._released.wait(self.delay)
        if self.outage_status:
            return self.outage_status, StripeError(self.outage_status, "api_error", "Simulated outage.").body(), {}
        try:
            self._authorize(request.headers.get("authorization", ""))
            if refusal := self._refusals.pop((request.method, request.path), None):
                raise refusal
            answer = self._idempotent(request)
        except StripeError as error:
            return error.status, error.body(), {}
        if request.method == "GET":
            self._hold(request)
        return answer

    def _hold(self, request: Request) -> None:
        held, method = self._held.get(request.path, (None, None))
        if held is not None and method in (None, request.method) and self._held.pop(request.path, None):
            held.reached()

    def handle(self, request: Request) -> tuple[int, dict]:
        for method, regex, function in self.routes:
            match = regex.match(request.path)
            if match and method == request.method:
                try:
                    return self._of_the_keys_mode(function(self.state, request, **match.groupdict()))
                except StripeError as error:
                    return error.status, error.body()
        message = f"Unrecognized request URL ({request.method}: {request.path})."
        return 404, StripeError(404, "invalid_request_error", message).body()

    def _of_the_keys_mode(self, answer: tuple[int, dict]) -> tuple[int, dict]:
        """An object of the other mode than the key's is not there for it: each mode has its
        own keys and objects (https://docs.stripe.com/keys), and Stripe answers 404 with a hint."""
        status, body = answer
        livemode = self.api_key.startswith(("sk_live_", "rk_live_"))
        if status != 200 or body.get("object") in (None, "list", "search_result") or body.get("livemode", livemode) == livemode:
            return answer
        modes = {True: "live", False: "test"}
        raise StripeError(404, "invalid_request_error",
                          f"No such {body['object']}: '{body.get('id')}'; a similar object exists in "
                          f"{modes[not livemode]} mode, but a {modes[livemode]} mode key was used to make this request.",
                          "resource_missing", "id")

    def _execute(self, request: Request) -> tuple[int, dict]:
        failure = self._failures.pop(request.path, None) if request.method == "POST" else None
        if failure is None:
            return self.handle(request)
        error, creates = failure
        if creates:
            self.handle(request)
        return error.status, error.body()

    def _authorize(self, header: str) -> None:
        if not header.startswith("Bearer "):
            raise StripeError(401, "invalid_request_error", "You did not provide an API key.")
        if header.removeprefix("Bearer ") != self.api_key:
            masked = header.removeprefix("Bearer ")[:8] + "****" + header[-4:]
            raise StripeError(401, "invalid_request_error", f"Invalid API Key provided: {masked}")

    def _idempotent(self, request: Request) -> tuple[int, dict, dict]:
        """Same key and parameters replay the first answer; same key, other parameters: 400;
        a key whose first request is still executing: 409 with the code, type and message
        Stripe answers (https://docs.stripe.com/error-codes#idempotency-key-in-use)."""
        key = request.headers.get("idempotency-key")
        if request.method != "POST" or not key:
            with self._lock:
                return (*self._execute(request), {})
        fingerprint = json.dumps([request.path, request.params], sort_keys=True)
        with self._lock:
            if key in self._executing:
                self.keys_in_use += 1
                raise StripeError(409, "invalid_request_error",
                                  "There is currently another in-progress request using this Idempotent Key (that "
                                  "probably means you submitted twice, and the other request is still going "
                                  f"through): {key}. Please try again later.", "idempotency_key_in_use")
            if key in self._replays:
                first, status, body = self._replays[key]
                if first != fingerprint:
                    raise StripeError(400, "idempotency_error",
                                      "Keys for idempotent requests can only be used with the same parameters they "
                                      f"were first used with. Try using a key other than '{key}' if you meant to "
                                      "execute a different request.")
                return status, body, {"Idempotent-Replayed": "true"}
            self._executing.add(key)
        try:
            self._hold(request)
            with self._lock:
                status, body = self._execute(request)
                self._replays[key] = (fingerprint, status, body)
        finally:
            with self._lock:
                self._executing.discard(key)
        return status, body, {}


def _handler_class(fake: FakeStripe):
    class Handler(BaseHTTPRequestHandler):
        def _serve(self):
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            params = decode_form(body if self.command == "POST" else parts.query)
            headers = {name.lower(): value for name, value in self.headers.items()}
            status, answer, extra = fake.answer(Request(self.command, parts.path, params, headers))
            data = json.dumps(answer).encode()
            try:
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", "Request-Id": f"req_{uuid.uuid4().hex[:14]}",
                                    "Content-Length": str(len(data)), **extra}.items():
                    self.send_header(name, value)
                self.end_headers()
                write_body(self.wfile, data, fake.drip)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout under test); nothing to answer

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, *args):
            pass

    return Handler
