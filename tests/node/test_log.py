"""The node's own log on every backend: append, chain, heads, segments, concurrency."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import select, update

from node.db import Store
from node.log import Log, Write
from node.runtime import Node
from node.tables import ENTRIES
from node.verify import verify_log
from schemas.errors import ErrorCode, GuantongError
from schemas.hashing import ZERO_HASH, sha256_hex
from schemas.log import Entry
from schemas.segments import decode_segments, encode_segment, split_lines
from tests.conftest import FakeClock, NodeFactory


def _records(n: int, start: int = 0) -> list[tuple[int | None, dict[str, Any]]]:
    return [(i + 1, {"n": start + i, "text": f"第{start + i}条民意"}) for i in range(n)]


def test_append_chains_and_signs_one_head_per_batch(make_node: NodeFactory, db_url: str) -> None:
    node = make_node("js.wx.jy.s1", "station", db_url=db_url)
    first = node.put("note", _records(3))
    second = node.put("note", _records(2, 3))
    assert (first.first, first.last, second.first, second.last) == (1, 3, 4, 5)
    rows = list(node.log.iter_entries(node.id))
    assert [seq for seq, _, _ in rows] == [1, 2, 3, 4, 5]
    prev = ZERO_HASH
    for seq, digest, raw in rows:
        entry = Entry.parse(raw)
        assert (entry.seq, entry.prev, sha256_hex(raw)) == (seq, prev, digest)
        prev = digest
    assert second.head.head == prev and second.head.verify(node.signer.public_raw)
    head = node.log.head()
    assert head is not None and head.seq == 5 and head.signed == second.head
    assert list(verify_log(node.log)) == []


def test_update_keeps_single_writer_and_latest_state(make_node: NodeFactory, db_url: str) -> None:
    node = make_node("js", db_url=db_url)
    (rid,) = node.put("note", [(1, {"status": "received"})]).record_ids
    node.put("note", [(1, {"id": rid, "status": "accepted"})])
    record = node.get("note", rid)
    assert (record.seq, record.data) == (2, {"status": "accepted"})
    with pytest.raises(GuantongError) as info:
        node.put("secret_note", [(1, {"id": rid, "text": "x"})])
    assert info.value.code is ErrorCode.NOT_RECORD_OWNER
    assert node.log.head() is not None and node.log.head().seq == 2  # type: ignore[union-attr]


def test_failing_batch_writes_nothing(make_node: NodeFactory, db_url: str) -> None:
    node = make_node("js", db_url=db_url)
    node.put("note", _records(2))
    with pytest.raises(GuantongError) as info:
        node.put("note", [(1, {"ok": 1}), (2, {"big": "x" * 70_000})])
    assert info.value.code is ErrorCode.TOO_LARGE
    assert "line 2" in info.value.message
    assert [s for s, _, _ in node.log.iter_entries(node.id)] == [1, 2]
    assert len(node.list("note")) == 2


def test_concurrent_writers_leave_no_gap_and_no_duplicate(
    make_node: NodeFactory, db_url: str, clock: FakeClock
) -> None:
    node = make_node("js", db_url=db_url)
    writers = [
        Log(Store(node.settings.database_url), origin=node.id, signer=node.signer, clock=clock)
        for _ in range(4)
    ]
    errors: list[BaseException] = []

    def work(log: Log, worker: int) -> None:
        try:
            for batch in range(10):
                log.append(
                    [
                        Write("note", "1.0", _rid(worker, batch, i), data={"w": worker})
                        for i in range(3)
                    ]
                )
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(log, n)) for n, log in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for log in writers:
        log.store.dispose()
    assert errors == []
    assert [s for s, _, _ in node.log.iter_entries(node.id)] == list(range(1, 121))
    assert list(verify_log(node.log)) == []


def _rid(worker: int, batch: int, i: int) -> str:
    return f"00000000-0000-7000-8000-{worker:04d}{batch:04d}{i:04d}"


def test_read_segment_respects_limits_and_signs_on_demand(
    make_node: NodeFactory, db_url: str
) -> None:
    node = make_node("js.wx", "city", db_url=db_url)
    node.put("note", _records(10))
    segment = node.log.read_segment(node.id, 0, max_entries=4)
    assert segment is not None
    assert (segment.start, segment.end, len(segment.entries)) == (1, 4, 4)
    assert segment.head.verify(node.signer.public_raw)
    rest = node.log.read_segment(node.id, 4, max_bytes=1)  # at least one entry always fits
    assert rest is not None and (rest.start, rest.end) == (5, 5)
    whole = node.log.read_segment(node.id, 0)
    assert whole is not None and whole.end == 10 and whole.head == node.log.head().signed  # type: ignore[union-attr]
    assert node.log.read_segment(node.id, 10) is None
    body = encode_segment(whole.head, whole.start, whole.entries)
    assert list(decode_segments(split_lines(body)))[0].entries == whole.entries


def test_tampered_byte_is_found_by_verify(make_node: NodeFactory, db_url: str) -> None:
    node = make_node("js", db_url=db_url)
    node.put("note", _records(5))
    with node.store.write() as conn:
        raw = conn.execute(select(ENTRIES.c.raw).where(ENTRIES.c.seq == 3)).scalar_one()
        conn.execute(
            update(ENTRIES).where(ENTRIES.c.seq == 3).values(raw=raw.replace(b"2", b"7", 1))
        )
    problems = list(verify_log(node.log))
    assert [(p.origin, p.seq, p.code) for p in problems] == [("js", 3, ErrorCode.BAD_HASH)]


def test_rewritten_hash_is_caught_by_the_chain(make_node: NodeFactory, db_url: str) -> None:
    node = make_node("js", db_url=db_url)
    node.put("note", _records(5))
    with node.store.write() as conn:
        raw = conn.execute(select(ENTRIES.c.raw).where(ENTRIES.c.seq == 2)).scalar_one()
        forged = raw.replace("第1条".encode(), "第9条".encode())
        conn.execute(
            update(ENTRIES).where(ENTRIES.c.seq == 2).values(raw=forged, hash=sha256_hex(forged))
        )
    problem = next(verify_log(node.log))
    assert (problem.seq, problem.code) == (3, ErrorCode.BAD_CHAIN)


def test_deleted_entry_is_a_gap(make_node: NodeFactory, db_url: str) -> None:
    node = make_node("js", db_url=db_url)
    node.put("note", _records(4))
    with node.store.write() as conn:
        conn.execute(ENTRIES.delete().where(ENTRIES.c.seq == 2))
    problem = next(verify_log(node.log))
    assert (problem.seq, problem.code) == (2, ErrorCode.GAP)


def test_reopen_after_close_continues_the_chain(make_node: NodeFactory, clock: FakeClock) -> None:
    node = make_node("js")
    node.put("note", _records(2))
    node.close()
    again = Node.open(node.settings, clock=clock)
    try:
        assert again.put("note", _records(1)).first == 3
        assert list(verify_log(again.log)) == []
    finally:
        again.close()
