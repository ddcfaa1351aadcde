"""The ``guantong`` command line (Typer). Composition root: may mount hub commands.

Every failure prints one line ``error: <code>: <message>`` on stderr and exits 1; usage
errors exit 2 (Typer's convention). Every command that prints data takes ``--json``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import orjson
import typer
from rich.console import Console
from rich.table import Table

from node.logs import configure_logging
from node.runtime import Node
from node.settings import NodeSettings, load_settings
from node.verify import VerifyReport, verify_log
from schemas.canonical import parse_json
from schemas.errors import ErrorCode, GuantongError
from schemas.ids import Tier

__all__ = ["app", "main"]

app = typer.Typer(
    name="guantong",
    help="Guantong (贯通): one node of a people's-congress federation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
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


def _command(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn :class:`GuantongError` into one stderr line naming its code, exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except GuantongError as exc:
            err_console.print(f"error: {exc.code.value}: {exc.message}", markup=False)
            raise typer.Exit(1) from exc

    return wrapper


@contextmanager
def _open(home: Path | None) -> Iterator[Node]:
    settings = load_settings(home)
    configure_logging(node_id=settings.node_id, tier=settings.tier.value, level="WARNING")
    node = Node.open(settings)
    try:
        yield node
    finally:
        node.close()


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


@app.command()
@_command
def init(
    node_id: Annotated[str, typer.Option("--id", help="Node id, e.g. js.wx.jy.s012.")],
    tier: Annotated[Tier, typer.Option("--tier", help="Tier of this node.")],
    parent: Annotated[str | None, typer.Option("--parent", help="Parent hub URL.")] = None,
    home: HomeOpt = None,
    db: Annotated[
        str | None, typer.Option("--db", help="Database URL (default: SQLite in home).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a node: home folder, Ed25519 key (mode 0600), store and configuration."""
    if home is None:
        raise GuantongError(
            ErrorCode.HOME_MISSING, "no node home: pass --home or set GUANTONG_HOME"
        )
    overrides: dict[str, Any] = {"id": node_id, "tier": tier, "parent_url": parent}
    if db:
        overrides["db_url"] = db
    settings = load_settings(home, **overrides)
    node = Node.init(settings)
    try:
        status = node.status()
    finally:
        node.close()
    if as_json:
        _print_json(status)
    else:
        console.print(
            f"initialised {tier.value} node [bold]{node_id}[/] in {home} (key {status['key_id']})"
        )


def _read_records(source: str) -> list[tuple[int | None, dict[str, Any]]]:
    """One JSON object, or NDJSON (one object per line; blank lines skipped)."""
    raw = sys.stdin.buffer.read() if source == "-" else _read_file(Path(source))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise GuantongError(
            ErrorCode.MALFORMED, f"line {line}: input is not valid UTF-8", line=line
        ) from exc
    try:
        whole = parse_json(text)
    except GuantongError:
        whole = None
    if isinstance(whole, dict):
        return [(1, whole)]
    records: list[tuple[int | None, dict[str, Any]]] = []
    for number, line_text in enumerate(text.split("\n"), start=1):
        if not line_text.strip():
            continue
        try:
            value = parse_json(line_text)
        except GuantongError as exc:
            raise GuantongError(exc.code, f"line {number}: {exc.message}", line=number) from exc
        if not isinstance(value, dict):
            raise GuantongError(
                ErrorCode.MALFORMED, f"line {number}: a record is a JSON object", line=number
            )
        records.append((number, value))
    if not records:
        raise GuantongError(ErrorCode.MALFORMED, "no records in input")
    return records


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise GuantongError(ErrorCode.NOT_FOUND, f"cannot read {path}: {exc.strerror}") from exc


