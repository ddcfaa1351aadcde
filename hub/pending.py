"""Pending entries: kept when their contract version was unknown, applied once it is known.

Contracts flow down from the province, so a hub is normally never behind its children; an
entry can still arrive first (a child installed a bundle from a USB stick). It is stored
as ``pending`` — held, relayed, never dropped — and this job re-classifies pending entries
against the installed registry, in seq order, applying the valid ones to the records.

It runs in a hub's maintenance job, and after every pull of tasks at any node
(``node.tasks.receive_tasks``, which installs the bundles): a station runs no hub job, and
holds pending entries too when it recovered its own log from its parent while the bundle
reinstalled with the release was older than the one its entries were written under.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import tuple_

from contracts.registry import Registry
from node.db import Store, lock_head
from node.keyring import Keyring
from node.log import apply_records, record_row
from node.reports import note_reports
from node.tables import ENTRIES
from schemas.log import Entry
from schemas.times import format_time, system_clock

__all__ = ["apply_pending"]

BATCH = 1000


def apply_pending(
    store: Store, registry: Registry, keyring: Keyring | None = None
) -> dict[str, int]:
    """Re-check pending entries; returns how many became valid, invalid, or stay pending."""
    counts = {"valid": 0, "invalid": 0, "pending": 0}
    after: tuple[str, int] = ("", 0)
    while True:
        with store.write() as conn:
            rows = conn.execute(
                ENTRIES.select()
                .with_only_columns(ENTRIES.c.origin, ENTRIES.c.seq, ENTRIES.c.raw)
                .where(
                    ENTRIES.c.status == "pending", tuple_(ENTRIES.c.origin, ENTRIES.c.seq) > after
                )
                .order_by(ENTRIES.c.origin, ENTRIES.c.seq)
                .limit(BATCH)
            ).all()
            if not rows:
                return counts
            # as ingest does, before reading what the records were: a push of a newer entry
            # of the same record committing meanwhile would have the deltas of a state
            # the newer-seq guard then refuses to store counted (PostgreSQL; SQLite's write
            # transaction excludes it anyway)
            now = format_time(system_clock())
            for origin in sorted({row.origin for row in rows}):
                lock_head(conn, origin, now)
            records: dict[tuple[str, str], dict[str, Any]] = {}  # by origin and id
            now_valid: list[Entry] = []
            for row in rows:
                entry = Entry.parse(bytes(row.raw))
                status, _ = registry.check(entry.contract, entry.version, entry.op, entry.data)
                counts[status] += 1
                if status == "pending":
                    continue
                conn.execute(
                    ENTRIES.update()
                    .where(ENTRIES.c.origin == row.origin, ENTRIES.c.seq == row.seq)
                    .values(status=status)
                )
                if status == "valid":
                    records[(entry.origin, entry.id)] = record_row(entry, bytes(row.raw))
                    now_valid.append(entry)
            apply_records(conn, list(records.values()), registry.rules("performance_index"))
            note_reports(conn, now_valid)  # what ingest does for valid entries, done late
            for entry in now_valid:
                if keyring is not None and entry.contract == "node_cert" and entry.data is not None:
                    keyring.learn(entry.origin, entry.data, entry.time, conn)
            after = (rows[-1].origin, int(rows[-1].seq))
