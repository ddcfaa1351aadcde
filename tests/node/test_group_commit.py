"""Group commit in ingest: requests that queue while one is applied share one transaction,
each is answered with its own results, and one failing request does not fail the others."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, select

from hub.auth import remember
from node.ingest import Ingestor, _GroupCommit, _Job
from node.rollups import rebuild
from node.runtime import Node
from node.tables import RECORDS, ROLLUPS
from schemas.errors import ErrorCode, GuantongError
from schemas.segments import Segment
from tests.federation.harness import Federation


def _job() -> _Job:
    return _Job(segments=[], caller=None, recovering=False, check=None, verified=[], early=[])


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.005)


def test_requests_queued_behind_a_leader_are_applied_in_one_batch() -> None:
    release = threading.Event()
    batches: list[list[_Job]] = []

    def apply(batch: list[_Job]) -> None:
        batches.append(batch)
        if len(batches) == 1:
            release.wait(10)

    group = _GroupCommit(apply)
    jobs = [_job() for _ in range(4)]
    threads = [threading.Thread(target=group.run, args=(job,)) for job in jobs]
    threads[0].start()
    _wait_for(lambda: len(batches) == 1)
    for thread in threads[1:]:
        thread.start()
    _wait_for(lambda: len(group._queue) == 3)
    release.set()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    assert [len(b) for b in batches] == [1, 3]
    assert batches[0] == [jobs[0]] and batches[1] == jobs[1:]
    assert not group._busy and not group._queue


def test_a_lone_request_leads_itself() -> None:
    batches: list[list[_Job]] = []
    group = _GroupCommit(batches.append)
    job = _job()
    group.run(job)
    group.run(_job())
    assert batches == [[job], batches[1]] and len(batches[1]) == 1


@pytest.fixture
def county(fed: Federation) -> Node:
    return fed.add("js.wx.jy")


def _segment(fed: Federation, station: str, entries: int) -> Segment:
    node = fed.add(station)
    fed.write(station, entries)
    segment = node.log.read_segment(station, 0)
    assert segment is not None
    return segment


def test_a_failing_request_in_a_batch_leaves_the_others_applied(
    fed: Federation, county: Node
) -> None:
    segments = {n: _segment(fed, f"js.wx.jy.s{n}", 3) for n in range(1, 5)}
    ingestor = Ingestor.of(county)
    leader_in = threading.Event()
    release = threading.Event()

    def hold(conn: Connection) -> None:
        leader_in.set()
        release.wait(10)

    def broken(conn: Connection) -> None:
        raise RuntimeError("a bug in one request")

    def replay(conn: Connection) -> None:
        remember(conn, "same-signature", "2999-01-01T00:00:00.000Z")

    outcomes: dict[int, Any] = {}

    def push(n: int, check: Callable[[Connection], None]) -> None:
        try:
            outcomes[n] = ingestor.ingest([segments[n]], caller=f"js.wx.jy.s{n}", check=check)
        except Exception as exc:  # noqa: BLE001 - the outcome is what is tested
            outcomes[n] = exc

    threads = {1: threading.Thread(target=push, args=(1, hold))}
    threads[1].start()
    assert leader_in.wait(10)
    for n, check in ((2, broken), (3, replay), (4, replay)):
        threads[n] = threading.Thread(target=push, args=(n, check))
        threads[n].start()
    _wait_for(lambda: len(ingestor._group._queue) == 3)
    release.set()
    for thread in threads.values():
        thread.join(10)
        assert not thread.is_alive()

    assert [r.to_dict() for r in outcomes[1]] == [
        {"origin": "js.wx.jy.s1", "held": 3, "status": "ok"}
    ]
    assert isinstance(outcomes[2], RuntimeError)
    # the same signature twice: whichever queued first is applied, the other is a replay
    first, second = sorted((3, 4), key=lambda n: isinstance(outcomes[n], Exception))
    assert [r.status for r in outcomes[first]] == ["ok"], outcomes[first]
    assert isinstance(outcomes[second], GuantongError)
    assert outcomes[second].code is ErrorCode.REPLAY
    held = {h.origin: h.seq for h in county.log.heads()}
    assert held.get("js.wx.jy.s1") == 3
    assert held.get(f"js.wx.jy.s{first}") == 3
    assert held.get("js.wx.jy.s2", 0) == 0  # its request failed: nothing of it stored
    assert held.get(f"js.wx.jy.s{second}", 0) == 0  # a replay: nothing of it stored


def test_records_and_rollups_of_a_batch_equal_a_rebuild(fed: Federation, county: Node) -> None:
    """One transaction holding a record written and updated (two segments of one origin),
    and the same record id used by another origin: a record is named by its origin and
    its id, so each origin's is its own, the newest state of each wins, and the rollups
    equal what a rebuild counts."""
    ingestor = Ingestor.of(county)
    one, two = fed.add("js.wx.jy.s1"), fed.add("js.wx.jy.s2")
    record_id = fed.write("js.wx.jy.s1", 3, seed=4)[0]
    first = one.log.read_segment("js.wx.jy.s1", 0)
    updated = {**_data(one, record_id), "id": record_id, "status": "resolved"}
    updated.setdefault("resolved_at", fed.now())
    one.put("opinion", [(None, updated)])
    second = one.log.read_segment("js.wx.jy.s1", 3)
    fed.write("js.wx.jy.s2", 2, seed=5)
    claim = {**_data(two, fed.write("js.wx.jy.s2", 1, seed=6)[0]), "id": record_id}
    two.put("opinion", [(None, claim)])
    other = two.log.read_segment("js.wx.jy.s2", 0)
    assert first is not None and second is not None and other is not None
    results = ingestor.ingest([first, second, other], caller=None)
    assert [r.status for r in results] == ["ok", "ok", "ok"], [r.to_dict() for r in results]

    with county.store.read() as conn:
        rows = conn.execute(
            select(RECORDS).where(RECORDS.c.record_id == record_id).order_by(RECORDS.c.origin)
        ).all()
        counted = sorted(conn.execute(select(ROLLUPS)).all())
    assert [(r.origin, r.seq, r.data["status"]) for r in rows] == [
        ("js.wx.jy.s1", 4, "resolved"),
        ("js.wx.jy.s2", 4, claim["status"]),
    ]
    rebuild(county.store, county.registry.rules("performance_index"))
    with county.store.read() as conn:
        assert sorted(conn.execute(select(ROLLUPS)).all()) == counted


def test_an_id_two_origins_use_gives_the_same_records_in_any_order(
    fed: Federation, county: Node
) -> None:
    """Keyed by the id alone, the origin whose entry came first took the record: two hubs
    that received the same entries in other orders held different records. Keyed by
    origin and id, they hold the same records and rollups: the county takes one station
    first, the city (which learns the stations' keys from the county's certificates) the
    other."""
    city = fed.nodes["js.wx"]
    one, two = fed.add("js.wx.jy.s1"), fed.add("js.wx.jy.s2")
    record_id = fed.write("js.wx.jy.s1", 1, seed=4)[0]
    two.put("opinion", [(None, {**_data(one, record_id), "id": record_id})])
    certs = county.log.read_segment("js.wx.jy", 0)
    assert certs is not None
    (result,) = Ingestor.of(city).ingest([certs], caller=None)
    assert result.status == "ok", result.to_dict()
    segments = [one.log.read_segment("js.wx.jy.s1", 0), two.log.read_segment("js.wx.jy.s2", 0)]
    held = []
    for hub, order in ((county, segments), (city, segments[::-1])):
        for segment in order:
            assert segment is not None
            (result,) = Ingestor.of(hub).ingest([segment], caller=None)
            assert result.status == "ok", result.to_dict()
        stations = RECORDS.c.origin.startswith("js.wx.jy.")
        with hub.store.read() as conn:
            records = conn.execute(
                select(RECORDS.c.origin, RECORDS.c.record_id, RECORDS.c.seq, RECORDS.c.data)
                .where(stations)
                .order_by(RECORDS.c.origin, RECORDS.c.record_id)
            ).all()
            rollups = conn.execute(
                select(ROLLUPS).where(ROLLUPS.c.origin.startswith("js.wx.jy.")).order_by(*ROLLUPS.c)
            ).all()
        held.append(([tuple(r) for r in records], [tuple(r) for r in rollups]))
        assert [v.origin for v in hub.find(record_id)] == ["js.wx.jy.s1", "js.wx.jy.s2"]
    assert len(held[0][0]) == 2 and held[0][1]
    assert held[0] == held[1]


def _data(node: Node, record_id: str) -> dict[str, Any]:
    with node.store.read() as conn:
        data = conn.execute(
            select(RECORDS.c.data).where(
                RECORDS.c.origin == node.id, RECORDS.c.record_id == record_id
            )
        ).scalar_one()
    return dict(data)


def test_at_most_a_few_requests_are_ingested_at_once(county: Node) -> None:
    """Memory does not grow with the number of children pushing at once."""
    from node.ingest import MAX_ADMITTED

    ingestor = Ingestor.of(county)
    inside, most = 0, 0
    lock = threading.Lock()

    def request() -> None:
        nonlocal inside, most
        with ingestor.admitted():
            with lock:
                inside += 1
                most = max(most, inside)
            time.sleep(0.05)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=request) for _ in range(4 * MAX_ADMITTED)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert most == MAX_ADMITTED and inside == 0


def test_a_request_that_finds_no_place_is_refused_as_busy(county: Node) -> None:
    """Waiting is bounded: past ``admission_wait`` the hub says ``busy`` (503 with a
    short Retry-After) rather than hold the request until its sender's timeout."""
    from node.ingest import MAX_ADMITTED

    ingestor = Ingestor.of(county)
    ingestor.admission_wait = 0.05
    with contextlib.ExitStack() as places:
        for _ in range(MAX_ADMITTED):
            places.enter_context(ingestor.admitted())
        with pytest.raises(GuantongError) as refused, ingestor.admitted():
            pass
        assert refused.value.code is ErrorCode.BUSY
    with ingestor.admitted(), ingestor.admitted():  # the places are given back
        pass
