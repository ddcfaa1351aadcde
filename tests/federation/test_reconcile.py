"""Reconciliation: equal roots for equal logs; bisection names exactly the origins that differ."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from node.reconcile import LocalRoots, RemoteRoots, bisect, subtree_roots
from node.tables import HEADS
from tests.federation.harness import Federation

pytestmark = pytest.mark.anyio

STATIONS = ["js.wx.jy.s1", "js.wx.jy.s2", "js.wx.yx.s1", "js.wx.yx.s2"]


async def _build(fed: Federation) -> None:
    for station in STATIONS:
        fed.add(station)
        fed.write(station, 5, seed=hash(station) % 100)
    await fed.cascade_up(*STATIONS, "js.wx.jy", "js.wx.yx", "js.wx")


async def test_equal_logs_equal_roots_and_bisection_finds_the_difference(fed: Federation) -> None:
    await _build(fed)
    province, city = fed.nodes["js"], fed.nodes["js.wx"]
    here, _ = subtree_roots(province.store, "js.wx")
    there, _ = subtree_roots(city.store, "js.wx")
    assert here == there and here.origins == 7  # the city, 2 counties, 4 stations
    async with fed.client("js.wx", caller="js") as client:
        assert (await client.get("/v1/root", params={"prefix": "js.wx"})).json()[
            "root"
        ] == here.root
        remote = RemoteRoots(client, "http://js.wx")
        assert await bisect(LocalRoots(province.store), remote, "js.wx") == []
        # the city "loses" the last entry of one station (its head goes back one)
        with city.store.write() as conn:
            conn.execute(
                update(HEADS).where(HEADS.c.origin == "js.wx.yx.s2").values(seq=4, hash="0" * 64)
            )
        remote = RemoteRoots(client, "http://js.wx")
        diffs = await bisect(LocalRoots(province.store), remote, "js.wx")
    assert [(d.origin, d.here and d.here[0], d.there and d.there[0]) for d in diffs] == [
        ("js.wx.yx.s2", 5, 4)
    ]
    assert remote.requests <= 4  # js.wx → js.wx.yx → done: no full listing


async def test_an_origin_missing_on_one_side(fed: Federation) -> None:
    await _build(fed)
    fed.add("js.wx.jy.s3")
    fed.write("js.wx.jy.s3", 2)
    await fed.cascade_up("js.wx.jy.s3")  # the county has it; the city not yet
    county, city = fed.nodes["js.wx.jy"], fed.nodes["js.wx"]
    diffs = await bisect(LocalRoots(county.store), LocalRoots(city.store), "js.wx.jy")
    assert {d.origin for d in diffs} == {"js.wx.jy", "js.wx.jy.s3"}  # and the county's own new cert
    assert next(d for d in diffs if d.origin == "js.wx.jy.s3").there is None
