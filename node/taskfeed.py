"""What a hub serves its children from ``tasks``: the revisions concerning a subtree."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import func, or_, select

from node.runtime import Node
from node.tables import TASKS
from schemas.canonical import canonical_bytes
from schemas.errors import GuantongError
from schemas.ids import parent_of

__all__ = ["task_stream", "tasks_for"]


def tasks_for(node: Node, caller: str, after: int, limit: int) -> list[Any]:
    """Revisions after ``after`` that ``caller`` must hold: targeted in its subtree, or
    subtree-scoped at one of its ancestors."""
    ancestors = []
    cursor: str | None = caller
    while cursor is not None:
        ancestors.append(cursor)
        cursor = parent_of(cursor)
    query = (
        select(TASKS.c.delivery, TASKS.c.issuer, TASKS.c.raw)
        .where(TASKS.c.delivery > after)
        .where(
            or_(
                TASKS.c.target == caller,
                TASKS.c.target.startswith(caller + "."),
                (TASKS.c.scope == "subtree") & TASKS.c.target.in_(ancestors),
            )
        )
        .order_by(TASKS.c.delivery)
        .limit(limit)
    )
    with node.store.read() as conn:
        return list(conn.execute(query).all())


def task_stream(node: Node, rows: list[Any], after: int) -> bytes:
    """Header ``{"next","certs"}`` then each task's exact bytes, one per line."""
    certs: dict[str, dict[str, Any]] = {}
    for row in rows:
        kid = orjson.loads(row.raw)["sig"].partition(":")[0]
        try:
            for cert in node.keyring.chain(kid):
                certs.setdefault(cert.key_id, cert.to_dict())
        except GuantongError:
            continue
    following = int(rows[-1].delivery) if rows else after
    with node.store.read() as conn:
        newest = int(conn.execute(select(func.max(TASKS.c.delivery))).scalar() or 0)
    # `head`: the newest delivery number here. A child whose cursor is beyond it learns that
    # this hub was restored from an older backup, and starts again from 0 (idempotent).
    header = canonical_bytes({"next": following, "head": newest, "certs": list(certs.values())})
    return b"\n".join([header, *(bytes(row.raw) for row in rows)]) + b"\n"
