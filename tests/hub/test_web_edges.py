"""The web pages at the edges of their inputs: what the page fuzzer found, each answered
with a page or a form error instead of a server error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote

import httpx
import pytest

from hub.dashboard import MAX_REPORT_ID
from node.web.accounts import add_user, session_of
from node.web.pages import cookie_name
from tests.conftest import sign_in
from tests.federation.harness import Federation

pytestmark = pytest.mark.anyio
PASSWORD = "correct horse battery"
HUB, STATION = "js.wx.jy", "js.wx.jy.s1"


@asynccontextmanager
async def _client(
    fed: Federation, node_id: str, *, login: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the node's pages, signed in as an admin whose CSRF token is in the
    ``x-csrf`` header (which the pages ignore)."""
    node = fed.nodes[node_id]
    transport = httpx.ASGITransport(app=fed.app(node_id))
    async with httpx.AsyncClient(transport=transport, base_url="http://web") as client:
        if login:
            add_user(node, "boss", "admin", PASSWORD)
            assert (await sign_in(client, "boss", PASSWORD)).status_code == 303
            account = session_of(node, client.cookies[cookie_name(node)])
            assert account is not None
            client.headers["x-csrf"] = account.csrf
        yield client


async def test_the_way_to_login_keeps_any_path(fed: Federation) -> None:
    """The redirect to the login page put the path raw into ``Location``: a path with a
    character outside Latin-1 could not be sent (a server error)."""
    fed.add(STATION)
    async with _client(fed, STATION, login=False) as client:
        response = await client.get("/desk/new/意见")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=" + quote("/desk/new/意见", safe="")


async def test_the_way_to_login_keeps_the_query_and_the_language(fed: Federation) -> None:
    """The redirect to the login page kept only the path: ?lang=en was lost (the login page
    and the page after it in Chinese), and so was ?origin=, without which a hub's record
    page whose id two origins hold is a 400 ambiguous_record; a station's / → /desk lost
    ?lang= too. Only local paths are followed after the login, as before."""
    station = fed.add(STATION)
    (rid,) = fed.write(STATION, 1)
    (first,) = station.list("opinion")
    assert first.data is not None
    await fed.cascade_up(STATION)
    other = fed.add("js.wx.jy.s2")
    other.put("opinion", [(None, {**first.data, "id": rid})])
    await fed.cascade_up(other.id)
    add_user(fed.nodes[HUB], "boss", "admin", PASSWORD)
    async with _client(fed, STATION, login=False) as client:
        home = await client.get("/?lang=en")
        assert home.headers["location"] == "/desk?lang=en"
        away = await client.get("/desk?lang=en")
        assert away.status_code == 303
        login = await client.get(away.headers["location"])
        assert 'lang="en"' in login.text and "Log in" in login.text
        assert 'name="next" value="/desk?lang=en"' in login.text
    async with _client(fed, HUB, login=False) as client:
        wanted = f"/desk/record/opinion/{rid}?origin={STATION}"
        away = await client.get(wanted)
        assert away.headers["location"] == "/login?next=" + quote(wanted, safe="")
        await client.get(away.headers["location"])  # the login page: its token
        done = await sign_in(client, "boss", PASSWORD, next=wanted)
        assert done.headers["location"] == wanted
        page = await client.get(done.headers["location"])
        assert page.status_code == 200, page.text
    async with _client(fed, HUB, login=False) as client:
        for elsewhere in ("//evil.example/desk", "https://evil.example/desk"):
            done = await sign_in(client, "boss", PASSWORD, next=elsewhere)
            assert done.headers["location"] == "/"


@pytest.mark.parametrize(
    ("target", "status"),
    [
        (f"/c/{STATION}/qr.svg?deputy={'x' * 3000}", 404),  # was a server error
        (f"/c/{'s' * 3000}/qr.svg", 404),  # was a server error
        (f"/c/{HUB}/qr.svg", 404),
        (f"/c/{STATION}/qr.svg?deputy=0195e0a1-0000-7000-8000-000000000001", 200),
        (f"/c/{STATION}/qr.svg", 200),
    ],
)
async def test_qr_codes_only_for_the_station_and_its_deputies(
    fed: Federation, target: str, status: int
) -> None:
    """Any address made a QR code: one longer than a code holds was a server error."""
    fed.add(STATION)
    async with _client(fed, STATION, login=False) as client:
        response = await client.get(target)
    assert response.status_code == status, response.text
    if status == 200:
        assert response.text.startswith("<svg")


@pytest.mark.parametrize("moment", ["0001-01-01T00:00", "9999-12-31T23:59:59-12:00"])
async def test_a_time_beyond_the_calendar_is_a_form_error(fed: Federation, moment: str) -> None:
    """A desk time at the edge of year 1 or 9999 overflowed on its way to UTC."""
    fed.add(STATION)
    async with _client(fed, STATION) as client:
        form = {"csrf": client.headers["x-csrf"], "content": "x", "received_at": moment}
        response = await client.post("/desk/new/opinion", data=form)
    assert response.status_code == 422, response.text
    assert "time out of range" in response.text


@pytest.mark.parametrize("days", ["soon", "99999999", "-1"])
async def test_a_due_date_that_is_no_count_of_days_is_a_form_error(
    fed: Federation, days: str
) -> None:
    """``due_days`` went through ``int()`` and ``timedelta`` unchecked: text or a huge
    count was a server error."""
    fed.add(STATION)
    async with _client(fed, HUB) as client:
        form = {"csrf": client.headers["x-csrf"], "target": STATION, "kind": "notice"}
        response = await client.post("/tasks", data={**form, "text": "x", "due_days": days})
        assert response.status_code == 422, response.text
        fine = await client.post("/tasks", data={**form, "text": "x", "due_days": "7"})
        assert fine.status_code == 303, fine.text


async def test_a_task_on_an_unknown_record_is_a_form_error(fed: Federation) -> None:
    """The record was looked up outside the form's error handling: a JSON 404 instead of
    the board with the form kept."""
    fed.add(STATION)
    async with _client(fed, HUB) as client:
        form = {"csrf": client.headers["x-csrf"], "target": STATION, "kind": "assign"}
        response = await client.post("/tasks", data={**form, "record": "no-such-record"})
        assert response.status_code == 422 and "not a lowercase UUID" in response.text
        unknown = "00000000-0000-7000-8000-000000000000"
        response = await client.post("/tasks", data={**form, "record": unknown})
    assert response.status_code == 422 and f"no record {unknown}" in response.text


@pytest.mark.parametrize("report", [0, MAX_REPORT_ID + 1, 2**63])
async def test_report_ids_beyond_the_store_are_not_found(fed: Federation, report: int) -> None:
    """Report ids are 32-bit: a larger one overflowed the store's integer (a server error
    on PostgreSQL from 2^31, on SQLite from 2^63)."""
    fed.add(HUB)
    async with _client(fed, HUB) as client:
        response = await client.get(f"/acceptance/{report}")
    assert response.status_code == 404
