"""Offline bundles (``.gtb``, PROTOCOL §10): a USB stick is a link like any other.

A downward bundle (``export --for CHILD``) carries the signed tasks a hub holds for a
child's subtree, with the issuers' certificates, checked at import exactly as tasks pulled
online.

An upward bundle is gzip NDJSON: one header line, then exactly the segment framing of a
push body — everything the parent has not acknowledged, own and relayed, as the uplink
would send it. Importing one at the parent runs the very ingest of a push, with the
bundle's sender as the caller, so every check is the same and importing twice is harmless.

The whole file is read and its framing checked before anything is stored: a truncated or
corrupted bundle is refused with nothing stored; a tampered segment is rejected on its own
(``bad_hash``, ``bad_chain``…) and never partly stored. The parent's acknowledgement comes
back on the next online sync (answers are by hash, so the resend costs nothing but bytes).

**A parent that holds less than the cursors say** (restored from an older backup) answers
every bundle starting beyond what it holds with ``gap``. Online, the uplink lowers its
cursors to the parent's heads first (``Uplink.reconcile_cursors``); a node that only
travels by USB has two ways to the same: ``export --from SEQ`` (``--from ORIGIN=SEQ`` for
a relayed origin) lowers the cursor so that the bundle starts at the seq the parent's
``gap`` asked for (the import says which, and the command), and a downward bundle carries
the hub's heads for the child's subtree, to which the child's import lowers its cursors
as the online uplink does. Cursors are only ever lowered this way, never raised: what is
sent again is compared by hash, while a cursor raised by a forged bundle would skip data.
"""

from __future__ import annotations

import contextlib
import gzip
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.compression import gunzip
from node.files import file_error
from node.ingest import Ingestor, SegmentResult
from node.runtime import Node
from node.taskfeed import task_stream, tasks_for
from node.tasks import ReceiveReport, receive_tasks
from node.uplink import collect_segments, lower_cursors
from schemas.canonical import canonical_bytes, parse_json
from schemas.errors import ErrorCode, GuantongError
from schemas.ids import is_in_subtree, is_node_id, parent_of
from schemas.segments import Segment, decode_segments, encode_segment, split_lines
from schemas.times import format_time

__all__ = [
    "BUNDLE_FORMAT",
    "ExportReport",
    "export_bundle",
    "export_tasks",
    "import_bundle",
    "import_tasks",
    "read_bundle",
    "restart_from",
]

BUNDLE_FORMAT = 1
MAX_BUNDLE_INFLATED = 2 << 30
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class ExportReport:
    path: Path
    segments: int
    entries: int
    origins: int
    bytes: int


def restart_from(node: Node, start: Mapping[str, int]) -> list[str]:
    """Lower the cursors so that each origin of ``start`` is sent again from its seq (never
    raised: an origin already sent from there or earlier keeps its cursor)."""
    for origin, seq in start.items():
        if not is_node_id(origin) or not is_in_subtree(origin, node.id):
            raise GuantongError(
                ErrorCode.INVALID_NODE_ID, f"{origin!r} is not {node.id} or a node below it"
            )
        if seq < 1:
            raise GuantongError(ErrorCode.MALFORMED, f"seqs start at 1, not {seq}")
    held = {origin: seq - 1 for origin, seq in start.items()}
    return lower_cursors(node.store, held, format_time(node.clock()), only=set(held))


def export_bundle(
    node: Node,
    out: Path,
    *,
    start: Mapping[str, int] | None = None,
    progress: Progress | None = None,
) -> ExportReport:
    """Write everything the parent has not acknowledged to ``out`` (atomically); with
    ``start``, each origin named there from that seq on at the latest (:func:`restart_from`)."""
    if start:
        restart_from(node, start)
    segments = collect_segments(node.log, max_bytes=None, progress=progress)
    header: dict[str, Any] = {
        "bundle": BUNDLE_FORMAT,
        "kind": "up",
        "from": node.id,
        "to": parent_of(node.id),
        "created": format_time(node.clock()),
        "segments": len(segments),
        "entries": sum(len(s.entries) for s in segments),
    }
    if header["to"] is None:
        del header["to"]
    body = b"".join(encode_segment(s.head, s.start, s.entries) for s in segments)
    _write_atomically(out, canonical_bytes(header) + b"\n" + body)
    return ExportReport(
        path=out,
        segments=len(segments),
        entries=header["entries"],
        origins=len({s.origin for s in segments}),
        bytes=out.stat().st_size,
    )


