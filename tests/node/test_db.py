"""The store's write transactions: work registered to run just before the commit; SQLite's
WAL checkpoints; many rows in one statement on each backend."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Column, Connection, Float, MetaData, Table, select

from node.db import (
    SQLITE_WAL_CHECKPOINT_PAGES,
    SQLITE_WAL_LIMIT_BYTES,
    RowsInsert,
    Store,
    _distinct_runs,
    after_commit,
    before_commit,
    bulk,
    storable_json,
)
from node.log import _UPSERT_RECORDS, insert_entries
from node.rollups import apply_deltas
from node.tables import ENTRIES, META, RECORDS, ROLLUPS, UPLINK_CURSOR
from node.uplink import _SET_CURSOR
from schemas.errors import GuantongError


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


def test_after_commit_runs_once_when_the_rows_are_visible_and_never_on_a_rollback(
    db_url: str,
) -> None:
    """What a hook wakes must find the rows: it runs once the commit is visible to every
    other connection, once per name, and not when the transaction rolls back."""
    store = Store(db_url)
    store.migrate()
    seen: list[list[str]] = []

    def look() -> None:
        with store.read() as other:
            seen.append(list(other.execute(select(META.c.value).where(META.c.key == "k"))))

    try:
        with store.write() as conn:
            conn.execute(META.insert().values(key="k", value="v"))
            after_commit(conn, "look", look)
            after_commit(conn, "look", look)  # once per name
            assert seen == []
        assert [[tuple(r) for r in rows] for rows in seen] == [[("v",)]]
        with pytest.raises(RuntimeError), store.write() as conn:
            after_commit(conn, "look", look)
            raise RuntimeError("the transaction fails")
        with store.write():
            pass  # a later transaction on the same pooled connection runs no stale hook
        assert len(seen) == 1
        with store.read() as conn, pytest.raises(RuntimeError):
            after_commit(conn, "look", look)  # only a write transaction commits
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


def test_rows_insert_takes_each_backends_fast_form() -> None:
    stmt = RowsInsert(
        RECORDS,
        ("record_id", "seq", "deleted", "data"),
        "ON CONFLICT (record_id) DO NOTHING",
        key=("record_id",),
    )
    assert stmt.sqlite == (
        "INSERT INTO records (record_id, seq, deleted, data) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (record_id) DO NOTHING"
    )
    # one statement, one array per column; text cast to the column when stored (not to
    # varchar(n)[], which would cut a long value short), JSON sent as text
    assert stmt.postgresql == (
        "INSERT INTO records (record_id, seq, deleted, data) "
        "SELECT record_id, seq, deleted, data::jsonb "
        "FROM unnest(%b::text[], %b::bigint[], %b::boolean[], %b::text[]) "
        "AS v(record_id, seq, deleted, data) ON CONFLICT (record_id) DO NOTHING"
    )
    assert stmt.key_at == (0,)
    with pytest.raises(TypeError):
        _ = RowsInsert(Table("odd", MetaData(), Column("x", Float)), ("x",)).postgresql


def test_rows_are_cut_where_a_key_repeats_and_kept_in_order() -> None:
    rows = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5), ("a", 6)]
    assert list(_distinct_runs(rows, (0,))) == [rows[0:2], rows[2:5], rows[5:6]]
    assert list(_distinct_runs(rows, (0, 1))) == [rows]  # no key repeats
    assert list(_distinct_runs(rows, ())) == [rows]


def test_bulk_applies_rows_as_one_at_a_time_would(db_url: str) -> None:
    """The same record twice in one call: the newer seq wins in either order; rollup keys
    equal once cut to their column's width add up; NULL and all-NULL columns, booleans and
    bytes arrive as they were sent."""
    store = Store(db_url)
    store.migrate()
    record = ("00000000-0000-4000-8000-000000000001", "js.s1", "note", "1.0")
    other = ("00000000-0000-4000-8000-000000000002", "js.s1", "note", "1.0")
    when = "2026-12-07T08:00:00.000Z"
    try:
        with store.write() as conn:
            bulk(
                conn,
                _UPSERT_RECORDS,
                [
                    (*record, 1, False, '{"v": 1}', when),
                    (*other, 2, False, '{"v": 2}', when),
                    (*record, 3, False, '{"v": 3}', when),
                    (*other, 1, False, '{"v": 1}', when),  # older: the guard keeps seq 2
                ],
            )
            bulk(conn, _UPSERT_RECORDS, [(*record, 4, True, None, when)])
            apply_deltas(
                conn,
                {
                    ("js.s1", "2026-12-07", "m", "k" * 200 + "x"): 2,
                    ("js.s1", "2026-12-07", "m", "k" * 200 + "y"): 3,
                    ("js.s1", "2026-12-07", "m", "short"): 1,
                },
            )
            bulk(
                conn,
                _SET_CURSOR,
                [("js.s1", 5, None, when), ("js.s2", 7, None, when)],
            )
            insert_entries(
                conn,
                [
                    {
                        "origin": "js.s1",
                        "seq": seq,
                        "hash": "a" * 64,
                        "prev": "0" * 64,
                        "time": when,
                        "contract": "note",
                        "version": "1.0",
                        "record_id": record[0],
                        "op": "put",
                        "raw": b'{"\x00\xff":1}' * seq,
                        "status": "valid",
                        "received_at": when,
                    }
                    for seq in (1, 2)
                ],
            )
        with store.read() as conn:
            rows = conn.execute(
                select(
                    RECORDS.c.record_id, RECORDS.c.seq, RECORDS.c.deleted, RECORDS.c.data
                ).order_by(RECORDS.c.record_id)
            ).all()
            assert [tuple(r) for r in rows] == [
                (record[0], 4, True, None),
                (other[0], 2, False, {"v": 2}),
            ]
            sums = conn.execute(
                select(ROLLUPS.c.key, ROLLUPS.c.value).order_by(ROLLUPS.c.key)
            ).all()
            assert [tuple(r) for r in sums] == [("k" * 200, 5), ("short", 1)]
            cursors = conn.execute(
                select(
                    UPLINK_CURSOR.c.origin, UPLINK_CURSOR.c.acked, UPLINK_CURSOR.c.blocked
                ).order_by(UPLINK_CURSOR.c.origin)
            ).all()
            assert [tuple(r) for r in cursors] == [("js.s1", 5, None), ("js.s2", 7, None)]
            raws = conn.execute(select(ENTRIES.c.raw).order_by(ENTRIES.c.seq)).scalars().all()
            assert [bytes(r) for r in raws] == [b'{"\x00\xff":1}', b'{"\x00\xff":1}' * 2]
    finally:
        store.dispose()


@pytest.mark.pg
def test_a_value_too_long_for_its_column_is_refused_not_cut(pg_url: str) -> None:
    store = Store(pg_url)
    store.migrate()
    try:
        with pytest.raises(GuantongError, match="too long"), store.write() as conn:
            bulk(conn, _SET_CURSOR, [("js.s1", 1, "x" * 513, "2026-12-07T08:00:00.000Z")])
        with store.read() as conn:
            assert conn.execute(select(UPLINK_CURSOR.c.origin)).all() == []
    finally:
        store.dispose()
