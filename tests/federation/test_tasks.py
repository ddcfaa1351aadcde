"""Work moves down: signed tasks relayed verbatim, verified at the target, reported on."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest

from contracts.registry import DEFAULT_BUNDLE, Registry
from node.downlink import PullReport, decode_task_stream, downlink_cursor, pull_tasks
from node.runtime import Node
from node.tables import DOWNLINK
from node.tasks import (
    _issue,
    amend_task,
    issue_task,
    latest_task,
    receive_tasks,
    report_task,
    revoke_node,
    task_views,
)
from schemas.errors import ErrorCode, GuantongError
from schemas.tasks import Task, sign_task
from schemas.times import format_time
from tests.federation.harness import Federation

pytestmark = pytest.mark.anyio


async def test_assign_to_a_unit_and_the_closed_loop_of_reports(fed: Federation) -> None:
    county = fed.add("js.wx.jy")
    unit = fed.add("js.wx.jy.u-zjj", "unit")
    task = issue_task(
        county,
        target=unit.id,
        kind="assign",
        payload={"instructions": "修复路灯"},
        due=format_time(fed.clock()).replace("08:00", "20:00"),
    )
    await fed.cascade_down(unit.id)
    (inbox,) = task_views(unit, issued_here=False)
    assert (inbox.task, inbox.state) == (task, "delivered")  # the unit reported `received`
    report_task(unit, task.id, "accepted")
    report_task(unit, task.id, "done", resolution="已更换灯具并通电", note="现场核实")
    await fed.cascade_up(unit.id)
    (view,) = task_views(county, issued_here=True)
    assert view.state == "done" and not view.overdue
    assert [h["status"] for h in view.history] == ["received", "accepted", "done"]


async def test_province_task_relays_through_every_tier_verbatim(fed: Federation) -> None:
    station = fed.add("js.wx.jy.s1")
    province = fed.nodes["js"]
    task = issue_task(
        province, target=station.id, kind="notice", payload={"text": "全省代表培训通知"}
    )
    await fed.cascade_down("js.wx", "js.wx.jy", station.id)
    held = [n.store for n in (fed.nodes["js.wx"], fed.nodes["js.wx.jy"], station)]
    for store in held:
        with store.read() as conn:
            (raw,) = conn.execute(__import__("sqlalchemy").text("SELECT raw FROM tasks")).scalars()
            assert bytes(raw) == task.canonical()
    await fed.cascade_up(station.id, "js.wx.jy", "js.wx")
    (view,) = task_views(province, issued_here=True)
    assert view.state == "delivered" and view.history[0]["origin"] == station.id


async def test_subtree_scope_reaches_every_node_below(fed: Federation) -> None:
    for node_id in ("js.wx.jy.s1", "js.wx.jy.s2", "js.wx.yx.s1"):
        fed.add(node_id)
    fed.add("js.sz.cs.s1")
    province = fed.nodes["js"]
    issue_task(province, target="js.wx", kind="notice", payload={"text": "无锡全市"}, subtree=True)
    await fed.cascade_down(
        "js.wx",
        "js.sz",
        "js.wx.jy",
        "js.wx.yx",
        "js.sz.cs",
        "js.wx.jy.s1",
        "js.wx.jy.s2",
        "js.wx.yx.s1",
        "js.sz.cs.s1",
    )
    reached = {n for n in fed.nodes if task_views(fed.nodes[n], issued_here=False)}
    assert reached == {"js.wx", "js.wx.jy", "js.wx.yx", "js.wx.jy.s1", "js.wx.jy.s2", "js.wx.yx.s1"}


async def test_amend_and_cancel_travel_as_revisions(fed: Federation) -> None:
    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    task = issue_task(county, target=station.id, kind="assign", payload={"opinion": "x"})
    await fed.pull(station.id)
    amend_task(county, task.id, payload={"opinion": "x", "note": "加急"})
    amend_task(county, task.id, cancel=True)
    await fed.pull(station.id)
    (view,) = task_views(station, issued_here=False)
    assert (view.task.rev, view.state) == (3, "cancelled")
    with pytest.raises(GuantongError, match="cancelled"):
        report_task(station, task.id, "done")


async def test_forged_and_misdirected_tasks_are_refused(fed: Federation) -> None:
    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    sibling = fed.add("js.wx.jy.s2")
    good = issue_task(county, target=station.id, kind="notice", payload={"text": "a"})
    tampered = good.canonical().replace(b'"text":"a"', b'"text":"b"')
    forged = sign_task(
        sibling.signer, {**good.to_dict(), "issuer": sibling.id, "target": sibling.id + ".x"}
    )
    wrong_target = issue_task(county, target=sibling.id, kind="notice", payload={"text": "c"})
    report = receive_tasks(station, [tampered, forged.canonical(), wrong_target.canonical()])
    assert report.stored == 0
    assert [r.split(":")[0] for r in report.rejected] == [
        "bad_signature",
        "not_in_subtree",
        "not_in_subtree",
    ]
    assert receive_tasks(station, [good.canonical()]).stored == 1
    assert receive_tasks(station, [good.canonical()]).stored == 0  # idempotent


async def test_a_signature_that_is_not_one_is_refused_before_any_lookup(fed: Federation) -> None:
    """U+0000 in the key id of a task or of a certificate sent with it (PostgreSQL text
    cannot hold it) is refused as malformed, at a hub as anywhere."""
    city = fed.add("js.wx")
    county = fed.add("js.wx.jy")
    good = issue_task(city, target=county.id, kind="notice", payload={"text": "a"})
    forged = good.canonical().replace(good.sig.encode(), b"\\u0000" + good.sig[1:].encode())
    chain = [c.to_dict() for c in city.keyring.chain(city.signer.key_id)]
    cert = {**chain[0], "sig": "\x00" + chain[0]["sig"][1:]}
    report = receive_tasks(county, [forged], [cert])
    assert report.stored == 0 and [r.split(":")[0] for r in report.rejected] == ["malformed"]
    assert receive_tasks(county, [good.canonical()], [cert, *chain]).stored == 1


async def test_revoking_what_is_no_node_id_is_refused(fed: Federation) -> None:
    county = fed.add("js.wx.jy")
    with pytest.raises(GuantongError) as refused:
        revoke_node(county, "js.wx.jy.s1\x00", revoked_from=fed.now())
    assert refused.value.code is ErrorCode.INVALID_NODE_ID


async def test_contract_upgrade_reaches_every_node_and_never_rolls_back(
    fed: Federation, tmp_path: Path
) -> None:
    station = fed.add("js.wx.jy.s1")
    province = fed.nodes["js"]
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    index = json.loads((bundle / "index.json").read_text("utf-8"))
    index["bundle_version"] = 2
    shutil.copy(bundle / "opinion" / "1.1.json", bundle / "opinion" / "1.2.json")
    index["contracts"]["opinion"]["versions"]["1.2"] = dict(
        index["contracts"]["opinion"]["versions"]["1.1"]
    )
    index["contracts"]["opinion"]["current"] = "1.2"
    (bundle / "index.json").write_text(json.dumps(index, ensure_ascii=False), "utf-8")
    from node.tasks import publish_contracts

    publish_contracts(province, Registry.from_dir(bundle))
    assert province.registry.bundle_version == 2
    await fed.cascade_down("js.wx", "js.wx.jy", station.id)
    for node in fed.nodes.values():
        assert node.registry.bundle_version == 2, node.id
    ids = fed.write(station.id, 1)
    assert station.get("opinion", ids[0]).version == "1.2"  # nodes then write the new version
    old = Registry.from_dir(DEFAULT_BUNDLE)
    with pytest.raises(GuantongError, match="never roll back"):
        publish_contracts(province, old)
    stale = _issue(  # as a province of an older release could issue it by hand
        province,
        target="js",
        kind="contracts",
        subtree=True,
        payload={"bundle_version": 1, "bundle": json.loads(old.bundle_bytes())},
    )
    assert receive_tasks(station, [stale.canonical()]).installed_bundle is None
    assert station.registry.bundle_version == 2


async def test_revoke_task_makes_hubs_below_refuse_the_key(fed: Federation) -> None:
    city = fed.add("js.wx")
    station = fed.add("js.wx.jy.s1")
    fed.write(station.id, 2)
    await fed.cascade_up(station.id, "js.wx.jy")  # the city learns the station's key
    fed.clock.advance(seconds=1)
    from node.tasks import revoke_node

    revoke_node(city, station.id, revoked_from=format_time(fed.clock()))
    await fed.cascade_down("js.wx.jy")
    county = fed.nodes["js.wx.jy"]
    key = county.keyring.lookup(station.signer.key_id)
    assert key is not None and key.revoked_from == format_time(fed.clock())
    fed.clock.advance(seconds=1)
    fed.write(station.id, 1, seed=3)
    with pytest.raises(GuantongError, match="revoked"):
        await fed.sync(station.id)


def test_task_model_rejects_issuer_below_target() -> None:
    from schemas.signing import Signer

    with pytest.raises(Exception, match="own subtree"):
        sign_task(
            Signer.from_seed(bytes(32)),
            {
                "id": "00000000-0000-7000-8000-000000000001",
                "issuer": "js.wx",
                "target": "js",
                "scope": "node",
                "kind": "notice",
                "payload": {},
                "issued": "2026-11-21T08:00:00.000Z",
                "rev": 1,
            },
        )
    assert Task  # the model is the public surface


async def test_tasks_reach_an_offline_station_by_bundle(fed: Federation, tmp_path: Path) -> None:
    from node.bundles import export_tasks, import_tasks

    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    issue_task(fed.nodes["js"], target=station.id, kind="notice", payload={"text": "省里的通知"})
    await fed.cascade_down("js.wx", county.id)
    mine = issue_task(county, target=station.id, kind="assign", payload={"opinion": "y"})
    export_tasks(county, station.id, tmp_path / "down.gtb")
    _, received = import_tasks(station, tmp_path / "down.gtb")
    assert (received.stored, received.rejected) == (2, [])
    assert {v.task.issuer for v in task_views(station, issued_here=False)} == {"js", county.id}
    _, again = import_tasks(station, tmp_path / "down.gtb")
    assert again.stored == 0
    report_task(station, mine.id, "accepted")
    await fed.cascade_up(station.id)  # its reports go up when it is back online (or by USB)
    (view,) = task_views(county, issued_here=True)
    assert view.state == "accepted"


async def test_campaign_counts_tagged_opinions_per_station(fed: Federation) -> None:
    county = fed.add("js.wx.jy")
    s1, s2 = fed.add("js.wx.jy.s1"), fed.add("js.wx.jy.s2")
    campaign = issue_task(
        county,
        target=county.id,
        kind="collect",
        subtree=True,
        payload={"topic": "我请代表捎句话", "description": "征集对老旧小区改造的意见"},
        due=format_time(fed.clock()).replace("2026-11-21", "2026-12-21"),
    )
    await fed.cascade_down(s1.id, s2.id)
    from contracts.samples import sample_records

    for station, count in ((s1, 3), (s2, 1)):
        records = [
            {**r, "campaign_id": campaign.id}
            for r in sample_records("opinion", count, origin=station.id)
        ]
        station.put("opinion", [(None, r) for r in records])
        fed.write(station.id, 2, seed=9)  # untagged ones do not count
    await fed.cascade_up(s1.id, s2.id)
    (view,) = [v for v in task_views(county, issued_here=True) if v.task.id == campaign.id]
    assert view.responses == {s1.id: 3, s2.id: 1}


def test_a_task_stream_header_names_its_feed_or_is_refused() -> None:
    chain = "ab" * 32
    header, lines = decode_task_stream(
        orjson.dumps({"certs": [], "feed": {"after": None, "next": chain}, "head": 1, "next": 1})
        + b"\n{}\n"
    )
    assert (header["feed"]["next"], lines) == (chain, [b"{}"])
    for bad in (
        {"after": "x", "next": None},
        {"next": chain},
        [chain],
        {"after": None, "next": "\x00" * 64},
        {"after": None, "next": chain.upper()},
    ):
        with pytest.raises(GuantongError) as refused:
            decode_task_stream(orjson.dumps({"certs": [], "feed": bad, "next": 1}))
        assert refused.value.code is ErrorCode.MALFORMED


async def test_a_parent_of_an_older_release_is_still_paged(fed: Federation) -> None:
    """A hub that sends no ``feed`` (an older release): the child pages by number, and
    starts again from 0 only when its cursor is beyond the hub's newest number."""
    station = fed.add("js.wx.jy.s1")
    asked: list[int] = []

    def older_hub(request: httpx.Request) -> httpx.Response:
        asked.append(int(request.url.params["after"]))
        return httpx.Response(200, content=b'{"certs":[],"head":4,"next":%d}\n' % asked[-1])

    with station.store.write() as conn:
        conn.execute(DOWNLINK.insert().values(id=1, after=3, updated_at=fed.now()))
    async with httpx.AsyncClient(transport=httpx.MockTransport(older_hub)) as client:
        await pull_tasks(station, client)
        assert (asked, downlink_cursor(station)) == ([3], 3)
        with station.store.write() as conn:
            conn.execute(DOWNLINK.update().values(after=9))  # the hub was restored since
        await pull_tasks(station, client)
    assert (asked[1:], downlink_cursor(station)) == ([9, 0], 0)


