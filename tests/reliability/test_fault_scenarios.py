"""Single faults the state machine does not model, each replayed on purpose.

Every test states the promise it checks. A bug in the product that this suite finds is
pinned by a test marked ``xfail(strict=True)`` under an "open bugs" heading: it fails until
the bug is fixed, then flags (XPASS) so the marker goes and the test joins those below,
which guard the bugs found and fixed so far.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import random
import shutil
import sqlite3
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import select

from contracts.registry import DEFAULT_BUNDLE, Registry
from contracts.samples import sample_records
from hub.pending import apply_pending
from node.app import _SyncState
from node.bundles import export_bundle, import_bundle
from node.ingest import Ingestor
from node.log import Write
from node.recovery import ensure_recovered
from node.rollups import stats
from node.runtime import Node
from node.tables import TASK_EVENTS, TASKS
from node.taskfeed import link
from node.tasks import _store, amend_task, issue_task, report_task, task_views
from node.uplink import Uplink
from node.verify import verify_log
from schemas.errors import ErrorCode, GuantongError
from schemas.hashing import ZERO_HASH
from schemas.ids import uuid7
from schemas.segments import encode_segment
from schemas.tasks import sign_task
from schemas.times import format_time, parse_time
from tests.conftest import example
from tests.federation.harness import Federation, reopen
from tests.reliability.faults import FAULTS, FaultPlan, faulty_pull, faulty_uplink

pytestmark = pytest.mark.anyio

COUNTY, S1 = "js.wx.jy", "js.wx.jy.s1"


def _sqlite_only(fed: Federation) -> None:
    if fed.hub_db is not None:
        pytest.skip("copies SQLite store files")


def _postgresql_only(fed: Federation) -> None:
    if fed.hub_db is None:
        pytest.skip("a PostgreSQL hub behaviour")


def _snapshot(node: Node, to: Path) -> None:
    """An online backup of a SQLite store (what ``deploy/`` backups do)."""
    source = sqlite3.connect(node.settings.home / "node.db")
    target = sqlite3.connect(to)
    with target:
        source.backup(target)
    source.close()
    target.close()


def _restore(fed: Federation, node_id: str, backup: Path) -> Node:
    node = fed.nodes[node_id]
    node.close()
    home = node.settings.home
    for suffix in ("-wal", "-shm"):
        (home / f"node.db{suffix}").unlink(missing_ok=True)
    (home / "node.db").write_bytes(backup.read_bytes())
    return reopen(fed, node_id)


def _received(node: Node, task_id: str, origin: str) -> int:
    with node.store.read() as conn:
        rows = conn.execute(
            select(TASK_EVENTS.c.status).where(
                TASK_EVENTS.c.task_id == task_id, TASK_EVENTS.c.origin == origin
            )
        ).scalars()
        return sum(1 for status in rows if status == "received")


# -- what works ----------------------------------------------------------------------------


async def test_every_fault_alone_loses_nothing(fed: Federation) -> None:
    """Each fault, injected on every request of a push and a pull, leaves the hub with an
    exact prefix; the next clean sync delivers everything once."""
    county = fed.add(COUNTY)
    station = fed.add(S1)
    counts: Counter[str] = Counter()
    for i, fault in enumerate(FAULTS):
        fed.write(station.id, 3, seed=i)
        task = issue_task(county, target=station.id, kind="notice", payload={"text": fault})
        plan = FaultPlan(**{fault: 1.0})
        fed.clock.advance(seconds=1)
        uplink = faulty_uplink(fed, station.id, rng=random.Random(i), plan=plan, counts=counts)
        try:
            await uplink.sync()
        except GuantongError as exc:
            assert exc.code in (
                ErrorCode.PARENT_UNREACHABLE,
                ErrorCode.REPLAY,
                ErrorCode.MALFORMED,
                ErrorCode.UNAUTHENTICATED,
            ), exc
        finally:
            await uplink.client.aclose()
        with contextlib.suppress(GuantongError):
            await faulty_pull(fed, station.id, rng=random.Random(i), plan=plan, counts=counts)
        held = list(county.log.iter_entries(station.id))
        assert held == list(station.log.iter_entries(station.id))[: len(held)]
        fed.clock.advance(seconds=1)
        await fed.pull(station.id)
        fed.clock.advance(seconds=1)
        assert (await fed.sync(station.id)).rejected == {}
        assert list(county.log.iter_entries(station.id)) == list(
            station.log.iter_entries(station.id)
        )
        assert _received(county, task.id, station.id) == 1, fault
    assert list(verify_log(county.log)) == []
    assert set(counts) >= set(FAULTS)


async def test_lost_answer_then_restart_resends_harmlessly(fed: Federation) -> None:
    """The hub stored a push whose answer was lost, then the station restarted: its cursor
    did not move, the resend is compared by hash and nothing is stored twice."""
    county = fed.add(COUNTY)
    station = fed.add(S1)
    fed.write(station.id, 5)
    uplink = faulty_uplink(fed, station.id, rng=random.Random(1), plan=FaultPlan(lose_answer=1))
    with pytest.raises(GuantongError):
        await uplink.sync()
    await uplink.client.aclose()
    assert county.log.head(station.id).seq == 5  # type: ignore[union-attr]
    assert [(b.acked, b.held) for b in uplink.backlog()] == [(0, 5)]
    station = reopen(fed, station.id)
    fed.clock.advance(seconds=5)
    report = await fed.sync(station.id)
    assert (report.requests, report.rejected) == (1, {})
    assert county.log.counts() == (len(list(county.log.iter_entries(county.id))) + 5, 2)


# -- bugs this suite found, since fixed: regression tests -----------------------------------


async def test_a_failed_receipt_is_written_later(
    fed: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transient store error while the target writes ``received`` must not lose it."""
    county = fed.add(COUNTY)
    station = fed.add(S1)
    task = issue_task(county, target=station.id, kind="notice", payload={"text": "通知"})

    def locked(*_args: object, **_kwargs: object) -> None:
        raise GuantongError(ErrorCode.STORE_ERROR, "store error: database is locked")

    with monkeypatch.context() as patch:
        patch.setattr(station, "put", locked)
        first = await fed.pull(station.id)
    assert first.stored == 1 and first.rejected  # the store error was reported, not raised
    for _ in range(2):  # the scheduler's next runs
        fed.clock.advance(seconds=15)
        await fed.pull(station.id)
        await fed.sync(station.id)
    (view,) = task_views(county, issued_here=True)
    assert view.state == "delivered" and _received(county, task.id, station.id) == 1


