"""Deadlines: reminders, overdue warnings (预警) and supervision up the chain (督办).

For every open task this node issued with a ``due`` (``assign``, ``supervise``), against
the injected clock:

- ``REMIND_BEFORE`` ahead of ``due``: a ``notice`` task reminds the target, once;
- once ``due`` has passed: a ``warning`` record (level yellow) goes into this node's log —
  it travels up like any data, so every tier above sees it — and a ``supervise`` task asks
  the target's parent to chase it (or the target itself when the parent is this node);
- every ``ESCALATE_AFTER`` further without the task done: the warning rises (orange, then
  red) and supervision moves one tier up, to the grandparent (never above this node);
- once a warned task is closed (done, rejected, cancelled), its warnings are lifted
  (解除): written again with ``cleared_at``, so that no tier above counts them open.

A ``supervise`` task is the chase of another: it is reminded and warned of like any task
with a deadline, but never escalated into supervision of its own (the task it chases
already climbs the chain), and once the chased task is closed (done, rejected, cancelled)
this node cancels it, so that the supervisor's list no longer shows it open and its
deadline raises nothing.

``task_alerts`` remembers what was done for which deadline (an amended ``due`` is watched
afresh: missing an extension is warned of again), so the job is idempotent and survives
restarts; tests call :func:`check_deadlines` with a fake clock instead of sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from node.db import insert_ignore
from node.runtime import Node
from node.tables import RECORDS, TASK_ALERTS
from node.tasks import FINAL, TaskView, amend_task, issue_task, task_views
from schemas.ids import is_in_subtree, parent_of
from schemas.tasks import Task
from schemas.times import format_time, parse_time

__all__ = ["ESCALATE_AFTER", "REMIND_BEFORE", "DeadlineReport", "check_deadlines"]

REMIND_BEFORE = timedelta(hours=24)
ESCALATE_AFTER = timedelta(hours=72)
LEVELS = ("yellow", "orange", "red")
WATCHED = ("assign", "supervise")
LIFTED = "lifted"
"""The alert remembered once a closed task's warnings are lifted."""


@dataclass(slots=True)
class DeadlineReport:
    reminders: list[str] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    supervise: list[tuple[str, str]] = field(default_factory=list)
    lifted: list[str] = field(default_factory=list)


def check_deadlines(node: Node) -> DeadlineReport:
    report = DeadlineReport()
    now = node.clock()
    with node.store.read() as conn:
        done = {(r.task_id, r.alert) for r in conn.execute(select(TASK_ALERTS))}
    views = task_views(node, issued_here=True)
    states = {v.task.id: v.state for v in views}
    warned = {task_id for task_id, alert in done if alert.startswith("overdue-")}
    lifted = {task_id for task_id, alert in done if alert == LIFTED}
    closed = {v.task.id for v in views if v.state in FINAL}
    for view in views:
        task = view.task
        if task.kind not in WATCHED or task.due is None or view.state in FINAL:
            continue
        if task.kind == "supervise" and states.get(str(task.payload.get("task_id")), "") in FINAL:
            amend_task(node, task.id, cancel=True)  # what it chased is closed
            closed.add(task.id)
            continue
        due = parse_time(task.due)
        if due - REMIND_BEFORE <= now < due and not _alerted(done, view, "reminder"):
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
            _mark(node, task.id, _alert("reminder", task))
            report.reminders.append(task.id)
        if now <= due:
            continue
        level = min(int((now - due) / ESCALATE_AFTER), len(LEVELS) - 1)
        for step in range(level + 1):
            if _alerted(done, view, f"overdue-{step}"):
                continue
            if task.kind == "supervise":
                supervisor = task.target  # warned of, not chased further
                _warn(node, task, LEVELS[step], supervisor)
            else:
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
                report.supervise.append((task.id, supervisor))
            _mark(node, task.id, _alert(f"overdue-{step}", task))
            report.warnings.append((task.id, LEVELS[step]))
    if closed & (warned - lifted):
        report.lifted.extend(_lift(node, closed & (warned - lifted)))
    return report


def _alert(name: str, task: Task) -> str:
    """The key an alert is remembered by: per deadline, so that an amended ``due`` is
    watched afresh (its digits: ``overdue-2@20261207090000000`` fits the column's 32)."""
    return f"{name}@{''.join(c for c in task.due or '' if c.isdigit())}"


def _alerted(done: set[tuple[str, str]], view: TaskView, name: str) -> bool:
    """Whether this alert was raised for the task's current deadline. Alerts remembered
    before they named their deadline (``overdue-0``) count for a task never amended, whose
    deadline cannot have moved since."""
    task = view.task
    if (task.id, _alert(name, task)) in done:
        return True
    return task.rev == 1 and (task.id, name) in done


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


def _lift(node: Node, tasks: set[str]) -> list[str]:
    """Lift (解除) the open overdue warnings of tasks now closed: each warning record is
    written again with ``cleared_at``, which travels up like the warning did (the
    province's timeliness check counts the red warnings still open). The task ids."""
    now = format_time(node.clock())
    with node.store.read() as conn:
        rows = conn.execute(
            select(RECORDS.c.record_id, RECORDS.c.data).where(
                RECORDS.c.origin == node.id,
                RECORDS.c.contract == "warning",
                RECORDS.c.data["kind"].as_string() == "overdue_task",
                RECORDS.c.data["cleared_at"].as_string().is_(None),
            )
        ).all()
    updates: list[tuple[int | None, dict[str, Any]]] = [
        (None, {**row.data, "cleared_at": now, "id": row.record_id})
        for row in rows
        if isinstance(row.data, dict) and (row.data.get("subject") or {}).get("id") in tasks
    ]
    if updates:
        node.put("warning", updates)
    for task_id in sorted(tasks):
        _mark(node, task_id, LIFTED)
    return sorted(tasks)


def _mark(node: Node, task_id: str, alert: str) -> None:
    with node.store.write() as conn:
        insert_ignore(
            conn,
            TASK_ALERTS,
            [{"task_id": task_id, "alert": alert, "at": format_time(node.clock())}],
            ["task_id", "alert"],
        )
