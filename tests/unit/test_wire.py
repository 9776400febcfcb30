"""The one reader of JSON and timestamps from outside (gateway/providers/wire.py)."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import Malformed
from gateway.providers import wire


def deep(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


@pytest.mark.parametrize("body, why", [
    (b"\xff{}", "invalid UTF-8"),
    (b"{", "invalid JSON"),
    (b"[]", "not an object"),
    (b'"text"', "not an object"),
    (b'{"a": NaN}', "NaN"),
    (b'{"a": -Infinity}', "Infinity"),
    (b'{"a": 1e400}', "a float that overflows"),
    (b'{"a": ' + b"1" * 5000 + b"}", "an integer past Python's digit limit"),
    (b'{"a":' + b"[" * 1000 + b"]" * 1000 + b"}", "json's RecursionError"),
    (b"[" * 100_000, "unbalanced, deep"),
    (deep(65), "one level past the limit (64)"),
])
def test_refused_alike_as_malformed(body, why):
    with pytest.raises(Malformed) as refused:
        wire.parse_object(body, "the body", code="malformed_json")
    assert refused.value.code == "malformed_json" and refused.value.status == 400, why


def test_nesting_up_to_the_limit_and_brackets_inside_strings_are_accepted():
    # 64 levels exactly (the limit, not one short of it: a refusal off by one passed here),
    # with brackets enough elsewhere that the depth is scanned, not taken as too few to count.
    assert wire.parse_object(deep(64))["a"]
    assert wire.parse_object(b'{"pad": [' + b"[], " * 70 + b'[]], "a": ' + deep(63) + b"}")["a"]
    assert wire.parse_object(b'{"a": "' + b"[{" * 5000 + b'\\"]"}') == {"a": "[{" * 5000 + '"]'}


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ax', max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\', max_size=3),
                                                                             inner, max_size=3), max_leaves=30))
def test_the_depth_scan_agrees_with_the_document(value):
    def depth(v):
        inner = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        return 0 if inner is None else 1 + max(map(depth, inner), default=0)

    padded = {"pad": [[]] * (wire.MAX_DEPTH + 1), "value": value}  # enough brackets to be scanned
    assert wire.depth(json.dumps(padded).encode()) == depth(padded)


@pytest.mark.parametrize("body", [b'"' + b'\\"' * 300_000, b'"' * 300_000, b"[[]]" * 250_000, b'{"a":"' + b"\\" * 999_999])
def test_the_depth_scan_is_linear_on_a_megabyte(body):
    started = time.perf_counter()
    wire.depth(body)
    assert time.perf_counter() - started < 0.5


def test_milliseconds_become_aware_datetimes_to_the_millisecond():
    assert wire.from_millis(1_700_000_000_123) == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=timezone.utc)
    assert wire.from_seconds(0) == wire.EARLIEST
    assert wire.from_millis(int(wire.LATEST.timestamp()) * 1000 - 1) < wire.LATEST


@pytest.mark.parametrize("value", [-1, int(wire.LATEST.timestamp()) * 1000, 10**20, -10**20, 2**63, True, 1.5, "1", None])
def test_milliseconds_out_of_range_or_not_whole_are_malformed(value):
    with pytest.raises(Malformed):
        wire.from_millis(value, "expiresDate", code="apple_malformed")


@pytest.mark.parametrize("value", [-1, int(wire.LATEST.timestamp()), 10**12, 2**63, False, 1.0])
def test_seconds_out_of_range_or_not_whole_are_malformed(value):
    with pytest.raises(Malformed):
        wire.from_seconds(value)


def test_loads_raises_value_error_for_token_callers():
    with pytest.raises(ValueError):
        wire.loads(b"[" * 2000 + b"]" * 2000)