async def test_a_recovered_station_does_not_report_received_twice(fed: Federation) -> None:
    """After a lost disk and recovery, tasks already acknowledged are not acknowledged again."""
    county = fed.add(COUNTY)
    station = fed.add(S1)
    task = issue_task(county, target=station.id, kind="notice", payload={"text": "通知"})
    await fed.pull(station.id)
    await fed.sync(station.id)
    assert _received(county, task.id, station.id) == 1
    fed.clock.advance(days=1)
    station.close()
    (station.settings.home / "node.db").unlink()
    station = reopen(fed, station.id)
    async with fed.client(county.id, caller=station.id) as client:
        assert await ensure_recovered(station, client) is not None
    fed.clock.advance(seconds=1)
    await fed.pull(station.id)
    fed.clock.advance(seconds=1)
    assert (await fed.sync(station.id)).rejected == {}
    assert _received(county, task.id, station.id) == 1


async def test_tasks_issued_after_a_hub_restore_reach_the_child(
    fed: Federation, tmp_path: Path
) -> None:
    """A hub restored from a backup still delivers the tasks it issues afterwards."""
    _sqlite_only(fed)
    county = fed.add(COUNTY)
    station = fed.add(S1)
    backup = tmp_path / "county-backup.db"
    _snapshot(county, backup)
    for text in ("一", "二"):
        issue_task(county, target=station.id, kind="notice", payload={"text": text})
    await fed.pull(station.id)
    county = _restore(fed, COUNTY, backup)
    later = issue_task(county, target=station.id, kind="notice", payload={"text": "三"})
    fed.clock.advance(seconds=1)
    await fed.pull(station.id)
    assert later.id in {v.task.id for v in task_views(station, issued_here=False)}


async def test_a_restored_hub_gets_an_idle_childs_entries_back(
    fed: Federation, tmp_path: Path
) -> None:
    """Entries a hub lost to a restore come back even if their origin writes nothing new."""
    _sqlite_only(fed)
    county = fed.add(COUNTY)
    station = fed.add(S1)
    backup = tmp_path / "county-backup.db"
    _snapshot(county, backup)
    fed.write(station.id, 4)
    assert (await fed.sync(station.id)).entries == 4
    county = _restore(fed, COUNTY, backup)
    for _ in range(3):  # the station's scheduler keeps running
        fed.clock.advance(seconds=15)
        await fed.sync(station.id)
    held = county.log.head(station.id)
    assert held is not None and held.seq == 4


async def test_the_uplink_honours_retry_after(fed: Federation) -> None:
    """A hub asking for 600 s of quiet gets them."""
    fed.add(COUNTY)
    station = fed.add(S1)
    fed.write(station.id, 1)
    uplink = faulty_uplink(
        fed, station.id, rng=random.Random(3), plan=FaultPlan(unavailable=1), retry_after=600
    )
    with pytest.raises(GuantongError):
        await uplink.sync()
    await uplink.client.aclose()
    next_at = uplink.state()["next_attempt_at"]
    assert next_at is not None
    assert parse_time(next_at) >= fed.clock() + timedelta(seconds=600)


def _fill(ingestor: Ingestor) -> contextlib.ExitStack:
    """Take every ingest place of ``ingestor`` (given back when the stack closes), and make
    a request wait for one only 50 ms before the hub says ``busy``."""
    from node.ingest import MAX_ADMITTED

    ingestor.admission_wait = 0.05
    places = contextlib.ExitStack()
    for _ in range(MAX_ADMITTED):
        places.enter_context(ingestor.admitted())
    return places