def export_tasks(node: Node, child: str, out: Path) -> ExportReport:
    """A downward bundle: every task revision this hub holds for ``child``'s subtree, with
    the issuers' certificate chains, for a station without a link."""
    if parent_of(child) != node.id:
        raise GuantongError(ErrorCode.NOT_IN_SUBTREE, f"{child} is not a direct child of {node.id}")
    rows = tasks_for(node, child, 0, 1 << 30)
    stream = task_stream(node, rows, 0)
    first, _, tasks = stream.partition(b"\n")
    header = {
        "bundle": BUNDLE_FORMAT,
        "kind": "down",
        "from": node.id,
        "to": child,
        "created": format_time(node.clock()),
        "tasks": len(rows),
        "certs": parse_json(first)["certs"],
        # what this hub holds of the child's subtree: the child lowers its cursors to it
        "heads": {h.origin: h.seq for h in node.log.heads(prefix=child)},
    }
    _write_atomically(out, canonical_bytes(header) + b"\n" + tasks)
    return ExportReport(
        path=out, segments=0, entries=len(rows), origins=0, bytes=out.stat().st_size
    )


def _write_atomically(out: Path, data: bytes) -> None:
    """Write under a temporary name, then rename: a full or read-only stick leaves no
    half bundle behind, and the error says which it was."""
    tmp = out.with_name(out.name + ".partial")
    try:
        with gzip.open(tmp, "wb", compresslevel=6) as stream:
            stream.write(data)
        with open(tmp, "rb") as done:
            os.fsync(done.fileno())
        os.replace(tmp, out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        error = file_error(exc, str(out))
        raise GuantongError(error.code, f"{error.message}: nothing was written") from exc


def read_bundle(path: Path) -> tuple[dict[str, Any], bytes]:
    """The header and the segment body of a bundle; any damage is ``malformed``."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise GuantongError(ErrorCode.NOT_FOUND, f"cannot read {path}: {exc.strerror}") from exc
    data = gunzip(raw, limit=MAX_BUNDLE_INFLATED, what=str(path))
    first, _, body = data.partition(b"\n")
    try:
        header = parse_json(first)
    except GuantongError as exc:
        raise GuantongError(
            ErrorCode.MALFORMED, f"{path}: bad bundle header: {exc.message}"
        ) from exc
    if not isinstance(header, dict) or header.get("bundle") != BUNDLE_FORMAT:
        raise GuantongError(
            ErrorCode.MALFORMED, f"{path}: not a Guantong bundle (format {BUNDLE_FORMAT})"
        )
    if (
        header.get("kind") not in ("up", "down")
        or not isinstance(header.get("from"), str)
        or not is_node_id(header["from"])
    ):
        raise GuantongError(
            ErrorCode.MALFORMED, f"{path}: bundle header needs a kind (up or down) and a sender id"
        )
    return header, body


def import_tasks(node: Node, path: Path) -> tuple[dict[str, Any], ReceiveReport]:
    """Take a downward bundle: the same checks as tasks pulled online."""
    header, body = read_bundle(path)
    if header["kind"] != "down" or header.get("to") != node.id:
        raise GuantongError(ErrorCode.MALFORMED, f"{path} is not a task bundle for {node.id}")
    heads = header.get("heads")  # absent from a bundle of an older release
    if heads is not None and not (
        isinstance(heads, dict)
        and all(isinstance(s, int) and not isinstance(s, bool) for s in heads.values())
    ):
        raise GuantongError(ErrorCode.MALFORMED, f"{path}: the heads are {{origin: seq}}")
    received = receive_tasks(node, split_lines(body), header.get("certs", []))
    if heads is not None and node.store.quarantine() is None:
        # what the hub held when it wrote the bundle: a bundle older than the last one
        # taken only makes the next export larger
        lower_cursors(node.store, heads, format_time(node.clock()))
    return header, received


def import_bundle(node: Node, path: Path) -> tuple[dict[str, Any], list[SegmentResult]]:
    """Ingest a bundle exactly as a push from its sender."""
    header, body = read_bundle(path)
    if header["kind"] != "up":
        raise GuantongError(
            ErrorCode.MALFORMED, f"{path} carries tasks: import it at {header.get('to')}"
        )
    ingestor = Ingestor.of(node)
    try:
        segments = list(decode_segments(split_lines(body)))
        _check_counts(header, segments)
        results = ingestor.ingest(segments, caller=header["from"])
    except GuantongError as exc:
        raise GuantongError(exc.code, f"{path}: {exc.message}", **exc.details) from exc
    return header, results


def _check_counts(header: dict[str, Any], segments: list[Segment]) -> None:
    """A bundle says how many segments and entries it carries: fewer or more is a bundle
    cut or spliced on the way (a segment dropped and the rest compressed again)."""
    found = {"segments": len(segments), "entries": sum(len(s.entries) for s in segments)}
    for name, count in found.items():
        said = header.get(name)
        if said is not None and said != count:
            raise GuantongError(
                ErrorCode.MALFORMED,
                f"the header says {said} {name}, the bundle holds {count}: it was cut or "
                "changed after it was written; nothing was imported",
            )
