"""The store's write transactions: work registered to run just before the commit; SQLite's
WAL checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Connection, select

from node.db import (
    SQLITE_WAL_CHECKPOINT_PAGES,
    SQLITE_WAL_LIMIT_BYTES,
    Store,
    before_commit,
    storable_json,
)
from node.tables import META


def test_before_commit_runs_last_once_and_never_on_a_rollback(db_url: str) -> None:
    store = Store(db_url)
    store.migrate()
    ran: list[str] = []

    def stamp(conn: Connection) -> None:
        ran.append("hook")
        conn.execute(META.insert().values(key="stamped", value="at commit"))

    try:
        with store.write() as conn:
            before_commit(conn, "stamp", stamp)
            before_commit(conn, "stamp", stamp)  # once per name
            ran.append("body")
        assert ran == ["body", "hook"]
        with pytest.raises(RuntimeError), store.write() as conn:
            before_commit(conn, "stamp", stamp)
            raise RuntimeError("the transaction fails")
        assert ran == ["body", "hook"]
        with store.write():
            pass  # a later transaction on the same pooled connection runs no stale hook
        assert ran == ["body", "hook"]
        with store.read() as conn:
            stamped = conn.execute(select(META.c.value).where(META.c.key == "stamped")).all()
            assert [tuple(r) for r in stamped] == [("at commit",)]
            with pytest.raises(RuntimeError):
                before_commit(conn, "stamp", stamp)  # only a write transaction commits
    finally:
        store.dispose()


def test_storable_json_replaces_u0000_everywhere() -> None:
    assert storable_json({"a\x00": ["x\x00y", 1, None, {"b": "\x00"}]}) == {
        "a\ufffd": ["x\ufffdy", 1, None, {"b": "\ufffd"}]
    }
    plain = {"a": ["b"]}
    assert storable_json(plain) == plain


def test_sqlite_checkpoints_its_wal_only_after_many_pages(tmp_path: Path) -> None:
    """SQLite's default checkpoints every 1,000 pages; a store lets the WAL grow to
    SQLITE_WAL_CHECKPOINT_PAGES first (the limit it is cut back to after is set too)."""
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.migrate()
    try:
        with store.write() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == (
                SQLITE_WAL_CHECKPOINT_PAGES
            )
            assert conn.exec_driver_sql("PRAGMA journal_size_limit").scalar() == (
                SQLITE_WAL_LIMIT_BYTES
            )
            page = int(conn.exec_driver_sql("PRAGMA page_size").scalar_one())
        blob = "x" * (page * 100)  # a commit of about a hundred pages
        for n in range(20):
            with store.write() as conn:
                conn.execute(META.insert().values(key=f"filler {n}", value="-"))
                conn.exec_driver_sql(
                    "UPDATE meta SET value = ? WHERE key = ?", (blob, f"filler {n}")
                )
        wal = tmp_path / "store.db-wal"
        # about 2,000 pages written: with the default the WAL would have started over
        assert wal.stat().st_size > 1_500 * page
    finally:
        store.dispose()