async def _poll_in_background(
    fed: Federation, hub: str, caller: str, *, wait: float
) -> tuple[list[PullReport], Callable[[], Awaitable[None]]]:
    """Start ``caller``'s long poll of ``hub`` and return once it waits; the function
    returned waits for its answer."""
    client = fed.client(hub, caller=caller)
    answers: list[PullReport] = []
    done = anyio.Event()

    async def poll() -> None:
        try:
            answers.append(await pull_tasks(fed.nodes[caller], client, wait=wait))
        finally:
            await client.aclose()
            done.set()

    task = asyncio.get_running_loop().create_task(poll())
    bell = fed.nodes[hub].task_bell
    with anyio.fail_after(_GUARD_S):
        while bell.waiting == 0:
            if task.done():
                task.result()  # it failed before it waited: say why
            await anyio.sleep(0.005)

    async def answered() -> None:
        with anyio.fail_after(_GUARD_S):
            await done.wait()
        task.result()

    return answers, answered


_GUARD_S = 20.0
"""Against a hang only: every wait below is ended by a ring long before."""


def _count_pages(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every query of a caller's revisions a hub's long poll makes."""
    from hub import api

    queried: list[str] = []
    page = api.tasks_for

    def counted(node: Any, caller: str, after: int, limit: int) -> Any:
        queried.append(caller)
        return page(node, caller, after, limit)

    monkeypatch.setattr(api, "tasks_for", counted)
    return queried


async def test_a_long_poll_is_answered_when_its_hub_stores_a_task(
    fed: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub's process rings its bell after the commit that stored a revision: the
    child's waiting poll queries once more and answers with it, long before its wait."""
    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    queried = _count_pages(monkeypatch)
    answers, answered = await _poll_in_background(fed, county.id, station.id, wait=60)
    assert queried == [station.id]
    task = await anyio.to_thread.run_sync(
        lambda: issue_task(county, target=station.id, kind="notice", payload={"text": "通知"})
    )
    await answered()
    assert answers[0].stored == 1 and queried == [station.id] * 2
    (view,) = task_views(station, issued_here=False)
    assert view.task == task


async def test_a_long_poll_finds_a_task_another_process_stored(
    fed: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A revision stored by another process (``guantong task issue`` beside the server)
    rings no bell here: that process replaces the task stamp, and the server's watch of
    it rings."""
    from node.app import _watch_tasks

    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    queried = _count_pages(monkeypatch)
    async with anyio.create_task_group() as watching:
        watching.start_soon(lambda: _watch_tasks(county, every=0.01))
        answers, answered = await _poll_in_background(fed, county.id, station.id, wait=60)
        other = Node.open(county.settings, clock=fed.clock)
        try:
            rung = county.task_bell.generation
            issue_task(other, target=station.id, kind="notice", payload={"text": "另一进程"})
            assert county.task_bell.generation == rung  # not this process's bell
        finally:
            other.close()
        await answered()
        watching.cancel_scope.cancel()
    assert answers[0].stored == 1 and queried == [station.id] * 2


async def test_an_idle_long_poll_queries_the_callers_tasks_only_when_rung(
    fed: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waiting costs the hub nothing but the coroutine; a revision for another subtree
    wakes the poll, which looks, finds nothing of its own and waits on until its wait
    ends."""
    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    fed.add("js.wx.jy.s2")
    queried = _count_pages(monkeypatch)
    answers, answered = await _poll_in_background(fed, county.id, station.id, wait=1.0)
    await anyio.to_thread.run_sync(
        lambda: issue_task(county, target="js.wx.jy.s2", kind="notice", payload={"text": "别处"})
    )
    await answered()
    assert answers[0].tasks == 0
    assert queried == [station.id] * 2  # its start, the ring


_OFFLINE_FAILURES = 1_200
"""Failures in a row: more than weeks offline at the longest wait make, where a doubling
without a bound no longer fits in a float."""


async def test_the_served_downlink_stores_tasks_as_they_come_and_backs_off_when_down(
    fed: Federation,
) -> None:
    """The server's task loop: one long poll after another, so a task stored at the
    parent is stored here at once; while the parent is down it waits 15 s, doubled with
    each failure in a row up to 5 minutes, with jitter, however long it stays down."""
    import random

    from node.app import TASK_RETRY_MAX_S, TASK_RETRY_S, _downlink

    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    slept: list[float] = []
    resume = anyio.Event()

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == _OFFLINE_FAILURES:
            fed.down.discard(county.id)
            resume.set()
        await anyio.sleep(0)

    async with fed.client(county.id, caller=station.id) as client, anyio.create_task_group() as tg:
        fed.down.add(county.id)
        tg.start_soon(lambda: _downlink(station, client, rng=random.Random(3), sleep=sleep))
        with anyio.fail_after(_GUARD_S):
            await resume.wait()
            while county.task_bell.waiting == 0:
                await anyio.sleep(0.005)
        for n, delay in enumerate(slept):
            step = min(TASK_RETRY_S * 2 ** min(n, 16), TASK_RETRY_MAX_S)
            assert 0.8 * step <= delay <= 1.2 * step
        assert max(slept) <= 1.2 * TASK_RETRY_MAX_S
        for text in ("第一", "第二"):
            task = await anyio.to_thread.run_sync(
                lambda t=text: issue_task(
                    county, target=station.id, kind="notice", payload={"text": t}
                )
            )
            with anyio.fail_after(_GUARD_S):
                while not any(v.task == task for v in task_views(station, issued_here=False)):
                    await anyio.sleep(0.005)
        assert len(slept) == _OFFLINE_FAILURES  # it succeeded since, and never slept again
        tg.cancel_scope.cancel()


async def test_a_task_of_a_county_rotated_after_its_city_reaches_the_station(
    fed: Federation, tmp_path: Path
) -> None:
    """The city, then the county rotate their keys: the task stream's chains named the
    county's new certificate (signed by the city's new key) before the city's, and taken
    once in that order the county's was dropped, the task refused ``unknown_origin``. A
    hub now sends each chain root first, and a receiver takes chains in any order."""
    station = fed.add("js.wx.jy.s1")
    other = fed.add("js.wx.jy.s2")
    city, county = fed.nodes["js.wx"], fed.nodes["js.wx.jy"]
    county.keyring.add_certificate(await fed.rotate(city.id, tmp_path))  # as from the city
    await fed.rotate(county.id, tmp_path)
    assert station.keyring.lookup(city.signer.key_id) is None
    task = issue_task(county, target=station.id, kind="notice", payload={"text": "hello"})
    report = await fed.pull(station.id)
    assert report.rejected == [] and report.stored == 1
    assert station.keyring.lookup(county.signer.key_id) is not None
    broadcast = issue_task(county, target=county.id, kind="notice", payload={}, subtree=True)
    leaf_first = [c.to_dict() for c in county.keyring.chain(county.signer.key_id)]
    # as a hub of an older release sends them: leaf first
    received = receive_tasks(other, [broadcast.canonical()], leaf_first)
    assert (received.rejected, received.stored) == ([], 1)
    assert latest_task(station, task.id) is not None


async def _page_without_chains(
    fed: Federation, tmp_path: Path
) -> tuple[Node, Task, dict[str, Any], bytes, bytes]:
    """A county that rotated its key, a task of it for a station that does not know the new
    key, and the station's page of tasks as the county serves it and without its chains."""
    station = fed.add("js.wx.jy.s1")
    county = fed.nodes["js.wx.jy"]
    await fed.rotate(county.id, tmp_path)
    task = issue_task(county, target=station.id, kind="notice", payload={"text": "hello"})
    async with fed.client(county.id, caller=station.id) as client:
        page = (await client.get("/v1/tasks", params={"after": 0})).content
    header, raws = decode_task_stream(page)
    stripped = b"\n".join([orjson.dumps({**header, "certs": []}), *raws]) + b"\n"
    return station, task, header, stripped, page


async def test_a_task_whose_signer_is_unknown_is_asked_for_again(
    fed: Federation, tmp_path: Path
) -> None:
    """A page with a task whose signer's key is not known here (its chain missing) does not
    move the cursor past it: the next pull asks for the page again, and takes the task once
    the chain comes with it (the cursor moved past it for good before: the task was lost)."""
    station, task, header, stripped, page = await _page_without_chains(fed, tmp_path)
    answers = [stripped, page]
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=answers.pop(0)))
    ) as client:
        first = await pull_tasks(station, client)
        assert first.held == 1 and first.rejected[0].startswith("unknown_origin")
        assert downlink_cursor(station) == 0
        second = await pull_tasks(station, client)
    assert (second.held, second.stored, second.rejected) == (0, 1, [])
    assert downlink_cursor(station) == header["next"]
    assert latest_task(station, task.id) is not None


