"""Security: each attack gets its exact error code, and nothing of it is stored."""

from __future__ import annotations

import gzip
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.enrollment import create_token
from node.auth import NodeAuth
from node.enrollment import enrollment_request
from node.keys import create_key
from node.runtime import Node
from schemas.http import NODE_HEADER, SIGNATURE_HEADER, TIME_HEADER
from schemas.ids import Tier
from schemas.log import build_entry, sign_head
from schemas.segments import Segment, encode_segment
from schemas.signing import Signer
from tests.conftest import FakeClock
from tests.federation.harness import Federation

pytestmark = pytest.mark.anyio


def _body(*segments: Segment) -> bytes:
    return b"".join(encode_segment(s.head, s.start, s.entries) for s in segments)


def _segment(node: Node, after: int = 0) -> Segment:
    segment = node.log.read_segment(node.id, after)
    assert segment is not None
    return segment


async def _push(fed: Federation, hub: str, caller: str, body: bytes) -> httpx.Response:
    async with fed.client(hub, caller=caller) as client:
        return await client.post("/v1/push", content=body)


def _result(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["results"][0]
    return result


def _code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


@pytest.fixture
def net(fed: Federation) -> Federation:
    fed.add("js.wx.jy.s1")
    fed.add("js.wx.jy.s2")
    fed.write("js.wx.jy.s1", 3)
    fed.write("js.wx.jy.s2", 2, seed=1)
    return fed


def _stored(fed: Federation, origin: str) -> int:
    head = fed.nodes["js.wx.jy"].log.head(origin)
    return head.seq if head else 0


async def test_unsigned_and_wrongly_signed_requests(net: Federation) -> None:
    body = _body(_segment(net.nodes["js.wx.jy.s1"]))
    async with net.client("js.wx.jy") as anonymous:
        response = await anonymous.post("/v1/push", content=body)
    assert (response.status_code, _code(response)) == (401, "unauthenticated")
    impostor = Signer.generate()
    transport = httpx.ASGITransport(app=net.app("js.wx.jy"))
    auth = NodeAuth("js.wx.jy.s1", impostor, net.clock)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub", auth=auth) as client:
        response = await client.post("/v1/push", content=body)
    assert (response.status_code, _code(response)) == (401, "unauthenticated")
    assert _stored(net, "js.wx.jy.s1") == 0


async def test_replayed_request(net: Federation) -> None:
    body = _body(_segment(net.nodes["js.wx.jy.s1"]))
    async with net.client("js.wx.jy", caller="js.wx.jy.s1") as client:
        request = client.build_request("POST", "/v1/push", content=body)
        first = await client.send(request)
        replay = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=net.app("js.wx.jy")), base_url="http://js.wx.jy"
        )
        async with replay:
            again = await replay.send(request)
    assert first.status_code == 200
    assert (again.status_code, _code(again)) == (401, "replay")


async def test_two_processes_of_one_node_signing_in_one_millisecond(net: Federation) -> None:
    """Two processes of one node (two ``sync --once``, or a server's workers) that sign the
    same request in the same millisecond make the same signature (Ed25519 is
    deterministic): the hub refuses the second as a replay, and its sender signs it again
    a millisecond later, so neither fails."""
    s1 = net.nodes["js.wx.jy.s1"]
    body = _body(_segment(s1))
    transport = httpx.ASGITransport(app=net.app("js.wx.jy"))
    times: list[str] = []
    for _ in range(2):
        auth = NodeAuth(s1.id, s1.signer, net.clock)  # each process has its own
        async with httpx.AsyncClient(transport=transport, base_url="http://hub", auth=auth) as c:
            response = await c.post("/v1/push", content=body)
        assert response.status_code == 200, response.text
        assert _result(response)["held"] == 3
        times.append(response.request.headers[TIME_HEADER])
    assert times[0] < times[1]  # the second was signed again, a millisecond later


async def test_clock_skew_is_answered_and_corrected(net: Federation) -> None:
    skewed = FakeClock(net.clock() - timedelta(hours=3))
    transport = httpx.ASGITransport(app=net.app("js.wx.jy"))
    auth = NodeAuth("js.wx.jy.s1", net.nodes["js.wx.jy.s1"].signer, skewed)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub", auth=auth) as client:
        response = await client.post("/v1/push", content=_body(_segment(net.nodes["js.wx.jy.s1"])))
    assert _result(response)["held"] == 3
    assert abs(auth.offset - timedelta(hours=3)) < timedelta(seconds=1)


async def test_a_clock_ahead_of_the_hub_is_corrected_too(net: Federation) -> None:
    """A station whose clock runs 3 h fast: the request refused ``clock_skew`` is signed
    again at the corrected time, and so are the ones after it. The time refused was never
    remembered by the hub, so the next is not forced after it (it was, and every request
    stayed 3 h ahead until real time caught up)."""
    s1 = net.nodes["js.wx.jy.s1"]
    ahead = FakeClock(net.clock() + timedelta(hours=3))
    transport = httpx.ASGITransport(app=net.app("js.wx.jy"))
    auth = NodeAuth(s1.id, s1.signer, ahead)
    body = _body(_segment(s1))
    async with httpx.AsyncClient(transport=transport, base_url="http://hub", auth=auth) as client:
        first = await client.post("/v1/push", content=body)
        second = await client.post("/v1/push", content=body)  # the offset already known
    assert _result(first)["held"] == 3 and _result(second)["held"] == 3
    assert abs(auth.offset + timedelta(hours=3)) < timedelta(seconds=1)
    sent = [r.request.headers[TIME_HEADER] for r in (first, second)]
    assert sent[0] < sent[1]  # equal requests, still distinct signatures


