"""Index ``task_report`` entries by task, for own writes and received ones alike."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection

from node.db import insert_ignore, storable_text
from node.tables import TASK_EVENTS
from schemas.log import Entry

__all__ = ["note_reports"]


def note_reports(conn: Connection, entries: Iterable[Entry]) -> None:
    rows = [
        {
            "origin": e.origin,
            "seq": e.seq,
            "task_id": e.data["task_id"],
            "task_rev": e.data["task_rev"],
            "status": e.data["status"],
            "at": e.data["reported_at"],
            "note": storable_text(e.data["note"]) if e.data.get("note") else None,
        }
        for e in entries
        if e.contract == "task_report" and e.op == "put" and e.data is not None
    ]
    insert_ignore(conn, TASK_EVENTS, rows, ["origin", "seq"])
