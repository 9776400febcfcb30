"""What the fuzz tests share: how many examples, hostile values, raw signed tokens, and the
two properties every endpoint keeps (never a 500; a refused input stores nothing).

``FUZZ_EXAMPLES`` sets the examples per test: a few hundred in ``make test``, thousands in
``make fuzz``. Signatures are real: tokens are signed with keys minted at test time.
"""
from __future__ import annotations

import base64
import json
import os

import jwt
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st


EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "250"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])


# Values ----------------------------------------------------------------------------------

def nested(depth: int, leaf: bytes = b"1") -> bytes:
    """JSON nested ``depth`` levels deep, arrays and objects alternating."""
    opens = b"".join(b"[" if i % 2 else b'{"k":' for i in range(depth))
    closes = b"".join(b"]" if i % 2 else b"}" for i in reversed(range(depth)))
    return opens + leaf + closes


#: Depths around the gateway's limit (64) and past json's recursion limit (~1000).
depths = st.sampled_from([1, 20, 63, 64, 65, 100, 500, 999, 1000, 1001, 3000, 10000])

# Any text, NUL and lone surrogates included (PostgreSQL can store neither).
text = st.text(max_size=20)
long_text = st.integers(min_value=0, max_value=600).map(lambda n: "x" * n) | st.text(min_size=100, max_size=400)
#: Integers at and past the edges of datetime (seconds and milliseconds), BIGINT and float.
time_edges = st.sampled_from([-2**63 - 1, -2**63, -1, 0, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**20, 10**40,
                              253402300799, 253402300800, 253370764799999, 253370764800000, 253402300799999,
                              253402300800000, -62135596800000, -62135596801000])
huge_ints = time_edges | st.integers()
json_scalars = (st.none() | st.booleans() | huge_ints | st.floats(allow_nan=False, allow_infinity=False)
                | text | long_text)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
                           max_leaves=12)
#: Strings at and past each column's length (gateway/store/tables.py: 32, 64, 128, 255).
column_edges = st.sampled_from([31, 32, 33, 63, 64, 65, 127, 128, 129, 254, 255, 256, 1000]).map(lambda n: "x" * n)
#: A value for any field of a delivery: wrong types, edges of every range, long strings.
hostile = st.one_of(column_edges, huge_ints, json_values, depths.map(lambda d: json.loads(nested(min(d, 60)))))

# Raw JSON texts Python's json reads but JSON forbids, or that no column can hold.
raw_hostile = st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1" * 5000,
                               b'"\\ud800"', b'"\\u0000"']) | depths.map(nested)


def splice(document: dict, path: tuple[str, ...], raw: bytes) -> bytes:
    """``document`` as JSON with the value at ``path`` replaced by the raw JSON text ``raw``."""
    marker = "\u2063fuzz\u2063"
    target = document
    for name in path[:-1]:
        target = target[name]
    target[path[-1]] = marker
    return json.dumps(document).encode().replace(json.dumps(marker).encode(), raw)


# Tokens ----------------------------------------------------------------------------------

def b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def raw_jws(header: bytes, payload: bytes, key, algorithm: str) -> str:
    """A compact JWS over exactly these header and payload bytes, really signed with ``key``
    (PyJWT's encoder would re-serialize them, and cannot write deep or non-standard JSON)."""
    signing_input = b64(header) + b"." + b64(payload)
    signature = jwt.get_algorithm_by_name(algorithm).sign(signing_input, key)
    return (signing_input + b"." + b64(signature)).decode()


def raw_jwt(header: dict | bytes, payload: dict | bytes, key, algorithm: str) -> str:
    header = header if isinstance(header, bytes) else json.dumps({"alg": algorithm, "typ": "JWT", **header}).encode()
    payload = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return raw_jws(header, payload, key, algorithm)


printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=200)
#: Structured garbage in the shape of a token: segments of base64url, deep or hostile JSON.
token_garbage = st.one_of(
    printable,
    st.lists(st.binary(max_size=64).map(lambda b: b64(b).decode()), min_size=1, max_size=5).map(".".join),
    st.tuples(depths.map(nested), raw_hostile).map(lambda p: (b64(p[0]) + b"." + b64(p[1]) + b".c2ln").decode()),
    depths.map(lambda d: (b64(b'{"alg":"RS256","kid":' + nested(d) + b"}") + b".e30.c2ln").decode()),
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# Properties ------------------------------------------------------------------------------

_STATE = {
    "events": "SELECT count(*), max(id), sum(attempts), max(status) FROM events",
    "subscriptions": "SELECT count(*), max(updated_at) FROM subscriptions",
    "identities": "SELECT count(*), max(created_at) FROM identities",
    "entitlements": "SELECT count(*), max(updated_at) FROM entitlements",
}


def state(app) -> dict[str, tuple]:
    """A fingerprint of everything a request may write: it moves with any insert or update."""
    store = app.extensions["gateway"].store
    store = getattr(store, "store", store)
    with store.engine.connect() as connection:
        return {name: tuple(connection.execute(sa.text(query)).one()) for name, query in _STATE.items()}


def oversized(app) -> list[str]:
    """Stored strings longer than their column: SQLite keeps them, PostgreSQL would refuse
    the delivery, so the two databases would answer differently. The lengths are read from
    the database as the migrations made it, not from the gateway's table definitions, so a
    definition that drifted from the schema cannot hide an overflow."""
    store = app.extensions["gateway"].store
    store = getattr(store, "store", store)
    found = []
    with store.engine.connect() as connection:
        inspector = sa.inspect(connection)
        for table in inspector.get_table_names():
            for column in inspector.get_columns(table):
                length = getattr(column["type"], "length", None)
                if length:
                    query = sa.select(sa.func.count()).select_from(sa.table(table)).where(
                        sa.func.length(sa.column(column["name"])) > length)
                    if connection.execute(query).scalar():
                        found.append(f"{table}.{column['name']} > {length}")
    return found


def check_answer(app, answer, before: dict, allowed: tuple[int, ...]) -> None:
    """Never a 500; a known answer; a refusal (4xx) left no trace; nothing stored that one
    of the two databases would refuse (no ``store_refused`` either)."""
    body = answer.get_data(as_text=True)
    assert answer.status_code != 500, body
    assert answer.status_code in allowed, (answer.status_code, body[:500])
    if answer.status_code >= 400 and answer.request.method != "HEAD":  # a HEAD answer has no body
        assert answer.is_json and "error" in answer.get_json(), body[:500]
        assert answer.get_json()["error"] != "store_refused", body[:500]
    if 400 <= answer.status_code < 500:
        assert state(app) == before, body[:500]
    else:
        assert oversized(app) == [], body[:500]
