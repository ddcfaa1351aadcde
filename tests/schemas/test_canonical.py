"""Canonical JSON: byte equality with the reference rfc8785 package, and the value space."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.canonical import (
    MAX_DEPTH,
    MAX_SAFE_INTEGER,
    canonical_bytes,
    find_nul,
    parse_canonical,
    parse_json,
)
from schemas.errors import CanonicalError, ErrorCode

# Text that stresses escaping and ordering: control characters, quotes, backslashes,
# non-ASCII (CJK), U+2028/9, the private-use area above U+E000 and astral characters.
_ALPHABET = st.one_of(
    st.characters(min_codepoint=0, max_codepoint=0x7F),
    st.characters(min_codepoint=0x80, max_codepoint=0x7FF),
    st.sampled_from(list('中文民意代表联络站\u2028\u2029\ue000\uffff\U0001f600\U00020000"\\/\x7f')),
    st.characters(min_codepoint=0xE000, max_codepoint=0xFFFF, exclude_categories=["Cs"]),
    st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF, exclude_categories=["Cs"]),
)
_TEXT = st.text(alphabet=_ALPHABET, max_size=12)
_INTS = st.one_of(
    st.integers(min_value=-1000, max_value=1000),
    st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER),
    st.sampled_from([MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 0, -1, 2**31, 2**32 + 1]),
)
_VALUES = st.recursive(
    st.none() | st.booleans() | _INTS | _TEXT,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_TEXT, inner, max_size=6),
    max_leaves=30,
)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_VALUES)
def test_bytes_equal_reference_jcs(value: Any) -> None:
    assert canonical_bytes(value) == rfc8785.dumps(value)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(_TEXT, _INTS, min_size=2, max_size=8))
def test_key_order_is_utf16(value: dict[str, int]) -> None:
    assert canonical_bytes(value) == rfc8785.dumps(value)


def test_astral_key_sorts_before_private_use_area() -> None:
    # UTF-16 puts the surrogate pair (D83D …) before U+E000; code-point order would not.
    assert canonical_bytes({"\ue000": 1, "\U0001f600": 2}) == '{"\U0001f600":2,"\ue000":1}'.encode()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 1, "a": [True, None, "x"]}, b'{"a":[true,null,"x"],"b":1}'),
        ("\x00\x08\t\n\x0c\r\x1f", b'"\\u0000\\b\\t\\n\\f\\r\\u001f"'),
        ("民意\u2028/", '"民意\u2028/"'.encode()),
        ({"z": {"y": {}, "x": []}}, b'{"z":{"x":[],"y":{}}}'),
        (-MAX_SAFE_INTEGER, b"-9007199254740991"),
    ],
)
def test_known_vectors(value: Any, expected: bytes) -> None:
    assert canonical_bytes(value) == expected


@pytest.mark.parametrize("value", [1.5, 0.0, {"a": [1e3]}, float("nan")])
def test_floats_are_refused(value: Any) -> None:
    with pytest.raises(CanonicalError) as info:
        canonical_bytes(value)
    assert info.value.code is ErrorCode.FLOAT_NOT_ALLOWED


@pytest.mark.parametrize("value", [MAX_SAFE_INTEGER + 1, -(2**63), {"n": 2**60}])
def test_large_integers_are_refused(value: Any) -> None:
    with pytest.raises(CanonicalError) as info:
        canonical_bytes(value)
    assert info.value.code is ErrorCode.INTEGER_OUT_OF_RANGE


@pytest.mark.parametrize("value", ["\ud800", {"\udfff": 1}, (1, 2), {1: "a"}, b"bytes"])
def test_values_outside_json_are_refused(value: Any) -> None:
    with pytest.raises(CanonicalError) as info:
        canonical_bytes(value)
    assert info.value.code is ErrorCode.NOT_CANONICAL


def test_parse_canonical_refuses_whitespace_order_and_duplicates() -> None:
    assert parse_canonical(b'{"a":1,"b":2}') == {"a": 1, "b": 2}
    for raw in (b'{"b":2,"a":1}', b'{"a": 1}', b'{"a":1,"a":1}', b'"\\u00e9"'):
        with pytest.raises(CanonicalError) as info:
            parse_canonical(raw)
        assert info.value.code is ErrorCode.NOT_CANONICAL


def test_parse_json_refuses_floats_and_garbage() -> None:
    with pytest.raises(CanonicalError) as info:
        parse_json(b'{"rating":4.5}')
    assert info.value.code is ErrorCode.FLOAT_NOT_ALLOWED
    with pytest.raises(CanonicalError) as info:
        parse_json(b"{nope")
    assert info.value.code is ErrorCode.MALFORMED


def test_deep_nesting_is_still_refused() -> None:
    deep: Any = 1
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(CanonicalError):
        parse_canonical(orjson.dumps(deep))


def test_find_nul_names_where_u0000_is() -> None:
    assert find_nul({"a": ["x", {"b/c": "y\x00"}]}) == "/a/1/b~1c"
    assert find_nul({"k\x00": 1}) == "/k\\u0000"
    assert find_nul("\x00") == ""
    assert find_nul({"a": "\\u0000", "b": [1, None, True]}) is None
    assert canonical_bytes({"a": "\x00"}) == b'{"a":"\\u0000"}'  # how entries carry it
