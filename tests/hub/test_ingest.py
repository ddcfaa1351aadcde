"""Ingest, segment by segment: every error code of PROTOCOL §4 and that nothing is stored."""

from __future__ import annotations

import gzip
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from hub.api import MAX_BODY
from node.ingest import Ingestor
from node.log import Write
from node.runtime import Node
from node.tables import REJECTIONS
from schemas.canonical import canonical_bytes
from schemas.hashing import ZERO_HASH, sha256_hex
from schemas.log import SignedHead, build_entry, sign_head
from schemas.segments import Segment, encode_segment
from tests.conftest import example
from tests.federation.harness import Federation

pytestmark = pytest.mark.anyio


@pytest.fixture
def pair(fed: Federation) -> tuple[Node, Node]:
    return fed.add("js.wx.jy"), fed.add("js.wx.jy.s1")


def _segment(node: Node, after: int = 0) -> Segment:
    segment = node.log.read_segment(node.id, after)
    assert segment is not None
    return segment


def _body(*segments: Segment) -> bytes:
    return b"".join(encode_segment(s.head, s.start, s.entries) for s in segments)


def _push(hub: Node, body: bytes, caller: str | None = "js.wx.jy.s1") -> list[dict[str, Any]]:
    from node.ingest import Ingestor

    ingestor = Ingestor.of(hub)
    return [r.to_dict() for r in ingestor.push(body, caller=caller)]


def _held(hub: Node, origin: str) -> int:
    head = hub.log.head(origin)
    return head.seq if head else 0


def _reject(result: dict[str, Any]) -> str:
    assert result["status"] == "rejected", result
    code: str = result["error"]["code"]
    return code


def test_resend_is_idempotent(fed: Federation, pair: tuple[Node, Node]) -> None:
    county, station = pair
    fed.write(station.id, 5)
    body = _body(_segment(station))
    assert _push(county, body)[0] == {"origin": station.id, "held": 5, "status": "ok"}
    assert _push(county, body)[0] == {"origin": station.id, "held": 5, "status": "ok"}
    assert len(list(county.log.iter_entries(station.id))) == 5


def test_gap_reports_expected(fed: Federation, pair: tuple[Node, Node]) -> None:
    county, station = pair
    fed.write(station.id, 3)
    fed.write(station.id, 3, seed=1)
    result = _push(county, _body(_segment(station, after=3)))[0]
    assert _reject(result) == "gap" and result["error"]["expected"] == 1
    assert _held(county, station.id) == 0


def test_two_consecutive_segments_in_one_request(fed: Federation, pair: tuple[Node, Node]) -> None:
    county, station = pair
    fed.write(station.id, 3)
    first = station.log.read_segment(station.id, 0, max_entries=2)
    assert first is not None
    second = _segment(station, after=2)
    results = _push(county, _body(first, second))
    assert [r["held"] for r in results] == [2, 3]


def test_fork_is_detected_and_nothing_overwritten(fed: Federation, pair: tuple[Node, Node]) -> None:
    county, station = pair
    fed.write(station.id, 4)
    _push(county, _body(_segment(station)))
    before = list(county.log.iter_entries(station.id))
    # the station equivocates: another entry 3 and 4, properly signed
    forged = _rewrite(station, start=3, count=2, prev=before[1][1])
    result = _push(county, _body(forged))[0]
    assert _reject(result) == "fork" and result["held"] == 4
    assert list(county.log.iter_entries(station.id)) == before
    # the same with a fork that starts right after what the hub holds
    fed.write(station.id, 1, seed=5)
    forged = _rewrite(station, start=5, count=1, prev="1" * 64)
    assert _reject(_push(county, _body(forged))[0]) == "fork"


