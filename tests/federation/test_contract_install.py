"""A bundle installed while a hub serves: its pushes are checked, and its rollups counted,
against the bundle installed now, by every process of the node."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from contracts.registry import Registry
from node.cli import app
from node.recovery import ensure_recovered
from node.rollups import rebuild
from node.runtime import Node
from node.tables import ENTRIES, ROLLUPS
from node.tasks import _issue, amend_task, issue_task, latest_task, publish_contracts
from schemas.errors import ErrorCode, GuantongError
from tests.conftest import newer_bundle
from tests.federation.harness import Federation, reopen

pytestmark = pytest.mark.anyio


async def test_a_serving_hub_checks_pushes_against_the_bundle_installed_since(
    fed: Federation, tmp_path: Path
) -> None:
    station = fed.add("js.wx.jy.s1")
    county = fed.nodes["js.wx.jy"]
    fed.app(county.id)  # serving before the bundle arrives
    publish_contracts(fed.nodes["js"], newer_bundle(tmp_path, opinion_1_2=True))
    await fed.cascade_down("js.wx", "js.wx.jy", station.id)
    assert county.registry.bundle_version == 2
    ids = fed.write(station.id, 1)
    assert station.get("opinion", ids[0]).version == "1.2"
    assert (await fed.sync(station.id)).rejected == {}
    with county.store.read() as conn:
        statuses = set(
            conn.execute(select(ENTRIES.c.status).where(ENTRIES.c.origin == station.id)).scalars()
        )
    assert statuses == {"valid"}  # not pending as an unknown contract version


async def test_a_serving_hub_counts_with_the_rules_installed_since(
    fed: Federation, tmp_path: Path
) -> None:
    station = fed.add("js.wx.jy.s1")
    county = fed.nodes["js.wx.jy"]
    fed.app(county.id)
    registry = newer_bundle(tmp_path, points=10)
    publish_contracts(fed.nodes["js"], registry)
    await fed.cascade_down("js.wx", "js.wx.jy", station.id)
    fed.write(station.id, 3, contract="duty_activity")
    assert (await fed.sync(station.id)).rejected == {}

    def index() -> dict[tuple[str, str, str], int]:
        with county.store.read() as conn:
            return {
                (r.origin, r.day, r.key): r.value
                for r in conn.execute(select(ROLLUPS))
                if r.metric == "index" and r.value
            }

    served = index()
    rebuild(county.store, registry.rules("performance_index"))
    assert served and served == index()


def test_another_process_of_the_node_uses_the_bundle_one_installed(
    fed: Federation, tmp_path: Path
) -> None:
    """Two processes over one home (a worker of serve --workers, a command beside it):
    what one installs, the other uses from its next look at the bundle."""
    county = fed.add("js.wx.jy")
    other = Node.open(county.settings, clock=fed.clock)
    try:
        assert other.registry.bundle_version == 1
        county.install_contracts(newer_bundle(tmp_path, opinion_1_2=True, points=5))
        assert other.registry.bundle_version == 2
        assert other.log.rules == county.registry.rules("performance_index")
        assert "1.2" in [cv.version for cv in other.registry.versions("opinion")]
        assert not (county.settings.home / "contracts.old").exists()
    finally:
        other.close()


def test_the_province_refuses_to_publish_a_bundle_that_changes_a_published_version(
    fed: Federation, tmp_path: Path
) -> None:
    province = fed.add("js")
    registry = newer_bundle(tmp_path)
    folder = tmp_path / "narrowed"
    registry.export(folder)
    path = folder / "opinion" / "1.0.json"
    schema = json.loads(path.read_text("utf-8"))
    schema["required"] = [*schema.get("required", []), "location"]
    path.write_text(json.dumps(schema, ensure_ascii=False), "utf-8")
    with pytest.raises(GuantongError) as refused:
        publish_contracts(province, Registry.from_dir(folder))
    assert refused.value.code is ErrorCode.INCOMPATIBLE_CHANGE
    assert "opinion 1.0" in refused.value.message
    assert province.registry.bundle_version == 1


def test_a_contracts_task_is_issued_by_publishing_only(fed: Federation, tmp_path: Path) -> None:
    """By hand (`guantong task issue --kind contracts`, the dashboard) a bundle skipped
    every check of publish_contracts: one that changed a published version was installed
    by every node below and not by the province, then behind its children."""
    province = fed.add("js")
    payload = {"bundle_version": 2, "bundle": json.loads(newer_bundle(tmp_path).bundle_bytes())}
    with pytest.raises(GuantongError) as refused:
        issue_task(province, target="js", kind="contracts", payload=payload, subtree=True)
    assert refused.value.code is ErrorCode.FORBIDDEN
    assert "contracts publish" in refused.value.message
    result = CliRunner().invoke(
        app,
        ["task", "issue", "--to", "js", "--kind", "contracts", "--subtree"]
        + ["--payload", json.dumps(payload), "--home", str(province.settings.home)],
    )
    assert result.exit_code == 1 and result.stderr.startswith("error: forbidden:"), result.stderr
    published = publish_contracts(province, newer_bundle(tmp_path / "2", opinion_1_2=True))
    with pytest.raises(GuantongError) as refused:
        amend_task(province, published.id, payload={"bundle_version": 3, "bundle": {}})
    assert refused.value.code is ErrorCode.FORBIDDEN
    assert amend_task(province, published.id, cancel=True).cancelled  # withdrawing it is not


async def test_a_contracts_task_that_cannot_be_installed_is_refused_alone(
    fed: Federation, tmp_path: Path
) -> None:
    """Signed by the province without the checks (by hand, before they were refused; by an
    older release): a bundle that does not load raised an AttributeError out of the pull
    before the cursor moved, so no task reached any node below again; a task without
    bundle_version counted as the installed bundle + 1 on every pull, and was tried (and
    failed) before every bundle published after it."""
    station = fed.add("js.wx.jy.s1")
    province = fed.nodes["js"]
    good = json.loads(newer_bundle(tmp_path, opinion_1_2=True).bundle_bytes())
    by_hand: list[dict[str, Any]] = [
        {"bundle_version": 3, "bundle": {"index": [], "schemas": {}}},
        {"bundle": {"index": {"contracts": {"x": {"versions": {"1.0": {}}}}}, "schemas": {}}},
        {"bundle_version": "2", "bundle": good},
        {"bundle_version": 5, "bundle": good},  # claims 5, carries 2
    ]
    for payload in by_hand:
        _issue(province, target="js", kind="contracts", payload=payload, subtree=True)
    notice = issue_task(province, target="js", kind="notice", payload={}, subtree=True)
    publish_contracts(province, newer_bundle(tmp_path / "2", opinion_1_2=True))
    for node_id in ("js.wx", "js.wx.jy", station.id):
        report = await fed.pull(node_id)
        assert len(report.rejected) == len(by_hand), report.rejected  # each, with its reason
        assert all(r.startswith(("bundle_invalid:", "malformed:")) for r in report.rejected)
        assert report.installed_bundle == 2
        assert (await fed.pull(node_id)).rejected == []  # reported once, passed over after
        assert fed.nodes[node_id].registry.bundle_version == 2
    assert latest_task(station, notice.id) is not None  # the tasks after them came down


async def test_a_station_applies_its_recovered_entries_once_the_bundle_is_back(
    fed: Federation, tmp_path: Path
) -> None:
    """A station that recovers its own log from its parent before its bundle is back (the
    release reinstalled ships bundle 1): its entries of opinion 1.2 are held pending. Only
    the hub job applied pending entries, and a station runs none: they stayed pending for
    good, and its own records were missing from every list."""
    station = fed.add("js.wx.jy.s1")
    county = fed.nodes["js.wx.jy"]
    publish_contracts(fed.nodes["js"], newer_bundle(tmp_path, opinion_1_2=True))
    await fed.cascade_down("js.wx", "js.wx.jy", station.id)
    ids = fed.write(station.id, 2)
    assert (await fed.sync(station.id)).rejected == {}
    station.close()  # the disk dies: the release is installed again, the key kept
    (station.settings.home / "node.db").unlink()
    shutil.rmtree(station.settings.home / "contracts")
    station = reopen(fed, station.id)
    async with fed.client(county.id, caller=station.id) as client:
        recovered = await ensure_recovered(station, client)  # serve does this first
    assert recovered is not None and recovered.restored >= 2

    def statuses() -> set[str]:
        with station.store.read() as conn:
            query = select(ENTRIES.c.status).where(ENTRIES.c.origin == station.id)
            return set(conn.execute(query).scalars())

    assert "pending" in statuses()
    report = await fed.pull(station.id)  # the contracts task arrives again
    assert report.installed_bundle == 2 and report.applied >= 2
    assert statuses() == {"valid"}
    assert [station.get("opinion", i).version for i in ids] == ["1.2", "1.2"]


@pytest.mark.parametrize("renames", [1, 2], ids=["before-the-swap", "between-the-renames"])
async def test_an_install_killed_mid_swap_neither_rolls_back_nor_loses_the_bundle(
    fed: Federation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, renames: int
) -> None:
    """Killed after ``contracts/`` became ``contracts.old/`` and before ``contracts.new/``
    became ``contracts/``, the node opened with the release's shipped bundle (version 1),
    a roll back; the swap is now finished at the next load (undone if the new folder was
    cut short)."""
    station = fed.add("js.wx.jy.s1")
    publish_contracts(fed.nodes["js"], newer_bundle(tmp_path, opinion_1_2=True))
    await fed.cascade_down("js.wx", "js.wx.jy", station.id)
    assert station.registry.bundle_version == 2

    class Killed(BaseException):
        pass

    real = Path.rename
    calls: list[Path] = []

    def rename(self: Path, target: Path) -> Path:
        calls.append(self)
        if len(calls) == renames:
            raise Killed
        return real(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(Killed):
        station.install_contracts(station.registry)  # any install: the same bundle again
    monkeypatch.setattr(Path, "rename", real)
    home = station.settings.home
    assert (home / "contracts").is_dir() == (renames == 1)
    station.close()
    reopened = Node.open(station.settings, clock=fed.clock)
    try:
        assert reopened.registry.bundle_version == 2
        assert (home / "contracts" / "index.json").is_file()
    finally:
        reopened.close()


def test_a_swap_cut_short_while_the_new_bundle_was_written_goes_back_to_the_old(
    fed: Federation, tmp_path: Path
) -> None:
    station = fed.add("js.wx.jy.s1")
    home = station.settings.home
    station.install_contracts(newer_bundle(tmp_path, opinion_1_2=True))
    station.close()
    (home / "contracts").rename(home / "contracts.old")  # killed between the renames…
    Registry.default().export(home / "contracts.new")  # …of a staging folder cut short
    (home / "contracts.new" / "index.json").write_bytes(b'{"bundle_version": 3, "contr')
    reopened = Node.open(station.settings, clock=fed.clock)
    try:
        assert reopened.registry.bundle_version == 2
    finally:
        reopened.close()
