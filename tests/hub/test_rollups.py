"""Rollups: incremental on ingest equals rebuilt from the log, under updates and re-delivery."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from contracts.samples import sample_records
from node.rollups import day_of, ensure_rollup_days, rebuild, stats
from node.tables import META, ROLLUPS
from tests.conftest import example, newer_bundle
from tests.federation.harness import Federation, reopen

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


# -- days in China ------------------------------------------------------------------------


def _received(**over: Any) -> dict[str, Any]:
    data = example("opinion", "1.1", 0)
    for k in ("resolved_at", "closed_at", "rating", "rated_at", "rating_comment", "resolution"):
        data.pop(k, None)
    data.update(over)
    return data


def test_a_day_is_a_day_in_china() -> None:
    assert day_of("2026-11-30T15:59:59.999Z") == "2026-11-30"
    assert day_of("2026-11-30T16:00:00.000Z") == "2026-12-01"  # 00:00 in Beijing
    assert day_of("2026-12-31T23:00:00.000Z") == "2027-01-01"
    assert day_of("2026-11-21") == "2026-11-21"  # a date stays as entered


async def test_an_opinion_received_after_midnight_in_beijing_counts_in_that_month(
    fed: Federation,
) -> None:
    """Received 2026-12-01 01:00 Beijing time, stored as 2026-11-30T17:00Z."""
    station = fed.add("js.wx.jy.s1")
    station.put(
        "opinion", [(None, _received(status="received", received_at="2026-11-30T17:00:00.000Z"))]
    )
    await fed.cascade_up(station.id)
    county = fed.nodes["js.wx.jy"].store
    december = stats(county, "js.wx.jy", start="2026-12-01", end="2026-12-31")
    assert december["opinions"]["total"] == 1
    assert stats(county, "js.wx.jy", start="2026-11-01", end="2026-11-30")["opinions"]["total"] == 0


async def test_the_on_time_rule_counts_days_in_china(fed: Federation) -> None:
    """Received 11-01 23:00 and resolved 11-17 01:00 Beijing time: 16 days in China
    (15 days and 2 hours elapsed), not within the 15."""
    station = fed.add("js.wx.jy.s1")
    resolved = _received(
        status="resolved",
        received_at="2026-11-01T15:00:00.000Z",
        accepted_at="2026-11-01T15:10:00.000Z",
        assigned_at="2026-11-01T15:20:00.000Z",
        resolved_at="2026-11-16T17:00:00.000Z",
        resolution="已解决",
    )
    station.put("opinion", [(None, resolved)])
    await fed.cascade_up(station.id)
    opinions = stats(fed.nodes["js.wx.jy"].store, "js.wx.jy")["opinions"]
    assert opinions["resolved"] == 1 and opinions["on_time_rate"] == 0.0


async def test_a_store_that_counted_utc_days_is_recounted_once_when_opened(
    fed: Federation,
) -> None:
    station = fed.add("js.wx.jy.s1")
    station.put(
        "opinion", [(None, _received(status="received", received_at="2026-11-30T17:00:00.000Z"))]
    )
    await fed.cascade_up(station.id)
    county = fed.nodes["js.wx.jy"]
    with county.store.write() as conn:  # as an earlier release left it
        conn.execute(META.delete().where(META.c.key == "rollup_days"))
        conn.execute(ROLLUPS.update().where(ROLLUPS.c.day == "2026-12-01").values(day="2026-11-30"))
    county = reopen(fed, "js.wx.jy")
    december = stats(county.store, "js.wx.jy", start="2026-12-01", end="2026-12-31")
    assert december["opinions"]["total"] == 1
    assert ensure_rollup_days(county.store, county.log.rules) is False  # once


# -- categories across majors -------------------------------------------------------------


async def test_categories_of_an_older_major_count_as_the_current_names_them(
    fed: Federation, tmp_path: Path
) -> None:
    station = fed.add("js.wx.jy.s1")
    station.put("opinion", [(None, _received(category="transport"))], version="1.1")
    station.put("opinion", [(None, _received(category="education"))], version="1.1")
    newer = {"category": "infrastructure", "subcategory": "transport"}
    station.put("opinion", [(None, _received(**newer))], version="2.0")
    await fed.cascade_up(station.id)
    county = fed.nodes["js.wx.jy"]

    async def by_category() -> dict[str, int]:
        async with fed.client(county.id, caller="js.wx") as client:
            body = (await client.get("/v1/stats", params={"prefix": county.id})).json()
        return dict(body["opinions"]["by_category"])

    # while 1.1 is the version written, each counts by the category it was written with
    assert await by_category() == {"education": 1, "infrastructure": 1, "transport": 1}
    county.install_contracts(newer_bundle(tmp_path, opinion_2=True))
    assert await by_category() == {"infrastructure": 2, "public_services": 1}


async def test_a_time_on_the_last_day_there_is_counts_on_it(fed: Federation) -> None:
    """16:00 UTC on 9999-12-31 has no China day after it: a valid time, counted on the last
    day (adding one raised OverflowError inside the push's transaction: the hub answered
    500 and the origin could never get past the entry)."""
    assert day_of("9999-12-31T23:59:59.999Z") == "9999-12-31"
    station = fed.add("js.wx.jy.s1")
    late = _received(received_at="9999-12-31T23:59:59.999Z")
    station.put("opinion", [(None, late), (None, _received())])
    assert (await fed.sync(station.id)).rejected == {}
    county = fed.nodes["js.wx.jy"]
    assert stats(county.store, county.id)["opinions"]["total"] == 2
    incremental = _table(fed, county.id)
    rebuild(county.store, county.registry.rules("performance_index"))
    assert _table(fed, county.id) == incremental
