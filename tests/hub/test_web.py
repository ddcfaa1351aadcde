"""The web pages in-process: accounts and roles, CSRF, the desk's contract forms, citizen
intake with its guards and receipt, the dashboard and the task board."""

from __future__ import annotations

import re

import httpx
import pytest

from node.web import intake
from node.web.accounts import add_user
from tests.conftest import sign_in, sign_in_to_desk, web_client
from tests.federation.harness import Federation

pytestmark = pytest.mark.anyio
PASSWORD = "correct horse battery"


@pytest.fixture
def station(fed: Federation) -> str:
    node = fed.add("js.wx.jy.s1")
    add_user(node, "op", "operator", PASSWORD)
    add_user(node, "audit", "auditor", PASSWORD)
    return node.id


async def test_login_roles_and_csrf(fed: Federation, station: str) -> None:
    async with web_client(fed, station) as client:
        assert (await client.get("/desk")).status_code == 303  # not signed in
        bad = await sign_in(client, "op", "wrong password!")
        assert bad.status_code == 401 and "用户名或密码错误" in bad.text
        csrf = await sign_in_to_desk(client, "op", PASSWORD)
        assert "工作台" in (await client.get("/desk")).text
        assert "Desk" in (await client.get("/desk?lang=en")).text
        no_token = await client.post("/desk/new/reception", data={"date": "2026-11-21"})
        assert no_token.status_code == 403
        assert csrf
    async with web_client(fed, station) as client:
        csrf = await sign_in_to_desk(client, "audit", PASSWORD)
        refused = await client.post(
            "/desk/new/reception", data={"csrf": csrf, "date": "2026-11-21"}
        )
        assert refused.status_code == 403  # auditors read only
        assert (await client.post("/logout", data={"csrf": csrf})).status_code == 303
        assert (await client.get("/desk")).status_code == 303


async def test_a_login_posted_from_another_site_signs_no_one_in(
    fed: Federation, station: str
) -> None:
    """Login CSRF: the login form carried no token, so a page of another site posting the
    attacker's own name and password to /login signed the victim's browser in as the
    attacker, whose desk then took what the victim typed. The form now carries a token that
    must match its own SameSite=Strict cookie, given with the login page."""
    from node.web.pages import cookie_name

    node = fed.nodes[station]
    forged = {"name": "op", "password": PASSWORD, "next": "/desk"}
    async with web_client(fed, station) as client:
        elsewhere = {"origin": "http://evil.example", "referer": "http://evil.example/x"}
        refused = await client.post("/login", data=forged, headers=elsewhere)
        assert refused.status_code == 303 and "set-cookie" not in refused.headers
        assert refused.headers["location"].startswith("/login?")
        page = await client.get("/login")
        assert 'name="csrf"' in page.text  # the cookie is now held: the field must match
        wrong = await client.post("/login", data={**forged, "csrf": "x" * 32})
        assert wrong.status_code == 303 and cookie_name(node) not in client.cookies
        assert (await client.get("/desk")).status_code == 303  # still nobody
        assert await sign_in_to_desk(client, "op", PASSWORD)  # from the login page itself


async def test_contract_form_validates_and_saves(fed: Federation, station: str) -> None:
    async with web_client(fed, station) as client:
        csrf = await sign_in_to_desk(client, "op", PASSWORD)
        form = await client.get("/desk/new/reception")
        assert 'name="visitor_count"' in form.text and "接待" in form.text
        bad = await client.post(
            "/desk/new/reception", data={"csrf": csrf, "date": "2026-11-21", "visitor_count": "-3"}
        )
        assert bad.status_code == 422 and "校验失败" in bad.text
        good = await client.post(
            "/desk/new/reception",
            data={
                "csrf": csrf,
                "date": "2026-11-21",
                "visitor_count": "12",
                "issues_collected": "3",
                "deputy_ids": '["0190a4c2-7b1e-7c3d-8e9f-0000000000d1"]',
            },
        )
        assert good.status_code == 303, good.text
    (saved,) = fed.nodes[station].list("reception")
    assert saved.data is not None and saved.data["visitor_count"] == 12