def _rewrite(node: Node, *, start: int, count: int, prev: str) -> Segment:
    raws = []
    for seq in range(start, start + count):
        _, raw, digest = build_entry(
            origin=node.id,
            seq=seq,
            prev=prev,
            time="2026-11-21T09:00:00.000Z",
            contract="note",
            version="1.0",
            record_id=f"00000000-0000-7000-8000-{seq:012d}",
            op="put",
            data={"x": seq},
        )
        raws.append(raw)
        prev = digest
    head = sign_head(
        node.signer,
        origin=node.id,
        seq=start + count - 1,
        head=prev,
        time="2026-11-21T09:00:00.000Z",
    )
    return Segment(head=head, start=start, entries=tuple(raws))


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        ("entry_byte", "bad_chain"),
        ("last_entry_byte", "bad_hash"),
        ("reorder", "bad_chain"),
        ("head_seq", "bad_hash"),
        ("head_sig", "bad_signature"),
        ("not_canonical", "malformed"),
    ],
)
def test_tampering_is_refused_and_nothing_stored(
    fed: Federation, pair: tuple[Node, Node], tamper: str, code: str
) -> None:
    county, station = pair
    fed.write(station.id, 4)
    segment = _segment(station)
    entries = list(segment.entries)
    head = segment.head
    if tamper == "entry_byte":
        entries[1] = entries[1].replace(b'"status":"', b'"status":"x', 1)
    elif tamper == "last_entry_byte":
        entries[3] = entries[3].replace(b'"status":"', b'"status":"x', 1)
    elif tamper == "reorder":
        entries[1], entries[2] = entries[2], entries[1]
    elif tamper == "head_seq":
        head = head.model_copy(update={"head": sha256_hex(b"other")})
    elif tamper == "head_sig":
        head = head.model_copy(update={"time": "2030-01-01T00:00:00.000Z"})
    elif tamper == "not_canonical":
        entries[0] = entries[0].replace(b'"op":"put"', b'"op": "put"')
    forged = Segment(head=head, start=1, entries=tuple(entries))
    assert _reject(_push(county, _body(forged))[0]) == code
    assert _held(county, station.id) == 0
    assert list(county.log.iter_entries(station.id)) == []


def test_unknown_key_and_foreign_subtree(fed: Federation, pair: tuple[Node, Node]) -> None:
    county, station = pair
    stranger = fed.make_node("js.wx.jy.s9", "station", bundle=None, secret="x")
    stranger.log.append([Write("opinion", "1.1", "00000000-0000-7000-8000-000000000001", data={})])
    assert (
        _reject(_push(county, _body(_segment(stranger)), caller=stranger.id)[0]) == "unknown_origin"
    )
    fed.write(station.id, 2)
    # s9 pushing s1's segments, and a segment of a node outside the county
    assert (
        _reject(_push(county, _body(_segment(station)), caller="js.wx.jy.s9")[0])
        == "not_in_subtree"
    )
    assert _held(county, station.id) == 0
    other = fed.make_node("js.wx.zz.s1", "station", bundle=None, secret="x")
    other.log.append([Write("opinion", "1.1", "00000000-0000-7000-8000-000000000002", data={})])
    assert _reject(_push(county, _body(_segment(other)), caller=None)[0]) == "not_in_subtree"
    own = _rewrite(county, start=1, count=1, prev="0" * 64)
    assert _reject(_push(county, _body(own), caller=None)[0]) == "not_in_subtree"


def test_invalid_entries_are_kept_marked_reported_and_not_applied(
    fed: Federation, pair: tuple[Node, Node]
) -> None:
    county, station = pair
    fed.write(station.id, 2)
    rid = "00000000-0000-7000-8000-0000000000aa"
    bad = {**example("opinion"), "channel": "fax"}
    bad.pop("reporter_name")
    station.log.append([Write("opinion", "1.1", rid, data=bad)])  # a buggy writer
    result = _push(county, _body(_segment(station)))[0]
    assert result["status"] == "ok" and result["held"] == 3
    assert [(i["seq"], i["code"], i["path"]) for i in result["invalid"]] == [
        (3, "contract_violation", "/channel")
    ]
    assert len(list(county.log.iter_entries(station.id))) == 3
    with pytest.raises(Exception, match="no opinion record"):
        county.get("opinion", rid)


def test_unknown_version_is_pending_not_dropped(fed: Federation, pair: tuple[Node, Node]) -> None:
    county, station = pair
    station.log.append(
        [Write("opinion", "1.7", "00000000-0000-7000-8000-0000000000bb", data={"x": 1})]
    )
    result = _push(county, _body(_segment(station)))[0]
    assert (result["status"], result["held"]) == ("ok", 1)
    assert [(p["seq"], p["code"]) for p in result["pending"]] == [(1, "unknown_contract")]


def test_oversized_entry_is_too_large(fed: Federation, pair: tuple[Node, Node]) -> None:
    county, station = pair
    fed.write(station.id, 1)
    segment = _segment(station)
    big = segment.entries[0][:-1] + b',"pad":"' + b"x" * 70_000 + b'"}'
    result = _push(county, _body(Segment(head=segment.head, start=1, entries=(big,))))[0]
    assert _reject(result) == "too_large"


