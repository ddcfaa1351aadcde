"""Rollups: incremental on ingest equals rebuilt from the log, under updates and re-delivery."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from contracts.samples import sample_records
from node.rollups import rebuild, stats
from node.tables import ROLLUPS
from tests.federation.harness import Federation

pytestmark = pytest.mark.anyio


def _table(fed: Federation, node_id: str) -> dict[tuple[str, str, str, str], int]:
    with fed.nodes[node_id].store.read() as conn:
        return {
            (r.origin, r.day, r.metric, r.key): int(r.value)
            for r in conn.execute(select(ROLLUPS))
            if r.value
        }


async def test_incremental_equals_rebuilt(fed: Federation) -> None:
    stations = ["js.wx.jy.s1", "js.wx.jy.s2", "js.wx.yx.s1"]
    for n, station in enumerate(stations):
        fed.add(station)
        for contract, count in (
            ("deputy", 10),
            ("opinion", 60),
            ("duty_activity", 40),
            ("suggestion", 15),
            ("livelihood_project", 5),
            ("reception", 8),
        ):
            node = fed.nodes[station]
            node.put(
                contract,
                [(None, r) for r in sample_records(contract, count, seed=n, origin=station)],
            )
    # updates: some opinions move on in their lifecycle, one is deleted
    s1 = fed.nodes["js.wx.jy.s1"]
    changed: list[tuple[int | None, dict[str, Any]]] = []
    for record in s1.list("opinion", limit=10):
        assert record.data is not None
        data = {
            **record.data,
            "id": record.id,
            "status": "closed",
            "rating": 2,
            "resolved_at": record.data["received_at"],
            "closed_at": record.data["received_at"],
            "rated_at": record.data["received_at"],
        }
        data.setdefault("accepted_at", data["received_at"])
        data.setdefault("assigned_at", data["received_at"])
        data.setdefault("resolution", "已解决")
        data.setdefault("handling_unit", "js.wx.jy.u-zjj")
        changed.append((None, data))
    s1.put("opinion", changed)
    await fed.cascade_up(*stations)
    await fed.cascade_up(*stations)  # re-delivery changes nothing
    await fed.cascade_up("js.wx.jy", "js.wx.yx", "js.wx")
    for hub in ("js.wx.jy", "js.wx", "js"):
        incremental = _table(fed, hub)
        rebuild(fed.nodes[hub].store, fed.nodes[hub].registry.rules("performance_index"))
        assert _table(fed, hub) == incremental, hub
    city = stats(fed.nodes["js.wx"].store, "js.wx.jy")
    opinions = city["opinions"]
    assert opinions["total"] == 120
    assert opinions["by_status"]["closed"] >= 10
    assert 0 < opinions["resolution_rate"] <= 1 and opinions["average_rating"] is not None
    assert city["stations"] == {"registered": 2, "active": 2, "active_rate": 1.0}
    ranking = stats(fed.nodes["js"].store, "js")["deputy_ranking"]
    assert ranking[0]["rank"] == 1 and ranking[0]["points"] >= ranking[-1]["points"]
    by_node = stats(fed.nodes["js"].store, "js")["by_node"]
    assert set(by_node) == {"js", "js.wx"}  # its own records, and its child's subtree


async def test_stats_endpoint(fed: Federation) -> None:
    fed.add("js.wx.jy.s1")
    fed.write("js.wx.jy.s1", 20)
    await fed.cascade_up("js.wx.jy.s1")
    async with fed.client("js.wx.jy", caller="js.wx") as client:
        body = (
            await client.get(
                "/v1/stats", params={"prefix": "js.wx.jy", "from": "2026-01-01", "to": "2026-12-31"}
            )
        ).json()
    assert body["opinions"]["total"] == 20 and "performance_index" in body
