"""Data-quality items: a hub's record of every invalid entry it received (PROTOCOL §4).

An invalid entry is authentic (signed, chained), so it is kept and relayed; the hub also
writes a ``data_quality`` record into its own log naming the origin, seq, entry hash, the
contract rule broken and where, so the item travels up like any data and the province sees
which stations send bad data. The job is idempotent: ``quality_raised`` remembers which
entries already have an item, written in the same transaction as the record, and record
ids are derived from ``(origin, seq)``.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, select

from node.db import insert_ignore, storable_text
from node.runtime import Node
from node.tables import ENTRIES, QUALITY_RAISED
from schemas.log import Entry
from schemas.times import format_time

__all__ = ["BATCH", "raise_quality_items"]

BATCH = 500
_NAMESPACE = uuid.UUID("6f1c3c2e-7d8a-4c1e-9b1a-2f8e5d0c9a11")


def raise_quality_items(node: Node) -> int:
    """Write a ``data_quality`` record for each invalid entry that has none yet."""
    raised = 0
    while True:
        query = (
            select(ENTRIES.c.origin, ENTRIES.c.seq, ENTRIES.c.hash, ENTRIES.c.raw)
            .select_from(
                ENTRIES.outerjoin(
                    QUALITY_RAISED,
                    (QUALITY_RAISED.c.origin == ENTRIES.c.origin)
                    & (QUALITY_RAISED.c.seq == ENTRIES.c.seq),
                )
            )
            .where(ENTRIES.c.status == "invalid", QUALITY_RAISED.c.origin.is_(None))
            .order_by(ENTRIES.c.origin, ENTRIES.c.seq)
            .limit(BATCH)
        )
        with node.store.read() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return raised
        now = format_time(node.clock())
        records: list[tuple[int | None, dict[str, Any]]] = []
        marks: list[dict[str, Any]] = []
        for row in rows:
            entry = Entry.parse(bytes(row.raw))
            _, problems = node.registry.check(entry.contract, entry.version, entry.op, entry.data)
            first = problems[0] if problems else None
            record_id = str(uuid.uuid5(_NAMESPACE, f"{row.origin}:{row.seq}"))
            records.append(
                (
                    None,
                    {
                        "id": record_id,
                        "origin": row.origin,
                        "seq": int(row.seq),
                        "entry_hash": row.hash,
                        "contract": entry.contract,
                        "version": entry.version,
                        "code": "contract_violation",
                        # both may quote the invalid data: this hub's own write must hold
                        "path": storable_text(first.pointer) if first else "",
                        "message": storable_text(
                            f"{first.rule}: {first.message}" if first else "invalid"
                        )[:1000],
                        "raised_at": now,
                        "status": "open",
                    },
                )
            )
            marks.append({"origin": row.origin, "seq": int(row.seq), "record_id": record_id})

        def mark(conn: Connection, marks: list[dict[str, Any]] = marks) -> None:
            insert_ignore(conn, QUALITY_RAISED, marks, ["origin", "seq"])

        node.put("data_quality", records, also=mark)
        raised += len(records)
