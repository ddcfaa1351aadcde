"""The ``guantong`` command line (Typer); a composition root, so it may mount hub commands.

Every failure prints one line ``error: <code>: <message>`` on stderr and exits 1; usage
errors exit 2 (Typer's convention). Every command that prints data takes ``--json``.
"""

from __future__ import annotations

from node.cli import (  # noqa: F401  (they register their commands)
    acceptance,
    contracts,
    demo,
    records,
    repair,
    sync,
    tasks,
    trust,
    users,
)
from node.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    app()
