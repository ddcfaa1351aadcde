"""The desk and the citizen form at their edges: what people may write there, what a
refused form keeps, what a reset password ends, what a page links to."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from node.tasks import issue_task
from node.web import intake
from node.web.accounts import add_user
from tests.conftest import newer_bundle, sign_in, sign_in_to_desk, web_client
from tests.federation.harness import Federation

pytestmark = pytest.mark.anyio
PASSWORD = "correct horse battery"
GOOD = {
    "date": "2026-11-21",
    "visitor_count": "12",
    "issues_collected": "3",
    "deputy_ids": '["0190a4c2-7b1e-7c3d-8e9f-0000000000d1"]',
}


async def test_operator_cannot_revoke_a_station_key_from_the_desk(fed: Federation) -> None:
    station = fed.add("js.wx.jy.s1")
    county = fed.nodes["js.wx.jy"]
    city = fed.nodes["js.wx"]
    add_user(county, "clerk", "operator", PASSWORD)
    (cert,) = [k.cert for k in county.keyring.keys_of(station.id) if k.cert is not None]
    form = {k: str(v) for k, v in cert.to_dict().items()}
    form.update(status="revoked", revoked_from=fed.now())
    async with web_client(fed, county.id) as c:
        csrf = await sign_in_to_desk(c, "clerk", PASSWORD)
        page = await c.get("/desk")
        assert "/desk/new/node_cert" not in page.text  # not offered on the desk...
        r = await c.post("/desk/new/node_cert", data={"csrf": csrf, **form})
    await fed.cascade_up(county.id)
    known = city.keyring.lookup(cert.key_id)
    # ...so an operator must not be able to write it either
    assert r.status_code in (403, 404), r.status_code
    assert known is not None and known.revoked_from is None


async def test_a_password_reset_ends_the_sessions_opened_before(fed: Federation) -> None:
    station = fed.add("js.wx.jy.s1")
    add_user(station, "op", "operator", PASSWORD)
    async with web_client(fed, station.id) as thief:
        await sign_in_to_desk(thief, "op", PASSWORD)  # someone who learnt the old password
        add_user(station, "op", "operator", "a brand new password")  # the reset
        still = await thief.get("/desk")
        assert still.status_code == 303


async def test_a_refused_edit_can_be_corrected_and_saved_again(fed: Federation) -> None:
    station = fed.add("js.wx.jy.s1")
    add_user(station, "op", "operator", PASSWORD)
    async with web_client(fed, station.id) as c:
        csrf = await sign_in_to_desk(c, "op", PASSWORD)
        r = await c.post("/desk/new/reception", data={"csrf": csrf, **GOOD})
        assert r.status_code == 303
        (rec,) = station.list("reception")
        page = await c.get(f"/desk/record/reception/{rec.id}")
        assert "保存" in page.text and 'type="submit"' in page.text  # editable at first
        bad = await c.post(
            f"/desk/record/reception/{rec.id}",
            data={"csrf": csrf, **GOOD, "visitor_count": "-3"},
        )
        assert bad.status_code == 422
        assert 'type="submit"' in bad.text, "no save button after a validation error"
        assert not re.search(r'id="f-visitor_count"[^>]*readonly', bad.text)


async def test_a_record_just_saved_is_on_the_desk(fed: Federation) -> None:
    station = fed.add("js.wx.jy.s1")
    add_user(station, "op", "operator", PASSWORD)
    fed.write(station.id, 25)
    fed.clock.advance(minutes=5)
    async with web_client(fed, station.id) as c:
        csrf = await sign_in_to_desk(c, "op", PASSWORD)
        r = await c.post(
            "/desk/new/opinion",
            data={
                "csrf": csrf,
                "channel": "visit",
                "category": "transport",
                "content": "新录入的一条民意",
                "title": "刚刚保存的记录",
                "status": "received",
                "received_at": "2026-11-21 16:00",
            },
        )
        assert r.status_code == 303, r.text[:500]
        page = await c.get("/desk?saved=1")
    assert "刚刚保存的记录" in page.text


async def test_an_odd_stamp_is_refused_not_a_crash(fed: Federation) -> None:
    intake.SUBMISSIONS.reset()
    station = fed.add("js.wx.jy.s1")
    transport = httpx.ASGITransport(app=fed.app(station.id), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://web") as c:
        r = await c.post(
            f"/c/{station.id}",
            data={"stamp": "1763683200.签名", "content": "路灯坏了", "category": "other"},
        )
    assert r.status_code == 429  # what every other bad stamp gets


async def test_a_too_long_resolution_comes_back_on_the_desk(fed: Federation) -> None:
    station = fed.add("js.wx.jy.s1")
    county = fed.nodes["js.wx.jy"]
    add_user(station, "op", "operator", PASSWORD)
    task = issue_task(county, target=station.id, kind="notice", payload={"text": "请核实"})
    await fed.cascade_down(station.id)
    text = "已处理。" * 1001
    async with web_client(fed, station.id) as c:
        csrf = await sign_in_to_desk(c, "op", PASSWORD)
        desk = await c.get("/desk")
        assert f'action="/desk/task/{task.id}"' in desk.text
        r = await c.post(
            f"/desk/task/{task.id}", data={"csrf": csrf, "status": "done", "resolution": text}
        )
    assert r.headers["content-type"].startswith("text/html") and text in r.text


async def test_the_language_link_keeps_the_pages_query(fed: Federation) -> None:
    """On a record page reached with ?origin=, switching the language keeps the origin:
    without it an id two origins hold is ambiguous."""
    station = fed.add("js.wx.jy.s1")
    add_user(station, "op", "operator", PASSWORD)
    (rid,) = fed.write(station.id, 1)
    async with web_client(fed, station.id) as c:
        await sign_in_to_desk(c, "op", PASSWORD)
        page = await c.get(f"/desk/record/opinion/{rid}?origin={station.id}")
        (link,) = re.findall(r'<a href="([^"]*lang=en[^"]*)">English</a>', page.text)
        link = link.replace("&amp;", "&")
        assert link.startswith(f"/desk/record/opinion/{rid}?") and f"origin={station.id}" in link
        switched = await c.get(link)
    assert switched.status_code == 200 and 'lang="en"' in switched.text


async def test_the_language_link_of_a_page_answering_a_post_opens(
    fed: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The language link of a page answering a POST was its address with ?lang=: a
    refused task report's led to GET /desk/task/<id> (405), and the receipt's to the
    empty citizen form, its code lost. It now leads to a page got with GET: the desk, the
    receipt by its code, a refused form's own page."""
    monkeypatch.setattr(intake, "MIN_FILL_S", 0.0)
    intake.SUBMISSIONS.reset()
    station = fed.add("js.wx.jy.s1")
    add_user(station, "op", "operator", PASSWORD)
    deputy = "0190a4c2-7b1e-7c3d-8e9f-0000000000d1"

    def english(page: httpx.Response) -> str:
        (link,) = re.findall(r'<a href="([^"]*lang=en[^"]*)">English</a>', page.text)
        return link.replace("&amp;", "&")

    def chinese(page: httpx.Response) -> str:
        (link,) = re.findall(r'<a href="([^"]*lang=zh[^"]*)">中文</a>', page.text)
        return link.replace("&amp;", "&")

    async with web_client(fed, station.id) as c:
        csrf = await sign_in_to_desk(c, "op", PASSWORD)
        refused = await c.post(
            "/desk/task/0190a4c2-7b1e-7c3d-8e9f-00000000ffff",
            data={"csrf": csrf, "status": "done"},
        )
        assert refused.status_code == 404 and english(refused) == "/desk?lang=en"
        desk = await c.get(english(refused))
        assert desk.status_code == 200
        assert (await c.get(chinese(desk))).status_code == 200  # and back to Chinese
        bad = await c.post("/desk/new/reception", data={"csrf": csrf, **GOOD, "date": "x"})
        assert bad.status_code == 422 and english(bad) == "/desk/new/reception?lang=en"
        page = await c.get(f"/c/{station.id}?deputy={deputy}")
        stamp = re.search(r'name="stamp" value="([^"]+)"', page.text)
        assert stamp
        form = {"stamp": stamp.group(1), "content": "路灯坏了", "deputy": deputy}
        odd = await c.post(f"/c/{station.id}", data={**form, "category": "nope"})
        assert odd.status_code == 422
        assert english(odd) == f"/c/{station.id}?deputy={deputy}&lang=en"
        done = await c.post(f"/c/{station.id}", data={**form, "category": "other"})
        code = re.search(r'id="receipt-code"[^>]*>([A-Z0-9]+)<', done.text)
        assert code and english(done) == f"/receipt?code={code.group(1)}&lang=en"
        switched = await c.get(english(done))
    assert switched.status_code == 200 and 'lang="en"' in switched.text
    assert f'value="{code.group(1)}"' in switched.text and "received" in switched.text


