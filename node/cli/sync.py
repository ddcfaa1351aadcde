"""Commands that connect nodes: serve, sync, export, import."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from node.bundles import (
    export_bundle,
    export_tasks,
    import_bundle,
    import_tasks,
    read_bundle,
    restart_from,
)
from node.cli.common import (
    HomeOpt,
    JsonOpt,
    app,
    client,
    command,
    console,
    err_console,
    open_node,
    print_json,
)
from node.downlink import pull_tasks
from node.ingest import SegmentResult
from node.recovery import ensure_recovered
from node.runtime import Node
from node.settings import load_settings
from node.uplink import SyncReport, Uplink, backlog
from schemas.errors import ErrorCode, GuantongError, code_of

__all__: list[str] = []


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )


@app.command()
@command
def serve(
    host: Annotated[str | None, typer.Option("--host")] = None,
    port: Annotated[int | None, typer.Option("--port")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Worker processes.")] = 1,
    home: HomeOpt = None,
) -> None:
    """Run the node: its HTTP API (hub endpoints on hubs) and, with a parent, the uplink.

    With several workers (PostgreSQL hubs), pushes of one origin serialise on its head row
    and only one worker runs the scheduled jobs.
    """
    import os

    import uvicorn

    from node.app import create_app
    from node.server import QuietServer

    settings = load_settings(home)
    bind_host = host or settings.host
    bind_port = port if port is not None else settings.port
    # What would stop the server once started (a key others may read, a store of a newer
    # release, a port in use) is one line here: inside uvicorn it is a traceback and exit 3.
    # One process serves with the node opened here; workers each open their own.
    node = Node.open(settings)
    try:
        _check_listen(bind_host, bind_port)
        if workers == 1:
            config = uvicorn.Config(
                create_app(settings, node=node),
                host=bind_host,
                port=bind_port,
                log_config=None,
                access_log=False,
                timeout_keep_alive=KEEP_ALIVE_S,
            )
            QuietServer(config).run()
            return
    finally:
        node.close()
    os.environ["GUANTONG_HOME"] = str(settings.home)
    uvicorn.run(
        "node.app:app_from_env",
        factory=True,
        workers=workers,
        host=bind_host,
        port=bind_port,
        log_config=None,
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_S,
    )


def _check_listen(host: str, port: int) -> None:
    """Refuse, with ``settings_invalid``, an address the server could not listen on."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise GuantongError(ErrorCode.SETTINGS_INVALID, f"cannot listen on {host}: {exc}") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise GuantongError(
                ErrorCode.SETTINGS_INVALID,
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            ) from exc


KEEP_ALIVE_S = 65
"""How long the server keeps an idle connection open. Clients drop theirs after 5 s
(httpx's default), so the server must wait longer: with uvicorn's own 5 s both ends let go
at once, and a child reusing a connection the server was just closing lost its push to a
``ReadError`` and backed off as if the parent were down."""
BUSY_PATIENCE_S = 60.0
"""How long ``guantong sync`` waits, in all, on a parent that answers ``busy``."""


async def _sync(node: Node, *, once: bool, interval: float, progress: Progress) -> SyncReport:
    """Push the outbox and take the tasks; with ``once``, one run whose failure is raised.
    Otherwise a run every ``interval`` seconds for as long as the command runs: a failed
    run (the parent away, refusing) is reported and tried again, after the backoff."""
    parent = node.settings.parent_url
    if not parent:
        raise GuantongError(ErrorCode.NO_PARENT, f"{node.id} has no parent to sync with")
    total = SyncReport()
    async with client(node) as http:
        uplink = Uplink(node.log, parent_url=parent, client=http, clock=node.clock)
        task = progress.add_task("pushing", total=sum(b.entries for b in uplink.backlog()))
        recovered = False
        while True:
            try:
                if not recovered or node.recovery_reason is not None:
                    recovered = await ensure_recovered(node, http) is not None
                await _run(node, http, uplink, total, progress, task)
            except GuantongError as exc:
                if once:
                    raise
                wait = max(interval, uplink.wait())
                progress.console.print(
                    f"error: {exc.code.value}: {exc.message} (again in {wait:.0f} s)"
                )
                await asyncio.sleep(wait)
                continue
            if once:
                return total
            await asyncio.sleep(interval)
            progress.update(task, total=total.entries + sum(b.entries for b in uplink.backlog()))


