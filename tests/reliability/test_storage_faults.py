"""Storage faults, made for real: a full disk, a read-only store, a corrupt database page.

Each test states the promise it checks: a clear error with a stable code (CLI and HTTP),
nothing accepted is lost or duplicated, and once the condition clears the same operation
succeeds and ``verify`` passes.

- **Full**: the node's home is a small tmpfs, filled with a file until the kernel says
  ``ENOSPC``; or SQLite's own ``PRAGMA max_page_count`` caps the database (``SQLITE_FULL``).
- **Read-only**: the tmpfs is remounted read-only (root), or the home is ``chmod``-ed (not
  root: root writes through modes). Tests skip, saying why, where neither works.
- **Corrupt**: one page of the database file (a leaf of the ``entries`` table or of one of
  its indexes, found by walking the b-tree) is overwritten with garbage.

PostgreSQL cannot be filled safely in a test: a trigger raises the server's own
``disk_full`` and ``data_exception`` errors inside the ingest transaction, and a session
with ``default_transaction_read_only`` is a real read-only store.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import event, func, select, text

import node.repair as repair_module
from contracts.samples import sample_records
from node.bundles import export_bundle, import_bundle
from node.db import CORRUPT_MARKER
from node.recovery import ensure_recovered
from node.repair import repair
from node.runtime import Node
from node.tables import ENTRIES, HEADS, RECORDS, SIGNED_HEADS, TASK_EVENTS, TASKS
from node.tasks import issue_task
from node.uplink import collect_segments
from node.verify import check_store, verify_log
from schemas.canonical import canonical_bytes
from schemas.errors import ErrorCode, GuantongError
from schemas.hashing import sha256_hex
from schemas.segments import encode_segment
from tests.conftest import FakeClock, NodeFactory
from tests.federation.harness import Federation, reopen

pytestmark = pytest.mark.anyio

CITY, COUNTY, S1 = "js.wx", "js.wx.jy", "js.wx.jy.s1"
PAGE = 4096


# -- real storage conditions ---------------------------------------------------------------


class Disk:
    """A node home on a file system of its own (a tmpfs when we may mount one)."""

    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        path.mkdir(parents=True)
        self.mounted = os.geteuid() == 0 and _run(
            "mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)
        )
        self.filler = path / "filler"

    def fill(self) -> None:
        """Write a file until the disk is full, for real."""
        if not self.mounted:
            pytest.skip("filling a disk needs a tmpfs of our own (root with CAP_SYS_ADMIN)")
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (1 << 16, PAGE, 1):
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, b"\0" * chunk)
        finally:
            os.close(fd)
        with pytest.raises(OSError) as full:
            (self.path / "probe").write_bytes(b"x" * PAGE)
        (self.path / "probe").unlink()
        assert full.value.errno == errno.ENOSPC

    def free(self) -> None:
        self.filler.unlink()

    def read_only(self, *nodes: Node) -> None:
        """Make the home read-only: remount the tmpfs (root) or take away write modes."""
        for node in nodes:
            node.store.dispose()  # a mount with files open for writing cannot go read-only
        if self.mounted:
            assert _run("mount", "-o", "remount,ro", str(self.path)), "remount ro failed"
        else:
            for path in (self.path, *self.path.rglob("*")):
                path.chmod(path.stat().st_mode & ~0o222)
        try:
            (self.path / "probe").write_bytes(b"x")
        except OSError:
            return
        (self.path / "probe").unlink()
        self.writable()
        pytest.skip("cannot make a folder read-only here (root without a tmpfs)")

    def writable(self) -> None:
        if self.mounted:
            assert _run("mount", "-o", "remount,rw", str(self.path))
        else:
            for path in (self.path, *self.path.rglob("*")):
                path.chmod(path.stat().st_mode | 0o200)

    def close(self) -> None:
        if self.mounted:
            _run("umount", "-l", str(self.path))


def _run(*command: str) -> bool:
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


@pytest.fixture
def disks(tmp_path: Path) -> Iterator[Callable[..., Disk]]:
    made: list[Disk] = []

    def make(node_id: str, size: str = "16m") -> Disk:
        disk = Disk(tmp_path / node_id, size)
        made.append(disk)
        return disk

    yield make
    for disk in made:
        with contextlib.suppress(Exception):
            disk.writable()
        disk.close()


@pytest.fixture
def fed(make_node: NodeFactory, clock: FakeClock) -> Federation:
    """SQLite everywhere: these tests act on the database files themselves."""
    return Federation(make_node, clock)


def _cap_pages(node: Node, extra: int = 0) -> Callable[[], None]:
    """SQLite's own limit: the database may not grow beyond its size now (SQLITE_FULL).
    Returns the function that lifts it."""
    with node.store.read() as conn:
        pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar_one())

    def cap(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages + extra}")

    node.store.dispose()
    event.listen(node.store.engine, "connect", cap)

    def lift() -> None:
        event.remove(node.store.engine, "connect", cap)
        node.store.dispose()

    return lift


def _leaf_pages(db: Path, name: str) -> list[int]:
    """The leaf pages of a table or index b-tree, by walking it from its root page."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (root,) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", (name,)
        ).fetchone()
    data = db.read_bytes()
    leaves: list[int] = []
    todo = [int(root)]
    while todo:
        page = todo.pop()
        base = (page - 1) * PAGE
        header = base + (100 if page == 1 else 0)
        kind = data[header]
        if kind in (0x0A, 0x0D):
            leaves.append(page)
            continue
        cells = int.from_bytes(data[header + 3 : header + 5], "big")
        todo.append(int.from_bytes(data[header + 8 : header + 12], "big"))
        for i in range(cells):
            pointer = int.from_bytes(data[header + 12 + 2 * i : header + 14 + 2 * i], "big")
            todo.append(int.from_bytes(data[base + pointer : base + pointer + 4], "big"))
    return sorted(leaves)


