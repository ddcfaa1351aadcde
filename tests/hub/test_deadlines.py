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
