"""The hub's endpoints at the edges of their inputs: what the OpenAPI fuzzer found, each
answered as documented (a stable error body, never a server error)."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.federation.harness import Federation

pytestmark = pytest.mark.anyio

HUB, CHILD = "js.wx", "js.wx.jy"


async def _get(fed: Federation, target: str, caller: str | None = CHILD) -> httpx.Response:
    async with fed.client(HUB, caller=caller) as client:
        return await client.get(target)


@pytest.mark.parametrize("path", ["/v1/tasks?after=", f"/v1/entries?origin={CHILD}&after="])
@pytest.mark.parametrize("after", [2**53, 2**63, 2**64])
async def test_cursors_beyond_the_protocol_integers_are_refused(
    fed: Federation, path: str, after: int
) -> None:
    """A cursor above 2^53−1 has no canonical form: it was answered 400 with the header's
    ``integer_out_of_range``, and above 2^63 a server error (SQLite integers end there)."""
    fed.add(CHILD)
    response = await _get(fed, f"{path}{after}")
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "malformed"
    assert (await _get(fed, f"{path}{2**53 - 1}")).status_code == 200


@pytest.mark.parametrize("after", [2**31 - 1, 2**31, 2**53 - 1])
async def test_task_cursors_beyond_the_stored_deliveries_find_nothing(
    fed: Federation, after: int
) -> None:
    """Delivery numbers are 32-bit columns: PostgreSQL refused to compare a later cursor
    with them (a server error)."""
    fed.add(CHILD)
    response = await _get(fed, f"/v1/tasks?after={after}")
    assert response.status_code == 200, response.text
    header, *tasks = response.content.splitlines()
    assert orjson.loads(header)["next"] == after and tasks == []


async def test_days_are_ascii_digits(fed: Federation) -> None:
    """``\\d`` in the pattern took any script's digits (``２０２６-01-01``), which the
    document's pattern (ECMA-262: ASCII) refuses."""
    fed.add(CHILD)
    response = await _get(fed, f"/v1/stats?prefix={CHILD}&from=２０２６-01-01")
    assert response.status_code == 422, response.text
    assert (await _get(fed, f"/v1/stats?prefix={CHILD}&from=2026-01-01")).status_code == 200


@pytest.mark.parametrize("day", ["2026-13-45", "2026-02-30", "2025-02-29", "0000-01-01"])
@pytest.mark.parametrize("bound", ["from", "to"])
async def test_days_that_do_not_exist_are_refused(fed: Federation, bound: str, day: str) -> None:
    """Only the shape of a day was checked: month 13, day 45 or 30 February were taken as
    bounds and answered 200 with every figure zero, as if the subtree had done nothing."""
    fed.add(CHILD)
    response = await _get(fed, f"/v1/stats?prefix={CHILD}&{bound}={day}")
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "malformed"
    leap = await _get(fed, f"/v1/stats?prefix={CHILD}&{bound}=2024-02-29")
    assert leap.status_code == 200, leap.text


async def test_heads_refuses_an_empty_after(fed: Federation) -> None:
    """``after`` is an origin id (``400 invalid_node_id`` otherwise); an empty one was
    dropped and the first page answered, as if no cursor had been sent."""
    fed.add(CHILD)
    response = await _get(fed, f"/v1/heads?prefix={CHILD}&after=")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_node_id"
    assert (await _get(fed, f"/v1/heads?prefix={CHILD}&after={CHILD}")).status_code == 200
