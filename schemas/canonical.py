"""Canonical JSON: RFC 8785 (JCS) on the protocol's value space (PROTOCOL §2).

The value space is JSON without non-integer numbers and without integers outside
±(2**53 − 1). On it, JCS is "sorted keys, no whitespace, UTF-8, minimal escaping", which
orjson with ``OPT_SORT_KEYS`` produces byte for byte, with one exception: JCS sorts member
names by UTF-16 code units, orjson by code points. The two orders differ only when a key
holds a character above U+FFFF (a surrogate pair in UTF-16) and is compared with one in
U+E000–U+FFFF. So the walk that refuses floats and out-of-range integers also notes
whether any key leaves the BMP; only then do we pre-sort by UTF-16 ourselves.

``tests/schemas/test_canonical.py`` proves byte equality with the reference ``rfc8785``
package on thousands of generated values.
"""

from __future__ import annotations

from typing import Any

import orjson

from schemas.errors import CanonicalError, ErrorCode

__all__ = [
    "MAX_SAFE_INTEGER",
    "canonical_bytes",
    "find_nul",
    "follow_pointer",
    "is_plain_canonical",
    "parse_canonical",
    "parse_json",
    "pointer_token",
    "pointer_tokens",
]

MAX_SAFE_INTEGER = 2**53 - 1
MAX_DEPTH = 64


def canonical_bytes(value: Any) -> bytes:
    """The canonical bytes of ``value``; raises :class:`CanonicalError` outside the space."""
    if _check(value, 0):
        value = _utf16_sorted(value)
        option = 0
    else:
        option = orjson.OPT_SORT_KEYS
    try:
        return orjson.dumps(value, option=option)
    except orjson.JSONEncodeError as exc:  # lone surrogates
        raise CanonicalError(
            ErrorCode.NOT_CANONICAL, f"value has no canonical form: {exc}"
        ) from exc


def parse_json(data: bytes | str) -> Any:
    """Parse JSON text strictly into the protocol's value space."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CanonicalError(ErrorCode.MALFORMED, f"malformed JSON: {exc}") from exc
    _check(value, 0)
    return value


def parse_canonical(data: bytes) -> Any:
    """Parse ``data`` and require that it is already canonical (so its hash is stable).

    One walk of the value (the hot path of every hub) checks the value space and says
    whether UTF-16 key order is needed; the re-encoding must then give back ``data``.
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CanonicalError(ErrorCode.MALFORMED, f"malformed JSON: {exc}") from exc
    try:
        if _check(value, 0):
            again = orjson.dumps(_utf16_sorted(value))
        else:
            again = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:  # defensive: orjson.loads refuses lone surrogates
        raise CanonicalError(ErrorCode.NOT_CANONICAL, f"no canonical form: {exc}") from exc
    if again != data:
        raise CanonicalError(
            ErrorCode.NOT_CANONICAL,
            "JSON is not in canonical form (RFC 8785: sorted keys, no whitespace, "
            "minimal escaping, no duplicate keys)",
        )
    return value


def is_plain_canonical(value: dict[str, Any], data: bytes) -> bool:
    """True if ``data`` is the canonical form of ``value`` (an object just parsed from it)
    and every member name of its objects is ASCII; False means "take the full path", not
    "refused".

    The fast lane of :func:`parse_canonical` for the hub's hot path: with ASCII names
    orjson's key order is JCS's, so one re-encoding decides, and the value space is
    checked without a call per scalar.
    """
    if not _plain(value, 0):
        return False
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS) == data


def _plain(value: dict[str, Any], depth: int) -> bool:
    """:func:`_check` for an object, inline for scalars; False instead of raising, and for
    a member name that is not ASCII (whose JCS order may differ from orjson's)."""
    if depth >= MAX_DEPTH:
        return False
    for key, item in value.items():
        if not key.isascii():
            return False
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                continue
            return False
        if kind is dict:
            if _plain(item, depth + 1):
                continue
            return False
        if kind is list:
            try:
                if _check(item, depth + 1):
                    return False  # a wide member name in an object inside the list
            except CanonicalError:
                return False
            continue
        return False
    return True


def pointer_token(key: object) -> str:
    """``key`` as one token of a JSON pointer (RFC 6901: ``~`` as ``~0``, ``/`` as ``~1``)."""
    return str(key).replace("~", "~0").replace("/", "~1")


def pointer_tokens(pointer: str) -> list[str]:
    """The tokens of a JSON pointer, ``~1`` and ``~0`` undone: :func:`pointer_token`'s
    inverse (``""`` is the whole document: no token)."""
    return [raw.replace("~1", "/").replace("~0", "~") for raw in pointer.split("/")[1:]]


def follow_pointer(node: Any, pointer: str) -> tuple[Any, list[str]] | None:
    """What a JSON pointer names in ``node``, with its tokens; None where it names
    nothing (a missing member, an index that is no index or out of range)."""
    tokens = pointer_tokens(pointer)
    for token in tokens:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node, tokens


def find_nul(value: Any) -> str | None:
    """The JSON pointer of the first string or member name in ``value`` holding U+0000,
    None if there is none (a member name holding it shows ``\\u0000`` in the pointer).
    JSON allows U+0000, escaped as ``\\u0000``; new records may not hold it."""
    if type(value) is str:
        return "" if "\x00" in value else None
    items: Any = ()
    if type(value) is dict:
        items = value.items()
    elif type(value) is list:
        items = enumerate(value)
    for key, item in items:
        step = pointer_token(key)
        if "\x00" in step:
            return "/" + step.replace("\x00", "\\u0000")
        found = find_nul(item)
        if found is not None:
            return "/" + step + found
    return None


def _check(value: Any, depth: int) -> bool:
    """Validate the value space; return True when some key needs UTF-16 ordering."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return False
    if kind is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return False
        raise CanonicalError(
            ErrorCode.INTEGER_OUT_OF_RANGE,
            f"integer {value} is outside ±(2^53−1); large numbers travel as strings",
        )
    if depth >= MAX_DEPTH:
        raise CanonicalError(ErrorCode.NOT_CANONICAL, f"nesting deeper than {MAX_DEPTH} levels")
    if kind is dict:
        wide = False
        for key, item in value.items():
            if type(key) is not str:
                raise CanonicalError(ErrorCode.NOT_CANONICAL, f"object key {key!r} is not a string")
            if not key.isascii() and any(ord(ch) > 0xFFFF for ch in key):
                wide = True
            if _check(item, depth + 1):
                wide = True
        return wide
    if kind is list:
        wide = False
        for item in value:
            if _check(item, depth + 1):
                wide = True
        return wide
    if kind is float:
        raise CanonicalError(
            ErrorCode.FLOAT_NOT_ALLOWED,
            f"number {value!r} is not an integer; decimals travel as strings",
        )
    raise CanonicalError(ErrorCode.NOT_CANONICAL, f"{kind.__name__} is not a JSON value")


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _utf16_sorted(value: Any) -> Any:
    if type(value) is dict:
        return {k: _utf16_sorted(value[k]) for k in sorted(value, key=_utf16_key)}
    if type(value) is list:
        return [_utf16_sorted(item) for item in value]
    return value
