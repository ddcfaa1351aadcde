"""The downlink: tasks from the parent's task feed, from a stored cursor.

``GET /v1/tasks?after=<cursor>&limit=<n>&wait=<s>`` answers NDJSON: one header line
``{"next": N, "head": H, "feed": {"after": C, "next": C'}, "certs": [...]}`` (the issuers'
certificate chains, so keys rotated above are learnt with the tasks they signed) and then
the exact bytes of each task revision. The cursor moves to ``next`` only after the tasks
are stored, so a crash re-fetches, and storing is idempotent by ``(task id, rev)``.

A page with a revision whose signer's key is not known here (its chain did not come, or
did not verify yet) does not move the cursor: the parent verified the revision with that
key before relaying it, so the chain is to be had, and a cursor past the page would lose
the task for good. The pages after it are still taken (a revocation behind it is not held
up), and the next pull asks again from the held page; the server's loop then waits as
after a failure, so a page that stays held is not asked for in a loop.

With the cursor the node keeps the parent's feed chain there (``feed.next``). When the
parent's chain at the cursor (``feed.after``) is another, or missing, the parent's feed is
not the one the cursor counted in (it was restored from a backup and numbered again): the
node starts again from 0 (``node/taskfeed.py``). A parent of an older release sends no
``feed``; then only a cursor beyond its newest number (``head``) shows a restore.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
from sqlalchemy import select

from node.auth import error_of
from node.db import upsert
from node.runtime import Node
from node.tables import DOWNLINK
from node.tasks import ReceiveReport, receive_tasks
from schemas.canonical import parse_json
from schemas.errors import ErrorCode, GuantongError, code_of, describe
from schemas.segments import split_lines
from schemas.times import format_time

__all__ = ["PullReport", "decode_task_stream", "downlink_cursor", "pull_tasks"]

PAGE = 200
_CHAIN = re.compile(r"[0-9a-f]{64}")


@dataclass(slots=True)
class PullReport:
    pages: int = 0
    tasks: int = 0
    stored: int = 0
    rejected: list[str] = field(default_factory=list)
    installed_bundle: int | None = None
    revoked: int = 0
    """Keys whose revocation this pull moved (applied for the first time, or earlier)."""
    applied: int = 0
    """Pending entries the installed bundle classified (node.tasks._apply_pending)."""
    held: int = 0
    """Revisions refused for a signer not known here: the cursor stays before them."""

    def add(self, received: ReceiveReport, count: int) -> None:
        self.pages += 1
        self.tasks += count
        self.stored += received.stored
        self.revoked += received.revoked
        self.applied += received.applied
        self.held += received.unknown
        self.rejected.extend(received.rejected)
        if received.installed_bundle is not None:
            self.installed_bundle = received.installed_bundle


def downlink_cursor(node: Node) -> int:
    return _cursor(node)[0]


def _cursor(node: Node) -> tuple[int, str | None]:
    """``(after, chain)``: the number of the last revision taken, the parent's chain there."""
    with node.store.read() as conn:
        row = conn.execute(
            select(DOWNLINK.c.after, DOWNLINK.c.chain).where(DOWNLINK.c.id == 1)
        ).first()
    return (0, None) if row is None else (int(row.after), row.chain)


def decode_task_stream(body: bytes) -> tuple[dict[str, Any], list[bytes]]:
    lines = split_lines(body)
    if not lines:
        raise GuantongError(ErrorCode.MALFORMED, "empty task stream")
    header = parse_json(lines[0])
    if not isinstance(header, dict) or not isinstance(header.get("next"), int):
        raise GuantongError(
            ErrorCode.MALFORMED, 'a task stream starts with {"next": N, "certs": [...]}'
        )
    feed = header.get("feed")
    if feed is not None and not (
        isinstance(feed, dict)
        and set(feed) == {"after", "next"}
        and all(v is None or (isinstance(v, str) and _CHAIN.fullmatch(v)) for v in feed.values())
    ):
        raise GuantongError(
            ErrorCode.MALFORMED, 'a task stream\'s "feed" is {"after", "next"}: chains or null'
        )
    return header, lines[1:]


def _renumbered(header: dict[str, Any], after: int, kept: str | None) -> bool:
    """Whether the parent's feed is not the one ``after`` (with chain ``kept``) counted in."""
    if after == 0:
        return False
    feed = header.get("feed")
    if feed is None:  # a parent of an older release
        head = header.get("head")
        return isinstance(head, int) and head < after
    return feed["after"] is None or (kept is not None and feed["after"] != kept)


async def pull_tasks(node: Node, client: httpx.AsyncClient, *, wait: float = 0.0) -> PullReport:
    """Fetch and store every task the parent has for this node's subtree."""
    parent = node.settings.parent_url
    if not parent:
        raise GuantongError(ErrorCode.NO_PARENT, f"{node.id} has no parent to take tasks from")
    report = PullReport()
    after, kept = stored = _cursor(node)
    while True:
        try:
            response = await client.get(
                f"{parent.rstrip('/')}/v1/tasks",
                params={"after": after, "limit": PAGE, "wait": wait if report.pages == 0 else 0},
                timeout=httpx.Timeout(wait + 30.0, connect=5.0),
            )
        except httpx.HTTPError as exc:
            raise GuantongError(
                ErrorCode.PARENT_UNREACHABLE, f"parent {parent} unreachable: {describe(exc)}"
            ) from exc
        if response.status_code != 200:
            error = error_of(response)
            code = (
                ErrorCode.PARENT_UNREACHABLE
                if response.status_code >= 500
                else code_of(error.get("code"))
            )
            raise GuantongError(
                code,
                f"parent refused the task request: {error.get('message', response.status_code)}",
            )
        header, raws = decode_task_stream(response.content)
        if _renumbered(header, after, kept):
            after, kept = 0, None  # the parent's feed was renumbered: take it all again
            continue
        received = await anyio.to_thread.run_sync(
            functools.partial(receive_tasks, node, raws, header.get("certs", []))
        )
        report.add(received, len(raws))
        following = int(header["next"])
        feed = header.get("feed")
        chain = feed["next"] if feed is not None else None
        if not report.held and (following, chain) != stored:  # held: stays at that page
            with node.store.write() as conn:
                upsert(
                    conn,
                    DOWNLINK,
                    [
                        {
                            "id": 1,
                            "after": following,
                            "chain": chain,
                            "updated_at": format_time(node.clock()),
                        }
                    ],
                    ["id"],
                    ["after", "chain", "updated_at"],
                )
            stored = (following, chain)
        if len(raws) < PAGE or following <= after:
            return report
        after, kept = following, chain
