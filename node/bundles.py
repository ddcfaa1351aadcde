"""Offline bundles (``.gtb``, PROTOCOL §10): a USB stick is a link like any other.

An upward bundle is gzip NDJSON: one header line, then exactly the segment framing of a
push body — everything the parent has not acknowledged, own and relayed, as the uplink
would send it. Importing one at the parent runs the very ingest of a push, with the
bundle's sender as the caller, so every check is the same and importing twice is harmless.

The whole file is read and its framing checked before anything is stored: a truncated or
corrupted bundle is refused with nothing stored; a tampered segment is rejected on its own
(``bad_hash``, ``bad_chain``…) and never partly stored. The parent's acknowledgement comes
back on the next online sync (answers are by hash, so the resend costs nothing but bytes).
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.ingest import Ingestor, SegmentResult
from node.runtime import Node
from node.uplink import collect_segments
from schemas.canonical import canonical_bytes, parse_json
from schemas.errors import ErrorCode, GuantongError
from schemas.ids import is_node_id, parent_of
from schemas.segments import encode_segment
from schemas.times import format_time

__all__ = ["BUNDLE_FORMAT", "ExportReport", "export_bundle", "import_bundle", "read_bundle"]

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


def export_bundle(node: Node, out: Path, *, progress: Progress | None = None) -> ExportReport:
    """Write everything the parent has not acknowledged to ``out`` (atomically)."""
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
    tmp = out.with_name(out.name + ".partial")
    with gzip.open(tmp, "wb", compresslevel=6) as stream:
        stream.write(canonical_bytes(header) + b"\n")
        for segment in segments:
            stream.write(encode_segment(segment.head, segment.start, segment.entries))
    with open(tmp, "rb") as done:
        os.fsync(done.fileno())
    os.replace(tmp, out)
    return ExportReport(
        path=out,
        segments=len(segments),
        entries=header["entries"],
        origins=len({s.origin for s in segments}),
        bytes=out.stat().st_size,
    )


def read_bundle(path: Path) -> tuple[dict[str, Any], bytes]:
    """The header and the segment body of a bundle; any damage is ``malformed``."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise GuantongError(ErrorCode.NOT_FOUND, f"cannot read {path}: {exc.strerror}") from exc
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(raw, MAX_BUNDLE_INFLATED + 1)
    except zlib.error as exc:
        raise GuantongError(
            ErrorCode.MALFORMED, f"{path} is not a valid bundle (gzip: {exc})"
        ) from exc
    if len(data) > MAX_BUNDLE_INFLATED:
        raise GuantongError(
            ErrorCode.TOO_LARGE, f"{path} inflates beyond {MAX_BUNDLE_INFLATED} bytes"
        )
    if not inflater.eof:
        raise GuantongError(
            ErrorCode.MALFORMED, f"{path} is truncated (the gzip stream ends early)"
        )
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
        header.get("kind") != "up"
        or not isinstance(header.get("from"), str)
        or not is_node_id(header["from"])
    ):
        raise GuantongError(
            ErrorCode.MALFORMED, f"{path}: bundle header needs kind 'up' and a sender id"
        )
    return header, body


def import_bundle(node: Node, path: Path) -> tuple[dict[str, Any], list[SegmentResult]]:
    """Ingest a bundle exactly as a push from its sender."""
    header, body = read_bundle(path)
    ingestor = Ingestor(
        store=node.store,
        hub_id=node.id,
        registry=node.registry,
        keyring=node.keyring,
        clock=node.clock,
    )
    try:
        results = ingestor.push(body, caller=header["from"])
    except GuantongError as exc:
        raise GuantongError(exc.code, f"{path}: {exc.message}", **exc.details) from exc
    return header, results
