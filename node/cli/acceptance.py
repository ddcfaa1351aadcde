"""``guantong accept`` and ``guantong register``: the province's acceptance check."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table
from sqlalchemy import select

from hub.acceptance import Thresholds, accept
from hub.report_html import render_report
from node.cli.common import HomeOpt, app, client, command, console, open_node
from node.db import upsert
from node.reconcile import RemoteRoots
from node.runtime import Node
from node.tables import REGISTER, REJECTIONS
from schemas.errors import ErrorCode, GuantongError
from schemas.ids import Tier, check_node_id

__all__: list[str] = []

register_app = typer.Typer(help="The organisation register (expected nodes).", no_args_is_help=True)
app.add_typer(register_app, name="register")


REGISTER_COLUMNS = ("node", "name", "tier")
"""The register's columns, in a CSV whose first line names them (``region`` optional)."""


@register_app.command("import")
@command
def register_import(
    file: Annotated[Path, typer.Argument(help="CSV with columns node,name,tier[,region].")],
    home: HomeOpt = None,
) -> None:
    """Import the expected nodes (应接尽接) that acceptance checks coverage against."""
    rows = []
    try:
        with file.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in REGISTER_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise GuantongError(
                    ErrorCode.MALFORMED,
                    f"{file}: the first line names the columns, comma-separated: "
                    f"{','.join(REGISTER_COLUMNS)}[,region]; missing {', '.join(missing)} "
                    f"(found {reader.fieldnames or 'nothing'})",
                )
            for number, row in enumerate(reader, start=2):
                try:
                    tier = Tier(row["tier"].strip())
                    rows.append(
                        {
                            "node": check_node_id(row["node"].strip()),
                            "name": row["name"].strip()[:200],
                            "tier": tier.value,
                            "region": (row.get("region") or "").strip() or None,
                        }
                    )
                except (KeyError, ValueError, AttributeError, GuantongError) as exc:
                    raise GuantongError(
                        ErrorCode.MALFORMED, f"{file} line {number}: {exc}"
                    ) from exc
    except OSError as exc:
        raise GuantongError(ErrorCode.NOT_FOUND, f"cannot read {file}: {exc.strerror}") from exc
    with open_node(home) as node, node.store.write() as conn:
        upsert(conn, REGISTER, rows, ["node"], ["name", "tier", "region"])
    console.print(f"registered {len(rows)} node(s)")


@app.command("accept")
@command
def accept_command(
    prefix: Annotated[str, typer.Argument(help="The city or county to check, e.g. js.wx.")],
    hub: Annotated[
        str | None, typer.Option("--hub", help="URL of that hub, for reconciliation.")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the signed JSON report.")
    ] = None,
    html_out: Annotated[Path | None, typer.Option("--html", help="Write the HTML report.")] = None,
    deep: Annotated[bool, typer.Option("--deep", help="Re-validate every entry in full.")] = False,
    silent_days: Annotated[int, typer.Option("--silent-days")] = Thresholds.silent_days,
    lag_hours: Annotated[float, typer.Option("--lag-p90-hours")] = Thresholds.lag_p90_hours,
    closure: Annotated[float, typer.Option("--task-closure-rate")] = Thresholds.task_closure_rate,
    valid_share: Annotated[float, typer.Option("--valid-share")] = Thresholds.valid_share,
    home: HomeOpt = None,
) -> None:
    """Check a subtree's integration criterion by criterion; exit 0 only if every one passes."""
    check_node_id(prefix)
    thresholds = Thresholds(silent_days, lag_hours, closure, valid_share)
    with open_node(home) as node:
        report = asyncio.run(_run(node, prefix, hub, thresholds, deep))
    if json_out:
        json_out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    if html_out:
        html_out.write_text(render_report(report), "utf-8")
    table = Table("criterion", "result", "summary", title=f"acceptance of {prefix}")
    for c in report["criteria"]:
        table.add_row(
            c["title"],
            "[green]通过 pass[/]" if c["passed"] else "[red]未通过 fail[/]",
            c["summary"],
        )
    console.print(table)
    if not report["passed"]:
        failed = [c["id"] for c in report["criteria"] if not c["passed"]]
        raise GuantongError(ErrorCode.VERIFY_FAILED, f"{prefix} fails: {', '.join(failed)}")


async def _run(node: Node, prefix: str, hub: str | None, thresholds: Thresholds, deep: bool) -> Any:
    if hub is None:
        return await accept(node, prefix, thresholds=thresholds, deep=deep)
    async with client(node) as http:
        return await accept(
            node, prefix, lower=RemoteRoots(http, hub), thresholds=thresholds, deep=deep
        )


@app.command("review")
@command
def review(
    origin: Annotated[
        str | None, typer.Option("--origin", help="Only refusals of this subtree.")
    ] = None,
    home: HomeOpt = None,
) -> None:
    """List the segments this hub refused and mark them reviewed (security criterion)."""
    with open_node(home) as node, node.store.write() as conn:
        query = select(REJECTIONS).where(REJECTIONS.c.reviewed.is_(False))
        if origin:
            check_node_id(origin)
            query = query.where(
                (REJECTIONS.c.origin == origin) | REJECTIONS.c.origin.startswith(origin + ".")
            )
        rows = conn.execute(query.order_by(REJECTIONS.c.id)).all()
        table = Table("at", "origin", "code", "from", "message", title="refused segments")
        for row in rows:
            table.add_row(row.at, row.origin, row.code, row.caller or "—", row.message)
        if rows:
            conn.execute(
                REJECTIONS.update()
                .where(REJECTIONS.c.id.in_([r.id for r in rows]))
                .values(reviewed=True)
            )
    console.print(table)
    console.print(f"{len(rows)} refusal(s) marked reviewed")