async def test_the_served_downlink_waits_when_a_page_is_held(
    fed: Federation, tmp_path: Path
) -> None:
    """A held page comes back at once: the server's loop waits as after a failure, doubling,
    instead of asking for it again in a loop."""
    import random

    from node.app import TASK_RETRY_S, _downlink

    station, _, _, stripped, _ = await _page_without_chains(fed, tmp_path)
    slept: list[float] = []

    class Enough(Exception):
        pass

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 3:
            raise Enough
        await anyio.sleep(0)

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=stripped))
    ) as client:
        with anyio.fail_after(_GUARD_S), pytest.raises(Enough):
            await _downlink(station, client, rng=random.Random(3), sleep=sleep)
    for n, delay in enumerate(slept):
        assert 0.8 * TASK_RETRY_S * 2**n <= delay <= 1.2 * TASK_RETRY_S * 2**n
    assert downlink_cursor(station) == 0


async def test_two_writers_of_receipts_at_once_acknowledge_a_task_once(
    fed: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's pull beside `guantong sync` (or two pulls at once) both read that a
    task lacked its receipt, and both wrote one: the issuer counted it received twice."""
    from sqlalchemy import select

    from node.tables import TASK_EVENTS
    from node.tasks import issue_task, write_receipts

    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    task = issue_task(county, target=station.id, kind="notice", payload={"text": "通知"})
    put = station.put
    raced = []

    def put_after_the_other(contract: str, records: Any, **options: Any) -> Any:
        if not raced:  # the other writer gets in between our read and our write
            raced.append(True)
            write_receipts(station)
        return put(contract, records, **options)

    monkeypatch.setattr(station, "put", put_after_the_other)
    await fed.pull(station.id)
    with station.store.read() as conn:
        receipts = conn.execute(
            select(TASK_EVENTS.c.task_rev).where(
                TASK_EVENTS.c.origin == station.id,
                TASK_EVENTS.c.task_id == task.id,
                TASK_EVENTS.c.status == "received",
            )
        ).all()
    assert raced and len(receipts) == 1, receipts
