"""``guantong contracts``: inspect and check contract bundles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from contracts.compat import check_bundle, refusal
from contracts.registry import DEFAULT_BUNDLE, Registry
from node.cli.common import HomeOpt, JsonOpt, app, command, console, open_node, print_json
from node.tasks import publish_contracts
from schemas.errors import ErrorCode, GuantongError

__all__: list[str] = []

contracts_app = typer.Typer(help="Data contracts: list, check.", no_args_is_help=True)
app.add_typer(contracts_app, name="contracts")


@contracts_app.command("check")
@command
def check(
    directory: Annotated[
        Path | None, typer.Argument(help="Bundle folder (default: the bundle shipped).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a bundle: every minor backward compatible with all earlier minors of its major."""
    bundle = directory or DEFAULT_BUNDLE
    violations = check_bundle(_folder(bundle))
    if as_json:
        print_json(
            [
                {
                    "contract": v.contract,
                    "old_version": v.old_version,
                    "new_version": v.new_version,
                    "pointer": v.pointer,
                    "rule": v.rule,
                    "message": v.message,
                }
                for v in violations
            ]
        )
    else:
        for violation in violations:
            console.print(str(violation), markup=False, highlight=False)
    refused = refusal(violations, bundle)
    if refused is not None:
        raise refused
    if not as_json:
        registry = Registry.from_dir(bundle)
        console.print(
            f"ok: bundle {registry.bundle_version}, {len(registry.names())} contracts, "
            f"{len(registry.all_versions())} versions, every minor backward compatible"
        )


def _folder(path: Path) -> Path:
    if not path.is_dir():
        raise GuantongError(ErrorCode.NOT_FOUND, f"no bundle folder at {path}")
    return path


@contracts_app.command("list")
@command
def list_contracts(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """The contracts this node validates against: versions, status, the one it writes."""
    with open_node(home) as node:
        registry = node.registry
    rows = [
        {
            "contract": cv.name,
            "version": cv.version,
            "status": cv.status,
            "current": registry.current(cv.name).version == cv.version,
            "active_from": cv.active_from,
            "retired_from": cv.retired_from,
        }
        for cv in registry.all_versions()
    ]
    if as_json:
        print_json({"bundle_version": registry.bundle_version, "contracts": rows})
        return
    table = Table(
        "contract", "version", "status", "writes", title=f"bundle {registry.bundle_version}"
    )
    for row in rows:
        table.add_row(
            str(row["contract"]),
            str(row["version"]),
            str(row["status"]),
            "✓" if row["current"] else "",
        )
    console.print(table)


@contracts_app.command("publish")
@command
def publish(
    directory: Annotated[Path, typer.Argument(help="The new bundle folder.")],
    home: HomeOpt = None,
) -> None:
    """At the province: check a newer bundle, install it and send it to every node below."""
    violations = check_bundle(_folder(directory))
    for violation in violations:
        console.print(str(violation), markup=False, highlight=False)
    refused = refusal(violations, directory)
    if refused is not None:
        raise refused
    with open_node(home) as node:
        task = publish_contracts(node, Registry.from_dir(directory))
    console.print(f"published bundle {task.payload['bundle_version']} (contracts task {task.id})")
