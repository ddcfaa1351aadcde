"""The acceptance check: a healthy city passes; a deliberately broken one fails exactly the
criteria it should, and the evidence names the node."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from contracts.registry import DEFAULT_BUNDLE, Registry
from contracts.samples import sample_records
from hub.acceptance import accept
from hub.report_html import render_report
from node.db import upsert
from node.reconcile import RemoteRoots
from node.tables import ENTRIES, HEADS, REGISTER
from node.tasks import amend_task, issue_task, report_task, revoke_node
from schemas.signing import verify_object
from schemas.tasks import Task
from schemas.times import format_time
from tests.federation.harness import Federation

pytestmark = pytest.mark.anyio
STATIONS = ["js.wx.jy.s1", "js.wx.jy.s2", "js.wx.yx.s1"]


async def _city(fed: Federation, *, old_version: bool = False) -> None:
    for station in STATIONS:
        fed.add(station)
        version = "1.0" if old_version and station == "js.wx.yx.s1" else None
        records = sample_records("opinion", 12, seed=len(station), origin=station, version=version)
        fed.nodes[station].put("opinion", [(None, r) for r in records], version=version)
    await fed.cascade_up(*STATIONS, "js.wx.jy", "js.wx.yx", "js.wx")


async def _accept(fed: Federation) -> dict[str, Any]:
    async with fed.client("js.wx", caller="js") as client:
        return await accept(fed.nodes["js"], "js.wx", lower=RemoteRoots(client, "http://js.wx"))


def _assign_due_at_noon(fed: Federation) -> Task:
    """An assign task from the province to a station of the city, due at noon today."""
    due = format_time(fed.clock().replace(hour=12))
    province = fed.nodes["js"]
    return issue_task(province, target="js.wx.jy.s1", kind="assign", payload={"x": 1}, due=due)


def _failed(report: dict[str, Any]) -> set[str]:
    return {c["id"] for c in report["criteria"] if not c["passed"]}


def _crit(report: dict[str, Any], cid: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in report["criteria"] if c["id"] == cid)
    return found


def _evidence(report: dict[str, Any], criterion: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in report["criteria"] if c["id"] == criterion)["evidence"]
    return found


async def test_a_healthy_city_passes_and_the_report_is_signed(
    fed: Federation, tmp_path: Path
) -> None:
    await _city(fed)
    report = await _accept(fed)
    assert report["passed"], [c["summary"] for c in report["criteria"] if not c["passed"]]
    assert verify_object(report, fed.nodes["js"].signer.public_raw)
    html = render_report(report)
    assert "纵向贯通验收报告" in html and "通过" in html


async def test_missing_station_fails_coverage(fed: Federation) -> None:
    await _city(fed)
    with fed.nodes["js"].store.write() as conn:
        upsert(
            conn,
            REGISTER,
            [
                {"node": s, "name": s, "tier": "station", "region": None}
                for s in [*STATIONS, "js.wx.yx.s9"]
            ]
            + [
                {"node": h, "name": h, "tier": t, "region": None}
                for h, t in (("js.wx.jy", "county"), ("js.wx.yx", "county"))
            ],
            ["node"],
            ["name"],
        )
    report = await _accept(fed)
    assert _failed(report) == {"coverage"}
    assert _evidence(report, "coverage")["not_enrolled"] == ["js.wx.yx.s9"]


async def test_silent_station_fails_coverage(fed: Federation) -> None:
    await _city(fed)
    fed.clock.advance(days=10)
    for station in STATIONS[:2]:
        fed.write(station, 1, seed=99)
    await fed.cascade_up(*STATIONS[:2], "js.wx.jy", "js.wx")
    report = await _accept(fed)
    assert _failed(report) == {"coverage"}
    assert _evidence(report, "coverage")["silent"] == ["js.wx.yx", "js.wx.yx.s1"]


async def test_dropped_entry_and_tampered_byte_fail_integrity(fed: Federation) -> None:
    await _city(fed)
    province = fed.nodes["js"]
    with province.store.write() as conn:
        conn.execute(ENTRIES.delete().where(ENTRIES.c.origin == "js.wx.jy.s2", ENTRIES.c.seq == 4))
        raw = conn.execute(
            select(ENTRIES.c.raw).where(ENTRIES.c.origin == "js.wx.yx.s1", ENTRIES.c.seq == 2)
        ).scalar_one()
        conn.execute(
            update(ENTRIES)
            .where(ENTRIES.c.origin == "js.wx.yx.s1", ENTRIES.c.seq == 2)
            .values(raw=raw.replace(b'"status":"', b'"status":"x', 1))
        )
    report = await _accept(fed)
    assert _failed(report) == {"integrity"}
    problems = " ".join(_evidence(report, "integrity")["problems"])
    assert "js.wx.jy.s2 seq 4: gap" in problems and "js.wx.yx.s1 seq 2: bad_hash" in problems


async def test_lower_hub_that_differs_fails_reconciliation(fed: Federation) -> None:
    await _city(fed)
    with fed.nodes["js.wx"].store.write() as conn:
        conn.execute(
            update(HEADS).where(HEADS.c.origin == "js.wx.jy.s1").values(seq=3, hash="0" * 64)
        )
    report = await _accept(fed)
    assert _failed(report) == {"reconciliation"}
    assert [d["origin"] for d in _evidence(report, "reconciliation")["differences"]] == [
        "js.wx.jy.s1"
    ]


def _looping(request: httpx.Request) -> httpx.Response:
    prefix = request.url.params["prefix"]
    child = {"origins": 1, "entries": 1, "root": "cd" * 32}
    return httpx.Response(
        200,
        json={"prefix": prefix, "origins": 1, "entries": 1, "root": "ab" * 32}
        | {"children": {prefix: child}},
    )


def _unreachable(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.mark.parametrize(
    ("lower", "code"),
    [
        (_looping, "malformed"),
        (lambda _: httpx.Response(200, text="<html>gateway</html>"), "malformed"),
        (lambda _: httpx.Response(200, json={"prefix": "js.wx"}), "malformed"),
        (_unreachable, "parent_unreachable"),
    ],
    ids=["its own child", "not JSON", "no root", "unreachable"],
)
async def test_a_lower_hub_answering_what_no_hub_would_fails_reconciliation(
    fed: Federation, lower: Any, code: str
) -> None:
    """A lower hub naming the prefix as its own child sent the bisection into a
    RecursionError, and one answering 200 with no JSON or no root ended the check with a
    JSONDecodeError or KeyError: a 500 at the dashboard's POST /acceptance, a traceback from
    ``guantong accept --hub``, and no report (so did a hub that could not be reached:
    parent_unreachable). The report is made; reconciliation fails with the error as
    evidence, every other criterion is judged as before."""
    await _city(fed)
    async with httpx.AsyncClient(transport=httpx.MockTransport(lower)) as client:
        report = await accept(fed.nodes["js"], "js.wx", lower=RemoteRoots(client, "http://js.wx"))
    assert _failed(report) == {"reconciliation"}
    assert _crit(report, "reconciliation")["summary"].startswith("not checked")
    evidence = _evidence(report, "reconciliation")
    assert evidence["error"]["code"] == code and "http://js.wx" in evidence["error"]["message"]
    assert verify_object(report, fed.nodes["js"].signer.public_raw)


async def test_overdue_task_fails_timeliness(fed: Federation) -> None:
    await _city(fed)
    task = _assign_due_at_noon(fed)
    fed.clock.advance(days=1)
    report = await _accept(fed)
    assert _failed(report) == {"timeliness"}
    assert _evidence(report, "timeliness")["late_tasks"] == [task.id]


async def test_retired_contract_version_fails_standards(fed: Federation, tmp_path: Path) -> None:
    await _city(fed, old_version=True)
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    index = json.loads((bundle / "index.json").read_text("utf-8"))
    index["bundle_version"] = 2
    index["contracts"]["opinion"]["versions"]["1.0"].update(
        status="retired", deprecated_from="2026-06-01", retired_from="2026-09-01"
    )
    (bundle / "index.json").write_text(json.dumps(index, ensure_ascii=False), "utf-8")
    fed.nodes["js"].install_contracts(Registry.from_dir(bundle))
    report = await _accept(fed)
    assert _failed(report) == {"standards"}
    assert _evidence(report, "standards")["retired_in_use"] == ["opinion 1.0"]


def test_accept_command_writes_signed_json_and_html(fed: Federation, tmp_path: Path) -> None:
    import asyncio

    from typer.testing import CliRunner

    from node.cli import app

    # the command reads the system clock, so the federation's heads must be recent by it
    # (a fixed test clock would make coverage fail once the date is a week past it)
    fed.clock.now = datetime.now(UTC).replace(microsecond=0)
    asyncio.run(_city(fed))
    home = str(fed.nodes["js"].settings.home)
    register = tmp_path / "register.csv"
    register.write_text(
        "node,name,tier,region\njs.wx.jy,江阴市,county,320281\n"
        "js.wx.jy.s1,澄江街道代表联络站,station,\njs.wx.jy.s2,南闸街道代表联络站,station,\n"
        "js.wx.yx,宜兴市,county,320282\njs.wx.yx.s1,宜城街道代表联络站,station,\n",
        "utf-8",
    )
    runner = CliRunner()
    assert runner.invoke(app, ["register", "import", str(register), "--home", home]).exit_code == 0
    result = runner.invoke(
        app,
        [
            "accept",
            "js.wx",
            "--home",
            home,
            "--json",
            str(tmp_path / "r.json"),
            "--html",
            str(tmp_path / "r.html"),
        ],
    )
    assert result.exit_code == 1  # no --hub: reconciliation cannot be shown, so it fails
    assert result.stderr.startswith("error: verify_failed: js.wx fails: reconciliation")
    report = json.loads((tmp_path / "r.json").read_text("utf-8"))
    assert _failed(report) == {"reconciliation"} and report["sig"]
    assert "数字对账" in (tmp_path / "r.html").read_text("utf-8")


def test_reviewing_refusals_clears_the_security_criterion(fed: Federation) -> None:
    import asyncio

    from typer.testing import CliRunner

    from node.cli import app
    from node.tables import REJECTIONS

    asyncio.run(_city(fed))
    province = fed.nodes["js"]
    with province.store.write() as conn:
        conn.execute(
            REJECTIONS.insert().values(
                origin="js.wx.jy.s1",
                caller="js.wx",
                code="bad_hash",
                message="tampered",
                at=fed.now(),
                reviewed=False,
            )
        )
    assert "security" in _failed(asyncio.run(_accept_sync(fed)))
    home = str(province.settings.home)
    refused = CliRunner().invoke(app, ["review", "--origin", "js.wx\x00", "--home", home])
    assert refused.exit_code == 1 and "invalid_node_id" in refused.stderr
    result = CliRunner().invoke(app, ["review", "--origin", "js.wx", "--home", home])
    assert result.exit_code == 0 and "1 refusal(s) marked reviewed" in result.stdout
    fed.clock.advance(seconds=1)  # a later, different signed request
    assert "security" not in _failed(asyncio.run(_accept_sync(fed)))


async def _accept_sync(fed: Federation) -> dict[str, Any]:
    return await _accept(fed)


# -- what is withdrawn, lifted or decommissioned does not fail a sound city -----------------


async def test_cancelled_assign_task_does_not_fail_timeliness(fed: Federation) -> None:
    await _city(fed)
    task = _assign_due_at_noon(fed)
    amend_task(fed.nodes["js"], task.id, cancel=True)  # the issuer withdraws it
    fed.clock.advance(days=1)
    report = await _accept(fed)
    timeliness = _crit(report, "timeliness")
    assert timeliness["passed"], (timeliness["summary"], timeliness["evidence"]["late_tasks"])


async def test_cleared_red_warning_does_not_fail_timeliness(fed: Federation) -> None:
    await _city(fed)
    s1 = fed.nodes["js.wx.jy.s1"]
    raised = fed.now()
    warning = {
        "kind": "overdue_opinion",
        "subject": {"contract": "opinion", "id": "00000000-0000-4000-8000-000000000001"},
        "node": "js.wx.jy.s1",
        "raised_at": raised,
        "level": "red",
        "message": "民意办理超期",
    }
    (wid,) = s1.put("warning", [(None, warning)]).record_ids
    fed.clock.advance(hours=2)
    # supervised and solved: the warning is lifted (预警解除)
    s1.put("warning", [(None, {**warning, "id": wid, "cleared_at": fed.now()})])
    await fed.cascade_up("js.wx.jy.s1", "js.wx.jy", "js.wx")
    report = await _accept(fed)
    timeliness = _crit(report, "timeliness")
    assert timeliness["passed"], timeliness["summary"]


async def test_decommissioned_revoked_station_is_not_expected(fed: Federation) -> None:
    """No register imported: expected = every certified node. A station the city revoked
    (closed down) a while ago is no longer certified, so it is not expected to report."""
    await _city(fed)
    revoke_node(fed.nodes["js.wx"], "js.wx.jy.s2", revoked_from=fed.now())
    await fed.cascade_up("js.wx")
    fed.clock.advance(days=10)
    for station in ("js.wx.jy.s1", "js.wx.yx.s1"):
        fed.write(station, 1, seed=99)
    await fed.cascade_up("js.wx.jy.s1", "js.wx.yx.s1", "js.wx.jy", "js.wx.yx", "js.wx")
    report = await _accept(fed)
    coverage = _crit(report, "coverage")
    assert coverage["passed"], (coverage["summary"], coverage["evidence"]["silent"])


async def test_a_decommissioned_station_whose_certificate_ran_out_does_not_fail_security(
    fed: Federation, tmp_path: Path
) -> None:
    """Coverage does not expect a node whose every key is revoked; security did not ask it
    to keep a certificate in date either (the city failed two years after closing it)."""
    fed.add("js.wx.jy.s2")
    fed.add("js.wx.jy.s1")
    fed.write("js.wx.jy.s2", 2)
    await fed.cascade_up("js.wx.jy.s2", "js.wx.jy", "js.wx")
    fed.clock.advance(days=400)
    for node_id in ("js.wx.jy.s1", "js.wx.jy", "js.wx"):  # the living nodes renew their keys
        await fed.rotate(node_id, tmp_path)
    fed.clock.advance(seconds=1)
    revoke_node(fed.nodes["js.wx.jy"], "js.wx.jy.s2", revoked_from=fed.now())  # closed down
    fed.clock.advance(days=400)  # its two-year certificate has run out since
    for node_id in ("js.wx.jy.s1", "js.wx.jy", "js.wx"):
        fed.write(node_id, 1, seed=5)
    await fed.cascade_up("js.wx.jy.s1", "js.wx.jy", "js.wx")
    report = await _accept(fed)
    assert _crit(report, "coverage")["passed"]
    security = _crit(report, "security")
    assert security["passed"], security["evidence"]


async def test_a_city_silent_for_a_month_fails_coverage(fed: Federation) -> None:
    """Without a register the certified nodes are expected, the city itself among them:
    a city enrolled with nothing below it and silent for 30 days passed as 0/0."""
    fed.add("js.wx")
    fed.write("js.wx", 1)
    await fed.cascade_up("js.wx")
    fed.clock.advance(days=30)
    report = await _accept(fed)
    coverage = _crit(report, "coverage")
    assert not coverage["passed"] and coverage["evidence"]["silent"] == ["js.wx"]
    assert not report["passed"]


async def test_a_task_rejected_in_time_and_done_later_was_closed_in_time(
    fed: Federation,
) -> None:
    """A task is closed by its first done or rejected (docs/metrics.md): a rejection
    before the deadline answered it in time, whatever came after."""
    await _city(fed)
    due = format_time(fed.clock() + timedelta(days=2))
    task = issue_task(fed.nodes["js"], target="js.wx.jy.s1", kind="assign", payload={}, due=due)
    await fed.cascade_down("js.wx", "js.wx.jy", "js.wx.jy.s1")
    station = fed.nodes["js.wx.jy.s1"]
    report_task(station, task.id, "rejected", note="不属本站职责")
    fed.clock.advance(days=3)
    report_task(station, task.id, "done", resolution="已办结")
    await fed.cascade_up("js.wx.jy.s1", "js.wx.jy", "js.wx")
    timeliness = _crit(await _accept(fed), "timeliness")
    assert timeliness["evidence"]["tasks_closed_on_time"] == 1, timeliness["summary"]
