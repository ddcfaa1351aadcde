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
