"""Deadlines: reminders, overdue warnings (预警) and supervision up the chain (督办).

For every open task this node issued with a ``due`` (``assign``, ``supervise``), against
the injected clock:

- ``REMIND_BEFORE`` ahead of ``due``: a ``notice`` task reminds the target, once;
- once ``due`` has passed: a ``warning`` record (level yellow) goes into this node's log —
  it travels up like any data, so every tier above sees it — and a ``supervise`` task asks
  the target's parent to chase it (or the target itself when the parent is this node);
- every ``ESCALATE_AFTER`` further without the task done: the warning rises (orange, then
  red) and supervision moves one tier up, to the grandparent (never above this node).

``task_alerts`` remembers what was done, so the job is idempotent and survives restarts;
tests call :func:`check_deadlines` with a fake clock instead of sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from node.db import insert_ignore
from node.runtime import Node
from node.tables import TASK_ALERTS
from node.tasks import FINAL, issue_task, task_views
from schemas.ids import is_in_subtree, parent_of
from schemas.tasks import Task
from schemas.times import format_time, parse_time

__all__ = ["ESCALATE_AFTER", "REMIND_BEFORE", "DeadlineReport", "check_deadlines"]

REMIND_BEFORE = timedelta(hours=24)
ESCALATE_AFTER = timedelta(hours=72)
LEVELS = ("yellow", "orange", "red")
WATCHED = ("assign", "supervise")


@dataclass(slots=True)
class DeadlineReport:
    reminders: list[str] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    supervise: list[tuple[str, str]] = field(default_factory=list)


def check_deadlines(node: Node) -> DeadlineReport:
    report = DeadlineReport()
    now = node.clock()
    with node.store.read() as conn:
        done = {(r.task_id, r.alert) for r in conn.execute(select(TASK_ALERTS))}
    for view in task_views(node, issued_here=True):
        task = view.task
        if task.kind not in WATCHED or task.due is None or view.state in FINAL:
            continue
        due = parse_time(task.due)
        if due - REMIND_BEFORE <= now < due and (task.id, "reminder") not in done:
            issue_task(
                node,
                target=task.target,
                kind="notice",
                payload={
                    "reminder": task.id,
                    "due": task.due,
                    "text": f"任务即将到期（{task.due}），请按时办结并报告。",
                },
            )
            _mark(node, task.id, "reminder")
            report.reminders.append(task.id)
        if now <= due:
            continue
        level = min(int((now - due) / ESCALATE_AFTER), len(LEVELS) - 1)
        for step in range(level + 1):
            alert = f"overdue-{step}"
            if (task.id, alert) in done:
                continue
            supervisor = _supervisor(node.id, task, step)
            _warn(node, task, LEVELS[step], supervisor)
            issue_task(
                node,
                target=supervisor,
                kind="supervise",
                due=format_time(now + ESCALATE_AFTER),
                payload={
                    "task_id": task.id,
                    "target": task.target,
                    "due": task.due,
                    "level": LEVELS[step],
                    "text": f"{task.target} 的任务已逾期（应于 {task.due} 完成），请督办。",
                },
            )
            _mark(node, task.id, alert)
            report.warnings.append((task.id, LEVELS[step]))
            report.supervise.append((task.id, supervisor))
    return report


def _supervisor(issuer: str, task: Task, step: int) -> str:
    """Who chases an overdue task: the target's parent, then grandparent, … but never
    this node (it is the one asking) — when the chain reaches it, the target itself."""
    candidate = task.target
    for _ in range(step + 1):
        up = parent_of(candidate)
        if up is None or up == issuer or not is_in_subtree(up, issuer):
            break
        candidate = up
    return candidate


def _warn(node: Node, task: Task, level: str, supervisor: str) -> None:
    record: dict[str, Any] = {
        "kind": "overdue_task",
        "subject": {"contract": "task", "id": task.id},
        "node": task.target,
        "raised_at": format_time(node.clock()),
        "level": level,
        "message": (
            f"{task.target} 未在 {task.due} 前完成 {task.kind} 任务；已请 {supervisor} 督办。"
        ),
    }
    if task.due is not None:
        record["due"] = task.due
    node.put("warning", [(None, record)])


def _mark(node: Node, task_id: str, alert: str) -> None:
    with node.store.write() as conn:
        insert_ignore(
            conn,
            TASK_ALERTS,
            [{"task_id": task_id, "alert": alert, "at": format_time(node.clock())}],
            ["task_id", "alert"],
        )
