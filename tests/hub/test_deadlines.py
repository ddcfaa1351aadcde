"""Deadlines with an injected clock: reminders, overdue warnings, supervision up the chain."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hub.deadlines import check_deadlines
from node.tasks import issue_task, report_task, task_views
from schemas.times import format_time
from tests.federation.harness import Federation

pytestmark = pytest.mark.anyio


async def test_reminder_overdue_warning_and_escalation(fed: Federation) -> None:
    city = fed.add("js.wx")
    station = fed.add("js.wx.jy.s1")
    fed.clock.advance(hours=1)
    due = format_time(fed.clock().replace(hour=9) + timedelta(days=2))
    task = issue_task(city, target=station.id, kind="assign", payload={"opinion": "路灯"}, due=due)
    assert check_deadlines(city).reminders == []
    fed.clock.advance(days=1, hours=12)  # within 24 h of due
    assert check_deadlines(city).reminders == [task.id]
    assert check_deadlines(city).reminders == []  # once
    fed.clock.advance(days=1)  # overdue
    report = check_deadlines(city)
    assert report.warnings == [(task.id, "yellow")]
    assert report.supervise == [(task.id, "js.wx.jy")]  # the station's parent chases it
    (warning,) = city.list("warning")
    assert (
        warning.data is not None
        and warning.data["level"] == "yellow"
        and warning.data["node"] == station.id
    )
    (view,) = [v for v in task_views(city, issued_here=True) if v.task.id == task.id]
    assert view.overdue
    fed.clock.advance(days=3)  # still not done: orange, and the chain goes up (not above the city)
    report = check_deadlines(city)
    assert report.warnings == [(task.id, "orange")]
    assert report.supervise == [(task.id, "js.wx.jy")]
    supervise = [v for v in task_views(city, issued_here=True) if v.task.kind == "supervise"]
    assert {v.task.target for v in supervise} == {"js.wx.jy"}
    await fed.cascade_down("js.wx.jy", station.id)
    county_inbox = task_views(fed.nodes["js.wx.jy"], issued_here=False)
    assert any(v.task.kind == "supervise" for v in county_inbox)


async def test_done_in_time_raises_nothing(fed: Federation) -> None:
    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    task = issue_task(
        county,
        target=station.id,
        kind="assign",
        payload={},
        due=format_time(fed.clock() + timedelta(days=5)),
    )
    await fed.cascade_down(station.id)
    report_task(station, task.id, "done", resolution="已办结")
    await fed.cascade_up(station.id)
    fed.clock.advance(days=10)
    report = check_deadlines(county)
    assert (report.warnings, report.supervise) == ([], [])
    assert county.list("warning") == []


async def test_the_warnings_of_a_task_closed_late_are_lifted(fed: Federation) -> None:
    city = fed.add("js.wx")
    station = fed.add("js.wx.jy.s1")
    due = format_time(fed.clock() + timedelta(days=1))
    task = issue_task(city, target=station.id, kind="assign", payload={}, due=due)
    await fed.cascade_down("js.wx.jy", station.id)
    for _ in range(3):  # yellow, orange, red
        fed.clock.advance(days=3, hours=1)
        check_deadlines(city)
    warned = [w.data for w in city.list("warning") if w.data is not None]
    levels = [w["level"] for w in warned if w["subject"]["id"] == task.id]
    assert sorted(levels) == ["orange", "red", "yellow"]
    chases = {w["subject"]["id"] for w in warned} - {task.id}
    assert chases  # the deadlines of its supervise tasks passed too
    assert check_deadlines(city).lifted == []  # still open: nothing to lift
    report_task(station, task.id, "done", resolution="已办结")
    await fed.cascade_up(station.id, "js.wx.jy")
    fed.clock.advance(hours=1)
    # the task's warnings, and those of its chases, cancelled with it
    assert check_deadlines(city).lifted == sorted({task.id} | chases)
    cleared = {w.data and w.data.get("cleared_at") for w in city.list("warning")}
    assert cleared == {fed.now()}
    assert check_deadlines(city).lifted == []  # once
    await fed.cascade_up("js.wx")
    province = fed.nodes["js"]
    assert len(province.list("warning")) == len(warned)
    assert all(w.data and w.data.get("cleared_at") for w in province.list("warning"))
