"""Hub maintenance: data-quality items for invalid entries; pending entries applied later."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from contracts.registry import DEFAULT_BUNDLE, Registry
from hub.pending import apply_pending
from hub.quality import raise_quality_items
from node.log import Write
from tests.conftest import example
from tests.federation.harness import Federation

pytestmark = pytest.mark.anyio


async def test_invalid_entry_raises_one_quality_item_that_travels_up(fed: Federation) -> None:
    city = fed.add("js.wx")
    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    fed.write(station.id, 2)
    bad = {**example("opinion"), "rating": 9}
    bad.pop("reporter_name")
    station.log.append([Write("opinion", "1.1", "00000000-0000-7000-8000-0000000000cc", data=bad)])
    assert (await fed.sync(station.id)).invalid == 1
    assert raise_quality_items(county) == 1
    assert raise_quality_items(county) == 0  # idempotent
    (item,) = county.list("data_quality")
    assert item.data is not None
    assert (item.data["origin"], item.data["seq"], item.data["path"]) == (station.id, 3, "/rating")
    await fed.sync(county.id)
    assert [r.id for r in city.list("data_quality")] == [item.id]
    assert city.log.head(station.id).seq == 3  # type: ignore[union-attr]  # relayed too


async def test_a_quality_item_quoting_u0000_is_written(fed: Federation) -> None:
    """The item quotes the broken data; U+0000 in it must not stop the job (this hub's own
    records may not hold U+0000, nor can PostgreSQL): U+FFFD stands in for it."""
    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1")
    bad = {**example("opinion"), "x\x00": 1}
    bad.pop("reporter_name")
    station.log.append([Write("opinion", "1.1", "00000000-0000-7000-8000-0000000000ce", data=bad)])
    assert (await fed.sync(station.id)).invalid == 1
    assert raise_quality_items(county) == 1
    (item,) = county.list("data_quality")
    assert item.data is not None and item.data["path"] == "/x\ufffd"
    assert "'x\ufffd' was unexpected" in item.data["message"]


async def test_pending_entries_apply_when_the_contract_arrives(
    fed: Federation, tmp_path: Path
) -> None:
    """Two stations' entries of the same record id (each origin's record is its own) wait
    for a contract version the county does not know, then are applied both."""
    county = fed.add("js.wx.jy")
    stations = [fed.add("js.wx.jy.s1"), fed.add("js.wx.jy.s2")]
    rid = "00000000-0000-7000-8000-0000000000dd"
    record = example("opinion")
    record.pop("reporter_name")
    for station in stations:
        station.log.append([Write("opinion", "1.2", rid, data=record)])
        assert (await fed.sync(station.id)).rejected == {}
    assert apply_pending(county.store, county.registry) == {"valid": 0, "invalid": 0, "pending": 2}
    with pytest.raises(Exception, match="no opinion record"):
        county.get("opinion", rid)
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    shutil.copy(bundle / "opinion" / "1.1.json", bundle / "opinion" / "1.2.json")
    index = json.loads((bundle / "index.json").read_text("utf-8"))
    index["bundle_version"] = 2
    index["contracts"]["opinion"]["versions"]["1.2"] = dict(
        index["contracts"]["opinion"]["versions"]["1.1"]
    )
    (bundle / "index.json").write_text(json.dumps(index, ensure_ascii=False), "utf-8")
    county.install_contracts(Registry.from_dir(bundle))
    assert apply_pending(county.store, county.registry) == {"valid": 2, "invalid": 0, "pending": 0}
    assert [(v.origin, v.version) for v in county.find(rid)] == [
        ("js.wx.jy.s1", "1.2"),
        ("js.wx.jy.s2", "1.2"),
    ]
