"""The store's write transactions: work registered to run just before the commit."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, select

from node.db import Store, before_commit, storable_json
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
