"""Shared pieces of the ``guantong`` command line: the app, options, error handling.

Every failure prints one line ``error: <code>: <message>`` on stderr and exits 1; usage
errors exit 2 (Typer's convention). Every command that prints data takes ``--json``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import httpx
import orjson
import typer
from rich.console import Console

from node.auth import NodeAuth
from node.files import file_error
from node.logs import configure_logging
from node.recovery import ensure_recovered
from node.runtime import Node
from node.settings import load_settings
from schemas.errors import GuantongError

__all__ = [
    "HomeOpt",
    "JsonOpt",
    "MajorOpt",
    "app",
    "command",
    "console",
    "err_console",
    "open_node",
    "client",
    "print_json",
    "recover_first",
]

app = typer.Typer(
    name="guantong",
    help="Guantong (贯通): one node of a people's-congress federation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200)
"""Tables on stdout. Piped or redirected (no terminal to fit), it is 200 columns wide
instead of rich's 80, so that a table saved or read by a script keeps its ids whole."""
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

P = ParamSpec("P")
R = TypeVar("R")

HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", envvar="GUANTONG_HOME", help="Node home folder (or GUANTONG_HOME)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
MajorOpt = Annotated[
    int | None,
    typer.Option("--major", help="Present records in this major version (upcast if older)."),
]


def command(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn :class:`GuantongError` into one stderr line naming its code, exit status 1; a
    file the command could not write or read (``--out`` on a full stick, a folder that
    does not exist) likewise, by :func:`node.files.file_error`."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except GuantongError as exc:
            err_console.print(f"error: {exc.code.value}: {exc.message}", markup=False)
            raise typer.Exit(1) from exc
        except OSError as exc:
            error = file_error(exc)
            err_console.print(f"error: {error.code.value}: {error.message}", markup=False)
            raise typer.Exit(1) from exc

    return wrapper


@contextmanager
def open_node(home: Path | None) -> Iterator[Node]:
    settings = load_settings(home)
    configure_logging(node_id=settings.node_id, tier=settings.tier.value, level="WARNING")
    node = Node.open(settings)
    try:
        yield node
    finally:
        node.close()


def client(node: Node, timeout: float = 30.0) -> httpx.AsyncClient:
    """The HTTP client of node-to-node calls made from the command line (signed)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        auth=NodeAuth(node.id, node.signer, node.clock),
    )


def recover_first(node: Node) -> None:
    """Take back own entries the parent holds beyond our head before writing (recovery)."""

    async def run() -> None:
        async with client(node, timeout=10.0) as http:
            report = await ensure_recovered(node, http)
        if report is not None and report.restored:
            err_console.print(
                f"recovered {report.restored} own entries from the parent", markup=False
            )

    asyncio.run(run())


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
