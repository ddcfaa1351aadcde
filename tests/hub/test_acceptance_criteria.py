"""Acceptance criteria on a sound city: what is withdrawn, lifted or decommissioned does
not fail it."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.samples import sample_records
from hub.acceptance import accept
from node.reconcile import RemoteRoots
from node.tasks import amend_task, issue_task, revoke_node
from schemas.times import format_time
from tests.federation.harness import Federation

pytestmark = pytest.mark.anyio
STATIONS = ["js.wx.jy.s1", "js.wx.jy.s2", "js.wx.yx.s1"]


async def _city(fed: Federation) -> None:
    for station in STATIONS:
        fed.add(station)
        records = sample_records("opinion", 12, seed=len(station), origin=station)
        fed.nodes[station].put("opinion", [(None, r) for r in records])
    await fed.cascade_up(*STATIONS, "js.wx.jy", "js.wx.yx", "js.wx")


async def _accept(fed: Federation) -> dict[str, Any]:
    async with fed.client("js.wx", caller="js") as client:
        return await accept(fed.nodes["js"], "js.wx", lower=RemoteRoots(client, "http://js.wx"))


def _crit(report: dict[str, Any], cid: str) -> dict[str, Any]:
    return next(c for c in report["criteria"] if c["id"] == cid)


async def test_cancelled_assign_task_does_not_fail_timeliness(fed: Federation) -> None:
    await _city(fed)
    task = issue_task(
        fed.nodes["js"],
        target="js.wx.jy.s1",
        kind="assign",
        payload={"x": 1},
        due=format_time(fed.clock().replace(hour=12)),
    )
    amend_task(fed.nodes["js"], task.id, cancel=True)  # the issuer withdraws it
    fed.clock.advance(days=1)
    report = await _accept(fed)
    timeliness = _crit(report, "timeliness")
    assert timeliness["passed"], (timeliness["summary"], timeliness["evidence"]["late_tasks"])


async def test_cleared_red_warning_does_not_fail_timeliness(fed: Federation) -> None:
    await _city(fed)
    s1 = fed.nodes["js.wx.jy.s1"]
    raised = fed.now()
    warning = {
        "kind": "overdue_opinion",
        "subject": {"contract": "opinion", "id": "00000000-0000-4000-8000-000000000001"},
        "node": "js.wx.jy.s1",
        "raised_at": raised,
        "level": "red",
        "message": "民意办理超期",
    }
    (wid,) = s1.put("warning", [(None, warning)]).record_ids
    fed.clock.advance(hours=2)
    # supervised and solved: the warning is lifted (预警解除)
    s1.put("warning", [(None, {**warning, "id": wid, "cleared_at": fed.now()})])
    await fed.cascade_up("js.wx.jy.s1", "js.wx.jy", "js.wx")
    report = await _accept(fed)
    timeliness = _crit(report, "timeliness")
    assert timeliness["passed"], timeliness["summary"]


async def test_decommissioned_revoked_station_is_not_expected(fed: Federation) -> None:
    """No register imported: expected = every certified node. A station the city revoked
    (closed down) a while ago is no longer certified, so it is not expected to report."""
    await _city(fed)
    revoke_node(fed.nodes["js.wx"], "js.wx.jy.s2", revoked_from=fed.now())
    await fed.cascade_up("js.wx")
    fed.clock.advance(days=10)
    for station in ("js.wx.jy.s1", "js.wx.yx.s1"):
        fed.write(station, 1, seed=99)
    await fed.cascade_up("js.wx.jy.s1", "js.wx.yx.s1", "js.wx.jy", "js.wx.yx", "js.wx")
    report = await _accept(fed)
    coverage = _crit(report, "coverage")
    assert coverage["passed"], (coverage["summary"], coverage["evidence"]["silent"])
