"""Migrations run on SQLite and PostgreSQL, are idempotent and match the models exactly."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

import node.db
from node.db import Store
from node.tables import RECORDS, TASK_EVENTS, TASK_FEED, TASKS, metadata
from node.taskfeed import link
from schemas.hashing import ZERO_HASH


def test_migrations_create_the_model_schema(db_url: str) -> None:
    store = Store(db_url)
    try:
        store.migrate()
        store.migrate()  # idempotent
        with store.engine.connect() as conn:
            names = set(inspect(conn).get_table_names())
            assert {
                "entries",
                "heads",
                "signed_heads",
                "records",
                "keys",
                "meta",
                "alembic_version",
            } <= names
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        store.dispose()


def test_text_derived_with_u0000_is_brought_to_what_postgresql_holds(tmp_path: Path) -> None:
    """A SQLite store holding U+0000 in derived text (written before it was replaced on
    every backend) gets U+FFFD there too; entries are not touched."""
    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        _migrate(store, "2026_11_21_0008")
        with store.write() as conn:
            conn.execute(
                RECORDS.insert().values(
                    record_id="00000000-0000-7000-8000-000000000001",
                    origin="js.wx.jy.s1",
                    contract="opinion",
                    version="1.1",
                    seq=1,
                    deleted=False,
                    data={"content": "路灯\x00坏了", "a\x00": ["\x00"], "b": "\\u0000"},
                    updated_at="2026-11-21T08:00:00.000Z",
                )
            )
            conn.execute(
                TASK_EVENTS.insert().values(
                    origin="js.wx.jy.s1",
                    seq=2,
                    task_id="00000000-0000-7000-8000-000000000002",
                    task_rev=1,
                    status="done",
                    at="2026-11-21T08:00:00.000Z",
                    note="修好\x00了",
                )
            )
        store.migrate()
        with store.read() as conn:
            data = conn.execute(select(RECORDS.c.data)).scalar_one()
            note = conn.execute(select(TASK_EVENTS.c.note)).scalar_one()
        assert data == {"content": "路灯\ufffd坏了", "a\ufffd": ["\ufffd"], "b": "\\u0000"}
        assert note == "修好\ufffd了"
    finally:
        store.dispose()


def _migrate(store: Store, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(node.db.__file__).parent / "migrations"))
    with store.engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def test_tasks_held_before_the_feed_keep_their_numbers(db_url: str) -> None:
    """Revisions stored before the task feed keep their delivery numbers as feed numbers
    (children's cursors stay valid), chained in that order; the feed goes on from there."""
    store = Store(db_url)
    try:
        _migrate(store, "2026_11_22_0009")
        raws = [b'{"n":1}', b'{"n":3}']
        with store.write() as conn:
            for delivery, raw in zip((1, 3), raws, strict=True):
                conn.execute(
                    TASKS.insert().values(
                        delivery=delivery,
                        task_id=f"00000000-0000-7000-8000-00000000000{delivery}",
                        rev=1,
                        issuer="js",
                        target="js.wx",
                        scope="node",
                        kind="notice",
                        issued="2026-11-21T08:00:00.000Z",
                        raw=raw,
                        received_at="2026-11-21T08:00:00.000Z",
                    )
                )
        store.migrate()
        first = link(ZERO_HASH, raws[0])
        with store.read() as conn:
            held = conn.execute(select(TASKS.c.feed, TASKS.c.chain).order_by(TASKS.c.feed)).all()
            head = conn.execute(select(TASK_FEED.c.last, TASK_FEED.c.chain)).one()
        assert [tuple(r) for r in held] == [(1, first), (3, link(first, raws[1]))]
        assert tuple(head) == (3, held[-1].chain)
    finally:
        store.dispose()


def test_records_come_to_be_keyed_by_origin_and_id(db_url: str) -> None:
    """Migration 2026_12_07_0013 keeps every record as it was, keys the table by origin
    and id (SQLite builds the table again), and then holds an id for two origins."""
    store = Store(db_url)
    rows = [
        {
            "record_id": f"00000000-0000-7000-8000-00000000000{n}",
            "origin": origin,
            "contract": "opinion",
            "version": "1.1",
            "seq": n,
            "deleted": n == 3,
            "data": None if n == 3 else {"content": f"第{n}条", "n": n},
            "updated_at": "2026-11-21T08:00:00.000Z",
        }
        for n, origin in ((1, "js.wx.jy.s2"), (2, "js.wx.jy.s1"), (3, "js.wx.jy.s1"))
    ]
    try:
        _migrate(store, "2026_12_06_0012")
        with store.write() as conn:
            conn.execute(RECORDS.insert(), rows)
        store.migrate()
        with store.engine.connect() as conn:
            key = inspect(conn).get_pk_constraint("records")["constrained_columns"]
            indexes = {i["name"] for i in inspect(conn).get_indexes("records")}
        assert key == ["origin", "record_id"]
        assert "ix_records_origin" not in indexes and "ix_records_contract" in indexes
        with store.read() as conn:
            held = [dict(r._mapping) for r in conn.execute(select(RECORDS))]
        assert sorted(held, key=lambda r: r["seq"]) == rows
        with store.write() as conn:
            conn.execute(RECORDS.insert(), [{**rows[0], "origin": "js.wx.jy.s3"}])
        with store.read() as conn:
            origins = conn.execute(
                select(RECORDS.c.origin).where(RECORDS.c.record_id == rows[0]["record_id"])
            ).scalars()
            assert sorted(origins) == ["js.wx.jy.s2", "js.wx.jy.s3"]
    finally:
        store.dispose()