async def _run(
    node: Node,
    http: httpx.AsyncClient,
    uplink: Uplink,
    total: SyncReport,
    progress: Progress,
    task: TaskID,
) -> None:
    """One run: lower the cursors to what the parent holds (a parent restored from a
    backup is refilled), push until the outbox is empty, pull tasks."""
    await uplink.reconcile_cursors()
    progress.update(task, total=total.entries + sum(b.entries for b in uplink.backlog()))
    skip: set[str] = set()
    patience = BUSY_PATIENCE_S
    while True:
        try:
            if not await uplink.push_once(total, skip):
                break
        except GuantongError as exc:
            # a busy parent asks for seconds: wait them here rather than fail a
            # run that would succeed a moment later (anything else is reported)
            wait = uplink.wait()
            if exc.details.get("parent_code") != ErrorCode.BUSY.value or wait > patience:
                raise
            patience -= wait
            progress.update(task, description=f"parent busy, again in {wait:.0f} s")
            await asyncio.sleep(wait)
            progress.update(task, description="pushing")
            continue
        progress.update(task, completed=total.entries)
    pulled = await pull_tasks(node, http)
    total.tasks += pulled.stored


@app.command()
@command
def sync(
    once: Annotated[
        bool, typer.Option("--once", help="Push what is pending, report, exit.")
    ] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between runs.")] = 15.0,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Push everything the parent lacks (own and relayed), after recovering if needed."""
    with open_node(home) as node, _progress() as progress:
        try:
            report = asyncio.run(_sync(node, once=once, interval=interval, progress=progress))
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        left = sum(b.entries for b in backlog(node.store))
    if as_json:
        print_json({**report.to_dict(), "backlog": left})
    else:
        console.print(
            f"pushed {report.entries} entries in {report.segments} segments "
            f"({report.requests} requests); {report.invalid} marked invalid upstream; "
            f"backlog {left}; {report.tasks} new task(s) from the parent"
        )
    if report.rejected:
        first = next(iter(report.rejected.values()))
        raise GuantongError(
            code_of(first.split(":", 1)[0]),
            f"{len(report.rejected)} origin(s) rejected by the parent: "
            + "; ".join(f"{o}: {r}" for o, r in sorted(report.rejected.items())),
        )


@app.command("export")
@command
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle file to write (.gtb).")],
    for_child: Annotated[
        str | None, typer.Option("--for", help="A child: write the tasks for its subtree instead.")
    ] = None,
    start: Annotated[
        list[str] | None,
        typer.Option(
            "--from",
            metavar="[ORIGIN=]SEQ",
            help="Start this node's log (or ORIGIN's) at SEQ at the latest: what a parent "
            "that answered gap asks for (its import says the seq).",
        ),
    ] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a bundle for a USB stick: data the parent lacks (up), or a child's tasks (down)."""
    with open_node(home) as node:
        if for_child is not None:
            report = export_tasks(node, for_child, out)
        else:
            if not node.settings.parent_url:  # as `sync` says: nothing is sent up from here
                raise GuantongError(
                    ErrorCode.NO_PARENT, f"{node.id} has no parent to write a bundle for"
                )
            if start:
                restart_from(node, _starts(node.id, start))
            with _progress() as progress:
                task = progress.add_task(
                    "exporting", total=sum(b.entries for b in backlog(node.store))
                )
                report = export_bundle(node, out, progress=lambda n: progress.advance(task, n))
    if as_json:
        print_json(
            {
                "path": str(report.path),
                "segments": report.segments,
                "entries": report.entries,
                "origins": report.origins,
                "bytes": report.bytes,
                "kind": "down" if for_child else "up",
            }
        )
    elif for_child is not None:
        console.print(
            f"wrote {report.entries} task revision(s) for {for_child} to {out} "
            f"({report.bytes} bytes)"
        )
    else:
        console.print(
            f"wrote {report.entries} entries of {report.origins} origin(s) "
            f"in {report.segments} segments to {out} ({report.bytes} bytes)"
        )


def _starts(own: str, values: list[str]) -> dict[str, int]:
    """``--from`` values: ``SEQ`` (this node's log) or ``ORIGIN=SEQ``."""
    starts: dict[str, int] = {}
    for value in values:
        origin, _, seq = value.rpartition("=")
        if not seq.strip().isdigit():
            raise GuantongError(
                ErrorCode.MALFORMED, f"--from {value!r}: a seq, or ORIGIN=SEQ (e.g. --from 11)"
            )
        starts[origin.strip() or own] = int(seq)
    return starts


def _gap_hint(sender: str, results: list[SegmentResult]) -> str:
    """What the hub's operator asks the sender for when it answered ``gap``: per origin,
    the seq it expects (one line)."""
    expected: dict[str, int] = {}
    for r in results:
        seq = (r.error or {}).get("expected") if r.status != "ok" else None
        if (r.error or {}).get("code") == ErrorCode.GAP.value and isinstance(seq, int):
            expected[r.origin] = min(seq, expected.get(r.origin, seq))
    if not expected:
        return ""
    starts = " ".join(
        f"--from {seq}" if origin == sender else f"--from {origin}={seq}"
        for origin, seq in sorted(expected.items())
    )
    missing = ", ".join(f"{o} from seq {s}" for o, s in sorted(expected.items()))
    return (
        f"; this node lacks {missing}: ask {sender} for a bundle written with "
        f"`guantong export -o FILE {starts}` (or carry it a task bundle from here, "
        f"`guantong export --for {sender}`, whose import does the same)"
    )


@app.command("import")
@command
def import_(
    file: Annotated[Path, typer.Argument(help="Bundle file (.gtb).")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import a bundle: data with the checks of a push, tasks with those of a pull; twice is
    harmless."""
    started = time.monotonic()
    with open_node(home) as node:
        header, _ = read_bundle(file)
        if header["kind"] == "down":
            _, received = import_tasks(node, file)
            if as_json:
                print_json(
                    {
                        "from": header["from"],
                        "stored": received.stored,
                        "rejected": received.rejected,
                    }
                )
            else:
                console.print(f"took {received.stored} new task revision(s) from {header['from']}")
            if received.refused:
                raise GuantongError(
                    ErrorCode.MALFORMED,
                    f"{received.refused} task(s) refused: {received.rejected[0]}",
                )
            if received.deferred:  # the tasks are stored: only what follows them waits
                step, exc = received.deferred[0]
                raise GuantongError(
                    exc.code,
                    f"the tasks are stored ({received.stored} new revision(s)), the {step} "
                    f"not yet: {exc.message}; the next import or pull makes up for it",
                )
            return
        header, results = import_bundle(node, file)
    if as_json:
        print_json({"from": header["from"], "results": [r.to_dict() for r in results]})
    else:
        table = Table("origin", "held", "status", "detail", title=f"bundle from {header['from']}")
        for r in results:
            detail = (
                r.error["message"]
                if r.error
                else (f"{len(r.invalid)} invalid" if r.invalid else "")
            )
            table.add_row(r.origin, str(r.held), r.status, str(detail))
        console.print(table)
        console.print(f"imported in {time.monotonic() - started:.1f} s")
    rejected = [r for r in results if r.status != "ok"]
    if rejected:
        first = rejected[0].error or {}
        raise GuantongError(
            code_of(first.get("code")),
            f"{len(rejected)} segment(s) rejected, the rest imported: {first.get('message', '')}"
            + _gap_hint(str(header["from"]), rejected),
        )
