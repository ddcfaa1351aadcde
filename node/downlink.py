"""The downlink: tasks from the parent, in its delivery order, from a stored cursor.

``GET /v1/tasks?after=<cursor>&limit=<n>&wait=<s>`` answers NDJSON: one header line
``{"next": N, "certs": [...]}`` (the issuers' certificate chains, so keys rotated above are
learnt with the tasks they signed) and then the exact bytes of each task revision. The
cursor moves to ``next`` only after the tasks are stored, so a crash re-fetches, and
storing is idempotent by ``(task id, rev)``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
from sqlalchemy import select

from node.db import upsert
from node.runtime import Node
from node.tables import DOWNLINK
from node.tasks import ReceiveReport, receive_tasks
from schemas.canonical import parse_json
from schemas.errors import ErrorCode, GuantongError, code_of
from schemas.segments import split_lines
from schemas.times import format_time

__all__ = ["PullReport", "decode_task_stream", "downlink_cursor", "pull_tasks"]

PAGE = 200


@dataclass(slots=True)
class PullReport:
    pages: int = 0
    tasks: int = 0
    stored: int = 0
    rejected: list[str] = field(default_factory=list)
    installed_bundle: int | None = None

    def add(self, received: ReceiveReport, count: int) -> None:
        self.pages += 1
        self.tasks += count
        self.stored += received.stored
        self.rejected.extend(received.rejected)
        if received.installed_bundle is not None:
            self.installed_bundle = received.installed_bundle


def downlink_cursor(node: Node) -> int:
    with node.store.read() as conn:
        value = conn.execute(select(DOWNLINK.c.after).where(DOWNLINK.c.id == 1)).scalar()
    return int(value or 0)


def decode_task_stream(body: bytes) -> tuple[dict[str, Any], list[bytes]]:
    lines = split_lines(body)
    if not lines:
        raise GuantongError(ErrorCode.MALFORMED, "empty task stream")
    header = parse_json(lines[0])
    if not isinstance(header, dict) or not isinstance(header.get("next"), int):
        raise GuantongError(
            ErrorCode.MALFORMED, 'a task stream starts with {"next": N, "certs": [...]}'
        )
    return header, lines[1:]


async def pull_tasks(node: Node, client: httpx.AsyncClient, *, wait: float = 0.0) -> PullReport:
    """Fetch and store every task the parent has for this node's subtree."""
    parent = node.settings.parent_url
    if not parent:
        raise GuantongError(ErrorCode.NO_PARENT, f"{node.id} has no parent to take tasks from")
    report = PullReport()
    after = downlink_cursor(node)
    while True:
        try:
            response = await client.get(
                f"{parent.rstrip('/')}/v1/tasks",
                params={"after": after, "limit": PAGE, "wait": wait if report.pages == 0 else 0},
                timeout=httpx.Timeout(wait + 30.0, connect=5.0),
            )
        except httpx.HTTPError as exc:
            raise GuantongError(
                ErrorCode.PARENT_UNREACHABLE, f"parent {parent} unreachable: {exc}"
            ) from exc
        if response.status_code != 200:
            error = _error(response)
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
        if isinstance(header.get("head"), int) and header["head"] < after:
            after = 0  # the parent was restored from an older backup: its numbers restarted
            continue
        received = await anyio.to_thread.run_sync(
            functools.partial(receive_tasks, node, raws, header.get("certs") or [])
        )
        report.add(received, len(raws))
        following = int(header["next"])
        if following > after:
            with node.store.write() as conn:
                upsert(
                    conn,
                    DOWNLINK,
                    [{"id": 1, "after": following, "updated_at": format_time(node.clock())}],
                    ["id"],
                    ["after", "updated_at"],
                )
        if len(raws) < PAGE or following <= after:
            return report
        after = following


def _error(response: httpx.Response) -> dict[str, Any]:
    try:
        body = parse_json(response.content)
    except GuantongError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}
