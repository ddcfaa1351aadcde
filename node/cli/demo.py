"""``guantong demo``: a local federation of real processes (see ``node/cli/scenario.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from node.cli.common import app, command, console
from node.cli.scenario import run_demo
from schemas.errors import ErrorCode, GuantongError

__all__: list[str] = []


@app.command()
@command
def demo(
    folder: Annotated[
        Path | None, typer.Option("--dir", help="Empty folder (default: a temporary one).")
    ] = None,
    exit_after: Annotated[
        bool, typer.Option("--exit", help="Run the scenario and exit (0 if every step worked).")
    ] = False,
) -> None:
    """Build a province on loopback — real processes, real enrollment — and run a scenario."""
    if not run_demo(folder, exit_after=exit_after, console=console):
        raise GuantongError(ErrorCode.VERIFY_FAILED, "the demo scenario failed (see above)")