def _corrupt(fed: Federation, node_id: str, btree: str) -> Node:
    """Close the node, overwrite one leaf page of ``btree`` in the middle, open it again."""
    node = fed.nodes[node_id]
    node.close()
    db = node.settings.home / "node.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    leaves = _leaf_pages(db, btree)
    assert len(leaves) >= 3, f"{btree} is too small to lose a page in its middle"
    page = leaves[len(leaves) // 2]
    with db.open("r+b") as out:
        out.seek((page - 1) * PAGE)
        out.write(bytes((i * 37 + 11) % 256 for i in range(PAGE)))
    return reopen(fed, node_id)


def _seqs(node: Node, origin: str) -> list[int]:
    with node.store.read() as conn:
        rows = conn.execute(select(ENTRIES.c.seq).where(ENTRIES.c.origin == origin))
        return sorted(int(seq) for seq in rows.scalars())


def _same_log(a: Node, b: Node, origin: str) -> None:
    assert list(a.log.iter_entries(origin)) == list(b.log.iter_entries(origin))


async def _push(fed: Federation, station: Node, parent: str) -> httpx.Response:
    """One push of everything the parent lacks, answered as the wire answers it."""
    segments = collect_segments(station.log, max_bytes=None)
    body = b"".join(encode_segment(s.head, s.start, s.entries) for s in segments)
    async with fed.client(parent, caller=station.id) as client:
        return await client.post(
            "/v1/push", content=body, headers={"content-type": "application/x-ndjson"}
        )


def _records(origin: str, count: int, *, seed: int) -> list[dict[str, Any]]:
    return sample_records("opinion", count, seed=seed, origin=origin)


def _ndjson(records: list[dict[str, Any]]) -> Iterator[bytes]:
    for record in records:
        yield orjson.dumps(record) + b"\n"


def _gt(*args: str, home: Path, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUANTONG_")}
    return subprocess.run(
        [sys.executable, "-m", "node", *args, "--home", str(home)],
        input=input.decode() if input else None,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


# -- a full disk ---------------------------------------------------------------------------


async def test_a_full_disk_refuses_a_put_whole_then_takes_it(
    fed: Federation, disks: Callable[..., Disk]
) -> None:
    """A station whose disk is full refuses the batch with ``storage_full``, keeps all it
    had, and takes the same batch once space is back; the uplink then delivers it once."""
    county = fed.add(COUNTY)
    disk = disks(S1)
    station = fed.add(S1)
    fed.write(S1, 20)
    before = list(station.log.iter_entries(S1))
    disk.fill()
    with pytest.raises(GuantongError) as refused:
        fed.write(S1, 50, seed=1)
    assert refused.value.code is ErrorCode.STORAGE_FULL
    assert "full" in refused.value.message
    assert list(station.log.iter_entries(S1)) == before
    with pytest.raises(GuantongError) as still:
        await fed.sync(S1)  # the cursors cannot be stored either: nothing moves
    assert still.value.code is ErrorCode.STORAGE_FULL
    disk.free()
    fed.write(S1, 50, seed=1)
    assert (await fed.sync(S1)).entries == 70
    _same_log(station, county, S1)
    assert _seqs(county, S1) == list(range(1, 71))
    assert list(verify_log(station.log)) == list(verify_log(county.log)) == []
    assert check_store(station.log).damage == []


async def test_a_full_hub_answers_503_storage_full_and_the_child_waits(
    fed: Federation, disks: Callable[..., Disk]
) -> None:
    """A hub that cannot store a push answers 503 with ``storage_full`` and Retry-After; the
    child's cursors stay where they were; afterwards the same push is held exactly once."""
    disk = disks(COUNTY)
    county = fed.add(COUNTY)
    station = fed.add(S1)
    fed.write(S1, 10)
    assert (await fed.sync(S1)).entries == 10
    fed.write(S1, 40, seed=1)
    disk.fill()
    response = await _push(fed, station, COUNTY)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "storage_full"
    assert response.headers["retry-after"] == "120"
    uplink = fed.uplink(S1)
    with pytest.raises(GuantongError) as away:
        await uplink.sync()
    await uplink.client.aclose()
    assert away.value.code is ErrorCode.PARENT_UNREACHABLE
    assert "storage_full" in away.value.message
    assert [(b.acked, b.held) for b in uplink.backlog()] == [(10, 50)]
    assert "storage_full" in uplink.state()["last_error"]
    assert county.log.head(S1).seq == 10  # type: ignore[union-attr]
    disk.free()
    fed.clock.advance(seconds=121)
    assert (await fed.sync(S1)).entries == 40
    assert fed.uplink(S1).backlog() == []
    _same_log(station, county, S1)
    assert list(verify_log(county.log)) == []


async def test_a_database_at_its_page_limit_refuses_a_push_then_takes_it(
    fed: Federation,
) -> None:
    """SQLITE_FULL from SQLite itself (``max_page_count``), at the hub's ingest."""
    county = fed.add(COUNTY)
    station = fed.add(S1)
    fed.write(S1, 60)
    lift = _cap_pages(county)
    response = await _push(fed, station, COUNTY)
    assert (response.status_code, response.json()["error"]["code"]) == (503, "storage_full")
    assert county.log.head(S1) is None or county.log.head(S1).seq == 0  # type: ignore[union-attr]
    lift()
    assert (await fed.sync(S1)).entries == 60
    _same_log(station, county, S1)


async def test_a_full_hub_refuses_a_usb_bundle_whole(
    fed: Federation, disks: Callable[..., Disk], tmp_path: Path
) -> None:
    """Importing a bundle at a full hub fails with ``storage_full`` and stores nothing;
    importing it again later takes it, and the station's next sync moves its cursor."""
    disk = disks(COUNTY)
    county = fed.add(COUNTY)
    station = fed.add(S1)
    fed.write(S1, 30)
    bundle = export_bundle(station, tmp_path / "s1.gtb").path
    disk.fill()
    with pytest.raises(GuantongError) as refused:
        import_bundle(county, bundle)
    assert refused.value.code is ErrorCode.STORAGE_FULL
    assert _seqs(county, S1) == []
    disk.free()
    _, results = import_bundle(county, bundle)
    assert [(r.status, r.held) for r in results] == [("ok", 30)]
    assert (await fed.sync(S1)).rejected == {}  # a resend, compared by hash
    assert fed.uplink(S1).backlog() == []
    _same_log(station, county, S1)
    assert _seqs(county, S1) == list(range(1, 31))


async def test_a_full_usb_stick_leaves_no_half_bundle(
    fed: Federation, disks: Callable[..., Disk]
) -> None:
    station = fed.add(S1)
    fed.write(S1, 5)
    stick = disks("stick", "1m")
    stick.fill()
    with pytest.raises(GuantongError) as refused:
        export_bundle(station, stick.path / "s1.gtb")
    assert refused.value.code is ErrorCode.STORAGE_FULL
    assert sorted(p.name for p in stick.path.iterdir()) == ["filler"]


async def test_a_watermark_that_cannot_be_written_does_not_fail_a_committed_put(
    fed: Federation, disks: Callable[..., Disk]
) -> None:
    """The database had room (its WAL is reused after a checkpoint) but head.json did not:
    the put succeeded and says so. Failing it would invite the user to enter it twice."""
    disk = disks(S1)
    station = fed.add(S1)
    fed.write(S1, 40)
    with contextlib.closing(sqlite3.connect(station.settings.home / "node.db")) as conn:
        conn.execute("PRAGMA wal_checkpoint(RESTART)")  # the next commits reuse the WAL
    watermark = station.settings.home / "head.json"
    old = watermark.read_bytes()
    disk.fill()
    result = station.put("opinion", [(None, r) for r in _records(S1, 2, seed=3)])
    assert (result.first, result.last) == (41, 42)
    assert watermark.read_bytes() == old
    assert not list(watermark.parent.glob("head.json.*.tmp"))
    disk.free()
    station = reopen(fed, S1)
    assert station.recovery_reason is None  # a watermark behind is no evidence of loss
    fed.write(S1, 1, seed=4)
    assert b'"seq":43' in watermark.read_bytes()


def test_the_cli_says_storage_full_and_exits_1(fed: Federation, disks: Callable[..., Disk]) -> None:
    disk = disks(S1)
    station = fed.add(S1)
    station.close()
    records = b"".join(_ndjson(_records(S1, 30, seed=5)))
    disk.fill()
    put = _gt("put", "opinion", "--offline", home=station.settings.home, input=records)
    assert put.returncode == 1
    assert put.stderr.startswith("error: storage_full: the disk holding the store is full")
    assert "Traceback" not in put.stderr
    disk.free()
    assert (
        _gt("put", "opinion", "--offline", home=station.settings.home, input=records).returncode
        == 0
    )
    assert _gt("verify", home=station.settings.home).returncode == 0


# -- a read-only store ---------------------------------------------------------------------


async def test_a_read_only_station_refuses_writes_and_still_reads(
    fed: Federation, disks: Callable[..., Disk]
) -> None:
    """Writes fail with ``storage_read_only``; status, heads and records are still read;
    once writable the same batch is taken."""
    fed.add(COUNTY)
    disk = disks(S1)
    station = fed.add(S1)
    ids = fed.write(S1, 12)
    disk.read_only(station)
    station = reopen(fed, S1)
    assert station.status()["head"]["seq"] == 12
    assert station.get("opinion", ids[3]).seq == 4
    assert [h.seq for h in station.log.heads()] == [12]
    with pytest.raises(GuantongError) as refused:
        fed.write(S1, 5, seed=1)
    assert refused.value.code is ErrorCode.STORAGE_READ_ONLY
    disk.writable()
    fed.write(S1, 5, seed=1)
    assert (await fed.sync(S1)).entries == 17
    assert list(verify_log(station.log)) == []


async def test_a_read_only_hub_answers_503_and_still_serves_reads(
    fed: Federation, disks: Callable[..., Disk]
) -> None:
    """Pushes get 503 ``storage_read_only`` with Retry-After; status and the signed heads
    are still served; once writable the child's backlog goes through."""
    disk = disks(COUNTY)
    county = fed.add(COUNTY)
    station = fed.add(S1)
    fed.write(S1, 8)
    assert (await fed.sync(S1)).entries == 8
    fed.write(S1, 4, seed=1)
    disk.read_only(county)
    response = await _push(fed, station, COUNTY)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "storage_read_only"
    assert "retry-after" in response.headers
    async with fed.client(COUNTY, caller=S1) as client:
        heads = await client.get("/v1/heads", params={"prefix": S1})
        status = await client.get("/v1/status")
    assert heads.status_code == 200 and heads.json()["heads"][0]["seq"] == 8
    assert status.status_code == 200 and status.json()["entries"] >= 8
    disk.writable()
    county.store.dispose()
    fed.clock.advance(seconds=121)
    assert (await fed.sync(S1)).entries == 4
    _same_log(station, county, S1)


def test_the_cli_says_storage_read_only_and_still_reads(
    fed: Federation, disks: Callable[..., Disk]
) -> None:
    disk = disks(S1)
    station = fed.add(S1)
    fed.write(S1, 3)
    disk.read_only(station)
    home = station.settings.home
    records = b"".join(_ndjson(_records(S1, 2, seed=6)))
    put = _gt("put", "opinion", "--offline", home=home, input=records)
    assert put.returncode == 1
    assert put.stderr.startswith("error: storage_read_only:"), put.stderr
    status = _gt("status", "--json", home=home)
    assert status.returncode == 0, status.stderr
    assert '"seq": 3' in status.stdout
    assert _gt("verify", home=home).returncode == 0
    disk.writable()
    assert _gt("put", "opinion", "--offline", home=home, input=records).returncode == 0


# -- a corrupt page ------------------------------------------------------------------------


async def test_a_corrupt_entries_page_at_a_station_is_found_refused_and_repaired(
    fed: Federation,
) -> None:
    """``verify`` names the damage; writes, sync and export stop with ``store_corrupt``;
    ``repair`` takes back from the parent what it holds and salvages the rest (entries
    written offline and never pushed included): nothing is lost, nothing duplicated."""
    county = fed.add(COUNTY)
    station = fed.add(S1)
    ids = fed.write(S1, 200)
    assert (await fed.sync(S1)).entries == 200
    ids += fed.write(S1, 30, seed=1)  # offline: only the station holds these
    records = {v.id: v.data for v in station.list("opinion", limit=None)}
    station = _corrupt(fed, S1, "entries")
    check = check_store(station.log)
    assert check.quarantined and "malformed" in " ".join(check.damage)
    assert (station.settings.home / CORRUPT_MARKER).is_file()
    assert "malformed" in (station.status()["store_corrupt"] or "")
    for attempt in (lambda: fed.write(S1, 1, seed=2), lambda: station.log.append([])):
        with pytest.raises((GuantongError, ValueError)) as refused:
            attempt()
        if isinstance(refused.value, GuantongError):
            assert refused.value.code is ErrorCode.STORE_CORRUPT
    with pytest.raises(GuantongError) as no_sync:
        await fed.sync(S1)
    assert no_sync.value.code is ErrorCode.STORE_CORRUPT
    station.close()
    report = await repair(
        station.settings, clock=fed.clock, connect=lambda n: fed.client(COUNTY, caller=n.id)
    )
    assert report.rebuilt and report.unreadable.get("entries")
    assert report.restored is not None and report.restored > 0
    assert [(o.origin, o.before, o.held) for o in report.origins] == [(S1, 230, 230)]
    station = reopen(fed, S1)
    assert not (station.settings.home / CORRUPT_MARKER).exists()
    assert station.recovery_reason is None
    assert check_store(station.log).damage == [] and list(verify_log(station.log)) == []
    assert {v.id: v.data for v in station.list("opinion", limit=None)} == records
    assert set(records) == set(ids)  # private fields included: they were salvaged too
    fed.write(S1, 5, seed=3)
    assert (await fed.sync(S1)).entries == 35
    _same_log(station, county, S1)
    assert _seqs(county, S1) == list(range(1, 236))


@pytest.mark.parametrize("parent", ["offline", "away"])
async def test_a_repair_without_the_parent_keeps_the_unsynced_entries(
    fed: Federation, parent: str
) -> None:
    """``repair --offline``, or the county down during the repair: the own entries read
    beyond the rebuilt head (the writes since the last sync among them) were dropped with
    the scratch copy, the recovery at the next start took back only what the county holds,
    and the station would have written other entries under their seqs. They are kept in
    ``salvaged.db`` and stored by that recovery, after what the county gives back."""
    county = fed.add(COUNTY)
    station = fed.add(S1)
    fed.write(S1, 200)
    assert (await fed.sync(S1)).entries == 200
    fed.write(S1, 30, seed=1)  # offline: only the station holds seq 201..230
    before = list(station.log.iter_entries(S1))
    station = _corrupt(fed, S1, "entries")
    station.close()
    if parent == "offline":
        report = await repair(station.settings, clock=fed.clock)
    else:
        fed.down.add(COUNTY)
        report = await repair(
            station.settings, clock=fed.clock, connect=lambda n: fed.client(COUNTY, caller=n.id)
        )
        assert report.recovery_error is not None
        fed.down.discard(COUNTY)
    held = report.origins[0].held
    assert held < 200 and report.kept >= 30
    home = station.settings.home
    assert (home / "salvaged.db").is_file()
    watermark = home / "head.json"  # the kept file alone is evidence enough
    watermark.write_bytes(orjson.dumps({**orjson.loads(watermark.read_bytes()), "seq": held}))
    station = reopen(fed, S1)
    assert "salvaged.db" in (station.recovery_reason or "")
    with pytest.raises(GuantongError) as refused:
        fed.write(S1, 1, seed=2)
    assert refused.value.code is ErrorCode.RECOVERY_REQUIRED
    async with fed.client(COUNTY, caller=S1) as http:  # the next start, the county reachable
        recovered = await ensure_recovered(station, http)
    assert recovered is not None and recovered.salvaged == 30
    assert recovered.restored == 200 - held
    assert station.recovery_reason is None and not (home / "salvaged.db").exists()
    assert list(station.log.iter_entries(S1)) == before
    assert list(verify_log(station.log)) == []
    fed.write(S1, 5, seed=3)
    assert (await fed.sync(S1)).entries == 35
    _same_log(station, county, S1)


async def test_a_corrupt_index_page_loses_nothing_even_offline(fed: Federation) -> None:
    """An index page is rebuilt from its table: repair needs no parent for it."""
    fed.add(COUNTY)
    station = fed.add(S1)
    fed.write(S1, 300)
    before = list(station.log.iter_entries(S1))
    station = _corrupt(fed, S1, "ix_entries_origin_record")
    check = check_store(station.log)
    assert check.damage and check.problem is None  # the chains themselves read fine
    station.close()
    report = await repair(station.settings, clock=fed.clock)
    assert [(o.before, o.held) for o in report.origins] == [(300, 300)]
    assert report.unreadable == {}
    station = reopen(fed, S1)
    assert list(station.log.iter_entries(S1)) == before
    assert check_store(station.log).damage == []


@pytest.mark.parametrize("btree", ["entries", "ix_entries_origin_record"])
async def test_a_corrupt_hub_stops_serving_and_its_children_refill_it(
    fed: Federation, btree: str
) -> None:
    """A county with a damaged page refuses pushes and entries (503 ``store_corrupt``)
    instead of serving or relaying garbage; after ``repair`` its own log comes back from
    the city and the station resends what was lost; the city ends up with every entry
    exactly once."""
    city = fed.add(CITY)
    county = fed.add(COUNTY)
    station = fed.add(S1)
    fed.write(S1, 250)
    await fed.cascade_up(S1, COUNTY)
    fed.write(S1, 20, seed=1)
    county = _corrupt(fed, COUNTY, btree)
    assert check_store(county.log).quarantined
    response = await _push(fed, station, COUNTY)
    assert (response.status_code, response.json()["error"]["code"]) == (503, "store_corrupt")
    async with fed.client(COUNTY, caller=S1) as client:
        entries = await client.get("/v1/entries", params={"origin": S1})
        status = await client.get("/v1/status")
        health = await client.get("/healthz")
    assert (entries.status_code, entries.json()["error"]["code"]) == (503, "store_corrupt")
    assert status.status_code == 200 and status.json()["store_corrupt"]
    assert health.status_code == 200 and health.json()["status"] == "degraded"
    with pytest.raises(GuantongError) as no_relay:
        await fed.sync(COUNTY)
    assert no_relay.value.code is ErrorCode.STORE_CORRUPT
    county.close()
    report = await repair(
        county.settings, clock=fed.clock, connect=lambda n: fed.client(CITY, caller=n.id)
    )
    assert report.rebuilt
    county = reopen(fed, COUNTY)
    fed.clock.advance(seconds=1)
    await fed.cascade_up(S1, COUNTY)
    for node in (county, city):
        _same_log(station, node, S1)
        assert _seqs(node, S1) == list(range(1, 271))
        assert list(verify_log(node.log)) == []
    _same_log(county, city, COUNTY)


async def test_verify_finds_silent_damage_and_quarantines(fed: Federation) -> None:
    """Bytes changed inside a row are invisible to SQLite; the chain check finds them,
    and a store that does not hold what it accepted stops writing until repaired."""
    county = fed.add(COUNTY)
    station = fed.add(S1)
    fed.write(S1, 6)
    await fed.sync(S1)
    with station.store.write() as conn:
        raw = conn.execute(select(ENTRIES.c.raw).where(ENTRIES.c.seq == 3)).scalar_one()
        conn.execute(
            ENTRIES.update().where(ENTRIES.c.seq == 3).values(raw=raw.replace(b'"', b"'", 1))
        )
    check = check_store(station.log)
    assert check.damage == [] and check.problem is not None and check.quarantined
    with pytest.raises(GuantongError) as refused:
        fed.write(S1, 1, seed=1)
    assert refused.value.code is ErrorCode.STORE_CORRUPT
    station.close()
    report = await repair(
        station.settings, clock=fed.clock, connect=lambda n: fed.client(COUNTY, caller=n.id)
    )
    assert [(o.before, o.held) for o in report.origins] == [(6, 6)]
    station = reopen(fed, S1)
    _same_log(station, county, S1)
    with station.store.read() as conn:
        assert conn.execute(select(RECORDS.c.record_id)).all()


async def test_a_sound_store_is_left_alone_and_released(fed: Federation) -> None:
    """``repair`` on a sound store rebuilds nothing and lifts a stale quarantine."""
    station = fed.add(S1)
    fed.write(S1, 3)
    station.store.mark_corrupt("a disk error that was not damage")
    station.close()
    report = await repair(station.settings, clock=fed.clock)
    assert not report.rebuilt
    station = reopen(fed, S1)
    fed.write(S1, 1, seed=1)
    assert not list((station.settings.home).glob("corrupt-*"))


async def test_an_interrupted_repair_starts_again_from_the_files_set_aside(
    fed: Federation,
) -> None:
    """A repair that died after moving the damaged store aside left a partial rebuild; the
    next run rebuilds again from the damaged files it named, losing nothing."""
    station = fed.add(S1)
    fed.write(S1, 250)
    station = _corrupt(fed, S1, "ix_entries_origin_record")
    check_store(station.log)
    station.close()
    home = station.settings.home
    aside = home / "corrupt-earlier"
    aside.mkdir()
    for suffix in ("", "-wal", "-shm"):
        if (home / f"node.db{suffix}").exists():
            os.replace(home / f"node.db{suffix}", aside / f"node.db{suffix}")
    station.store.mark_corrupt("interrupted", repair=str(aside))
    Node.open(station.settings, clock=fed.clock).close()  # what a crash left: a fresh store
    report = await repair(station.settings, clock=fed.clock)
    assert report.aside == aside and [(o.before, o.held) for o in report.origins] == [(250, 250)]
    assert (aside / next(p.name for p in aside.iterdir() if p.name.startswith("rebuild-"))).is_dir()
    station = reopen(fed, S1)
    assert check_store(station.log).damage == [] and list(verify_log(station.log)) == []


async def test_a_repair_killed_before_it_moved_the_store_aside_loses_nothing(
    fed: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after the marker named corrupt-<time>/ and before the damaged store went
    there: the next run finds it still in the home and rebuilds from it (it salvaged from
    the empty folder, and an empty store passed verify)."""
    province = fed.add("js")
    fed.add(CITY)
    fed.write("js", 40)
    fed.write(CITY, 25)
    await fed.sync(CITY)
    before = {h.origin: h.seq for h in province.log.heads()}
    province.close()

    class Killed(BaseException):
        pass

    def killed(path: Path, into: Path, **_: object) -> None:
        raise Killed

    moved = repair_module._move
    monkeypatch.setattr(repair_module, "_move", killed)
    with pytest.raises(Killed):
        await repair(province.settings, clock=fed.clock, force=True)
    monkeypatch.setattr(repair_module, "_move", moved)
    marker = orjson.loads((province.settings.home / CORRUPT_MARKER).read_bytes())
    assert not (Path(marker["repair"]) / "node.db").exists()
    report = await repair(province.settings, clock=fed.clock)  # the operator runs it again
    assert report.aside == Path(marker["repair"]) and (report.aside / "node.db").is_file()
    province = reopen(fed, "js")
    assert {h.origin: h.seq for h in province.log.heads()} == before
    assert check_store(province.log).damage == [] and list(verify_log(province.log)) == []


async def test_a_repair_with_nothing_to_rebuild_from_stops_and_says_so(fed: Federation) -> None:
    station = fed.add(S1)
    fed.write(S1, 3)
    station.close()
    home = station.settings.home
    station.store.mark_corrupt("interrupted", repair=str(home / "corrupt-gone"))
    for suffix in ("", "-wal", "-shm"):
        (home / f"node.db{suffix}").unlink(missing_ok=True)
    with pytest.raises(GuantongError) as refused:
        await repair(station.settings, clock=fed.clock)
    assert refused.value.code is ErrorCode.STORE_ERROR and "corrupt-gone" in refused.value.message
    assert (home / CORRUPT_MARKER).is_file() and not (home / "node.db").exists()


async def test_tasks_on_a_lost_page_come_down_again_after_repair(fed: Federation) -> None:
    """A page of ``tasks`` lost: repair copied the downlink cursor as it was, and the next
    pulls went on after the revisions that were on it. Now the cursor starts again; the
    revisions held are stored once and no receipt is written twice."""
    county = fed.add(COUNTY)
    fed.add(S1)
    for i in range(60):
        issue_task(county, target=S1, kind="notice", payload={"text": f"通知 {i} " + "x" * 300})
    await fed.pull(S1)

    def held(node: Node) -> tuple[int, int]:
        with node.store.read() as conn:
            tasks = conn.execute(select(func.count()).select_from(TASKS)).scalar_one()
            receipts = conn.execute(
                select(func.count())
                .select_from(TASK_EVENTS)
                .where(TASK_EVENTS.c.origin == S1, TASK_EVENTS.c.status == "received")
            ).scalar_one()
        return int(tasks), int(receipts)

    assert held(fed.nodes[S1]) == (60, 60)
    station = _corrupt(fed, S1, "tasks")
    assert check_store(station.log).quarantined
    station.close()
    report = await repair(
        station.settings, clock=fed.clock, connect=lambda n: fed.client(COUNTY, caller=n.id)
    )
    assert report.unreadable.get("tasks") and report.rows["tasks"] < 60
    station = reopen(fed, S1)
    await fed.pull(S1)  # the county still holds all 60
    assert held(station) == (60, 60)
    assert check_store(station.log).damage == [] and list(verify_log(station.log)) == []


async def test_a_repaired_node_numbers_new_tasks_after_those_it_held(fed: Federation) -> None:
    """The rebuilt store's task feed kept the head the migration seeds (0) beside the copied
    revisions numbered 1..n: the next task stored took number 1 again and every pull failed
    on the feed's unique number."""
    county = fed.add(COUNTY)
    fed.add(S1)
    for i in range(3):
        issue_task(county, target=S1, kind="notice", payload={"text": f"通知 {i}"})
    await fed.pull(S1)
    fed.nodes[S1].close()
    await repair(fed.nodes[S1].settings, clock=fed.clock, force=True)
    station = reopen(fed, S1)
    issue_task(county, target=S1, kind="notice", payload={"text": "通知 3"})
    assert (await fed.pull(S1)).stored == 1
    with station.store.read() as conn:
        feed = conn.execute(select(TASKS.c.feed).order_by(TASKS.c.feed)).scalars().all()
    assert feed == [1, 2, 3, 4]


def test_the_cli_verifies_and_repairs_a_corrupt_store(fed: Federation) -> None:
    station = fed.add(S1)
    fed.write(S1, 200)
    station = _corrupt(fed, S1, "entries")
    station.close()
    home = station.settings.home
    verified = _gt("verify", home=home)
    assert verified.returncode == 1
    assert verified.stderr.startswith("error: store_corrupt: the database is damaged")
    assert "guantong repair" in verified.stderr
    records = b"".join(_ndjson(_records(S1, 2, seed=7)))
    put = _gt("put", "opinion", "--offline", home=home, input=records)
    assert put.returncode == 1 and put.stderr.startswith("error: store_corrupt: ")
    status = _gt("status", home=home)
    assert status.returncode == 0 and "store corrupt" in status.stdout
    repaired = _gt("repair", "--offline", home=home)
    assert repaired.returncode == 0, repaired.stderr
    assert "rebuilt the store" in repaired.stdout and "verify: ok" in repaired.stdout
    assert _gt("verify", home=home).returncode == 0


# -- PostgreSQL ----------------------------------------------------------------------------


@pytest.fixture
def pg_fed(make_node: NodeFactory, clock: FakeClock, pg_schemas: Callable[[], str]) -> Federation:
    return Federation(make_node, clock, hub_db=pg_schemas)


@pytest.mark.pg
@pytest.mark.parametrize(
    ("sqlstate", "code"), [("53100", "storage_full"), ("22000", "store_error")]
)
async def test_postgresql_errors_during_ingest_are_a_clean_503(
    pg_fed: Federation, sqlstate: str, code: str
) -> None:
    """The server's own ``disk_full`` (an OperationalError) and ``data_exception`` (a
    DataError), raised inside the ingest transaction, answer 503 with a stable code,
    store nothing, and the push goes through once the condition clears."""
    county = pg_fed.add(COUNTY)
    station = pg_fed.add(S1)
    pg_fed.write(S1, 5)
    with county.store.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION "
                f"'simulated' USING ERRCODE = '{sqlstate}'; END $$ LANGUAGE plpgsql"
            )
        )
        conn.execute(
            text("CREATE TRIGGER refuse BEFORE INSERT ON entries EXECUTE FUNCTION refuse()")
        )
    response = await _push(pg_fed, station, COUNTY)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == code
    assert "retry-after" in response.headers
    assert _seqs(county, S1) == []
    with county.store.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER refuse ON entries"))
    assert (await pg_fed.sync(S1)).entries == 5
    _same_log(station, county, S1)


@pytest.mark.pg
async def test_a_read_only_postgresql_store_refuses_pushes_and_serves_reads(
    pg_fed: Federation,
) -> None:
    """A session that may only read (a standby, ``default_transaction_read_only``) is
    ``storage_read_only`` for pushes and still answers heads."""
    county = pg_fed.add(COUNTY)
    station = pg_fed.add(S1)
    pg_fed.write(S1, 3)
    assert (await pg_fed.sync(S1)).entries == 3
    pg_fed.write(S1, 2, seed=1)
    url = county.settings.db_url
    assert url is not None
    read_only = county.settings.model_copy(
        update={"db_url": url + "%20-cdefault_transaction_read_only%3Don"}
    )
    county.close()
    county = Node.open(read_only, clock=pg_fed.clock)
    pg_fed.nodes[COUNTY] = county
    pg_fed.apps.pop(COUNTY, None)
    response = await _push(pg_fed, station, COUNTY)
    assert (response.status_code, response.json()["error"]["code"]) == (
        503,
        "storage_read_only",
    )
    async with pg_fed.client(COUNTY, caller=S1) as client:
        heads = await client.get("/v1/heads", params={"prefix": S1})
    assert heads.status_code == 200 and heads.json()["heads"][0]["seq"] == 3
    county.close()
    county = Node.open(county.settings.model_copy(update={"db_url": url}), clock=pg_fed.clock)
    pg_fed.nodes[COUNTY] = county
    pg_fed.apps.pop(COUNTY, None)
    assert (await pg_fed.sync(S1)).entries == 2
    _same_log(station, county, S1)


def _flip_last_signature(node: Node, origin: str) -> None:
    """One changed character in the signature of ``origin``'s last signed head."""
    with node.store.write() as conn:
        seq, raw = conn.execute(
            select(SIGNED_HEADS.c.seq, SIGNED_HEADS.c.raw)
            .where(SIGNED_HEADS.c.origin == origin)
            .order_by(SIGNED_HEADS.c.seq.desc())
            .limit(1)
        ).one()
        raw = bytes(raw)
        i = raw.index(b'"sig":"') + 30  # inside the base64url of the signature
        flipped = raw[:i] + (b"A" if raw[i : i + 1] != b"A" else b"B") + raw[i + 1 :]
        conn.execute(
            SIGNED_HEADS.update()
            .where(SIGNED_HEADS.c.origin == origin, SIGNED_HEADS.c.seq == seq)
            .values(raw=flipped)
        )


async def test_a_signature_damaged_in_the_store_quarantines_it_and_hides_no_other_damage(
    fed: Federation,
) -> None:
    """A signed head that no longer verifies with its origin's known key is damage (a hub
    verified it when it took it in); and a check reads every origin, so it does not stop
    at the first broken one and miss damaged entries of another."""
    county = fed.add(COUNTY)
    station = fed.add(S1)
    fed.write(county.id, 2, seed=2)
    fed.write(station.id, 4)
    await fed.sync(station.id)
    assert list(verify_log(county.log)) == []
    _flip_last_signature(county, county.id)
    check = check_store(county.log)
    assert check.quarantined and check.problem is not None
    assert check.problem.code is ErrorCode.BAD_SIGNATURE and check.problem.damage
    county.store.clear_corrupt()
    with county.store.write() as conn:  # and silent damage in the station's entry 3
        raw = conn.execute(
            select(ENTRIES.c.raw).where(ENTRIES.c.origin == S1, ENTRIES.c.seq == 3)
        ).scalar_one()
        conn.execute(
            ENTRIES.update()
            .where(ENTRIES.c.origin == S1, ENTRIES.c.seq == 3)
            .values(raw=bytes(raw).replace(b'"', b"'", 1))
        )
    check = check_store(county.log)
    assert check.quarantined
    assert {(p.origin, p.code) for p in check.problems} == {
        (county.id, ErrorCode.BAD_SIGNATURE),
        (S1, ErrorCode.BAD_HASH),
    }


async def test_entries_no_signed_head_covers_do_not_verify(fed: Federation) -> None:
    """A station's last entry rewritten at its county, its hash and head row made to
    match (no key needed) and the signed head that named it dropped: the bytes are no
    longer the station's, and nothing signs them."""
    county = fed.add(COUNTY)
    station = fed.add(S1)
    fed.write(station.id, 3)
    await fed.sync(station.id)
    with county.store.write() as conn:
        raw = conn.execute(
            select(ENTRIES.c.raw).where(ENTRIES.c.origin == S1, ENTRIES.c.seq == 3)
        ).scalar_one()
        entry = orjson.loads(bytes(raw))
        entry["data"]["content"] = "forged by an operator of the county"
        forged = canonical_bytes(entry)
        digest = sha256_hex(forged)
        conn.execute(
            ENTRIES.update()
            .where(ENTRIES.c.origin == S1, ENTRIES.c.seq == 3)
            .values(raw=forged, hash=digest)
        )
        conn.execute(
            SIGNED_HEADS.delete().where(SIGNED_HEADS.c.origin == S1, SIGNED_HEADS.c.seq == 3)
        )
        conn.execute(HEADS.update().where(HEADS.c.origin == S1).values(hash=digest))
    check = check_store(county.log)
    assert check.problem is not None and check.problem.origin == S1
    assert "covered by no signed head" in check.problem.message


async def _station_at_county(fed: Federation, *batches: int) -> Node:
    """The county holding S1's log, pushed in ``batches``: a signed head at each end."""
    county = fed.add(COUNTY)
    station = fed.add(S1)
    for i, count in enumerate(batches):
        fed.write(station.id, count, seed=i)
        await fed.sync(station.id)
    assert list(verify_log(county.log)) == []
    return county


def _lose_tail(county: Node, keep: int) -> None:
    """S1's entries after ``keep`` lost, and its head row taken back to match them."""
    with county.store.write() as conn:
        kept = conn.execute(
            select(ENTRIES.c.hash).where(ENTRIES.c.origin == S1, ENTRIES.c.seq == keep)
        ).scalar_one()
        conn.execute(ENTRIES.delete().where(ENTRIES.c.origin == S1, ENTRIES.c.seq > keep))
        conn.execute(HEADS.update().where(HEADS.c.origin == S1).values(seq=keep, hash=kept))


async def test_signed_heads_of_a_lost_tail_are_damage(fed: Federation) -> None:
    """The county lost S1's last two entries (its head row going back with them) but still
    holds S1's signed heads of seq 4 and 5, which commit to them. verify read the signed
    heads only up to the head row's seq, so its check "a signed head names seq N, beyond
    the log" never fired: the damaged store was reported sound and not quarantined."""
    county = await _station_at_county(fed, 1, 1, 1, 1, 1)
    _lose_tail(county, 3)
    check = check_store(county.log)
    assert check.problem is not None and check.problem.origin == S1
    assert (check.problem.seq, check.problem.code) == (4, ErrorCode.BAD_CHAIN)
    assert "beyond the log" in check.problem.message and check.problem.damage
    assert check.quarantined


async def test_entries_uncovered_because_the_tail_was_lost_are_damage(fed: Federation) -> None:
    """Signed heads at 3 and 5; entry 5 lost, the head row back at 4. Entry 4 is covered by
    no signed head, which alone is not damage (bad_signature: nothing signs it); here the
    signed head of 5 says why: the tail is gone. It was reported as the uncovered entry,
    and the store was not quarantined."""
    county = await _station_at_county(fed, 3, 2)
    _lose_tail(county, 4)
    check = check_store(county.log)
    assert check.problem is not None
    assert (check.problem.seq, check.problem.code) == (5, ErrorCode.BAD_CHAIN)
    assert check.quarantined


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"signed_seq": 7}, "head row's signed head is at seq 7, beyond its seq 5"),
        ({"seq": 3, "signed_seq": 3}, "entries 4-5 are held beyond the head row's seq 3"),
    ],
    ids=["signed seq beyond the row", "entries beyond the row"],
)
async def test_a_head_row_behind_what_it_sums_up_is_damage(
    fed: Federation, change: dict[str, int], message: str
) -> None:
    """The checks stopped at the head row's seq: a row whose signed_seq is beyond its seq,
    or entries held beyond the row, passed."""
    county = await _station_at_county(fed, 3, 2)
    values: dict[str, Any] = dict(change)
    with county.store.write() as conn:
        if "seq" in change:  # the row as it was at seq 3
            values["hash"] = conn.execute(
                select(ENTRIES.c.hash).where(ENTRIES.c.origin == S1, ENTRIES.c.seq == 3)
            ).scalar_one()
        conn.execute(HEADS.update().where(HEADS.c.origin == S1).values(**values))
    check = check_store(county.log)
    assert check.problem is not None and check.problem.message == message
    assert check.quarantined