def test_a_throttle_counts_failures_in_its_window() -> None:
    from node.web.throttle import Throttle

    throttle = Throttle(limit=3, window=60.0)
    for t in (0.0, 1.0, 2.0):
        assert throttle.wait("op", now=t) == 0.0
        throttle.count("op", now=t)
    assert throttle.wait("op", now=3.0) == pytest.approx(57.0)  # until the first is old
    assert throttle.wait("other", now=3.0) == 0.0
    assert throttle.wait("op", now=60.0) == 0.0
    throttle.clear("op")
    assert throttle.wait("op", now=3.0) == 0.0


async def test_guessing_a_password_is_stopped_before_the_hash(fed: Federation) -> None:
    """Ten wrong passwords for one name: the eleventh try waits, the right password too,
    and no hash is computed for it; another name from the same office still signs in."""
    station = fed.add("js.wx.jy.s1")
    add_user(station, "op", "operator", PASSWORD)
    add_user(station, "colleague", "operator", PASSWORD)
    async with web_client(fed, station.id) as c:
        for i in range(10):
            wrong = await sign_in(c, "op", f"guess {i:04d}!")
            assert wrong.status_code == 401
        right = await sign_in(c, "op", PASSWORD)
        assert right.status_code == 429 and int(right.headers["retry-after"]) > 800
        assert "登录失败次数过多" in right.text
        other = await sign_in(c, "colleague", PASSWORD)
        assert other.status_code == 303


