"""A task's life past its first delivery: actions made good after a failure, revisions
only its issuer makes, states that follow amendments, closure on time or late, and the
deadline job's alerts per deadline."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from hub.acceptance import Thresholds, _timeliness
from hub.deadlines import check_deadlines
from node.runtime import Node
from node.tasks import (
    _store,
    amend_task,
    issue_task,
    latest_task,
    publish_contracts,
    report_task,
    revoke_node,
    task_views,
)
from schemas.errors import ErrorCode, GuantongError
from schemas.tasks import Task, sign_task
from schemas.times import format_time
from tests.conftest import newer_bundle
from tests.federation.harness import Federation

pytestmark = pytest.mark.anyio


def _assign(fed: Federation, issuer: Node, station: Node, text: str, *, days: int) -> Task:
    """An ``assign`` task from ``issuer`` to ``station``, due ``days`` from now."""
    due = format_time(fed.clock() + timedelta(days=days))
    return issue_task(issuer, target=station.id, kind="assign", payload={"text": text}, due=due)


def _fail_once(monkeypatch: pytest.MonkeyPatch, obj: Any, name: str) -> list[int]:
    """Make ``obj.name`` raise storage_full on its first call (a disk full for a moment)."""
    real, calls = getattr(obj, name), []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise GuantongError(ErrorCode.STORAGE_FULL, "no space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, name, flaky)
    return calls


async def test_a_revocation_that_failed_is_applied_by_the_next_pull(
    fed: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    city = fed.add("js.wx")
    station = fed.add("js.wx.jy.s1")
    county = fed.nodes["js.wx.jy"]
    fed.write(station.id, 2)
    await fed.cascade_up(station.id, "js.wx.jy")
    fed.clock.advance(seconds=1)
    revoke_node(city, station.id, revoked_from=format_time(fed.clock()))
    calls = _fail_once(monkeypatch, county.keyring, "revoke")
    with pytest.raises(GuantongError) as failed:
        await fed.pull(county.id)
    assert failed.value.code is ErrorCode.STORAGE_FULL
    assert latest_task(county, task_views(city, issued_here=True)[0].task.id) is None  # nothing
    report = await fed.pull(county.id)  # the next poll, the disk fine again
    assert len(calls) == 2 and report.revoked == 1
    key = county.keyring.lookup(station.signer.key_id)
    assert key is not None and key.revoked_from == format_time(fed.clock())
    fed.clock.advance(seconds=1)
    fed.write(station.id, 1, seed=3)
    with pytest.raises(GuantongError, match="revoked"):
        await fed.sync(station.id)
    assert (await fed.pull(county.id)).revoked == 0  # applied once: again changes nothing


async def test_a_bundle_that_failed_to_install_is_installed_by_the_next_pull(
    fed: Federation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    station = fed.add("js.wx.jy.s1")
    province = fed.nodes["js"]
    publish_contracts(province, newer_bundle(tmp_path))
    await fed.cascade_down("js.wx", "js.wx.jy")
    calls = _fail_once(monkeypatch, station, "install_contracts")
    first = await fed.pull(station.id)  # stored; the install failed after the commit
    assert first.stored == 1 and first.installed_bundle is None
    assert any("storage_full" in r for r in first.rejected)
    assert station.registry.bundle_version == 1
    second = await fed.pull(station.id)  # nothing new from above, the bundle held
    assert (second.stored, second.installed_bundle, len(calls)) == (0, 2, 2)
    assert station.registry.bundle_version == 2
    assert (await fed.pull(station.id)).installed_bundle is None


async def test_only_its_issuer_revises_a_task(fed: Federation) -> None:
    """A hub in between cannot amend or cancel, under its own key, a task from above."""
    city = fed.add("js.wx")
    station = fed.add("js.wx.jy.s1")
    county = fed.nodes["js.wx.jy"]
    task = _assign(fed, city, station, "市里交办：修桥", days=3)
    await fed.cascade_down(county.id)
    fields = {**task.to_dict(), "issuer": county.id, "rev": 2, "issued": format_time(fed.clock())}
    forged = sign_task(county.signer, {**fields, "payload": {"cancelled": True}})
    _store(county, [forged])
    pulled = await fed.pull(station.id)
    assert pulled.stored == 1 and len(pulled.rejected) == 1
    assert pulled.rejected[0].startswith("forbidden:")
    latest = latest_task(station, task.id)
    assert latest is not None and (latest.issuer, latest.rev) == (city.id, 1)
    report_task(station, task.id, "done", resolution="已修好")  # the task stands


async def test_an_amendment_reopens_a_task_its_target_rejected_or_closed(
    fed: Federation,
) -> None:
    station = fed.add("js.wx.jy.s1")
    county = fed.nodes["js.wx.jy"]
    task = _assign(fed, county, station, "修路灯", days=3)
    await fed.cascade_down(station.id)
    report_task(station, task.id, "rejected", note="地址不全")
    await fed.cascade_up(station.id)
    (view,) = task_views(county, issued_here=True)
    assert view.state == "rejected" and view.closed_at is not None
    amend_task(
        county,
        task.id,
        payload={"text": "修路灯，地址：解放路 12 号"},
        due=format_time(fed.clock() + timedelta(days=5)),
    )
    await fed.cascade_down(station.id)
    (inbox,) = task_views(station, issued_here=False)
    assert (inbox.state, inbox.task.rev, inbox.closed_at) == ("delivered", 2, None)
    report_task(station, task.id, "accepted")
    report_task(station, task.id, "done", resolution="已修好")
    await fed.cascade_up(station.id)
    (view,) = task_views(county, issued_here=True)
    assert view.state == "done" and view.closed_on_time
    amend_task(county, task.id, payload={"text": "请补充现场照片"})
    (view,) = task_views(county, issued_here=True)
    assert view.state == "in_progress"  # the work was done once; the new revision awaits
    fed.clock.advance(days=6)  # a day past the deadline, not closed again: watched as open
    assert check_deadlines(county).warnings == [(task.id, "yellow")]


async def test_a_task_closed_after_its_deadline_is_not_closed_on_time(
    fed: Federation,
) -> None:
    station = fed.add("js.wx.jy.s1")
    province = fed.nodes["js"]
    task = _assign(fed, province, station, "x", days=1)
    await fed.cascade_down("js.wx", "js.wx.jy", station.id)
    fed.clock.advance(days=5)
    report_task(station, task.id, "done", resolution="晚了四天")
    await fed.cascade_up(station.id, "js.wx.jy", "js.wx")
    (view,) = [v for v in task_views(province, issued_here=True) if v.task.id == task.id]
    assert (view.state, view.overdue, view.closed_on_time) == ("done", False, False)
    assert view.closed_at == format_time(fed.clock())
    timeliness = _timeliness(province, "js.wx", Thresholds(), fed.clock())
    assert timeliness.evidence["tasks_closed_on_time"] == 0
    assert timeliness.evidence["late_tasks"] == [task.id]
    assert not timeliness.passed


async def test_a_missed_extension_is_warned_of_again(fed: Federation) -> None:
    station = fed.add("js.wx.jy.s1")
    county = fed.nodes["js.wx.jy"]
    task = _assign(fed, county, station, "x", days=1)
    fed.clock.advance(days=1, hours=1)
    assert check_deadlines(county).warnings == [(task.id, "yellow")]
    assert check_deadlines(county).warnings == []
    amend_task(county, task.id, due=format_time(fed.clock() + timedelta(days=2)))
    fed.clock.advance(days=1, hours=12)  # within a day of the new deadline
    assert check_deadlines(county).reminders == [task.id]
    fed.clock.advance(hours=13)  # past it, still open
    assert check_deadlines(county).warnings == [(task.id, "yellow")]
    assert check_deadlines(county).warnings == []


async def test_supervision_ends_with_the_task_it_chases(fed: Federation) -> None:
    city = fed.add("js.wx")
    station = fed.add("js.wx.jy.s1")
    task = _assign(fed, city, station, "x", days=1)
    await fed.cascade_down("js.wx.jy", station.id)
    fed.clock.advance(days=1, hours=1)
    first = check_deadlines(city)
    assert first.warnings == [(task.id, "yellow")] and first.supervise == [(task.id, "js.wx.jy")]
    report_task(station, task.id, "done", resolution="办结（晚了一小时）")
    await fed.cascade_up(station.id, "js.wx.jy")
    raised = []
    for _ in range(4):
        fed.clock.advance(days=3)
        raised += check_deadlines(city).warnings
    assert raised == []
    supervise = [v for v in task_views(city, issued_here=True) if v.task.kind == "supervise"]
    assert [v.state for v in supervise] == ["cancelled"]
    assert [w.data["level"] for w in city.list("warning") if w.data] == ["yellow"]
    await fed.cascade_down("js.wx.jy")
    (inbox,) = [
        v
        for v in task_views(fed.nodes["js.wx.jy"], issued_here=False)
        if v.task.kind == "supervise"
    ]
    assert inbox.state == "cancelled"


async def test_a_supervisor_that_does_not_answer_is_warned_of_not_chased_again(
    fed: Federation,
) -> None:
    city = fed.add("js.wx")
    station = fed.add("js.wx.jy.s1")
    task = _assign(fed, city, station, "x", days=1)
    fed.clock.advance(days=1, hours=1)
    check_deadlines(city)
    fed.clock.advance(days=3, hours=1)  # the task orange; the first supervise task overdue
    report = check_deadlines(city)
    assert report.supervise == [(task.id, "js.wx.jy")]  # the task's chase, not the chase's
    supervise = [v for v in task_views(city, issued_here=True) if v.task.kind == "supervise"]
    assert len(supervise) == 2
    chased = {v.task.payload["task_id"] for v in supervise}
    assert chased == {task.id}