async def test_request_level_errors(fed: Federation, pair: tuple[Node, Node]) -> None:
    county, station = pair
    fed.write(station.id, 3)
    body = _body(_segment(station))
    async with fed.client(county.id, caller=station.id) as client:
        truncated = await client.post("/v1/push", content=body[: body.rfind(b"\n", 0, -1) + 1])
        assert truncated.status_code == 400 and truncated.json()["error"]["code"] == "malformed"
        bomb = gzip.compress(b"\n" * (80 << 20))
        response = await client.post("/v1/push", content=bomb, headers={"Content-Encoding": "gzip"})
        assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
        broken = await client.post(
            "/v1/push", content=gzip.compress(body)[:-20], headers={"Content-Encoding": "gzip"}
        )
        assert broken.status_code == 400 and broken.json()["error"]["code"] == "malformed"
        huge = await client.post("/v1/push", content=b"x" * (MAX_BODY + 1))
        assert huge.status_code == 413
        assert _held(county, station.id) == 0
        ok = await client.post(
            "/v1/push", content=gzip.compress(body), headers={"Content-Encoding": "gzip"}
        )
        assert ok.status_code == 200 and ok.json()["results"][0]["held"] == 3


def test_a_refusal_quoting_u0000_is_recorded(fed: Federation, pair: tuple[Node, Node]) -> None:
    """A rejection's message may quote what the sender wrote, U+0000 included: it is kept
    for review with U+FFFD in its place (PostgreSQL text cannot hold U+0000)."""
    county, station = pair
    fed.write(station.id, 2)
    segment = _segment(station)
    smuggled = orjson.loads(segment.entries[0]) | {"x\x00": 1}
    forged = Segment(segment.head, 1, (canonical_bytes(smuggled), segment.entries[1]))
    assert _reject(_push(county, _body(forged))[0]) == "malformed"
    with county.store.read() as conn:
        (message,) = conn.execute(select(REJECTIONS.c.message)).scalars()
    assert "x\ufffd" in message
    assert _held(county, station.id) == 0


def test_a_segment_unlocked_by_a_certificate_then_refused_says_why(fed: Federation) -> None:
    """A station's segment after its county's, which announces the station's key, in one
    request: verified again once the key is learnt, a bad signature is answered as one,
    not as the unknown key it first met."""
    station = fed.add("js.wx.jy.s1")
    county, city = fed.nodes["js.wx.jy"], fed.nodes["js.wx"]
    fed.write(station.id, 2)
    announcing = county.log.read_segment(county.id, 0)
    good = station.log.read_segment(station.id, 0)
    assert announcing is not None and good is not None
    kid, _, sig = good.head.sig.partition(":")
    forged = ("A" if sig[0] != "A" else "B") + sig[1:]
    head = SignedHead.model_validate({**good.head.to_dict(), "sig": f"{kid}:{forged}"})
    bad = Segment(head=head, start=good.start, entries=good.entries)
    ingestor = Ingestor.of(city)
    first, second = ingestor.ingest([announcing, bad], caller=county.id)
    assert first.status == "ok"
    assert second.status == "rejected" and second.error is not None
    assert second.error["code"] == "bad_signature"
    with city.store.read() as conn:
        codes = conn.execute(select(REJECTIONS.c.code).where(REJECTIONS.c.origin == station.id))
        assert list(codes.scalars()) == ["bad_signature"]


def test_an_entry_timed_late_on_the_last_day_there_is_is_taken(fed: Federation) -> None:
    """A valid protocol time at 16:00 UTC on 9999-12-31 (the next China day does not exist):
    counting the entry's day raised OverflowError, and the push, with every other origin a
    relay carried in it, failed with a 500 at every resend."""
    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    _, raw, digest = build_entry(
        origin=station.id,
        seq=1,
        prev=ZERO_HASH,
        time="9999-12-31T16:00:00.000Z",
        contract="opinion",
        version="1.1",
        record_id="00000000-0000-7000-8000-000000000001",
        op="del",
        data=None,
    )
    head = sign_head(station.signer, origin=station.id, seq=1, head=digest, time=fed.now())
    (result,) = Ingestor.of(county).push(encode_segment(head, 1, [raw]), caller=station.id)
    assert result.status == "ok", result
    held = county.log.head(station.id)
    assert held is not None and held.seq == 1
