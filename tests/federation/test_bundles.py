"""USB bundles: export what the parent lacks, import with the checks of a push."""

from __future__ import annotations

import gzip
import sqlite3
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from node.bundles import export_bundle, export_tasks, import_bundle, import_tasks, read_bundle
from node.cli import app
from node.runtime import Node
from node.tasks import issue_task, latest_task
from node.verify import verify_log
from schemas.errors import ErrorCode, GuantongError
from tests.federation.harness import Federation, reopen

pytestmark = pytest.mark.anyio


async def test_offline_station_travels_by_usb(fed: Federation, tmp_path: Path) -> None:
    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    fed.write(station.id, 12)
    report = export_bundle(station, tmp_path / "s1.gtb")
    assert (report.segments, report.entries, report.origins) == (1, 12, 1)
    header, results = import_bundle(county, tmp_path / "s1.gtb")
    assert header["from"] == station.id and header["to"] == county.id
    assert [(r.origin, r.held, r.status) for r in results] == [(station.id, 12, "ok")]
    _, again = import_bundle(county, tmp_path / "s1.gtb")  # twice is harmless
    assert [(r.held, r.status) for r in again] == [(12, "ok")]
    assert list(county.log.iter_entries(station.id)) == list(station.log.iter_entries(station.id))
    sync = await fed.sync(station.id)  # back online: resent, compared by hash, acknowledged
    assert sync.rejected == {} and station.log.head() is not None
    assert (await fed.sync(station.id)).requests == 0


async def test_hub_bundle_carries_relayed_segments_verbatim(
    fed: Federation, tmp_path: Path
) -> None:
    city = fed.add("js.wx")
    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    fed.write(station.id, 4)
    fed.write(county.id, 2, seed=3)
    await fed.sync(station.id)
    report = export_bundle(county, tmp_path / "jy.gtb")
    assert (report.origins, report.entries) == (2, 7)  # the county also announced s1's certificate
    _, results = import_bundle(city, tmp_path / "jy.gtb")
    assert sorted((r.origin, r.held) for r in results) == [(county.id, 3), (station.id, 4)]
    assert list(city.log.iter_entries(station.id)) == list(station.log.iter_entries(station.id))
    assert list(verify_log(city.log)) == []