async def test_with_opinion_2_written_the_citizen_picks_the_fine_category(
    fed: Federation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    station = fed.add("js.wx.jy.s1")
    station.install_contracts(newer_bundle(tmp_path, opinion_2=True))
    monkeypatch.setattr(intake, "MIN_FILL_S", 0.0)
    intake.SUBMISSIONS.reset()
    async with web_client(fed, station.id) as c:
        page = await c.get(f"/c/{station.id}")
        assert 'value="transport"' in page.text and 'value="infrastructure"' not in page.text
        stamp = re.search(r'name="stamp" value="([^"]+)"', page.text)
        assert stamp
        form = {"stamp": stamp.group(1), "content": "公交站台没有遮雨棚。", "category": "transport"}
        done = await c.post(f"/c/{station.id}", data=form)
        assert done.status_code == 200, done.text
        odd = await c.post(f"/c/{station.id}", data={**form, "category": "infrastructure"})
        assert odd.status_code == 422 and 'id="category"' in odd.text
    (opinion,) = station.list("opinion")
    assert opinion.version == "2.0" and opinion.data is not None
    assert (opinion.data["category"], opinion.data["subcategory"]) == (
        "infrastructure",
        "transport",
    )


async def test_an_own_record_of_an_older_major_is_edited_as_the_current(
    fed: Federation, tmp_path: Path
) -> None:
    station = fed.add("js.wx.jy.s1")
    add_user(station, "op", "operator", PASSWORD)
    written = {
        "channel": "visit",
        "category": "transport",
        "content": "公交站台没有遮雨棚。",
        "status": "received",
        "received_at": fed.now(),
    }
    (record_id,) = station.put("opinion", [(None, written)]).record_ids
    station.install_contracts(newer_bundle(tmp_path, opinion_2=True))
    async with web_client(fed, station.id) as c:
        csrf = await sign_in_to_desk(c, "op", PASSWORD)
        page = await c.get(f"/desk/record/opinion/{record_id}")
        assert "opinion 2.0" in page.text
        chosen = re.search(r'id="f-subcategory".*?<option value="(\w+)" selected', page.text, re.S)
        assert chosen and chosen.group(1) == "transport"
        form = {"csrf": csrf, **{k: str(v) for k, v in written.items()}}
        form.update(category="", subcategory="transport", status="accepted")
        form["accepted_at"] = fed.now()
        saved = await c.post(f"/desk/record/opinion/{record_id}", data=form)
        assert saved.status_code == 303, saved.text
        wrong = await c.post(
            f"/desk/record/opinion/{record_id}", data={**form, "category": "economy"}
        )
        assert wrong.status_code == 422 and "belongs to infrastructure" in wrong.text
    view = station.get("opinion", record_id, origin=station.id)
    assert view.version == "2.0" and view.data is not None
    assert (view.data["category"], view.data["subcategory"]) == ("infrastructure", "transport")
    assert view.data["status"] == "accepted"


class _Sent(HTMLParser):
    """What a browser sends of the record form as shown: every named field, an unticked
    checkbox left out, the selected option of a choice, a text area's text."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[tuple[str, str]] = []
        self._in_form = False
        self._textarea: str | None = None
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._in_form = a.get("id") == "record-form"
        if not self._in_form:
            return
        if tag == "input" and a.get("name"):
            if a.get("type") == "checkbox" and "checked" not in a:
                return
            self.fields.append((a["name"], a.get("value", "on")))
        elif tag == "textarea":
            self._textarea = a["name"]
            self.fields.append((a["name"], ""))
        elif tag == "select":
            self._select = a["name"]
        elif tag == "option" and self._select and "selected" in a:
            self.fields.append((self._select, a.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        elif tag == "textarea":
            self._textarea = None
        elif tag == "select":
            self._select = None

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            name, text = self.fields.pop()
            self.fields.append((name, text + data))


def _as_sent(page: str, **changes: str | None) -> dict[str, list[str]]:
    """The record form of ``page`` as sent, with ``changes`` (None: a box unticked)."""
    parser = _Sent()
    parser.feed(page)
    sent: dict[str, list[str]] = {}
    for name, value in parser.fields:
        if name not in changes:
            sent.setdefault(name, []).append(value)
    sent.update({k: [v] for k, v in changes.items() if v is not None})
    return sent


async def test_a_checkbox_left_unticked_is_saved_as_false(fed: Federation) -> None:
    """A browser sends no unticked checkbox, and the desk took a box it was not sent for one
    the form did not have: a livelihood project saved as shown lost its voted: false, and
    one voted by mistake could not be unticked (true stayed true)."""
    station = fed.add("js.wx.jy.s1")
    add_user(station, "op", "operator", PASSWORD)
    project = {
        "year": 2026,
        "title": "老旧小区加装电梯",
        "budget": "1200000.00",
        "responsible_unit": "js.wx.jy",
        "progress": 10,
        "status": "in_progress",
    }
    unvoted, voted = station.put(
        "livelihood_project",
        [(None, {**project, "voted": False}), (None, {**project, "voted": True})],
    ).record_ids
    async with web_client(fed, station.id) as c:
        await sign_in_to_desk(c, "op", PASSWORD)
        for record_id, changes in ((unvoted, {}), (voted, {"voted": None})):
            url = f"/desk/record/livelihood_project/{record_id}"
            page = await c.get(url)
            saved = await c.post(url, data=_as_sent(page.text, **changes))
            assert saved.status_code == 303, saved.text
        page = await c.get("/desk/new/livelihood_project")
        new = {k: str(v) for k, v in project.items()}
        saved = await c.post(
            "/desk/new/livelihood_project",
            data=_as_sent(page.text, **new),
        )
        assert saved.status_code == 303, saved.text
    for record_id in (unvoted, voted):
        view = station.get("livelihood_project", record_id, origin=station.id)
        assert view.data is not None and view.data["voted"] is False, view.data
    assert len(station.list("livelihood_project")) == 3
    assert all(
        v.data is not None and v.data["voted"] is False for v in station.list("livelihood_project")
    )
