"""Data moves up: push, verify, relay, idempotence, gaps, forks — in-process federations."""

from __future__ import annotations

import httpx
import pytest

from node.uplink import Uplink
from node.verify import verify_log
from schemas.errors import ErrorCode, GuantongError
from tests.federation.harness import Federation

pytestmark = pytest.mark.anyio


async def test_station_pushes_to_county(fed: Federation) -> None:
    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    ids = fed.write(station.id, 25)
    report = await fed.sync(station.id)
    assert (report.requests, report.entries, report.rejected) == (1, 25, {})
    held = county.log.head(station.id)
    own = station.log.head()
    assert held is not None and own is not None
    assert (held.seq, held.head) == (own.seq, own.head)
    assert list(county.log.iter_entries(station.id)) == list(station.log.iter_entries(station.id))
    record = county.get("opinion", ids[0])
    assert record.origin == station.id and record.data is not None
    assert "reporter_name" not in record.data  # private fields never left the station
    assert list(verify_log(county.log)) == []
    again = await fed.sync(station.id)
    assert again.requests == 0  # nothing left: the cursor moved to `held`


async def test_relay_forwards_verbatim_and_province_verifies_station(fed: Federation) -> None:
    province = fed.add("js")
    city = fed.add("js.wx")
    county = fed.add("js.wx.jy")
    s1, s2 = fed.add("js.wx.jy.s1"), fed.add("js.wx.jy.s2")
    fed.write(s1.id, 10, seed=1)
    fed.write(s2.id, 7, seed=2)
    fed.write(county.id, 3, seed=3)
    for node_id in (s1.id, s2.id, county.id, city.id):
        report = await fed.sync(node_id)
        assert report.rejected == {}
    for origin in (s1.id, s2.id, county.id):
        assert list(province.log.iter_entries(origin)) == list(
            fed.nodes[origin].log.iter_entries(origin)
        )
        head = province.log.head(origin)
        assert head is not None and head.signed is not None
        assert head.signed.verify(fed.nodes[origin].signer.public_raw)
    assert list(verify_log(province.log)) == []
    assert [h.origin for h in province.log.heads("js.wx.jy")] == [
        "js.wx.jy",
        "js.wx.jy.s1",
        "js.wx.jy.s2",
    ]


async def test_batches_are_sized_by_bytes(fed: Federation) -> None:
    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    fed.write(station.id, 60)
    report = await fed.sync(station.id, max_bytes=20_000)
    assert report.requests > 3
    assert report.entries == 60
    assert county.log.head(station.id).seq == 60  # type: ignore[union-attr]


async def test_cursor_survives_restart_and_only_moves_on_held(fed: Federation) -> None:
    fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    fed.write(station.id, 5)
    await fed.sync(station.id)
    fed.write(station.id, 4, seed=9)
    fed.down.add("js.wx.jy")
    uplink = fed.uplink(station.id)
    with pytest.raises(Exception, match="unreachable"):
        await uplink.sync()
    assert [(b.origin, b.acked, b.held) for b in uplink.backlog()] == [(station.id, 5, 9)]
    fed.down.clear()
    restarted = fed.uplink(station.id)  # a new process: state comes from the store
    assert not restarted.due()  # still backing off after the failure
    fed.clock.advance(seconds=700)
    assert restarted.due()
    report = await restarted.sync()
    assert report.entries == 4
    assert restarted.state()["failures"] == 0
    assert restarted.backlog() == []


async def test_a_push_records_contact_with_its_cursors(fed: Federation) -> None:
    fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    fed.write(station.id, 3)
    uplink = fed.uplink(station.id)
    uplink._failed("earlier trouble")  # a failure before: contact clears it
    fed.clock.advance(seconds=700)
    report = await uplink.sync()
    assert report.entries == 3
    state = uplink.state()
    assert (state["failures"], state["last_error"]) == (0, None)
    assert state["last_contact"] == fed.now()
    assert uplink.backlog() == []


@pytest.mark.parametrize(
    "answer",
    [
        b"not json",
        b'{"no":"results"}',
        b'{"results":[]}',
        b"[1,2]",
        b'{"results":"x"}',
        b'{"results":[{"status":"ok"}]}',
        b'{"results":[{"status":"ok","held":"2"}]}',
        b'{"results":[{"held":2}]}',
    ],
)
async def test_a_broken_answer_to_a_push_moves_no_cursor(fed: Federation, answer: bytes) -> None:
    """A parent answering 200 with no usable results: a clean error, the cursor stays."""
    fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    fed.write(station.id, 2)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=answer))
    async with httpx.AsyncClient(transport=transport) as client:
        uplink = Uplink(station.log, parent_url="http://js.wx.jy", client=client, clock=fed.clock)
        with pytest.raises(GuantongError) as refused:
            await uplink.sync(reconcile=False)
    assert refused.value.code is ErrorCode.MALFORMED
    assert [(b.acked, b.held) for b in uplink.backlog()] == [(0, 2)]
    assert uplink.state()["last_contact"] == fed.now()  # it answered: not a failure
