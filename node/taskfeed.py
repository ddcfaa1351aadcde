"""The task feed: the revisions a node holds, numbered in commit order and hash-chained,
which its children page through (``GET /v1/tasks``, PROTOCOL §8).

A child keeps a cursor — the number of the last revision it took — and asks for what
follows. Two things can make such a cursor lie, and the feed is built against both.

**Numbers must become visible in order.** A child that has seen number ``n`` never looks
below ``n`` again, so no revision may appear below a number already served. A database
sequence does not give that: on PostgreSQL a number is taken at ``INSERT`` and becomes
visible at ``COMMIT``, so a transaction still open (relaying a page of tasks, say) can
hold number 7 while number 8, committed by another worker, is served — and 7 is skipped
for good. So rows are inserted unnumbered, and the writer numbers them as the very last
thing before its commit (:func:`node.db.before_commit`), holding the lock of the feed's
head row (``task_feed``, ``SELECT … FOR UPDATE``; SQLite has one writer anyway). The next
writer gets the lock only once this commit is visible, so numbers appear in order, without
gaps, and the lock is held for an instant rather than for a whole transaction; workers of
``serve --workers N`` share it through the database.

**A number must mean the same revision.** A hub restored from a backup numbers again from
where the backup stopped: number 7 is then another revision than the one a child took as
7, and a child paging on from 7 would skip every new revision numbered at or below it. So
the feed is hash-chained like a log — ``chain(n) = SHA-256(chain(n−1) ‖ SHA-256(raw(n)))``
from 64 zeros — and each page's header carries the chain at the child's cursor and at the
new one. The child keeps the latter with its cursor; when the hub's chain at its cursor is
another, or absent, the feed it paged is gone and it starts again from 0. That costs a
re-delivery, which is harmless: revisions are stored idempotently by ``(task id, rev)``.
A feed restored from a backup that still holds the child's cursor has the same chain
there, and the child pages on.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, or_, select

from node.db import insert_ignore
from node.runtime import Node
from node.tables import TASK_FEED, TASKS
from schemas.canonical import canonical_bytes
from schemas.errors import GuantongError
from schemas.hashing import ZERO_HASH
from schemas.ids import parent_of

__all__ = ["link", "number_feed", "task_stream", "tasks_for"]


def link(chain: str, raw: bytes) -> str:
    """The feed's chain after the revision ``raw``, from its chain before."""
    return hashlib.sha256(bytes.fromhex(chain) + hashlib.sha256(raw).digest()).hexdigest()


def number_feed(conn: Connection) -> int:
    """Number and chain the revisions this transaction stored, in the order stored, under
    the feed's lock; run just before the commit. Returns how many."""
    insert_ignore(conn, TASK_FEED, [{"id": 1, "last": 0, "chain": ZERO_HASH}], ["id"])
    query = select(TASK_FEED.c.last, TASK_FEED.c.chain).where(TASK_FEED.c.id == 1)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    last, chain = conn.execute(query).one()
    rows = conn.execute(
        select(TASKS.c.delivery, TASKS.c.raw)
        .where(TASKS.c.feed.is_(None))  # only ours: others' uncommitted rows are invisible
        .order_by(TASKS.c.delivery)
    ).all()
    if not rows:
        return 0
    numbered = []
    for row in rows:
        last, chain = last + 1, link(chain, bytes(row.raw))
        numbered.append({"row": row.delivery, "number": last, "link": chain})
    conn.execute(
        TASKS.update()
        .where(TASKS.c.delivery == bindparam("row"))
        .values(feed=bindparam("number"), chain=bindparam("link")),
        numbered,
    )
    conn.execute(TASK_FEED.update().where(TASK_FEED.c.id == 1).values(last=last, chain=chain))
    return len(numbered)


_MAX_DELIVERY = 2**31 - 1


def tasks_for(node: Node, caller: str, after: int, limit: int) -> list[Any]:
    """Revisions after ``after`` that ``caller`` must hold: targeted in its subtree, or
    subtree-scoped at one of its ancestors."""
    # Delivery numbers are 32-bit in the store: a later cursor (PostgreSQL would refuse to
    # compare it) finds nothing, as the highest one does.
    after = min(after, _MAX_DELIVERY)
    ancestors = []
    cursor: str | None = caller
    while cursor is not None:
        ancestors.append(cursor)
        cursor = parent_of(cursor)
    query = (
        select(TASKS.c.feed, TASKS.c.chain, TASKS.c.issuer, TASKS.c.raw)
        .where(TASKS.c.feed > after)
        .where(
            or_(
                TASKS.c.target == caller,
                TASKS.c.target.startswith(caller + "."),
                (TASKS.c.scope == "subtree") & TASKS.c.target.in_(ancestors),
            )
        )
        .order_by(TASKS.c.feed)
        .limit(limit)
    )
    with node.store.read() as conn:
        return list(conn.execute(query).all())


def task_stream(node: Node, rows: list[Any], after: int) -> bytes:
    """Header ``{"next","head","feed","certs"}`` then each revision's exact bytes, one per
    line. ``head`` is the newest number here; ``feed`` the chain at ``after`` and at
    ``next`` (null where this feed has no such number)."""
    certs: dict[str, dict[str, Any]] = {}
    for row in rows:
        kid = orjson.loads(row.raw)["sig"].partition(":")[0]
        try:
            # root first: each certificate after the one that verifies it
            for cert in reversed(node.keyring.chain(kid)):
                certs.setdefault(cert.key_id, cert.to_dict())
        except GuantongError:
            continue
    following = int(rows[-1].feed) if rows else after
    with node.store.read() as conn:
        newest = int(conn.execute(select(TASK_FEED.c.last)).scalar() or 0)
        at_after = _chain_at(conn, after)
    at_next = str(rows[-1].chain) if rows else at_after
    header = {
        "next": following,
        "head": newest,
        "feed": {"after": at_after, "next": at_next},
        "certs": list(certs.values()),
    }
    return b"\n".join([canonical_bytes(header), *(bytes(row.raw) for row in rows)]) + b"\n"


def _chain_at(conn: Connection, number: int) -> str | None:
    if number <= 0:
        return None
    found = conn.execute(select(TASKS.c.chain).where(TASKS.c.feed == number)).scalar()
    return None if found is None else str(found)
