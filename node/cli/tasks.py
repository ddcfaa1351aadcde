"""``guantong task``: issue, amend, cancel, list and report on tasks."""

from __future__ import annotations

import hashlib
import mimetypes
import re
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Column, Table

from node.cli.common import HomeOpt, JsonOpt, app, command, console, open_node, print_json
from node.runtime import Node
from node.tasks import amend_task, issue_task, report_task, task_views
from schemas.canonical import parse_json
from schemas.errors import ErrorCode, GuantongError
from schemas.times import format_time, parse_time

__all__: list[str] = []

task_app = typer.Typer(help="Tasks: work moving down, reports moving up.", no_args_is_help=True)
app.add_typer(task_app, name="task")
_RELATIVE = re.compile(r"\+(\d+)([dhm])")
STATUSES = ("accepted", "in_progress", "done", "rejected")


def _due(node: Node, value: str | None) -> str | None:
    """RFC 3339 (…Z), or relative to now: +7d, +12h, +30m."""
    if value is None:
        return None
    match = _RELATIVE.fullmatch(value)
    if match:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[match.group(2)]
        return format_time(node.clock() + timedelta(**{unit: int(match.group(1))}))
    return format_time(parse_time(value))


def _payload(text: str) -> dict[str, Any]:
    value = parse_json(text)
    if not isinstance(value, dict):
        raise GuantongError(ErrorCode.MALFORMED, "--payload is a JSON object")
    return value


@task_app.command("issue")
@command
def issue(
    to: Annotated[str, typer.Option("--to", help="Target node id.")],
    kind: Annotated[str, typer.Option("--kind", help="assign, supervise, collect, notice, …")],
    payload: Annotated[str, typer.Option("--payload", help="JSON object.")] = "{}",
    subtree: Annotated[
        bool, typer.Option("--subtree", help="Also every node below the target.")
    ] = False,
    due: Annotated[str | None, typer.Option("--due", help="RFC 3339 time, or +7d / +12h.")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Issue a signed task to a node of this hub's subtree; prints the task id."""
    with open_node(home) as node:
        task = issue_task(
            node,
            target=to,
            kind=kind,
            payload=_payload(payload),
            subtree=subtree,
            due=_due(node, due),
        )
    if as_json:
        print_json(task.to_dict())
    else:
        typer.echo(task.id)


@task_app.command("amend")
@command
def amend(
    task_id: Annotated[str, typer.Argument(metavar="TASK_ID")],
    payload: Annotated[str | None, typer.Option("--payload", help="New JSON payload.")] = None,
    due: Annotated[str | None, typer.Option("--due", help="New deadline.")] = None,
    home: HomeOpt = None,
) -> None:
    """Amend a task this node issued (a new revision)."""
    with open_node(home) as node:
        task = amend_task(
            node, task_id, payload=_payload(payload) if payload else None, due=_due(node, due)
        )
    console.print(f"task {task.id} is now at revision {task.rev}")


@task_app.command("cancel")
@command
def cancel(
    task_id: Annotated[str, typer.Argument(metavar="TASK_ID")], home: HomeOpt = None
) -> None:
    """Cancel a task this node issued."""
    with open_node(home) as node:
        task = amend_task(node, task_id, cancel=True)
    console.print(f"task {task.id} cancelled (revision {task.rev})")


@task_app.command("list")
@command
def list_tasks(
    inbox: Annotated[
        bool, typer.Option("--inbox", help="Tasks for this node, not issued by it.")
    ] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Tasks this node issued (or, with --inbox, received), with state and history."""
    with open_node(home) as node:
        views = task_views(node, issued_here=not inbox if inbox else True)
        if inbox:
            views = [v for v in views if v.task.issuer != node.id]
    if as_json:
        print_json([v.to_dict() for v in views])
        return
    # the id is what `task report`, `amend` and `cancel` take, the target a node id:
    # never cut short (the other columns give way)
    table = Table(
        Column("id", no_wrap=True, min_width=36),
        "kind",
        Column("target", no_wrap=True),
        "due",
        "state",
        "reports",
    )
    for view in views:
        state = view.state + (
            " (overdue)"
            if view.overdue
            else " (late)"
            if view.closed_at is not None and not view.closed_on_time
            else ""
        )
        table.add_row(
            view.task.id,
            view.task.kind,
            view.task.target,
            view.task.due or "—",
            state,
            str(len(view.history)),
        )
    console.print(table)


@task_app.command("report")
@command
def report(
    task_id: Annotated[str, typer.Argument(metavar="TASK_ID")],
    status: Annotated[
        str, typer.Option("--status", help="accepted, in_progress, done or rejected.")
    ],
    note: Annotated[str | None, typer.Option("--note")] = None,
    resolution: Annotated[
        str | None, typer.Option("--resolution", help="How it was solved.")
    ] = None,
    evidence: Annotated[
        list[Path] | None, typer.Option("--evidence", help="File(s) as evidence.")
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Report on a task addressed to this node (a task_report record that travels up)."""
    if status not in STATUSES:
        raise GuantongError(ErrorCode.MALFORMED, f"--status is one of {', '.join(STATUSES)}")
    with open_node(home) as node:
        files = [_keep_evidence(node, path) for path in evidence or []]
        record_id = report_task(
            node, task_id, status, note=note, resolution=resolution, evidence=files
        )
    console.print(f"reported {status} on {task_id} (record {record_id})")


def _keep_evidence(node: Node, path: Path) -> dict[str, Any]:
    """Keep the file in the node's home by hash; the report carries name, hash and size."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GuantongError(ErrorCode.NOT_FOUND, f"cannot read {path}: {exc.strerror}") from exc
    digest = hashlib.sha256(data).hexdigest()
    store = node.settings.home / "evidence"
    store.mkdir(mode=0o700, exist_ok=True)
    if not (store / digest).exists():
        shutil.copyfile(path, store / digest)
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return {"name": path.name[:200], "sha256": digest, "size": len(data), "media_type": media}
