"""A node whose store died or was restored from an old backup recovers before writing."""

from __future__ import annotations

import shutil

import pytest

from node.recovery import ensure_recovered
from node.verify import verify_log
from schemas.errors import ErrorCode, GuantongError
from tests.federation.harness import Federation, reopen

pytestmark = pytest.mark.anyio


async def test_wiped_store_pulls_its_log_back_before_writing(fed: Federation) -> None:
    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    fed.write(station.id, 10)
    await fed.sync(station.id)
    fed.clock.advance(days=3)  # the disk dies some days later
    station.close()
    (station.settings.home / "node.db").unlink()
    station = reopen(fed, station.id)
    assert station.recovery_reason is not None and "empty" in station.recovery_reason
    with pytest.raises(GuantongError) as refused:
        fed.write(station.id, 1)
    assert refused.value.code is ErrorCode.RECOVERY_REQUIRED
    async with fed.client(county.id, caller=station.id) as client:
        report = await ensure_recovered(station, client)
    assert report is not None and report.restored == 10
    assert station.recovery_reason is None
    assert list(station.log.iter_entries(station.id)) == list(county.log.iter_entries(station.id))
    fed.write(station.id, 3, seed=8)
    assert station.log.head().seq == 13  # type: ignore[union-attr]
    report_push = await fed.sync(station.id)
    assert report_push.rejected == {} and report_push.entries == 3
    assert list(verify_log(county.log)) == []


async def test_old_backup_is_detected_and_caught_up(fed: Federation) -> None:
    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    fed.write(station.id, 5)
    station = reopen(fed, station.id)  # close cleanly so the database file is complete
    station.close()
    backup = station.settings.home / "backup.db"
    shutil.copy(station.settings.home / "node.db", backup)
    station = reopen(fed, station.id)
    fed.write(station.id, 5, seed=1)
    await fed.sync(station.id)
    station.close()
    shutil.copy(backup, station.settings.home / "node.db")
    station = reopen(fed, station.id)
    assert station.recovery_reason is not None and "backup" in station.recovery_reason
    async with fed.client(county.id, caller=station.id) as client:
        report = await ensure_recovered(station, client)
    assert report is not None and (report.restored, report.held_by_parent) == (5, 10)
    fed.write(station.id, 1, seed=2)
    assert (await fed.sync(station.id)).rejected == {}
    assert county.log.head(station.id).seq == 11  # type: ignore[union-attr]


async def test_unreachable_parent_blocks_writing_only_with_evidence(fed: Federation) -> None:
    fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    fed.down.add("js.wx.jy")
    async with fed.client("js.wx.jy", caller=station.id) as client:
        assert await ensure_recovered(station, client) is None  # offline is normal
        station.recovery_reason = "the store was empty (lost or replaced)"
        with pytest.raises(GuantongError) as info:
            await ensure_recovered(station, client)
    assert info.value.code is ErrorCode.RECOVERY_REQUIRED


async def test_divergent_history_is_a_fork_not_an_overwrite(fed: Federation) -> None:
    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    fed.write(station.id, 3)
    station = reopen(fed, station.id)
    station.close()
    backup = station.settings.home / "backup.db"
    shutil.copy(station.settings.home / "node.db", backup)
    station = reopen(fed, station.id)
    fed.write(station.id, 3, seed=1)
    await fed.sync(station.id)
    station.close()
    shutil.copy(backup, station.settings.home / "node.db")
    (station.settings.home / "head.json").unlink()  # no local evidence: it writes offline
    station = reopen(fed, station.id)
    fed.write(station.id, 2, seed=2)  # seq 4–5, different from what the county holds
    async with fed.client(county.id, caller=station.id) as client:
        with pytest.raises(GuantongError) as info:
            await ensure_recovered(station, client)
    assert info.value.code is ErrorCode.FORK
    report = await fed.sync(station.id)
    assert report.rejected[station.id].startswith("fork")
    assert county.log.head(station.id).seq == 6  # type: ignore[union-attr]


async def test_a_new_home_with_a_new_key_takes_the_old_log_back(fed: Federation) -> None:
    """The whole machine is lost: a new home, re-enrolled under the same id with a new key,
    verifies its old log with the old key's certificate (fetched from the parent) and
    continues it."""
    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    fed.write(station.id, 6)
    await fed.sync(station.id)
    fed.clock.advance(days=10)
    station.close()
    shutil.rmtree(station.settings.home)
    del fed.nodes[station.id]
    fresh = fed.add("js.wx.jy.s1")  # init + enroll again: a new key
    assert fresh.signer.key_id != station.signer.key_id
    async with fed.client(county.id, caller=fresh.id) as client:
        report = await ensure_recovered(fresh, client)
    assert report is not None and report.restored == 6
    assert fresh.certificate is not None
    fed.write(fresh.id, 2, seed=4)
    assert (await fed.sync(fresh.id)).rejected == {}
    assert county.log.head(fresh.id).seq == 8  # type: ignore[union-attr]
    assert list(verify_log(county.log)) == []