async def _push_own_log(fed: Federation, station: Node) -> httpx.Response:
    """POST the station's log from seq 1 to its county, as one signed push."""
    segment = station.log.read_segment(station.id, 0)
    assert segment is not None
    body = encode_segment(segment.head, segment.start, segment.entries)
    async with fed.client(COUNTY, caller=station.id) as client:
        return await client.post(
            "/v1/push", content=body, headers={"content-type": "application/x-ndjson"}
        )


async def test_a_hub_with_no_room_says_busy_and_the_child_comes_back_in_seconds(
    fed: Federation,
) -> None:
    """Back-pressure: a push that finds every ingest place taken is refused as ``busy``
    with a short Retry-After instead of being held until its sender times out; the child
    keeps its data, waits that long (plus jitter, not exponential backoff) and then
    delivers it."""
    from node.app import BUSY_RETRY_AFTER_S

    fed.add(COUNTY)
    station = fed.add(S1)
    fed.write(station.id, 3)
    with _fill(fed.app(COUNTY).state.ingestor):
        response = await _push_own_log(fed, station)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "busy"
        assert response.headers["retry-after"] == str(BUSY_RETRY_AFTER_S)

        uplink = fed.uplink(station.id, rng=random.Random(5))
        with pytest.raises(GuantongError, match="busy"):
            await uplink.sync()
        state = uplink.state()
        assert state["failures"] == 1 and "busy" in state["last_error"]
        assert BUSY_RETRY_AFTER_S <= uplink.wait() <= BUSY_RETRY_AFTER_S * 1.5
    assert fed.nodes[COUNTY].log.head(station.id) is None  # nothing of it was read
    assert not uplink.due()
    fed.clock.advance(seconds=BUSY_RETRY_AFTER_S * 1.5)
    assert uplink.due()
    report = await uplink.sync()
    await uplink.client.aclose()
    assert report.entries == 3 and uplink.state()["failures"] == 0
    held = fed.nodes[COUNTY].log.head(station.id)
    assert held is not None and held.seq == 3


def _served_uplink(
    fed: Federation, seed: int
) -> tuple[Node, Uplink, httpx.AsyncClient, _SyncState, list[float]]:
    """A station with two entries under a county, its uplink and signed client, and the
    state of a server's uplink job that records when it asks to be woken."""
    fed.add(COUNTY)
    station = fed.add(S1)
    fed.write(station.id, 2)
    woken: list[float] = []
    state = _SyncState(wake=woken.append)
    uplink = fed.uplink(station.id, rng=random.Random(seed))
    client = fed.client(COUNTY, caller=station.id)
    return station, uplink, client, state, woken


async def test_a_served_uplink_runs_again_when_a_busy_parent_said_to(fed: Federation) -> None:
    """The server's uplink job does not sit out its 15-second interval after a ``busy``:
    it asks to be woken when the Retry-After ends, and a run that comes too early (kicked
    by a write) pushes nothing and asks again for the time left."""
    from node.app import _sync_job

    station, uplink, client, state, woken = _served_uplink(fed, seed=8)
    with _fill(fed.app(COUNTY).state.ingestor):
        await _sync_job(station, uplink, client, state)
    assert len(woken) == 1 and 2.0 <= woken[0] <= 3.0
    fed.clock.advance(seconds=1)
    await _sync_job(station, uplink, client, state)  # too early: nothing is tried
    assert len(woken) == 2 and woken[1] == pytest.approx(woken[0] - 1)
    assert fed.nodes[COUNTY].log.head(station.id) is None
    fed.clock.advance(seconds=woken[1])
    await _sync_job(station, uplink, client, state)
    held = fed.nodes[COUNTY].log.head(station.id)
    assert held is not None and held.seq == 2 and len(woken) == 2
    await uplink.client.aclose()
    await client.aclose()


async def test_a_write_during_the_uplink_job_is_relayed_as_it_ends(fed: Federation) -> None:
    """What is written (or pushed by a child) after the running job's last push is not
    left for its next interval: the kick marks the running job, which asks to run again
    as it ends (moving a running job up would only have the scheduler skip it), spaced
    from the run's start by RELAY_SPACING_S."""
    from node.app import KICK_DELAY_S, RELAY_SPACING_S, _sync_job

    station, uplink, client, state, woken = _served_uplink(fed, seed=9)
    asked_at: list[float] = []

    def wake(delay: float) -> None:
        woken.append(delay)
        asked_at.append(time.monotonic())

    state.wake = wake
    pushed = uplink.sync
    kicks: list[bool] = []

    async def sync_then_write(**kwargs: Any) -> Any:
        report = await pushed(**kwargs)
        fed.write(station.id, 1, seed=2)  # after the last push of this run
        kicks.append(state.note_kick())
        return report

    uplink.sync = sync_then_write  # type: ignore[method-assign]
    await _sync_job(station, uplink, client, state)
    assert kicks == [False] and len(woken) == 1
    spaced = state.started_at + RELAY_SPACING_S - asked_at[0]
    assert woken[0] == pytest.approx(max(KICK_DELAY_S, spaced), abs=0.05)
    held = fed.nodes[COUNTY].log.head(station.id)
    assert held is not None and held.seq == 2
    uplink.sync = pushed  # type: ignore[method-assign]
    assert state.note_kick() and not state.kicked  # no run in progress: moved up as before
    await _sync_job(station, uplink, client, state)
    held = fed.nodes[COUNTY].log.head(station.id)
    assert held is not None and held.seq == 3 and len(woken) == 1
    await uplink.client.aclose()
    await client.aclose()


