"""Commands on own records and log: init, put, get, list, sample, status, heads, verify."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.table import Column, Table

from node.cli.common import (
    HomeOpt,
    JsonOpt,
    MajorOpt,
    app,
    command,
    console,
    open_node,
    print_json,
    recover_first,
)
from node.runtime import Node
from node.settings import load_settings
from node.verify import VerifyReport, check_store
from schemas.canonical import parse_json
from schemas.errors import ErrorCode, GuantongError
from schemas.ids import Tier, check_node_id

__all__: list[str] = []


@app.command()
@command
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
        print_json(status)
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
@command
def put(
    contract: Annotated[str, typer.Argument(help="Contract name, e.g. opinion.")],
    file: Annotated[
        str, typer.Option("--file", "-f", help="JSON or NDJSON file, - for stdin.")
    ] = "-",
    version: Annotated[
        str | None, typer.Option("--version", help="Contract version (default: the current one).")
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Do not ask the parent first (see recovery).")
    ] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Append records to this node's log: one transaction and one signed head per call.

    Unless --offline, the node first asks its parent whether it holds more of this node's
    own log than the store does (a lost or restored store) and takes it back, so a write
    never forks the log; an unreachable parent is fine unless loss is evident.
    """
    records = _read_records(file)
    with open_node(home) as node:
        if not offline or node.recovery_reason:
            recover_first(node)
        node.refuse_foreign(records)
        result = node.put(contract, records, version=version)
    if as_json:
        print_json(
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
@command
def get(
    contract: Annotated[str, typer.Argument()],
    record_id: Annotated[str, typer.Argument(metavar="ID")],
    origin: Annotated[
        str | None,
        typer.Option(
            "--origin",
            help="The node that wrote it (a record is named by its origin and its id); "
            "needed only when several origins hold the id.",
        ),
    ] = None,
    major: MajorOpt = None,
    home: HomeOpt = None,
) -> None:
    """Print one record as JSON (its private fields included, at its origin)."""
    with open_node(home) as node:
        print_json(node.get(contract, record_id, origin=origin, major=major).to_dict())


@app.command("list")
@command
def list_records(
    contract: Annotated[str, typer.Argument()],
    limit: Annotated[int, typer.Option("--limit", help="At most this many (0: all).")] = 100,
    major: MajorOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List records of a contract (NDJSON with --json)."""
    with open_node(home) as node:
        rows = node.list(contract, limit=limit or None, major=major)
    if as_json:
        for row in rows:
            sys.stdout.write(orjson.dumps(row.to_dict()).decode() + "\n")
        return
    # the id and origin are what `get --origin` takes: never cut short
    table = Table(
        Column("id", no_wrap=True, min_width=36),
        Column("origin", no_wrap=True),
        "seq",
        "version",
        "updated",
        "data",
    )
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
@command
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
@command
def status(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """This node: id, tier, key, own head, what it holds."""
    with open_node(home) as node:
        info = node.status()
    if as_json:
        print_json(info)
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
    if info["store_corrupt"]:
        console.print(
            f"[bold red]store corrupt[/]: {escape(info['store_corrupt'])}; writes are refused "
            "until `guantong repair`",
            markup=True,
        )


@app.command()
@command
def heads(
    prefix: Annotated[str | None, typer.Option("--prefix", help="Only this subtree.")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The head of every origin this node holds, its own included."""
    with open_node(home) as node:
        rows = node.log.heads(check_node_id(prefix) if prefix is not None else None)
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
        print_json(items)
        return
    table = Table("origin", "seq", "head", "signed at")
    for item in items:
        table.add_row(
            str(item["origin"]), str(item["seq"]), str(item["head"]), str(item["time"] or "—")
        )
    console.print(table)


@app.command()
@command
def verify(
    prefix: Annotated[str | None, typer.Option("--prefix", help="Only this subtree.")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the database's integrity, re-hash every entry and check every chain and signed
    head; exit 1 on the first break. A damaged store is quarantined until `guantong repair`."""
    if prefix is not None:
        check_node_id(prefix)  # a mistyped prefix would verify nothing, and say ok
    report = VerifyReport()
    with open_node(home) as node:
        check = check_store(node.log, prefix=prefix, report=report)
    quarantine = "; the store is quarantined: writes are refused until `guantong repair`"
    if check.damage:
        raise GuantongError(
            ErrorCode.STORE_CORRUPT,
            "the database is damaged (integrity check): "
            + "; ".join(check.damage[:5])
            + quarantine,
            damage=check.damage,
        )
    problem = check.problem
    if problem is not None:
        raise GuantongError(
            ErrorCode.VERIFY_FAILED,
            str(problem) + (quarantine if check.quarantined else ""),
            origin=problem.origin,
            seq=problem.seq,
        )
    if as_json:
        print_json(
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