@app.command()
@_command
def put(
    contract: Annotated[str, typer.Argument(help="Contract name, e.g. opinion.")],
    file: Annotated[
        str, typer.Option("--file", "-f", help="JSON or NDJSON file, - for stdin.")
    ] = "-",
    version: Annotated[
        str | None, typer.Option("--version", help="Contract version (default: the current one).")
    ] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Append records to this node's log: one transaction and one signed head per call."""
    records = _read_records(file)
    with _open(home) as node:
        result = node.put(contract, records, version=version)
    if as_json:
        _print_json(
            {
                "first": result.first,
                "last": result.last,
                "head": result.head.to_dict(),
                "ids": list(result.record_ids),
            }
        )
    else:
        console.print(
            f"appended {result.last - result.first + 1} entries "
            f"(seq {result.first}–{result.last}), head {result.head.head[:16]}…"
        )


@app.command()
@_command
def get(
    contract: Annotated[str, typer.Argument()],
    record_id: Annotated[str, typer.Argument(metavar="ID")],
    major: MajorOpt = None,
    home: HomeOpt = None,
) -> None:
    """Print one record as JSON (its private fields included, at its origin)."""
    with _open(home) as node:
        _print_json(node.get(contract, record_id, major=major).to_dict())


@app.command("list")
@_command
def list_records(
    contract: Annotated[str, typer.Argument()],
    limit: Annotated[int, typer.Option("--limit", help="At most this many (0: all).")] = 100,
    major: MajorOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List records of a contract (NDJSON with --json)."""
    with _open(home) as node:
        rows = node.list(contract, limit=limit or None, major=major)
    if as_json:
        for row in rows:
            sys.stdout.write(orjson.dumps(row.to_dict()).decode() + "\n")
        return
    table = Table("id", "origin", "seq", "version", "updated", "data")
    for row in rows:
        preview = orjson.dumps(row.data).decode()
        table.add_row(
            row.id,
            row.origin,
            str(row.seq),
            row.version,
            row.updated_at,
            preview if len(preview) <= 60 else preview[:59] + "…",
        )
    console.print(table)


@app.command()
@_command
def sample(
    contract: Annotated[str, typer.Argument(help="Contract name, e.g. opinion.")],
    count: Annotated[int, typer.Option("--count", "-n", min=0, help="How many records.")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same records.")] = 0,
    version: Annotated[str | None, typer.Option("--version", help="Contract version.")] = None,
    origin: Annotated[
        str, typer.Option("--origin", help="Station the records pretend to come from.")
    ] = "js.wx.jy.s001",
) -> None:
    """Print realistic, valid, deterministic records as NDJSON (for tests, demos, benchmarks)."""
    from contracts.samples import sample_records

    try:
        records = sample_records(contract, count, seed=seed, version=version, origin=origin)
    except ValueError as exc:
        raise GuantongError(ErrorCode.UNKNOWN_CONTRACT, str(exc)) from exc
    out = sys.stdout
    for record in records:
        out.write(orjson.dumps(record).decode() + "\n")


@app.command()
@_command
def status(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """This node: id, tier, key, own head, what it holds."""
    with _open(home) as node:
        info = node.status()
    if as_json:
        _print_json(info)
        return
    head = info["head"]
    console.print(
        f"[bold]{info['id']}[/] ({info['tier']}), key {info['key_id']}, "
        f"parent {info['parent'] or '—'}"
    )
    console.print(f"own head: seq {head['seq']} {head['hash'] or '—'}")
    console.print(
        f"holds {info['entries']} entries of {info['origins']} origin(s) in {info['store']}"
    )


@app.command()
@_command
def heads(
    prefix: Annotated[str | None, typer.Option("--prefix", help="Only this subtree.")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The head of every origin this node holds, its own included."""
    with _open(home) as node:
        rows = node.log.heads(prefix)
    items = [
        {
            "origin": h.origin,
            "seq": h.seq,
            "head": h.head,
            "time": h.signed.time if h.signed else None,
        }
        for h in rows
    ]
    if as_json:
        _print_json(items)
        return
    table = Table("origin", "seq", "head", "signed at")
    for item in items:
        table.add_row(
            str(item["origin"]), str(item["seq"]), str(item["head"]), str(item["time"] or "—")
        )
    console.print(table)


@app.command()
@_command
def verify(
    prefix: Annotated[str | None, typer.Option("--prefix", help="Only this subtree.")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-hash every entry and check every chain and signed head; exit 1 on the first break."""
    report = VerifyReport()
    with _open(home) as node:
        problem = next(verify_log(node.log, prefix=prefix, report=report), None)
    if problem is not None:
        raise GuantongError(
            ErrorCode.VERIFY_FAILED, str(problem), origin=problem.origin, seq=problem.seq
        )
    if as_json:
        _print_json(
            {
                "ok": True,
                "origins": report.origins,
                "entries": report.entries,
                "signed_heads": report.signed_heads,
            }
        )
    else:
        console.print(
            f"ok: {report.entries} entries, {report.signed_heads} signed heads, "
            f"{report.origins} origin(s) verified"
        )


@app.command()
@_command
def serve(
    host: Annotated[str | None, typer.Option("--host")] = None,
    port: Annotated[int | None, typer.Option("--port")] = None,
    home: HomeOpt = None,
) -> None:
    """Run the node's HTTP API (uvicorn)."""
    import uvicorn

    from node.app import create_app

    settings: NodeSettings = load_settings(home)
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        access_log=False,
    )


def main() -> None:
    app()