def test_kicked_uplink_runs_are_spaced_from_the_last_run() -> None:
    """A kick after a quiet spell relays after KICK_DELAY_S; kicks that keep coming start
    a run no sooner than RELAY_SPACING_S after the previous one began, so a hub taking in
    a push every few seconds relays them together rather than one round each."""
    from node.app import KICK_DELAY_S, RELAY_SPACING_S

    assert KICK_DELAY_S < RELAY_SPACING_S
    state = _SyncState()
    assert state.kick_delay(now=100.0) == KICK_DELAY_S  # never ran
    state.started_at = 100.0
    assert state.kick_delay(now=100.0) == RELAY_SPACING_S
    assert state.kick_delay(now=102.0) == RELAY_SPACING_S - 2
    assert state.kick_delay(now=100.0 + RELAY_SPACING_S - KICK_DELAY_S / 2) == KICK_DELAY_S
    assert state.kick_delay(now=1_000.0) == KICK_DELAY_S


async def test_a_kick_moves_the_served_uplink_job_to_its_spaced_time(fed: Federation) -> None:
    """The server's ``kick`` (after a child's push or a local write) moves the uplink job
    to KICK_DELAY_S from now when it has not run lately, and to RELAY_SPACING_S after its
    last run began when it just ran; a later kick never pushes the job back."""
    from datetime import UTC, datetime

    from fastapi import FastAPI

    from node.app import KICK_DELAY_S, RELAY_SPACING_S, _schedule

    station, uplink, client, _state, _woken = _served_uplink(fed, seed=10)
    app = FastAPI()
    app.state.uplink = uplink
    jobs = _schedule(app, station, client)
    job = jobs.get_job("uplink")
    assert job is not None

    def due_in() -> float:
        return float((job.next_run_time - datetime.now(UTC)).total_seconds())

    job.modify(next_run_time=datetime(2100, 1, 1, tzinfo=UTC))  # as if just ticked
    app.state.kick()
    assert KICK_DELAY_S - 0.5 < due_in() <= KICK_DELAY_S  # never ran: soon
    job.modify(next_run_time=datetime(2100, 1, 1, tzinfo=UTC))
    sync_job = job.func
    await sync_job(*job.args)  # a run: the county takes the station's entries
    held = fed.nodes[COUNTY].log.head(station.id)
    assert held is not None and held.seq == 2
    app.state.kick()
    assert KICK_DELAY_S < due_in() <= RELAY_SPACING_S  # just ran: spaced from its start
    spaced = due_in()
    app.state.kick()
    assert due_in() <= spaced + 0.1  # a second kick does not push it back
    await uplink.client.aclose()
    await client.aclose()


async def test_a_write_by_another_process_kicks_the_served_uplink(fed: Federation) -> None:
    """The server watches the own head's watermark file: a write made by another process
    (``guantong put`` on the same home) moves the uplink job up, once per write, and a
    watch that finds nothing new leaves the job where it was."""
    from datetime import UTC, datetime

    from fastapi import FastAPI

    from node.app import KICK_DELAY_S, _schedule

    station, uplink, client, _state, _woken = _served_uplink(fed, seed=11)
    app = FastAPI()
    app.state.uplink = uplink
    jobs = _schedule(app, station, client)
    job, watch = jobs.get_job("uplink"), jobs.get_job("writes")
    assert job is not None and watch is not None
    far = datetime(2100, 1, 1, tzinfo=UTC)
    job.modify(next_run_time=far)
    await watch.func()  # the entries written before the server started: no news
    assert job.next_run_time == far
    other = Node.open(station.settings, clock=fed.clock)  # another process on the home
    try:
        for round_ in range(2):
            records = sample_records("opinion", 1, seed=round_, origin=station.id)
            other.put("opinion", [(None, r) for r in records])
            await watch.func()
            due = (job.next_run_time - datetime.now(UTC)).total_seconds()
            assert due <= KICK_DELAY_S
            job.modify(next_run_time=far)
            await watch.func()  # the same write seen again: no second kick
            assert job.next_run_time == far
    finally:
        other.close()
    await uplink.client.aclose()
    await client.aclose()


