"""Reconciliation: equal roots for equal logs; bisection names exactly the origins that differ."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import update

from node.reconcile import LocalRoots, RemoteRoots, RootInfo, bisect, subtree_roots
from node.tables import HEADS
from schemas.errors import ErrorCode, GuantongError
from tests.conftest import NodeFactory
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


def _answer(prefix: str) -> dict[str, Any]:
    """What an honest city answers for ``prefix`` with children=1 (roots made up)."""
    return {
        "prefix": prefix,
        "origins": 3,
        "entries": 7,
        "root": "ab" * 32,
        "head": {"seq": 2, "head": "ef" * 32},
        "children": {f"{prefix}.jy": {"origins": 2, "entries": 5, "root": "cd" * 32}},
    }


def _child(name: str) -> Callable[[dict[str, Any]], Any]:
    def change(body: dict[str, Any]) -> Any:
        body["children"] = {name: body["children"].pop("js.wx.jy")}
        return body

    return change


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def change(body: dict[str, Any]) -> Any:
        *parents, last = path.split("/")
        target = body
        for part in parents:
            target = target[part]
        if value is _DROP:
            del target[last]
        else:
            target[last] = value
        return body

    return change


_DROP = object()
UNUSABLE: dict[str, Callable[[dict[str, Any]], Any]] = {
    "the prefix as its own child": _child("js.wx"),
    "a grandchild": _child("js.wx.jy.s1"),
    "a sibling": _child("js.sz"),
    "a prefix of the prefix's name": _child("js.wxy"),
    "not a node id": _child("js.wx.JY"),
    "not JSON": lambda _: b"<html>502 Bad Gateway</html>",
    "a list": lambda _: [],
    "no root": _set("root", _DROP),
    "a root not hex": _set("root", "zz" * 32),
    "a short root": _set("root", "ab"),
    "negative origins": _set("origins", -1),
    "origins as a string": _set("origins", "3"),
    "origins as a boolean": _set("children/js.wx.jy/origins", True),
    "entries as a float": _set("entries", 7.0),
    "no children": _set("children", _DROP),
    "children as a list": _set("children", []),
    "a child of no origins": _set("children/js.wx.jy/origins", 0),
    "counts that do not add up": _set("origins", 1000),
    "a head of seq 0": _set("head", {"seq": 0, "head": "ef" * 32}),
    "a head without hash": _set("head", {"seq": 2}),
    "another prefix": _set("prefix", "js.sz"),
}


async def test_the_answer_unchanged_is_taken() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=_answer(request.url.params["prefix"]))

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        whole, kids = await RemoteRoots(client, "http://js.wx").roots("js.wx")
    assert whole == RootInfo("js.wx", 3, 7, "ab" * 32, (2, "ef" * 32))
    assert kids == {"js.wx.jy": RootInfo("js.wx.jy", 2, 5, "cd" * 32)}


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (403, {"error": {"code": "not_in_subtree", "message": "no"}}, ErrorCode.NOT_IN_SUBTREE),
        (503, {"error": {"code": "busy", "message": "later"}}, ErrorCode.BUSY),
        (502, b"<html>Bad Gateway</html>", ErrorCode.PARENT_UNREACHABLE),
        (404, b"<html>Not Found</html>", ErrorCode.FORBIDDEN),
    ],
    ids=["its-code", "busy", "a-proxy-5xx", "a-page-4xx"],
)
async def test_a_refusal_of_the_lower_hub_keeps_its_code(
    status: int, body: dict[str, Any] | bytes, code: ErrorCode
) -> None:
    """Every answer but 200 was reported as forbidden, whatever the hub said."""
    content = body if isinstance(body, bytes) else orjson.dumps(body)

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(GuantongError) as raised:
            await RemoteRoots(client, "http://js.wx").roots("js.wx")
    assert raised.value.code is code, raised.value


@pytest.mark.parametrize("change", UNUSABLE.values(), ids=UNUSABLE.keys())
async def test_an_answer_no_hub_would_give_is_malformed(
    make_node: NodeFactory, change: Callable[[dict[str, Any]], Any]
) -> None:
    """The lower hub's /v1/root was believed as sent: a "child" that is the prefix itself
    made bisect ask the same question again until Python's recursion limit (~1000 requests,
    then a RecursionError: a 500 at the dashboard's acceptance check, a traceback from
    ``guantong accept --hub``); a 200 that is not JSON, or lacks ``root``, ended in
    JSONDecodeError or KeyError. Each is now ``malformed``, after one request."""
    province = make_node("js", "province")
    requests = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal requests
        requests += 1
        body = change(_answer(request.url.params["prefix"]))
        return httpx.Response(200, content=body if isinstance(body, bytes) else orjson.dumps(body))

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        remote = RemoteRoots(client, "http://js.wx")
        with pytest.raises(GuantongError) as raised:
            await bisect(LocalRoots(province.store), remote, "js.wx")
    assert raised.value.code is ErrorCode.MALFORMED, raised.value
    assert "http://js.wx" in raised.value.message
    assert requests == 1


async def test_bisect_descends_one_segment_at_a_time_whatever_the_source(
    make_node: NodeFactory,
) -> None:
    """bisect itself refuses a child not one segment below its prefix, from any source."""
    province = make_node("js", "province")

    class Looping:
        calls = 0

        async def roots(self, prefix: str) -> tuple[RootInfo, dict[str, RootInfo]]:
            self.calls += 1
            return RootInfo(prefix, 1, 1, "ab" * 32), {prefix: RootInfo(prefix, 1, 1, "cd" * 32)}

    there = Looping()
    with pytest.raises(GuantongError, match="not one segment below js.wx"):
        await bisect(LocalRoots(province.store), there, "js.wx")
    assert there.calls == 1