async def test_forged_origin_and_foreign_subtree(net: Federation) -> None:
    s1, s2 = net.nodes["js.wx.jy.s1"], net.nodes["js.wx.jy.s2"]
    # s1 signs a head claiming to be s2
    genuine = _segment(s2)
    forged_head = sign_head(
        s1.signer, origin=s2.id, seq=genuine.end, head=genuine.head.head, time=net.now()
    )
    response = await _push(net, "js.wx.jy", s1.id, _body(Segment(forged_head, 1, genuine.entries)))
    assert _result(response)["error"]["code"] == "not_in_subtree"
    # s2's genuine segment, pushed by s1
    response = await _push(net, "js.wx.jy", s1.id, _body(genuine))
    assert _result(response)["error"]["code"] == "not_in_subtree"
    # an entry of s2 smuggled into s1's own segment
    own = _segment(s1)
    mixed = Segment(own.head, 1, (own.entries[0], genuine.entries[1], own.entries[2]))
    assert (
        _result(await _push(net, "js.wx.jy", s1.id, _body(mixed)))["error"]["code"] == "bad_chain"
    )
    # a county-level node id pushing to the county as if it were a child
    assert _stored(net, s1.id) == 0 and _stored(net, s2.id) == 0


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        ("entry", "bad_chain"),
        ("head", "bad_signature"),
        ("signature", "bad_signature"),
        ("reorder", "bad_chain"),
    ],
)
async def test_tampering_over_http(net: Federation, tamper: str, code: str) -> None:
    s1 = net.nodes["js.wx.jy.s1"]
    segment = _segment(s1)
    entries, head = list(segment.entries), segment.head
    if tamper == "entry":
        entries[0] = entries[0].replace(b'"status":"', b'"status":"x', 1)
    elif tamper == "head":
        head = head.model_copy(update={"time": "2026-11-21T08:00:01.000Z"})
    elif tamper == "signature":  # U+0000 in the key id: PostgreSQL text cannot hold it
        head = head.model_copy(update={"sig": "\x00" + head.sig[1:]})
    else:
        entries.reverse()
    response = await _push(net, "js.wx.jy", s1.id, _body(Segment(head, 1, tuple(entries))))
    assert _result(response)["error"]["code"] == code
    assert _stored(net, s1.id) == 0


async def test_forked_log(net: Federation) -> None:
    s1 = net.nodes["js.wx.jy.s1"]
    await net.sync(s1.id)
    entries = []
    prev = "0" * 64
    for seq in (1, 2):
        _, raw, prev = build_entry(
            origin=s1.id,
            seq=seq,
            prev=prev,
            time=net.now(),
            contract="opinion",
            version="1.1",
            record_id=f"00000000-0000-7000-8000-00000000000{seq}",
            op="del",
            data=None,
        )
        entries.append(raw)
    head = sign_head(s1.signer, origin=s1.id, seq=2, head=prev, time=net.now())
    before = list(net.nodes["js.wx.jy"].log.iter_entries(s1.id))
    response = await _push(net, "js.wx.jy", s1.id, _body(Segment(head, 1, tuple(entries))))
    assert _result(response)["error"]["code"] == "fork"
    assert list(net.nodes["js.wx.jy"].log.iter_entries(s1.id)) == before


async def test_revoked_key(net: Federation) -> None:
    county, s1 = net.nodes["js.wx.jy"], net.nodes["js.wx.jy.s1"]
    await net.sync(s1.id)  # history before the revocation
    net.clock.advance(seconds=1)
    revoked_from = net.now()
    from node.keyring import cert_record

    cert = s1.certificate
    assert cert is not None

    def mark(conn: Any) -> None:
        county.keyring.revoke(s1.id, revoked_from=revoked_from, conn=conn)

    county.put(
        "node_cert",
        [(None, cert_record(cert, issuer=county.id, status="revoked", revoked_from=revoked_from))],
        also=mark,
    )
    net.clock.advance(seconds=5)
    net.write(s1.id, 2, seed=4)
    response = await _push(net, county.id, s1.id, _body(_segment(s1, after=3)))
    assert (response.status_code, _code(response)) == (401, "revoked_key")
    # the city learns the revocation from the county's log and refuses relayed segments too
    report = await net.sync(county.id)
    assert report.rejected == {}, report.rejected
    city = net.nodes["js.wx"]
    assert city.log.head(s1.id).seq == 3  # type: ignore[union-attr]  # history still verifies
    county_head = county.log.head()
    assert county_head is not None
    late = s1.log.read_segment(s1.id, 3)
    assert late is not None
    async with net.client(city.id, caller=county.id) as client:
        response = await client.post("/v1/push", content=_body(late))
    assert _result(response)["error"]["code"] == "revoked_key"
    assert city.log.head(s1.id).seq == 3  # type: ignore[union-attr]


