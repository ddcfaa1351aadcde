"""Recovery: take this node's own log back from its parent before writing again.

A station whose disk died, or whose store was restored from an old backup, must not write
entries with seq numbers its parent already holds with other content: that is a fork, and
the protocol never overwrites (PROTOCOL §8). So before writing (on ``serve``, ``sync`` and
``put``) a node asks its parent for its own entries beyond its head, verifies them exactly
as a hub verifies a push (chain, hashes, its own signature), stores them, and moves its
uplink cursor to what the parent holds.

When the parent cannot be reached, a node with local evidence of loss (an empty store
beside an existing key, or a head behind ``head.json``) refuses to write
(``recovery_required``); one without evidence carries on offline, since stations work
offline for weeks by design. Private fields never left the node and cannot be recovered.

**Own entries a repair kept.** ``guantong repair`` rebuilds the own log only up to the
first entry lost on a damaged page; the entries after it that it could read (the writes
since the last sync among them, which no one else holds) cannot be stored before the
parent gave back what lies between. When the repair could not ask the parent (``--offline``,
the parent away), it keeps them in ``<home>/salvaged.db`` (``node/repair.py``), which is
itself evidence: the node refuses to write until a recovery ran. Each recovery, once the
parent gave back what it holds, takes from that file the segments that follow the head,
through the same checks, and removes it; entries that do not follow (a fork with the
parent's copy) stop the recovery like any fork, and the file stays.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import anyio
import httpx

from node.db import upsert
from node.ingest import Ingestor
from node.runtime import SALVAGED, Node
from node.tables import UPLINK_CURSOR
from schemas.canonical import parse_canonical
from schemas.certs import Certificate
from schemas.errors import ErrorCode, GuantongError, code_of, describe
from schemas.log import SignedHead
from schemas.segments import Segment, decode_segments, split_lines
from schemas.times import format_time

__all__ = ["RecoveryReport", "ensure_recovered", "recover", "salvaged_segments", "take_salvaged"]

PAGE = 2000
_LOCAL_FAULTS = frozenset(
    {
        ErrorCode.STORE_ERROR,
        ErrorCode.STORAGE_FULL,
        ErrorCode.STORAGE_READ_ONLY,
        ErrorCode.STORE_CORRUPT,
    }
)


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    restored: int
    held_by_parent: int
    salvaged: int = 0
    """Own entries taken from what a repair kept (``salvaged.db``), beyond the parent's."""


def salvaged_segments(db: sqlite3.Connection, origin: str, after: int) -> Iterator[Segment]:
    """``origin``'s segments after ``after`` in a salvage file (tables ``e`` of entries and
    ``s`` of signed heads, by origin and seq): one to each signed head, as long as every
    entry up to it is there."""
    start = after + 1
    heads = db.execute(
        "SELECT seq, raw FROM s WHERE origin = ? AND seq > ? ORDER BY seq", (origin, after)
    ).fetchall()
    for seq, raw in heads:
        entries = [
            bytes(r)
            for (r,) in db.execute(
                "SELECT raw FROM e WHERE origin = ? AND seq BETWEEN ? AND ? ORDER BY seq",
                (origin, start, seq),
            )
        ]
        if len(entries) != seq - start + 1:
            return  # an entry was on a lost page: the chain stops before it
        try:
            head = SignedHead.parse_obj(parse_canonical(bytes(raw)))
        except GuantongError:
            return
        yield Segment(head=head, start=start, entries=tuple(entries))
        start = int(seq) + 1


def take_salvaged(node: Node, ingestor: Ingestor) -> int:
    """Store the own entries a repair kept that follow the head; remove the file once
    they are in (or nothing in it follows). Returns how many were taken."""
    path = node.settings.home / SALVAGED
    if not path.is_file():
        return 0
    own = node.log.head()
    start = own.seq if own else 0
    with contextlib.closing(sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)) as db:
        segments = list(salvaged_segments(db, node.id, start))
    for first in range(0, len(segments), 100):
        batch = segments[first : first + 100]
        for result in ingestor.ingest(batch, caller=None, recovering=True):
            if result.status != "ok":
                error = result.error or {}
                raise GuantongError(
                    code_of(error.get("code")),
                    f"own entries kept by a repair in {path} do not follow the parent's copy "
                    f"of this log: {error.get('message', '')}",
                )
    path.unlink()
    head = node.log.head()
    return (head.seq if head else 0) - start