async def test_sync_on_the_command_line_waits_out_a_busy_parent(
    fed: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``guantong sync --once`` against a parent that is busy for a moment waits the
    seconds it asks for and succeeds, instead of failing with ``parent_unreachable``."""
    from rich.progress import Progress

    from node.cli import sync as sync_cli

    fed.add(COUNTY)
    station = fed.add(S1)
    fed.write(station.id, 2)
    monkeypatch.setattr(sync_cli, "client", lambda node: fed.client(COUNTY, caller=node.id))
    places = _fill(fed.app(COUNTY).state.ingestor)
    timer = threading.Timer(0.5, places.close)  # the hub has room again half a second later
    timer.start()
    try:
        report = await sync_cli._sync(station, once=True, interval=0, progress=Progress())
    finally:
        timer.cancel()
        places.close()
    assert report.entries == 2
    held = fed.nodes[COUNTY].log.head(station.id)
    assert held is not None and held.seq == 2


async def test_a_busy_hub_answers_503_with_retry_after(
    fed: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Back-pressure from the hub carries Retry-After."""
    fed.add(COUNTY)
    station = fed.add(S1)
    fed.write(station.id, 1)
    ingestor = fed.app(COUNTY).state.ingestor

    def locked(*_args: object, **_kwargs: object) -> None:
        raise GuantongError(ErrorCode.STORE_ERROR, "store error: database is locked")

    monkeypatch.setattr(ingestor, "push", locked)
    response = await _push_own_log(fed, station)
    assert response.status_code == 503
    assert "retry-after" in response.headers


async def test_a_bundle_with_bytes_after_its_gzip_stream_is_refused(
    fed: Federation, tmp_path: Path
) -> None:
    """A tampered bundle is refused, even when its first gzip member is intact."""
    county = fed.add(COUNTY)
    station = fed.add(S1)
    fed.write(station.id, 2)
    bundle = export_bundle(station, tmp_path / "s1.gtb").path
    bundle.write_bytes(bundle.read_bytes() + gzip.compress(b'{"from":1}\n', mtime=0))
    with pytest.raises(GuantongError) as refused:
        import_bundle(county, bundle)
    assert refused.value.code is ErrorCode.MALFORMED


async def test_a_pending_task_report_counts_once_its_contract_arrives(
    fed: Federation, tmp_path: Path
) -> None:
    """Contracts arriving late (a station updated by USB first) delay a report, never lose it."""
    county = fed.add(COUNTY)
    station = fed.add(S1)
    task = issue_task(county, target=station.id, kind="assign", payload={"text": "修路灯"})
    await fed.pull(station.id)
    newer = _bundle_with_task_report_1_1(tmp_path / "bundle")
    station.install_contracts(newer)  # the station got the new bundle first, by USB
    report_task(station, task.id, "done", resolution="已修复")
    fed.clock.advance(seconds=1)
    pushed = await fed.sync(station.id)
    assert pushed.rejected == {} and pushed.entries == 2  # `received` applied, `done` pending
    county.install_contracts(newer)
    assert apply_pending(county.store, county.registry)["valid"] == 1
    (view,) = task_views(county, issued_here=True)
    assert view.state == "done"


def _bundle_with_task_report_1_1(folder: Path) -> Registry:
    shutil.copytree(DEFAULT_BUNDLE, folder)
    index = json.loads((folder / "index.json").read_text("utf-8"))
    index["bundle_version"] = 2
    shutil.copy(folder / "task_report" / "1.0.json", folder / "task_report" / "1.1.json")
    versions = index["contracts"]["task_report"]["versions"]
    versions["1.1"] = dict(versions["1.0"])
    index["contracts"]["task_report"]["current"] = "1.1"
    (folder / "index.json").write_text(json.dumps(index, ensure_ascii=False), "utf-8")
    return Registry.from_dir(folder)


async def test_a_task_amended_before_delivery_is_acknowledged(fed: Federation) -> None:
    """A target that first hears of a task at its second revision still reports it received."""
    county = fed.add(COUNTY)
    station = fed.add(S1)
    task = issue_task(county, target=station.id, kind="assign", payload={"text": "修路灯"})
    amend_task(county, task.id, payload={"text": "修路灯，加急"})
    await fed.pull(station.id)
    fed.clock.advance(seconds=1)
    assert (await fed.sync(station.id)).rejected == {}
    (view,) = task_views(county, issued_here=True)
    assert view.state == "delivered" and _received(county, task.id, station.id) == 1


async def test_a_task_cancelled_before_delivery_is_acknowledged_twice(fed: Federation) -> None:
    """A target that first hears of a task at its cancellation reports it received, and
    the cancellation too, as if it had pulled between the two revisions."""
    county = fed.add(COUNTY)
    station = fed.add(S1)
    task = issue_task(county, target=station.id, kind="assign", payload={"text": "修路灯"})
    amend_task(county, task.id, cancel=True)
    for _ in range(2):  # the receipts are written once, however often the station pulls
        await fed.pull(station.id)
        fed.clock.advance(seconds=1)
        assert (await fed.sync(station.id)).rejected == {}
    (view,) = task_views(county, issued_here=True)
    notes = sorted(h.get("note", "") for h in view.history)
    assert view.state == "cancelled" and notes == ["", "cancelled by the issuer"]


async def test_nul_in_a_signature_is_a_segment_rejection(fed: Federation) -> None:
    """A forged signature is refused per segment with a stable code on every backend."""
    county = fed.add(COUNTY)
    station = fed.add(S1)
    fed.write(station.id, 2)
    segment = station.log.read_segment(station.id, 0)
    assert segment is not None
    forged = segment.head.model_copy(update={"sig": "\x00:AAAA"})
    ingestor = Ingestor.of(county, clock=fed.clock)
    (result,) = ingestor.push(
        encode_segment(forged, segment.start, segment.entries), caller=station.id
    )
    assert result.status == "rejected" and result.error is not None
    assert result.error["code"] == "bad_signature"
    assert county.log.head(station.id) is None


async def test_nul_in_a_text_field_does_not_block_a_postgresql_hub(fed: Federation) -> None:
    """An authentic, valid entry is taken by every hub whatever its text holds: its bytes
    are kept and relayed exactly, and its record shows U+FFFD for U+0000 on every backend
    alike (PostgreSQL text cannot hold U+0000). New records may not hold it at all, but
    nodes of older releases wrote some."""
    city = fed.add("js.wx")
    county = fed.add(COUNTY)
    station = fed.add(S1)
    record = {**example("opinion"), "content": "路灯坏了\x00请尽快修"}
    record.pop("reporter_name")  # private (local): an entry never holds it
    with pytest.raises(GuantongError) as refused:
        station.put("opinion", [(None, record)])
    assert refused.value.code is ErrorCode.NUL_IN_TEXT
    assert refused.value.details["path"] == "/content"
    record_id = uuid7()  # as an older release wrote it
    station.log.append([Write("opinion", "1.1", record_id, data=record)])
    fed.write(station.id, 2, seed=2)
    report = await fed.sync(station.id)
    assert (report.entries, report.rejected) == (3, {})
    await fed.sync(county.id)
    for hub in (county, city):
        assert list(hub.log.iter_entries(station.id)) == list(station.log.iter_entries(station.id))
        view = hub.get("opinion", record_id)
        assert view == station.get("opinion", record_id)
        assert view.data is not None and view.data["content"] == "路灯坏了\ufffd请尽快修"
        assert stats(hub.store, station.id) == stats(station.store, station.id)


async def test_every_task_issued_after_a_hub_restore_reaches_the_child(
    fed: Federation, tmp_path: Path
) -> None:
    """Tasks a restored hub issues reach the child however many there are by its next pull."""
    _sqlite_only(fed)
    county = fed.add(COUNTY)
    station = fed.add(S1)
    backup = tmp_path / "county-backup.db"
    _snapshot(county, backup)
    for text in ("一", "二"):
        issue_task(county, target=station.id, kind="notice", payload={"text": text})
    await fed.pull(station.id)
    county = _restore(fed, COUNTY, backup)
    later = [
        issue_task(county, target=station.id, kind="notice", payload={"text": text}).id
        for text in ("三", "四", "五")
    ]
    fed.clock.advance(seconds=1)
    await fed.pull(station.id)
    held = {v.task.id for v in task_views(station, issued_here=False)}
    assert [task_id for task_id in later if task_id not in held] == []


async def test_a_task_committed_late_is_still_delivered(fed: Federation) -> None:
    """Two transactions storing tasks at a PostgreSQL hub, committed out of order."""
    _postgresql_only(fed)
    county = fed.add(COUNTY)
    station = fed.add(S1)
    fields = {
        "id": uuid7(),
        "issuer": county.id,
        "target": station.id,
        "scope": "node",
        "kind": "notice",
        "payload": {"text": "慢"},
        "issued": fed.now(),
        "rev": 1,
    }
    late = sign_task(county.signer, fields)
    with county.store.write() as conn:  # e.g. relaying a page of tasks from the city
        _store(county, [late], conn)
        issue_task(county, target=station.id, kind="notice", payload={"text": "快"})
        await fed.pull(station.id)
    fed.clock.advance(seconds=1)
    await fed.pull(station.id)
    assert late.id in {v.task.id for v in task_views(station, issued_here=False)}


async def test_tasks_committed_in_any_order_by_many_writers_all_arrive(fed: Federation) -> None:
    """Writers (workers of one hub) store tasks concurrently and commit in a random order
    while a child keeps paging: it gets them all, and the feed is gapless and chained."""
    county = fed.add(COUNTY)
    station = fed.add(S1)
    delays = [random.Random(i).random() * 0.05 for i in range(12)]
    tasks = [
        sign_task(
            county.signer,
            {
                "id": uuid7(),
                "issuer": county.id,
                "target": station.id,
                "scope": "node",
                "kind": "notice",
                "payload": {"text": str(i)},
                "issued": fed.now(),
                "rev": 1,
            },
        )
        for i in range(len(delays))
    ]

    def store(i: int) -> None:
        with county.store.write() as conn:
            _store(county, [tasks[i]], conn)
            time.sleep(delays[i])  # still uncommitted while others commit and the child pages

    writers = [threading.Thread(target=store, args=(i,)) for i in range(len(tasks))]
    for writer in writers:
        writer.start()
    while any(writer.is_alive() for writer in writers):
        fed.clock.advance(milliseconds=1)
        await fed.pull(station.id)
        await anyio.sleep(0.005)
    for writer in writers:
        writer.join()
    fed.clock.advance(milliseconds=1)
    await fed.pull(station.id)
    held = {v.task.id for v in task_views(station, issued_here=False)}
    assert [t.id for t in tasks if t.id not in held] == []
    with county.store.read() as conn:
        feed = conn.execute(
            select(TASKS.c.feed, TASKS.c.chain, TASKS.c.raw).order_by(TASKS.c.feed)
        ).all()
    chain = ZERO_HASH
    for number, row in enumerate(feed, start=1):
        chain = link(chain, bytes(row.raw))
        assert (row.feed, row.chain) == (number, chain)


async def test_a_hub_restored_from_a_backup_holding_the_cursor_is_paged_on(
    fed: Federation, tmp_path: Path
) -> None:
    """A backup newer than a child's cursor keeps that part of the feed as it was: the
    child pages on from its cursor, with nothing delivered twice."""
    _sqlite_only(fed)
    county = fed.add(COUNTY)
    station = fed.add(S1)
    issue_task(county, target=station.id, kind="notice", payload={"text": "一"})
    await fed.pull(station.id)
    issue_task(county, target=station.id, kind="notice", payload={"text": "二"})
    backup = tmp_path / "county-backup.db"
    _snapshot(county, backup)
    issue_task(county, target=station.id, kind="notice", payload={"text": "lost"})
    county = _restore(fed, COUNTY, backup)
    later = issue_task(county, target=station.id, kind="notice", payload={"text": "三"})
    fed.clock.advance(seconds=1)
    pulled = await fed.pull(station.id)
    assert pulled.tasks == 2  # 二 and 三: not 一 again
    held = {v.task.id for v in task_views(station, issued_here=False)}
    assert later.id in held and len(held) == 3


async def test_sync_on_the_command_line_refills_a_parent_restored_from_a_backup(
    fed: Federation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``guantong sync --once`` (a station that does not serve, on a timer) lowers its
    cursors to what the parent holds, so a county restored from a backup gets back what
    it lost, as a served uplink's runs do; it pushed only beyond its cursors."""
    _sqlite_only(fed)
    from rich.progress import Progress

    from node.cli import sync as sync_cli

    county = fed.add(COUNTY)
    station = fed.add(S1)
    _snapshot(county, tmp_path / "county.db")
    fed.write(station.id, 4)
    monkeypatch.setattr(sync_cli, "client", lambda node: fed.client(COUNTY, caller=node.id))
    assert (await sync_cli._sync(station, once=True, interval=0, progress=Progress())).entries == 4
    county = _restore(fed, COUNTY, tmp_path / "county.db")
    assert county.log.head(station.id) is None
    monkeypatch.setattr(sync_cli, "client", lambda node: fed.client(COUNTY, caller=node.id))
    report = await sync_cli._sync(station, once=True, interval=0, progress=Progress())
    assert report.entries == 4
    held = fed.nodes[COUNTY].log.head(station.id)
    assert held is not None and held.seq == 4


async def test_the_sync_loop_goes_on_after_a_failed_run(
    fed: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``guantong sync`` without ``--once`` runs for as long as it is left running: a
    parent away for a while is reported and tried again after the backoff, not the end
    of the command."""
    from rich.console import Console
    from rich.progress import Progress

    from node import uplink as uplink_module
    from node.cli import sync as sync_cli

    county = fed.add(COUNTY)
    station = fed.add(S1)
    fed.write(station.id, 3)
    monkeypatch.setattr(sync_cli, "client", lambda node: fed.client(COUNTY, caller=node.id))
    monkeypatch.setattr(uplink_module, "backoff_delay", lambda failures, rng: 0.05)
    fed.down.add(COUNTY)
    console = Console(record=True, width=200)
    ended: list[BaseException] = []

    async def loop() -> None:
        try:
            await sync_cli._sync(
                station, once=False, interval=0.05, progress=Progress(console=console)
            )
        except GuantongError as exc:
            ended.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(loop)
        await anyio.sleep(0.3)
        fed.down.discard(COUNTY)  # back
        with anyio.fail_after(10):
            while (held := county.log.head(station.id)) is None or held.seq < 3:
                await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    assert ended == []
    assert "error: parent_unreachable" in console.export_text()


async def test_a_backoff_set_before_the_clock_was_set_back_is_due_now(
    fed: Federation,
) -> None:
    """A PC whose clock ran a month ahead failed a push, then had its clock corrected: the
    next attempt it stored is a month away, further than any backoff sets, so it is due
    now instead of after a month of silence."""
    fed.add(COUNTY)
    station = fed.add(S1)
    uplink = fed.uplink(station.id, rng=random.Random(1))
    ahead = fed.clock() + timedelta(days=30, seconds=30)
    uplink._save(1, format_time(ahead), "parent unreachable", None)
    assert uplink.wait() == 0.0
    near = fed.clock() + timedelta(seconds=30)  # an ordinary backoff is waited out
    uplink._save(1, format_time(near), "parent unreachable", None)
    assert uplink.wait() == pytest.approx(30.0)
    await uplink.client.aclose()


async def test_a_push_refused_as_a_whole_backs_off_and_says_why(fed: Federation) -> None:
    """A parent that refuses every request (here the station's key is revoked) is there,
    but the same push would be refused again at once: the uplink backs off as after a
    failure, keeps the reason for /v1/status, and notes the contact."""
    from node.app import _sync_job
    from node.tasks import revoke_node

    county = fed.add(COUNTY)
    station = fed.add(S1)
    fed.write(station.id, 2)
    revoke_node(county, station.id, revoked_from=fed.now())
    woken: list[float] = []
    state = _SyncState(wake=woken.append, recovered=True)
    uplink = fed.uplink(station.id, rng=random.Random(1))
    client = fed.client(COUNTY, caller=station.id)
    await _sync_job(station, uplink, client, state)
    first = uplink.state()
    assert first["failures"] == 1 and first["last_contact"] == fed.now()
    assert first["last_error"] is not None and "revoked" in first["last_error"]
    await _sync_job(station, uplink, client, state)  # within the backoff: not tried
    assert uplink.state()["failures"] == 1
    assert len(woken) == 2 and all(w >= 1.0 for w in woken)
    await uplink.client.aclose()
    await client.aclose()


async def test_a_page_that_is_no_heads_answer_lowers_no_cursor(
    fed: Federation,
) -> None:
    """A captive portal answers ``/v1/heads`` with 200 and a login page: reconciling
    lowers nothing and raises nothing; the push that follows says what is wrong."""
    station = fed.add(S1)
    fed.write(station.id, 1)
    portal = httpx.MockTransport(
        lambda request: httpx.Response(200, content=b"<html>VillageNet: please log in</html>")
    )
    async with httpx.AsyncClient(transport=portal) as client:
        uplink = Uplink(station.log, parent_url="http://county", client=client, clock=fed.clock)
        await uplink.reconcile_cursors()
        with pytest.raises(GuantongError) as refused:
            await uplink.sync()
    assert refused.value.code is ErrorCode.MALFORMED
    assert uplink.state()["failures"] == 1


async def test_a_relayed_segment_too_large_for_the_parent_holds_up_no_other_origin(
    fed: Federation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relay forwards another origin's segments whole, as signed: one that came on a USB
    stick can be larger than the parent takes in a request. It is set aside with its
    reason, as a rejected segment is, and the relay's other origins go on up."""
    import hub.api
    from node.uplink import backlog

    city = fed.add("js.wx")
    county = fed.add(COUNTY)
    s1, s2 = fed.add(S1), fed.add("js.wx.jy.s2")
    await fed.sync(county.id)  # the city learns the stations' certificates
    fed.write(s1.id, 300)  # one put: one signed head at seq 300
    fed.write(s2.id, 3, seed=2)
    segment = s1.log.read_segment(s1.id, 0, max_entries=10_000, max_bytes=1 << 30)
    assert segment is not None and len(segment.entries) == 300
    bundle = tmp_path / "s1.gtb"
    header = {
        "bundle": 1,
        "kind": "up",
        "from": s1.id,
        "to": county.id,
        "created": fed.now(),
        "segments": 1,
        "entries": 300,
    }
    body = encode_segment(segment.head, segment.start, segment.entries)
    bundle.write_bytes(gzip.compress(json.dumps(header).encode() + b"\n" + body))
    assert [r.status for r in import_bundle(county, bundle)[1]] == ["ok"]
    assert (await fed.sync(s2.id)).rejected == {}
    real = hub.api.inflate
    monkeypatch.setattr(hub.api, "inflate", lambda body: real(body, limit=64 << 10))
    report = await fed.sync(county.id)
    assert set(report.rejected) == {s1.id} and "too_large" in report.rejected[s1.id]
    held = city.log.head("js.wx.jy.s2")
    assert held is not None and held.seq == 3
    (waiting,) = [b for b in backlog(county.store) if b.origin == s1.id]
    assert waiting.acked == 0 and waiting.blocked is not None and "too_large" in waiting.blocked
    monkeypatch.setattr(hub.api, "inflate", real)  # the parent takes larger requests again
    assert (await fed.sync(county.id)).rejected == {}
    held = city.log.head(s1.id)
    assert held is not None and held.seq == 300
