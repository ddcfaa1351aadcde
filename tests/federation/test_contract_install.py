"""A bundle installed while a hub serves: its pushes are checked, and its rollups counted,
against the bundle installed now, by every process of the node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from contracts.registry import Registry
from node.rollups import rebuild
from node.runtime import Node
from node.tables import ENTRIES, ROLLUPS
from node.tasks import publish_contracts
from schemas.errors import ErrorCode, GuantongError
from tests.conftest import newer_bundle
from tests.federation.harness import Federation

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
