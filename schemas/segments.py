"""Segment framing: the NDJSON codec of PROTOCOL §4 (push bodies, entries, bundles).

A segment is one header line ``{"from":N,"head":{SH}}`` followed by exactly
``SH.seq − N + 1`` lines, each the exact bytes of one entry. Framing is all this module
knows: it counts lines and parses headers. Hashes, chains and signatures are checked by
the receiver, which needs the store.

A broken header makes the rest of the stream unreadable (the line count is unknown), so
the decoder raises :class:`FramingError` naming the 1-based line; a bad entry line is the
receiver's business, since the count still holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from schemas.canonical import canonical_bytes, parse_json
from schemas.errors import CanonicalError, ErrorCode, FramingError, GuantongError
from schemas.log import SignedHead

__all__ = ["MAX_SEGMENT_ENTRIES", "Segment", "decode_segments", "encode_segment", "split_lines"]

MAX_SEGMENT_ENTRIES = 100_000


@dataclass(frozen=True, slots=True)
class Segment:
    head: SignedHead
    start: int
    entries: tuple[bytes, ...]
    line: int = 0
    """1-based line number of the header in the stream it was read from."""

    @property
    def origin(self) -> str:
        return self.head.origin

    @property
    def end(self) -> int:
        return self.head.seq


def encode_segment(head: SignedHead, start: int, entries: Sequence[bytes]) -> bytes:
    if len(entries) != head.seq - start + 1:
        raise ValueError("segment entries must run from start to head.seq")
    header = canonical_bytes({"from": start, "head": head.to_dict()})
    return b"\n".join([header, *entries]) + b"\n"


def split_lines(body: bytes) -> list[bytes]:
    """NDJSON lines of ``body``; one final newline is allowed, blank lines are not."""
    if not body:
        return []
    lines = body.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines


def decode_segments(lines: Iterable[bytes]) -> Iterator[Segment]:
    """Yield segments from NDJSON lines; raise :class:`FramingError` on broken framing."""
    it = iter(lines)
    number = 0
    for header in it:
        number += 1
        start, head = _parse_header(header, number)
        count = head.seq - start + 1
        entries: list[bytes] = []
        for _ in range(count):
            try:
                entries.append(next(it))
            except StopIteration:
                raise FramingError(
                    ErrorCode.MALFORMED,
                    f"truncated segment of {head.origin} at line {number}: "
                    f"expected {count} entries, found {len(entries)}",
                    line=number + len(entries) + 1,
                ) from None
        yield Segment(head=head, start=start, entries=tuple(entries), line=number)
        number += count


def _parse_header(raw: bytes, number: int) -> tuple[int, SignedHead]:
    try:
        value = parse_json(raw)
    except CanonicalError as exc:
        raise FramingError(
            ErrorCode.MALFORMED, f"line {number}: segment header: {exc.message}", line=number
        ) from exc
    if type(value) is not dict or set(value) != {"from", "head"} or type(value["from"]) is not int:
        raise FramingError(
            ErrorCode.MALFORMED,
            f'line {number}: a segment header is {{"from":N,"head":{{...}}}}',
            line=number,
        )
    try:
        head = SignedHead.parse_obj(value["head"])
    except GuantongError as exc:
        raise FramingError(
            ErrorCode.MALFORMED, f"line {number}: {exc.message}", line=number
        ) from exc
    start = value["from"]
    if not 1 <= start <= head.seq or head.seq - start + 1 > MAX_SEGMENT_ENTRIES:
        raise FramingError(
            ErrorCode.MALFORMED if start < 1 or start > head.seq else ErrorCode.TOO_LARGE,
            f"line {number}: segment from {start} to {head.seq} is out of bounds "
            f"(1 ≤ from ≤ head.seq, at most {MAX_SEGMENT_ENTRIES} entries)",
            line=number,
        )
    return start, head
