"""Entries, chains, signed heads and segment framing, with fixed keys."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.canonical import parse_canonical
from schemas.errors import CanonicalError, ErrorCode, FramingError, GuantongError
from schemas.hashing import ZERO_HASH, sha256_hex
from schemas.log import MAX_ENTRY_BYTES, Entry, SignedHead, build_entry, sign_head
from schemas.segments import decode_segments, encode_segment, split_lines
from schemas.signing import Signer

SIGNER = Signer.from_seed(bytes(range(32)))
T = "2026-11-21T08:00:00.000Z"
RID = "01936d2e-8f00-7000-8000-000000000001"


def _chain(n: int, origin: str = "js.wx.jy.s1") -> list[tuple[bytes, str]]:
    out, prev = [], ZERO_HASH
    for seq in range(1, n + 1):
        _, raw, digest = build_entry(
            origin=origin,
            seq=seq,
            prev=prev,
            time=T,
            contract="opinion",
            version="1.0",
            record_id=RID,
            op="put",
            data={"n": seq, "text": "民意"},
        )
        out.append((raw, digest))
        prev = digest
    return out


def test_entry_bytes_known_answer() -> None:
    entry, raw, digest = build_entry(
        origin="js",
        seq=1,
        prev=ZERO_HASH,
        time=T,
        contract="opinion",
        version="1.0",
        record_id=RID,
        op="put",
        data={"b": 2, "a": "中"},
    )
    assert (
        raw
        == (
            '{"contract":"opinion","data":{"a":"中","b":2},"id":"' + RID + '","op":"put",'
            '"origin":"js","prev":"' + ZERO_HASH + '","seq":1,"time":"' + T + '","version":"1.0"}'
        ).encode()
    )
    assert digest == sha256_hex(raw)
    assert Entry.parse(raw) == entry


def test_chain_links_each_entry_to_the_previous_hash() -> None:
    chain = _chain(3)
    for (raw, _), (_, prev_digest) in zip(chain[1:], chain[:-1], strict=True):
        assert Entry.parse(raw).prev == prev_digest


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"op": "put", "data": None}, ErrorCode.MALFORMED),
        ({"op": "del", "data": {"a": 1}}, ErrorCode.MALFORMED),
        ({"record_id": "NOT-A-UUID"}, ErrorCode.MALFORMED),
        ({"origin": "Bad"}, ErrorCode.MALFORMED),
        ({"prev": "1" * 64}, ErrorCode.MALFORMED),  # seq 1 must chain from zeros
        ({"version": "1"}, ErrorCode.MALFORMED),
        ({"data": {"x": "y" * MAX_ENTRY_BYTES}}, ErrorCode.TOO_LARGE),
        ({"data": {"rating": 4.5}}, ErrorCode.FLOAT_NOT_ALLOWED),
    ],
)
def test_build_entry_refuses_bad_fields(fields: dict[str, Any], code: ErrorCode) -> None:
    args: dict[str, Any] = {
        "origin": "js",
        "seq": 1,
        "prev": ZERO_HASH,
        "time": T,
        "contract": "opinion",
        "version": "1.0",
        "record_id": RID,
        "op": "put",
        "data": {"a": 1},
    }
    with pytest.raises(GuantongError) as info:
        build_entry(**{**args, **fields})
    assert info.value.code is code


def test_parse_refuses_non_canonical_and_extra_fields() -> None:
    raw, _ = _chain(1)[0]
    with pytest.raises(GuantongError) as info:
        Entry.parse(raw.replace(b'"op":"put"', b'"op": "put"'))
    assert info.value.code is ErrorCode.MALFORMED
    with pytest.raises(GuantongError) as info:
        Entry.parse(raw[:-1] + b',"zz":1}')
    assert info.value.code is ErrorCode.MALFORMED
    with pytest.raises(GuantongError) as info:
        Entry.parse(b"x" * (MAX_ENTRY_BYTES + 1))
    assert info.value.code is ErrorCode.TOO_LARGE


def test_a_del_entry_has_no_data_member_not_even_null() -> None:
    """PROTOCOL §3: ``del`` carries no ``data``. ``"data":null`` would give the same del a
    second byte form; both paths refuse it (found by the fast-lane property below)."""
    fields = {
        "origin": "js.wx.jy.s1",
        "seq": 1,
        "prev": ZERO_HASH,
        "time": T,
        "contract": "opinion",
        "version": "1.0",
        "id": RID,
        "op": "del",
    }
    assert Entry.parse(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).data is None
    raw = orjson.dumps({**fields, "data": None}, option=orjson.OPT_SORT_KEYS)
    with pytest.raises(GuantongError, match="a del entry carries no data") as info:
        Entry.parse(raw)
    assert info.value.code is ErrorCode.MALFORMED


def test_signed_head_verifies_and_detects_tampering() -> None:
    head = sign_head(SIGNER, origin="js", seq=3, head="a" * 64, time=T)
    assert head.verify(SIGNER.public_raw)
    assert head.key_id == SIGNER.key_id
    tampered = SignedHead.model_validate({**head.to_dict(), "seq": 4})
    assert not tampered.verify(SIGNER.public_raw)


def test_segment_round_trip_keeps_exact_bytes() -> None:
    chain = _chain(5)
    head = sign_head(SIGNER, origin="js.wx.jy.s1", seq=5, head=chain[-1][1], time=T)
    first = encode_segment(head, 1, [raw for raw, _ in chain[:5]])
    head2 = sign_head(SIGNER, origin="js.wx.jy.s2", seq=1, head="b" * 64, time=T)
    body = first + encode_segment(head2, 1, [b"{}"])
    segments = list(decode_segments(split_lines(body)))
    assert [s.origin for s in segments] == ["js.wx.jy.s1", "js.wx.jy.s2"]
    assert segments[0].entries == tuple(raw for raw, _ in chain)
    assert segments[0].head == head
    assert segments[1].line == 7


def test_truncated_segment_names_the_line() -> None:
    chain = _chain(3)
    head = sign_head(SIGNER, origin="js.wx.jy.s1", seq=3, head=chain[-1][1], time=T)
    body = encode_segment(head, 1, [raw for raw, _ in chain])
    lines = split_lines(body)[:-1]
    with pytest.raises(FramingError) as info:
        list(decode_segments(lines))
    assert info.value.code is ErrorCode.MALFORMED
    assert info.value.details["line"] == 4


@pytest.mark.parametrize(
    "header",
    [
        b"not json",
        b"[]",
        b'{"from":1}',
        b'{"from":"1","head":{}}',
        b'{"from":0,"head":HEAD}',
        b'{"from":9,"head":HEAD}',
        b'{"from":1,"head":HEAD,"x":1}',
    ],
)
def test_bad_headers_are_framing_errors(header: bytes) -> None:
    head = sign_head(SIGNER, origin="js", seq=3, head="a" * 64, time=T)
    raw = header.replace(b"HEAD", head.canonical())
    with pytest.raises(FramingError) as info:
        list(decode_segments([raw, b"{}", b"{}", b"{}"]))
    assert info.value.details["line"] == 1


def test_split_lines_allows_one_final_newline() -> None:
    assert split_lines(b"a\nb\n") == [b"a", b"b"]
    assert split_lines(b"a\nb") == [b"a", b"b"]
    assert split_lines(b"") == []


# -- the fast lane of Entry.parse agrees with the full path ------------------------------

_JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)
_FIELD_VALUES: dict[str, Any] = {
    "origin": st.sampled_from(["js.wx.jy.s1", "js", "JS.wx", "js..wx", "js.wx.jy.s1 ", 7]),
    "seq": st.one_of(st.integers(min_value=-1, max_value=3), st.just(2**53), st.just(True)),
    "prev": st.sampled_from([ZERO_HASH, "a" * 64, "A" * 64, "a" * 63, None]),
    "time": st.sampled_from(
        [T, "2026-02-30T08:00:00.000Z", "2026-11-21T08:00:00Z", "٢٠٢٦-11-21T08:00:00.000Z"]
    ),
    "contract": st.sampled_from(["opinion", "Opinion", "1x", ""]),
    "version": st.sampled_from(["1.0", "01.0", "1", "1.0.0"]),
    "id": st.sampled_from([RID, RID.upper(), RID[:-1]]),
    "op": st.sampled_from(["put", "del", "get", None]),
    "data": st.one_of(st.none(), st.dictionaries(st.text(max_size=6), _JSON, max_size=4), _JSON),
}


def _both(raw: bytes) -> tuple[Entry | None, Entry | None]:
    """(fast lane, full path) of ``raw``: None where it gives no entry."""
    from schemas.log import _parse_plain

    try:
        full: Entry | None = Entry.model_validate(parse_canonical(raw))
    except (CanonicalError, ValidationError):
        full = None
    return _parse_plain(raw), full


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fast_lane_accepts_only_what_the_full_path_accepts(data: st.DataObject) -> None:
    fields = {
        "origin": "js.wx.jy.s1",
        "seq": 2,
        "prev": "b" * 64,
        "time": T,
        "contract": "opinion",
        "version": "1.0",
        "id": RID,
        "op": "put",
        "data": {"text": "民意", "n": 1},
    }
    for name in data.draw(st.sets(st.sampled_from([*_FIELD_VALUES, "extra"]), max_size=3)):
        if name == "extra":
            fields["extra"] = 1
        elif data.draw(st.booleans()):
            fields[name] = data.draw(_FIELD_VALUES[name])
        else:
            fields.pop(name, None)
    try:
        raw = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return
    if data.draw(st.booleans()):  # also bytes that are not canonical
        raw = data.draw(
            st.sampled_from(
                [
                    raw.replace(b",", b", ", 1),
                    raw.replace(b'"', b"'", 1),
                    raw + b" ",
                    orjson.dumps(fields),
                ]
            )
        )
    fast, full = _both(raw)
    if fast is not None:
        assert full is not None, raw
        assert fast == full and fast.model_fields_set == full.model_fields_set
        assert fast.model_dump() == full.model_dump()
    elif full is not None:
        # the fast lane may pass on a valid entry only for a reason it names in its rule
        assert any(not k.isascii() for k in _keys(full.data)), raw


def _keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [k for k, v in value.items() for k in (k, *_keys(v))]
    if isinstance(value, list):
        return [k for item in value for k in _keys(item)]
    return []


def test_fast_lane_takes_ordinary_entries_and_refuses_nothing_itself() -> None:
    from schemas.log import _parse_plain

    for raw, _ in _chain(3):
        fast = _parse_plain(raw)
        assert fast is not None and fast == Entry.model_validate(parse_canonical(raw))
    _, raw, _ = build_entry(
        origin="js.wx.jy.s1",
        seq=4,
        prev="c" * 64,
        time=T,
        contract="opinion",
        version="1.0",
        record_id=RID,
        op="del",
        data=None,
    )
    fast = _parse_plain(raw)
    assert fast is not None and fast.data is None and "data" not in fast.model_fields_set
    assert _parse_plain(raw.replace(b'"op"', b'"op" ')) is None  # the full path refuses it
    with pytest.raises(GuantongError) as err:
        Entry.parse(raw.replace(b'"op"', b'"op" '))
    assert err.value.code is ErrorCode.MALFORMED