async def recover(node: Node, client: httpx.AsyncClient, parent_url: str) -> RecoveryReport:
    """Pull and verify own entries the parent holds beyond our head; raise on fork."""
    ingestor = Ingestor.of(node)
    own = node.log.head()
    start = after = own.seq if own else 0
    await _learn_chain(node, client, parent_url, node.signer.key_id)
    while True:
        try:
            response = await client.get(
                f"{parent_url.rstrip('/')}/v1/entries",
                params={"origin": node.id, "after": after, "limit": PAGE},
            )
        except httpx.HTTPError as exc:
            raise GuantongError(
                ErrorCode.PARENT_UNREACHABLE, f"parent {parent_url} unreachable: {describe(exc)}"
            ) from exc
        if response.status_code != 200:
            raise GuantongError(
                ErrorCode.PARENT_UNREACHABLE, f"parent {parent_url} answered {response.status_code}"
            )
        segments = list(decode_segments(split_lines(response.content)))
        if not segments:
            break
        for segment in segments:  # an older key of ours (a new home, a rotated key)
            if node.keyring.lookup(segment.head.key_id) is None:
                await _learn_chain(node, client, parent_url, segment.head.key_id)
        take_back = functools.partial(ingestor.ingest, segments, caller=None, recovering=True)
        results = await anyio.to_thread.run_sync(take_back)
        for result in results:
            if result.status != "ok":
                error = result.error or {}
                raise GuantongError(
                    ErrorCode(error.get("code", "malformed"))
                    if error.get("code") in {c.value for c in ErrorCode}
                    else ErrorCode.MALFORMED,
                    f"own log differs from the parent's copy: {error.get('message', '')}",
                )
        if results[-1].held <= after:
            break
        after = results[-1].held
    salvaged = await anyio.to_thread.run_sync(functools.partial(take_salvaged, node, ingestor))
    if after > start or salvaged:
        head = node.log.head()
        assert head is not None
        node.log.write_watermark(head.seq, head.head)
    if after > start:
        # The parent showed us it holds our log up to `after`: that much is acknowledged.
        with node.store.write() as conn:
            upsert(
                conn,
                UPLINK_CURSOR,
                [
                    {
                        "origin": node.id,
                        "acked": after,
                        "blocked": None,
                        "updated_at": format_time(node.clock()),
                    }
                ],
                ["origin"],
                ["acked", "blocked", "updated_at"],
            )
    node.recovery_reason = None
    return RecoveryReport(restored=after - start, held_by_parent=after, salvaged=salvaged)


async def _learn_chain(node: Node, client: httpx.AsyncClient, parent_url: str, kid: str) -> None:
    """Ask the parent for a key's certificate chain and trust what verifies to our anchor."""
    try:
        response = await client.get(f"{parent_url.rstrip('/')}/v1/chain", params={"key_id": kid})
    except httpx.HTTPError as exc:
        raise GuantongError(
            ErrorCode.PARENT_UNREACHABLE, f"parent {parent_url} unreachable: {describe(exc)}"
        ) from exc
    if response.status_code != 200:
        return  # not enrolled yet, or the parent does not know the key: nothing to learn
    with node.store.write() as conn:
        for raw in reversed(response.json().get("chain", [])):
            try:
                node.keyring.add_certificate(Certificate.parse_obj(raw), conn)
            except GuantongError:
                continue


async def ensure_recovered(node: Node, client: httpx.AsyncClient) -> RecoveryReport | None:
    """Recover if a parent is reachable; refuse to go on only when loss is evident."""
    parent = node.settings.parent_url
    if not parent:
        node.recovery_reason = None  # the province has no copy of itself anywhere
        return None
    try:
        return await recover(node, client, parent)
    except GuantongError as exc:
        if exc.code in _LOCAL_FAULTS:
            raise  # our own disk failed, not the log: nothing to conclude about a fork
        if exc.code is ErrorCode.PARENT_UNREACHABLE and node.recovery_reason is None:
            return None
        if exc.code is not ErrorCode.PARENT_UNREACHABLE:
            # e.g. a fork: our store and the parent's copy disagree. Writing more would
            # only deepen it, so local writes stop until an operator resolves it.
            node.recovery_reason = f"recovery failed ({exc.code.value}): {exc.message}"
        if exc.code is ErrorCode.PARENT_UNREACHABLE:
            raise GuantongError(
                ErrorCode.RECOVERY_REQUIRED,
                f"{node.recovery_reason}; connect to the parent ({parent}) so the log can be "
                "recovered before writing",
            ) from exc
        raise