def test_truncated_bundle_is_refused_and_nothing_stored(fed: Federation, tmp_path: Path) -> None:
    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    fed.write(station.id, 30)
    path = tmp_path / "s1.gtb"
    export_bundle(station, path)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(GuantongError) as info:
        import_bundle(county, path)
    assert info.value.code is ErrorCode.MALFORMED and "truncated" in info.value.message
    # framing cut inside a segment, but a complete gzip stream
    header, body = gzip.decompress(whole).split(b"\n", 1)
    path.write_bytes(gzip.compress(header + b"\n" + body[: len(body) // 2]))
    with pytest.raises(GuantongError) as info:
        import_bundle(county, path)
    assert info.value.code is ErrorCode.MALFORMED
    assert county.log.head(station.id) is None


async def test_tampered_segment_is_rejected_alone(fed: Federation, tmp_path: Path) -> None:
    city = fed.add("js.wx")
    county = fed.add("js.wx.jy")
    s1, s2 = fed.add("js.wx.jy.s1"), fed.add("js.wx.jy.s2")
    fed.write(s1.id, 3)
    fed.write(s2.id, 3, seed=1)
    await fed.sync(s1.id)
    await fed.sync(s2.id)
    path = tmp_path / "jy.gtb"
    export_bundle(county, path)
    header, body = gzip.decompress(path.read_bytes()).split(b"\n", 1)
    cut = body.index(b'"origin":"js.wx.jy.s1"')  # tamper with the first entry of s1
    tampered = body[:cut] + body[cut:].replace(b'"status":"', b'"status":"X', 1)
    path.write_bytes(gzip.compress(header + b"\n" + tampered))
    _, results = import_bundle(city, path)
    assert [(r.origin, r.status) for r in results] == [
        (county.id, "ok"),
        (s1.id, "rejected"),
        (s2.id, "ok"),
    ]
    assert results[1].error is not None and results[1].error["code"] in {"bad_chain", "bad_hash"}
    assert city.log.head(s1.id) is None
    assert city.log.head(s2.id).seq == 3  # type: ignore[union-attr]


def test_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "x.gtb").write_bytes(b"hello")
    with pytest.raises(GuantongError) as info:
        read_bundle(tmp_path / "x.gtb")
    assert info.value.code is ErrorCode.MALFORMED
    (tmp_path / "y.gtb").write_bytes(gzip.compress(b'{"bundle":9}\n'))
    with pytest.raises(GuantongError) as info:
        read_bundle(tmp_path / "y.gtb")
    assert info.value.code is ErrorCode.MALFORMED


async def test_a_bundle_missing_a_segment_its_header_counts_is_refused(
    fed: Federation, tmp_path: Path
) -> None:
    """A whole segment cut out and the rest compressed again: every line still parses,
    but the header says what was there; nothing is imported."""
    city = fed.add("js.wx")
    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    fed.write(station.id, 3)
    await fed.sync(station.id)
    path = tmp_path / "jy.gtb"
    export_bundle(county, path)
    lines = gzip.decompress(path.read_bytes()).split(b"\n")
    first = orjson.loads(lines[1])
    kept = lines[: 2 + first["head"]["seq"] - first["from"] + 1]  # the county's segment
    path.write_bytes(gzip.compress(b"\n".join(kept) + b"\n"))
    with pytest.raises(GuantongError) as refused:
        import_bundle(city, path)
    assert refused.value.code is ErrorCode.MALFORMED and "header says" in refused.value.message
    assert city.log.head(county.id) is None and city.log.head(station.id) is None


@pytest.mark.parametrize("certs", [5, "chains", {"a": 1}])
def test_a_task_bundle_whose_certs_is_not_a_list_is_malformed(
    fed: Federation, tmp_path: Path, certs: object
) -> None:
    """The header's `certs` is a list of certificates; anything else is `malformed`, not a
    TypeError out of the import (a number) or certificates looked for in its characters."""
    from node.bundles import export_tasks, import_tasks
    from node.tasks import issue_task

    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    issue_task(county, target=station.id, kind="notice", payload={"text": "通知"})
    path = export_tasks(county, station.id, tmp_path / "t.gtb").path
    header, body = gzip.decompress(path.read_bytes()).split(b"\n", 1)
    changed = orjson.dumps({**orjson.loads(header), "certs": certs})
    path.write_bytes(gzip.compress(changed + b"\n" + body))
    with pytest.raises(GuantongError) as refused:
        import_tasks(station, path)
    assert refused.value.code is ErrorCode.MALFORMED


def test_a_task_bundle_taken_while_recovery_is_required_says_what_waits(
    fed: Federation, tmp_path: Path
) -> None:
    """The task is stored; only its receipt waits for the parent (recovery_required). The
    import said ``malformed: 1 task(s) refused``."""
    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    fed.write(station.id, 3)
    task = issue_task(county, target=station.id, kind="notice", payload={"text": "通知"})
    path = export_tasks(county, station.id, tmp_path / "t.gtb").path
    station.close()
    watermark = station.settings.home / "head.json"  # the store restored from an old backup
    watermark.write_bytes(orjson.dumps({**orjson.loads(watermark.read_bytes()), "seq": 99}))
    home = str(station.settings.home)
    done = CliRunner().invoke(app, ["import", str(path), "--home", home])
    assert done.exit_code == 1
    assert done.stderr.startswith("error: recovery_required: the tasks are stored (1 new "), (
        done.stderr
    )
    assert "receipts not yet" in done.stderr and "refused" not in done.stderr
    station = reopen(fed, station.id)
    assert latest_task(station, task.id) is not None


def _backup(db: Path, to: Path) -> None:
    src, dst = sqlite3.connect(db), sqlite3.connect(to)
    with dst:
        src.backup(dst)
    src.close()
    dst.close()


async def _restored_county(fed: Federation, tmp_path: Path) -> tuple[Node, Node]:
    """A station that synced once (seq 1..10) and whose county was then restored from a
    backup taken before that sync: the station's cursor says 10, the county holds 0."""
    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    if not county.store.is_sqlite:
        pytest.skip("the county is restored from a SQLite backup")
    db = county.settings.home / "node.db"
    _backup(db, tmp_path / "county-backup.db")  # the county's nightly backup
    fed.write(station.id, 10)
    await fed.sync(station.id)
    county.close()
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    _backup(tmp_path / "county-backup.db", db)
    county = reopen(fed, county.id)
    assert county.log.head(station.id) is None
    return county, station


async def test_a_usb_only_station_starts_where_its_restored_county_asks(
    fed: Federation, tmp_path: Path
) -> None:
    """Every bundle started at the stale cursor and the county answered ``gap`` to each,
    however often it was carried. The import now says which seq to ask for and how;
    ``export --from`` starts there; the cursor stays lowered for the next weeks."""
    county, station = await _restored_county(fed, tmp_path)
    fed.write(station.id, 5, seed=1)
    export_bundle(station, tmp_path / "w0.gtb")
    done = CliRunner().invoke(
        app, ["import", str(tmp_path / "w0.gtb"), "--home", str(county.settings.home)]
    )
    assert done.exit_code == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: gap: 1 segment(s) rejected"), done.stderr
    assert "js.wx.jy.s1 from seq 1" in done.stderr and "--from 1`" in done.stderr
    home = str(station.settings.home)
    station.close()
    out = tmp_path / "w1.gtb"
    exported = CliRunner().invoke(app, ["export", "-o", str(out), "--from", "1", "--home", home])
    assert exported.exit_code == 0, exported.stderr
    station = reopen(fed, station.id)
    _, results = import_bundle(county, out)
    assert [(r.status, r.held) for r in results] == [("ok", 15)]
    fed.write(station.id, 5, seed=2)  # the week after: the cursor stayed lowered
    export_bundle(station, tmp_path / "w2.gtb")
    _, results = import_bundle(county, tmp_path / "w2.gtb")
    assert [(r.status, r.held) for r in results] == [("ok", 20)]
    assert list(county.log.iter_entries(station.id)) == list(station.log.iter_entries(station.id))


async def test_a_task_bundle_lowers_the_cursors_to_what_the_hub_holds(
    fed: Federation, tmp_path: Path
) -> None:
    """The county's next task bundle carries its heads for the station's subtree: its
    import lowers the station's cursor as the online uplink does, and the next bundle
    starts where the county needs it, without anyone typing a seq."""
    county, station = await _restored_county(fed, tmp_path)
    fed.write(station.id, 5, seed=1)
    issue_task(county, target=station.id, kind="notice", payload={"text": "通知"})
    import_tasks(station, export_tasks(county, station.id, tmp_path / "down.gtb").path)
    export_bundle(station, tmp_path / "up.gtb")
    _, results = import_bundle(county, tmp_path / "up.gtb")
    head = station.log.head()  # 15 entries and the task's receipt
    assert head is not None and [(r.status, r.held) for r in results] == [("ok", head.seq)]
    assert list(county.log.iter_entries(station.id)) == list(station.log.iter_entries(station.id))
