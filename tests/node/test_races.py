"""Maintenance jobs that write while the hub serves pushes: the rollups they leave are
what a rebuild computes, whatever commits in between (PostgreSQL runs the push meanwhile
unless a lock holds it; SQLite's write transaction always does)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

import node.log as node_log
from hub.pending import apply_pending
from node.db import Store
from node.ingest import Ingestor
from node.rollups import rebuild
from node.runtime import Node
from node.tables import ROLLUPS
from schemas.segments import Segment
from tests.conftest import newer_bundle
from tests.federation.harness import Federation

PATIENCE_S = 1.0
"""How long a racing push is given to commit inside the job's transaction."""


def _rollups(store: Store) -> dict[tuple[str, str, str, str], int]:
    with store.read() as conn:
        return {
            (r.origin, r.day, r.metric, r.key): r.value
            for r in conn.execute(select(ROLLUPS))
            if r.value
        }


class _Racer:
    """Pushes a segment from another thread, once, in the middle of a job's transaction."""

    def __init__(self, hub: Node, segment: Segment, caller: str) -> None:
        self.hub, self.segment, self.caller = hub, segment, caller
        self.thread: threading.Thread | None = None
        self.results: list[Any] = []

    def go(self) -> None:
        if self.thread is not None:
            return
        push = Ingestor.of(self.hub)
        self.thread = threading.Thread(
            target=lambda: self.results.extend(push.ingest([self.segment], caller=self.caller))
        )
        self.thread.start()
        self.thread.join(PATIENCE_S)  # committed meanwhile, or waiting for the job's lock

    def done(self) -> None:
        assert self.thread is not None
        self.thread.join(30)
        assert [r.status for r in self.results] == ["ok"]


def test_pending_entries_applied_while_a_push_of_the_same_record_lands(
    fed: Federation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    station = fed.add("js.wx.jy.s1")
    county = fed.nodes["js.wx.jy"]
    v2 = newer_bundle(tmp_path, opinion_1_2=True)
    station.install_contracts(v2)  # the station had the bundle first (a USB stick)
    (rid,) = fed.write(station.id, 1)
    first = station.log.read_segment(station.id, 0)
    assert first is not None
    (result,) = Ingestor.of(county).ingest([first], caller=station.id)
    assert result.status == "ok" and result.pending
    data = station.get("opinion", rid, origin=station.id).data
    station.put("opinion", [(None, {**data, "id": rid})])  # a newer state of the record
    second = station.log.read_segment(station.id, first.end)
    assert second is not None
    county.install_contracts(v2)  # the contracts reach the county
    racer = _Racer(county, second, station.id)
    real = node_log.record_deltas

    def racing(*args: Any) -> Any:
        deltas = real(*args)
        racer.go()
        return deltas

    monkeypatch.setattr(node_log, "record_deltas", racing)
    apply_pending(county.store, county.registry, county.keyring)
    monkeypatch.setattr(node_log, "record_deltas", real)
    racer.done()
    counted = _rollups(county.store)
    rebuild(county.store, county.registry.rules("performance_index"))
    assert counted == _rollups(county.store)


def test_a_rebuild_while_a_push_lands(fed: Federation) -> None:
    s1 = fed.add("js.wx.jy.s1")
    s2 = fed.add("js.wx.jy.s2")
    county = fed.nodes["js.wx.jy"]
    fed.write(s1.id, 2)
    segment = s1.log.read_segment(s1.id, 0)
    assert segment is not None
    assert Ingestor.of(county).ingest([segment], caller=s1.id)[0].status == "ok"
    fed.write(s2.id, 2)
    segment = s2.log.read_segment(s2.id, 0)
    assert segment is not None
    racer = _Racer(county, segment, s2.id)

    def hook(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT RECORDS.ORIGIN"):
            racer.go()  # between the delete and the reads

    rules = county.registry.rules("performance_index")
    event.listen(county.store.engine, "before_cursor_execute", hook)
    try:
        rebuild(county.store, rules)
    finally:
        event.remove(county.store.engine, "before_cursor_execute", hook)
    racer.done()
    counted = _rollups(county.store)
    rebuild(county.store, rules)
    assert counted == _rollups(county.store)