async def test_expired_certificate(net: Federation) -> None:
    net.clock.advance(days=800)
    response = await _push(
        net, "js.wx.jy", "js.wx.jy.s1", _body(_segment(net.nodes["js.wx.jy.s1"]))
    )
    assert (response.status_code, _code(response)) == (401, "cert_expired")
    assert _stored(net, "js.wx.jy.s1") == 0


async def test_tokens_are_one_time_and_bound_to_one_id(net: Federation, tmp_path: Path) -> None:
    county = net.nodes["js.wx.jy"]
    s3 = net.add("js.wx.jy.s3", enroll=False)
    s4 = net.add("js.wx.jy.s4", enroll=False)
    token = create_token(county, s3.id, Tier.STATION)
    async with net.client(county.id) as client:
        first = await client.post("/v1/enroll", json=enrollment_request(s3, token))
        assert first.status_code == 200
        again = await client.post("/v1/enroll", json=enrollment_request(s3, token))
        assert again.status_code == 200  # the answer was lost on the way: asked again
        assert again.json()["cert"] == first.json()["cert"]
        s3.adopt_key(create_key(tmp_path / "other.key"), tmp_path / "other.key")
        reused = await client.post("/v1/enroll", json=enrollment_request(s3, token))
        assert (reused.status_code, _code(reused)) == (400, "token_used")  # another key
        s5 = net.add("js.wx.jy.s5", enroll=False)
        request = enrollment_request(s5, create_token(county, s5.id, Tier.STATION))
        assert (await client.post("/v1/enroll", json=request)).status_code == 200
        net.clock.advance(days=15)  # the token expired: not answered again, even to s5's key
        late = await client.post("/v1/enroll", json=request)
        assert (late.status_code, _code(late)) == (400, "token_expired")
        other = create_token(county, s3.id, Tier.STATION)
        request = {**enrollment_request(s3, other), "node": s4.id, "key": s4.signer.public_b64u}
        stolen = await client.post("/v1/enroll", json=request)
        assert _code(stolen) in {"token_mismatch", "bad_signature"}
        request = enrollment_request(s3, other)
        request["node"] = s4.id
        mismatch = await client.post("/v1/enroll", json=request)
        assert _code(mismatch) == "token_mismatch"


async def test_oversized_body_and_gzip_bomb(net: Federation) -> None:
    async with net.client("js.wx.jy", caller="js.wx.jy.s1") as client:
        bomb = gzip.compress(b"\n" * (80 << 20))
        response = await client.post("/v1/push", content=bomb, headers={"Content-Encoding": "gzip"})
        assert (response.status_code, _code(response)) == (413, "too_large")
        huge = await client.post("/v1/push", content=b"x" * ((32 << 20) + 1))
        assert (huge.status_code, _code(huge)) == (413, "too_large")


async def test_reading_outside_ones_subtree_is_forbidden(net: Federation) -> None:
    await net.sync("js.wx.jy.s2")
    async with net.client("js.wx.jy", caller="js.wx.jy.s1") as client:
        response = await client.get("/v1/entries", params={"origin": "js.wx.jy.s2"})
        assert (response.status_code, _code(response)) == (403, "forbidden")
        own = await client.get("/v1/heads", params={"prefix": "js.wx.jy.s1"})
        assert own.status_code == 200
    async with net.client("js.wx.jy", caller="js.wx") as ancestor:  # the city's checker
        response = await ancestor.get("/v1/heads", params={"prefix": "js.wx.jy"})
        assert [h["origin"] for h in response.json()["heads"]] == ["js.wx.jy", "js.wx.jy.s2"]


async def test_ids_that_break_their_grammar_never_reach_the_store(net: Federation) -> None:
    """Key ids, node ids and signatures a peer sends are checked before any query: one
    holding U+0000 (which PostgreSQL refuses with an error, not a miss) gets its code."""
    s1 = net.nodes["js.wx.jy.s1"]
    async with net.client("js.wx.jy", caller=s1.id) as client:
        chain = await client.get("/v1/chain", params={"key_id": "\x00" * 16})
        assert (chain.status_code, _code(chain)) == (400, "malformed")
        heads = await client.get("/v1/heads", params={"prefix": s1.id, "after": "js\x00"})
        assert (heads.status_code, _code(heads)) == (400, "invalid_node_id")
        known = await client.get("/v1/chain", params={"key_id": s1.signer.key_id})
        assert known.status_code == 200 and len(known.json()["chain"]) == 4
    headers = {NODE_HEADER: s1.id, TIME_HEADER: net.now(), SIGNATURE_HEADER: "\x00:AAAA"}
    async with net.client("js.wx.jy") as anonymous:
        response = await anonymous.get("/v1/tasks", headers=headers)
    assert (response.status_code, _code(response)) == (401, "unauthenticated")
