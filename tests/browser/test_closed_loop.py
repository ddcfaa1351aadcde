"""In a real browser (Playwright driving Debian's Chromium, headless), across real node
processes: a citizen submits an opinion through the station's QR page; the county assigns it
to a handling unit from its task board; the unit reports it done from its desk; the station
closes it with the citizen's rating; the city dashboard counts it closed.

Screenshots of every step go to ``test-artifacts/browser/``.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.federation.test_processes import Servers, _enroll, _free_port, gt

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"
    ),
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
PASSWORD = "correct horse battery"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[dict[str, str]]:
    servers = Servers()
    homes = {n: tmp_path / n for n in ("js", "js.wx", "js.wx.jy", "js.wx.jy.s1", "js.wx.jy.u-zjj")}
    tiers = {
        "js.wx": "city",
        "js.wx.jy": "county",
        "js.wx.jy.s1": "station",
        "js.wx.jy.u-zjj": "unit",
    }
    urls: dict[str, str] = {}
    try:
        gt("init", "--id", "js", "--tier", "province", home=homes["js"])
        for node_id in homes:
            if node_id != "js":
                parent = node_id.rsplit(".", 1)[0]
                _enroll(homes[parent], homes[node_id], node_id, tiers[node_id], urls[parent])
            port = _free_port()
            urls[node_id] = f"http://127.0.0.1:{port}"
            role = "admin" if node_id.count(".") < 3 else "operator"
            gt(
                "user",
                "add",
                "web",
                "--role",
                role,
                "--password-stdin",
                home=homes[node_id],
                input=(PASSWORD + "\n").encode(),
            )
            servers.start(
                homes[node_id],
                port,
                tmp_path / f"{node_id}.log",
                env={"GUANTONG_INTAKE_MIN_FILL_S": "0"},
            )  # the browser types fast
        yield urls
    finally:
        servers.stop()


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _login(page: Any, url: str) -> None:
    page.goto(f"{url}/login?next=/desk")
    page.fill("#name", "web")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/desk.*"))


def _sync(page: Any, url: str) -> None:
    page.goto(f"{url}/desk")
    page.click("#sync-status button")
    page.wait_for_load_state()


def _eventually(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the federation did not settle"
        time.sleep(0.5)


def test_citizen_to_closed_and_counted(federation: dict[str, str]) -> None:
    from playwright.sync_api import sync_playwright

    station, county, unit, city = (
        federation[n] for n in ("js.wx.jy.s1", "js.wx.jy", "js.wx.jy.u-zjj", "js.wx")
    )
    content = "村东头的桥栏杆断了一段，孩子上学经过很危险，希望尽快修好。"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        citizen = browser.new_context(locale="zh-CN").new_page()
        # 1. a citizen scans the station's QR code and reports the problem
        citizen.goto(f"{station}/c/js.wx.jy.s1")
        citizen.select_option("#category", "urban_construction")
        citizen.fill("#title", "桥栏杆断裂")
        citizen.fill("#content", content)
        citizen.fill("#name", "李大爷")
        citizen.fill("#phone", "13912345678")
        citizen.click("#intake button[type=submit]")
        citizen.wait_for_load_state()
        _shot(citizen, "1-citizen-after-submit")
        receipt = citizen.inner_text("#receipt-code")
        assert re.fullmatch(r"[A-Z0-9]{10}", receipt)
        _shot(citizen, "1-citizen-receipt")

        staff = browser.new_context(locale="zh-CN")
        station_page = staff.new_page()
        _login(station_page, station)
        _sync(station_page, station)  # the station's data goes up now

        # 2. the county finds it and assigns it to the handling unit from the task board
        county_page = staff.new_page()
        _login(county_page, county)
        link = county_page.locator("table.records[data-contract=opinion] a", has_text="桥栏杆断裂")
        _eventually(lambda: (county_page.reload() or True) and link.count() == 1)
        # /desk/record/opinion/<id>?origin=<station>: a record is named by origin and id
        href = urlsplit(link.get_attribute("href") or "")
        opinion_id = href.path.rsplit("/", 1)[-1]
        assert parse_qs(href.query) == {"origin": ["js.wx.jy.s1"]}
        county_page.goto(f"{county}/tasks")
        county_page.select_option("#kind", "assign")
        county_page.select_option("#target", "js.wx.jy.u-zjj")
        county_page.fill("#record", opinion_id)
        county_page.fill("#text", "请三日内修复并回复")
        county_page.fill("#due_days", "3")
        county_page.click("#issue-task button[type=submit]")
        _shot(county_page, "2-county-task-board")

        # 3. the unit takes the task and reports it done
        unit_page = staff.new_page()
        _login(unit_page, unit)
        _eventually(
            lambda: (
                (_sync(unit_page, unit) or True) and unit_page.locator("#inbox form").count() == 1
            )
        )
        unit_page.select_option("#inbox select[name=status]", "done")
        unit_page.fill("#inbox input[name=resolution]", "已更换护栏并回访群众")
        unit_page.click("#inbox form button")
        _sync(unit_page, unit)
        _shot(unit_page, "3-unit-desk")
        county_page.goto(f"{county}/tasks")
        _eventually(
            lambda: (
                (county_page.reload() or True) and "done" in county_page.inner_text("#task-board")
            )
        )

        # 4. the station closes the opinion with the citizen's rating
        station_page.goto(f"{station}/desk/record/opinion/{opinion_id}")
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        station_page.select_option("#f-status", "closed")
        for field, value in (
            ("accepted_at", now),
            ("assigned_at", now),
            ("resolved_at", now),
            ("closed_at", now),
            ("rated_at", now),
            ("rating", "5"),
            ("handling_unit", "js.wx.jy.u-zjj"),
            ("resolution", "已更换护栏并回访群众"),
        ):
            station_page.fill(f"#f-{field}", value)
        station_page.click("#record-form button[type=submit]")
        station_page.wait_for_url(re.compile(r".*/desk\?saved=1"))
        _sync(station_page, station)
        _shot(station_page, "4-station-closed")

        # 5. the city dashboard counts it closed
        city_page = staff.new_page()
        _login(city_page, city)
        city_page.goto(f"{city}/")
        _eventually(
            lambda: (city_page.reload() or True) and "closed" in city_page.inner_text("#by-status")
        )
        assert city_page.inner_text("#opinions-total") == "1"
        assert city_page.inner_text("#resolution-rate") == "100.0%"
        _shot(city_page, "5-city-dashboard")
        citizen.goto(f"{station}/receipt?code={receipt}")
        assert "closed" in citizen.inner_text("#progress")
        browser.close()