async def test_a_repaired_hub_keeps_when_each_entry_arrived(fed: Federation) -> None:
    """Repair takes the log in again; the entries keep the arrival times they had, or
    the sync lag the acceptance check measures would be the days since the repair."""
    if fed.hub_db is not None:
        pytest.skip("repair rebuilds SQLite stores (PostgreSQL: restore the dump)")
    from hub.acceptance import Thresholds, _timeliness

    for station in ("js.wx.jy.s1", "js.wx.jy.s2"):
        fed.add(station)
        fed.write(station, 6)
    await fed.cascade_up("js.wx.jy.s1", "js.wx.jy.s2", COUNTY, CITY)

    def arrivals() -> dict[tuple[str, int], str]:
        with fed.nodes["js"].store.read() as conn:
            rows = conn.execute(select(ENTRIES.c.origin, ENTRIES.c.seq, ENTRIES.c.received_at))
            return {(r.origin, int(r.seq)): r.received_at for r in rows}

    before = arrivals()
    assert _timeliness(fed.nodes["js"], CITY, Thresholds(), fed.clock()).passed
    fed.clock.advance(days=3)  # the province's disk fails; it is repaired three days later
    province = fed.nodes["js"]
    province.close()
    report = await repair(province.settings, clock=fed.clock, force=True)
    assert report.rebuilt
    province = reopen(fed, "js")
    assert arrivals() == before
    assert _timeliness(province, CITY, Thresholds(), fed.clock()).passed


async def test_a_repaired_store_is_as_private_as_an_initialised_one(
    fed: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``init`` makes node.db 0600 whatever the umask; the store ``repair`` rebuilt was made
    under the umask (0644 under the default 022), with the reporters' names in it."""
    station = fed.add(S1)
    if not station.store.is_sqlite:
        pytest.skip("a SQLite store's file")
    fed.write(S1, 20)
    station.close()
    db = station.settings.home / "node.db"
    previous = os.umask(0o022)
    try:
        await repair(station.settings, clock=fed.clock, force=True)
    finally:
        os.umask(previous)
    assert oct(db.stat().st_mode & 0o777) == oct(0o600)
    db.chmod(0o644)  # put back from a backup by hand
    Node.open(station.settings, clock=fed.clock).close()
    assert oct(db.stat().st_mode & 0o777) == oct(0o600)
