"""Entries, chains, signed heads and segment framing, with fixed keys."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.errors import ErrorCode, FramingError, GuantongError
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