async def test_citizen_intake_guards_and_receipt(
    fed: Federation, station: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(intake, "MIN_FILL_S", 0.0)
    intake.SUBMISSIONS.reset()
    async with web_client(fed, station) as client:
        page = await client.get(f"/c/{station}?deputy=0190a4c2-7b1e-7c3d-8e9f-0000000000d1")
        stamp = re.search(r'name="stamp" value="([^"]+)"', page.text)
        assert stamp and "群众意见反映" in page.text
        assert (await client.get(f"/c/{station}/qr.svg")).text.startswith("<svg")
        form = {
            "stamp": stamp.group(1),
            "content": "小区门口路灯坏了一个月，晚上出行不安全。",
            "category": "urban_construction",
            "name": "王小明",
            "phone": "13812345678",
        }
        bot = await client.post(f"/c/{station}", data={**form, "website": "http://spam"})
        assert bot.status_code == 429
        done = await client.post(f"/c/{station}", data=form)
        assert done.status_code == 200
        code = re.search(r'id="receipt-code"[^>]*>([A-Z0-9]+)<', done.text)
        assert code
        progress = await client.get("/receipt", params={"code": code.group(1)})
        assert "received" in progress.text and "13812345678" not in progress.text
        for _ in range(intake.RATE):
            await client.post(f"/c/{station}", data=form)
        assert (await client.post(f"/c/{station}", data=form)).status_code == 429
    node = fed.nodes[station]
    (opinion, *_) = node.list("opinion")
    assert opinion.data is not None and opinion.data["channel"] == "qr"
    for _, _, raw in node.log.iter_entries(station):
        assert b"13812345678" not in raw and "王小明".encode() not in raw


async def test_only_a_station_serves_the_citizen_form(
    fed: Federation, station: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Citizen intake is on a station. A county, a city and the province served the
    anonymous form at /c/<own id> (and its QR code) and wrote what was posted into their
    own signed log, as opinions no station took."""
    monkeypatch.setattr(intake, "MIN_FILL_S", 0.0)
    intake.SUBMISSIONS.reset()
    for hub_id in ("js.wx.jy", "js.wx", "js"):
        hub = fed.nodes[hub_id]
        async with web_client(fed, hub_id) as client:
            assert (await client.get(f"/c/{hub_id}")).status_code == 404
            assert (await client.get(f"/c/{hub_id}/qr.svg")).status_code == 404
            posted = await client.post(
                f"/c/{hub_id}",
                data={"stamp": intake._stamp(), "content": "anonymous", "category": "other"},
            )
            assert posted.status_code in (404, 405)
        assert hub.list("opinion") == []
    async with web_client(fed, station) as client:
        assert (await client.get(f"/c/{station}")).status_code == 200


async def test_the_citizen_forms_privacy_notice_is_in_the_pages_language(
    fed: Federation, station: str
) -> None:
    """The notice under the citizen form (the name stays at the station, the phone goes up
    masked) was Chinese on the English page too."""
    async with web_client(fed, station) as client:
        chinese = await client.get(f"/c/{station}")
        english = await client.get(f"/c/{station}?lang=en")
    assert "姓名只保存在本联络站" in chinese.text
    assert "姓名只保存在本联络站" not in english.text
    assert "Your name stays at this liaison station" in english.text


async def test_the_citizen_form_admits_what_the_current_contract_admits(
    fed: Federation, station: str
) -> None:
    """The citizen form's lengths were written into its template: a location stopped at
    200 characters where opinion 1.1 (current) admits 300. Each field's maxlength is now
    its property's maxLength in the current contract."""
    node = fed.nodes[station]
    properties = node.registry.current("opinion").schema["properties"]
    assert properties["location"]["maxLength"] == 300
    async with web_client(fed, station) as client:
        page = await client.get(f"/c/{station}")
    for field, prop in (
        ("title", "title"),
        ("content", "content"),
        ("location", "location"),
        ("name", "reporter_name"),
        ("phone", "reporter_phone"),
    ):
        (tag,) = re.findall(rf'<(?:input|textarea) id="{field}"[^>]*>', page.text)
        assert f'maxlength="{properties[prop]["maxLength"]}"' in tag, tag


async def test_dashboard_and_task_board(fed: Federation, station: str) -> None:
    fed.write(station, 15)
    await fed.cascade_up(station)
    county = fed.nodes["js.wx.jy"]
    add_user(county, "admin", "admin", PASSWORD)
    async with web_client(fed, county.id) as client:
        csrf = await sign_in_to_desk(client, "admin", PASSWORD)
        page = await client.get("/")
        assert (
            page.status_code == 200
            and 'id="opinions-total">15<' in page.text
            and "<svg" in page.text
        )
        assert station in page.text
        issued = await client.post(
            "/tasks",
            data={
                "csrf": csrf,
                "kind": "assign",
                "target": station,
                "text": "请核实",
                "due_days": "7",
            },
        )
        assert issued.status_code == 303
        board = await client.get("/tasks")
        assert "assign" in board.text and station in board.text
        run = await client.post("/acceptance", data={"csrf": csrf, "prefix": county.id})
        assert run.status_code == 303
        report = await client.get(run.headers["location"])
        assert "纵向贯通验收报告" in report.text


async def test_ids_from_a_browser_are_checked_before_the_store(
    fed: Federation, station: str
) -> None:
    """A user name, receipt code, record id, task id or prefix holding U+0000 names nothing
    (PostgreSQL refuses such a query with an error, so it must never get one)."""
    county = fed.nodes["js.wx.jy"]
    add_user(county, "admin", "admin", PASSWORD)
    async with web_client(fed, county.id) as client:
        bad = await sign_in(client, "admin\x00", PASSWORD)
        assert bad.status_code == 401
        assert (await client.get("/receipt", params={"code": "ABCDE\x00GHJK"})).status_code == 404
        csrf = await sign_in_to_desk(client, "admin", PASSWORD)
        record = await client.get("/desk/record/opinion/%00")
        assert (record.status_code, record.json()["error"]["code"]) == (400, "invalid_record_id")
        record = await client.get(
            "/desk/record/opinion/00000000-0000-7000-8000-000000000000?origin=js%00"
        )
        assert (record.status_code, record.json()["error"]["code"]) == (400, "invalid_node_id")
        task = await client.post("/desk/task/%00", data={"csrf": csrf, "status": "done"})
        assert task.status_code == 404 and "not_found: no task" in task.text  # on the desk
        run = await client.post("/acceptance", data={"csrf": csrf, "prefix": "js\x00"})
        assert (run.status_code, run.json()["error"]["code"]) == (400, "invalid_node_id")


async def test_a_records_page_shows_its_lifecycle_where_it_is_held(
    fed: Federation, station: str
) -> None:
    """The history under a record is its origin's entries of that id, in time order, at the
    station that wrote it and at the hub it was relayed to; another origin's entry of the
    same id is another record (a record is named by its origin and its id), which the
    hub's page names by its origin, and a bare id held for both is ``ambiguous_record``."""
    node = fed.nodes[station]
    (record_id,) = fed.write(station, 1)
    (first,) = node.list("opinion")
    assert first.data is not None
    node.put("opinion", [(None, {**first.data, "id": record_id, "status": "accepted"})])
    fed.write(station, 3, seed=1)  # other records: not in this one's history
    await fed.cascade_up(station)
    other = fed.add("js.wx.jy.s2")
    other.put("opinion", [(None, {**first.data, "id": record_id})])
    await fed.cascade_up(other.id)
    county = fed.nodes["js.wx.jy"]
    add_user(county, "admin", "admin", PASSWORD)
    for node_id, name in ((station, "op"), (county.id, "admin")):
        async with web_client(fed, node_id) as client:
            await sign_in_to_desk(client, name, PASSWORD)
            page = await client.get(f"/desk/record/opinion/{record_id}", params={"origin": station})
            assert page.status_code == 200, page.text
            rows = re.findall(r"<td>([^<]+) #(\d+)</td>", page.text)
            assert rows == [(station, "1"), (station, "2")]
            if node_id == station:  # it holds one record of that id: the bare id is enough
                bare = await client.get(f"/desk/record/opinion/{record_id}")
                assert re.findall(r"<td>([^<]+) #(\d+)</td>", bare.text) == rows
                continue
            bare = await client.get(f"/desk/record/opinion/{record_id}")
            assert (bare.status_code, bare.json()["error"]["code"]) == (400, "ambiguous_record")
            page = await client.get(
                f"/desk/record/opinion/{record_id}", params={"origin": other.id}
            )
            assert re.findall(r"<td>([^<]+) #(\d+)</td>", page.text) == [(other.id, "1")]


async def test_a_task_form_refused_keeps_what_was_typed(fed: Federation, station: str) -> None:
    county = fed.nodes["js.wx.jy"]
    add_user(county, "lead", "operator", PASSWORD)
    text = "请于本周内核查并修复解放路东段的路灯（群众反映已坏一个月）"
    async with web_client(fed, county.id) as client:
        csrf = await sign_in_to_desk(client, "lead", PASSWORD)
        response = await client.post(
            "/tasks",
            data={
                "csrf": csrf,
                "target": station,
                "kind": "supervise",
                "text": text,
                "record": "0190a4c2-7b1e-7c3d-8e9f-00000000ffff",  # no such record
                "due_days": "30",
                "subtree": "1",
            },
        )
    assert response.status_code == 422
    assert "no record 0190a4c2-7b1e-7c3d-8e9f-00000000ffff" in response.text
    assert f">{text}</textarea>" in response.text
    assert 'value="30"' in response.text and 'value="0190a4c2-7b1e' in response.text
    assert re.search(r'<option value="supervise"[^>]*selected', response.text)
    assert re.search(rf"<option selected>{re.escape(station)}</option>", response.text)
    assert re.search(r'name="subtree" value="1" checked', response.text)


async def test_a_task_form_refused_keeps_an_empty_due_date(fed: Federation, station: str) -> None:
    """A due date left empty (no deadline) came back as 7 days on the refused form, and
    the input allowed 1 to 365 days where the board takes 0 to 3660."""
    from hub.dashboard import MAX_DUE_DAYS

    county = fed.nodes["js.wx.jy"]
    add_user(county, "lead", "operator", PASSWORD)
    async with web_client(fed, county.id) as client:
        csrf = await sign_in_to_desk(client, "lead", PASSWORD)
        board = await client.get("/tasks")
        (due,) = re.findall(r'<input id="due_days"[^>]*>', board.text)
        assert 'value="7"' in due  # a week unless changed
        assert 'min="0"' in due and f'max="{MAX_DUE_DAYS}"' in due, due
        for typed in ("", "0", str(MAX_DUE_DAYS)):
            response = await client.post(
                "/tasks",
                data={
                    "csrf": csrf,
                    "target": station,
                    "kind": "assign",
                    "text": "x",
                    "record": "0190a4c2-7b1e-7c3d-8e9f-00000000ffff",  # no such record
                    "due_days": typed,
                },
            )
            assert response.status_code == 422
            (due,) = re.findall(r'<input id="due_days"[^>]*>', response.text)
            assert f'value="{typed}"' in due, (typed, due)


async def test_the_acceptance_form_checks_against_the_hub_it_names(
    fed: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    import orjson
    from sqlalchemy import select

    import hub.dashboard
    from node.tables import ACCEPTANCE_REPORTS

    fed.add("js.wx.jy.s1")
    province = fed.nodes["js"]
    add_user(province, "admin", "admin", PASSWORD)
    await fed.cascade_up("js.wx.jy.s1", "js.wx.jy", "js.wx")
    requested: list[str] = []

    async def note(request: httpx.Request) -> None:
        requested.append(str(request.url))

    def to_the_city(node: object) -> httpx.AsyncClient:
        client = fed.client("js.wx", caller="js")
        client.event_hooks["request"].append(note)
        return client

    monkeypatch.setattr(hub.dashboard, "node_client", to_the_city)
    async with web_client(fed, "js") as client:
        csrf = await sign_in_to_desk(client, "admin", PASSWORD)
        page = await client.get("/acceptance")
        assert 'name="hub_url"' in page.text
        bad = await client.post(
            "/acceptance", data={"csrf": csrf, "prefix": "js.wx", "hub_url": "file:///etc"}
        )
        assert bad.status_code == 422
        response = await client.post(
            "/acceptance", data={"csrf": csrf, "prefix": "js.wx", "hub_url": "http://js.wx"}
        )
        assert response.status_code == 303, response.text
    with province.store.read() as conn:
        raw = conn.execute(select(ACCEPTANCE_REPORTS.c.report)).scalar_one()
    (reconciliation,) = [c for c in orjson.loads(raw)["criteria"] if c["id"] == "reconciliation"]
    assert not reconciliation["summary"].startswith("not checked"), reconciliation["summary"]
    assert requested and all(url.startswith("http://js.wx/") for url in requested)
