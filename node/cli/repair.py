"""Commands on the store itself: repair (see ``node/repair.py`` and docs/reliability.md)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.table import Table

from node.cli.common import (
    HomeOpt,
    JsonOpt,
    app,
    client,
    command,
    console,
    open_node,
    print_json,
)
from node.logs import configure_logging
from node.repair import RepairReport, repair
from node.settings import load_settings
from node.verify import VerifyReport, check_store
from schemas.errors import ErrorCode, GuantongError

__all__: list[str] = []


@app.command("repair")
@command
def repair_command(
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild even when the checks find nothing.")
    ] = False,
    offline: Annotated[
        bool, typer.Option("--offline", help="Do not take the rest back from the parent now.")
    ] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild a damaged SQLite store from what is still readable, then from the parent.

    Stop the node first. A sound store is kept and only its quarantine lifted. A damaged one
    is moved aside (never deleted) into corrupt-<time>/; every log entry that still verifies
    and every other readable row is taken into a new store; then the node takes its own
    entries beyond that back from its parent, and children resend what a hub lacks.
    """
    settings = load_settings(home)
    configure_logging(node_id=settings.node_id, tier=settings.tier.value, level="WARNING")
    parent = None if offline else (lambda node: client(node, timeout=30.0))
    report = asyncio.run(repair(settings, force=force, connect=parent))
    with open_node(home) as node:
        verified = VerifyReport()
        check = check_store(node.log, report=verified)
        heads = {h.origin: h.seq for h in node.log.heads()}
        waiting = node.recovery_reason
    if as_json:
        print_json(
            {
                **report.to_dict(),
                "heads": heads,
                "verified": check.problem is None and not check.damage,
                "recovery_required": waiting,
            }
        )
    else:
        _print(report, waiting)
    if check.damage or check.problem is not None:
        raise GuantongError(
            ErrorCode.VERIFY_FAILED,
            f"the store still does not verify: {'; '.join(check.damage) or check.problem}",
        )
    if not as_json:
        console.print(
            f"verify: ok, {verified.entries} entries, {verified.signed_heads} signed heads, "
            f"{verified.origins} origin(s)"
        )


def _print(report: RepairReport, waiting: str | None) -> None:
    if not report.rebuilt:
        console.print("the store is sound: nothing to rebuild; writes are allowed again")
        return
    console.print(f"rebuilt the store; the damaged files are kept in {report.aside}")
    for line in report.damage[:5]:
        console.print(f"  damage: {line}", markup=False)
    table = Table("origin", "damaged store", "rebuilt store")
    for item in report.origins:
        table.add_row(item.origin, "?" if item.before is None else str(item.before), str(item.held))
    console.print(table)
    copied: dict[str, Any] = {k: v for k, v in sorted(report.rows.items()) if v}
    console.print("rows taken: " + ", ".join(f"{k} {v}" for k, v in copied.items()))
    if report.unreadable:
        console.print(
            "unreadable stretches: "
            + ", ".join(f"{k} {v}" for k, v in sorted(report.unreadable.items()))
        )
    if report.restored:
        console.print(f"took {report.restored} own entries back from the parent")
    if report.recovery_error:
        console.print(f"could not ask the parent: {report.recovery_error}", markup=False)
    if report.kept:
        console.print(
            f"kept {report.kept} own entries read beyond the rebuilt log in salvaged.db: "
            "stored at the next start, after what the parent gives back"
        )
    if waiting:
        console.print(
            f"writes wait for the parent: {waiting}; it gives the rest back once reachable",
            markup=False,
        )
    console.print("children resend what this node lacks on their next sync")
