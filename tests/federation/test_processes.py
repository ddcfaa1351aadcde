"""Real processes on loopback ports: province ← city ← county ← station, enrolled online,
the station's data relayed verbatim and verified at the province."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gt(
    *args: str, home: Path | None = None, input: bytes | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUANTONG_")}
    where = ["--home", str(home)] if home is not None else []
    result = subprocess.run(
        [sys.executable, "-m", "node", *args, *where],
        input=input,
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"guantong {' '.join(args)} failed: {result.stderr.decode()}")
    return result


class Servers:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[IO[bytes]] = []

    def start(
        self,
        home: Path,
        port: int,
        log: Path,
        *,
        workers: int = 1,
        env: dict[str, str] | None = None,
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GUANTONG_")} | (env or {})
        self.logs.append(log.open("wb"))
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "node",
                "serve",
                "--port",
                str(port),
                "--home",
                str(home),
                "--workers",
                str(workers),
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.logs[-1],
            env=env,
        )
        self.procs.append(proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError(f"server exited: {log.read_text()}") from None
                time.sleep(0.1)
        raise AssertionError(f"server on {port} did not start: {log.read_text()}")

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.close()
        self.procs, self.logs = [], []


@pytest.fixture
def servers() -> Iterator[Servers]:
    running = Servers()
    yield running
    running.stop()


def _enroll(parent_home: Path, home: Path, node_id: str, tier: str, parent_url: str) -> None:
    gt("init", "--id", node_id, "--tier", tier, "--parent", parent_url, home=home)
    token = gt("token", "create", node_id, "--tier", tier, home=parent_home).stdout.decode().strip()
    gt("enroll", "--token", token, home=home)


def _heads(home: Path) -> dict[str, tuple[int, str]]:
    rows = json.loads(gt("heads", "--json", home=home).stdout)
    return {row["origin"]: (row["seq"], row["head"]) for row in rows}


def _inbox(home: Path) -> set[str]:
    return {t["id"] for t in json.loads(gt("task", "list", "--inbox", "--json", home=home).stdout)}


class _Poll(threading.Thread):
    """A child's long poll of its parent's task feed, signed with the child's key, past
    every revision the parent holds (so it waits); ``result`` is the status and the
    answer's lines after the header."""

    def __init__(self, home: Path, node_id: str, parent_url: str) -> None:
        super().__init__(daemon=True)
        self.home, self.node_id, self.parent_url = home, node_id, parent_url
        self.result: tuple[int, bytes] | None = None

    def run(self) -> None:
        from node.auth import NodeAuth
        from node.keys import load_key
        from schemas.times import system_clock

        auth = NodeAuth(self.node_id, load_key(self.home / "keys" / "node.key"), system_clock)
        with httpx.Client(auth=auth, timeout=120) as client:
            response = client.get(
                f"{self.parent_url}/v1/tasks", params={"after": 1_000_000, "wait": 60}
            )
        self.result = (response.status_code, response.content.partition(b"\n")[2])


def _long_poll_in_thread(home: Path, node_id: str, parent_url: str) -> _Poll:
    """Start the poll and return once the parent holds it (its metrics count it)."""
    poll = _Poll(home, node_id, parent_url)
    poll.start()
    deadline = time.monotonic() + 30
    while b"guantong_task_polls_waiting 2.0" not in httpx.get(f"{parent_url}/metrics").content:
        assert time.monotonic() < deadline, "the poll is not waiting"  # with the city's own
        time.sleep(0.1)
    return poll


def test_four_tiers_as_real_processes(tmp_path: Path, servers: Servers) -> None:
    homes = {name: tmp_path / name for name in ("province", "city", "county", "station")}
    ports = {name: _free_port() for name in ("province", "city", "county")}
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}

    gt("init", "--id", "js", "--tier", "province", home=homes["province"])
    servers.start(homes["province"], ports["province"], tmp_path / "province.log")
    _enroll(homes["province"], homes["city"], "js.wx", "city", url["province"])
    servers.start(homes["city"], ports["city"], tmp_path / "city.log")
    _enroll(homes["city"], homes["county"], "js.wx.jy", "county", url["city"])
    servers.start(homes["county"], ports["county"], tmp_path / "county.log")
    _enroll(homes["county"], homes["station"], "js.wx.jy.s012", "station", url["county"])

    records = gt(
        "sample", "opinion", "--count", "40", "--seed", "5", "--origin", "js.wx.jy.s012"
    ).stdout
    gt("put", "opinion", home=homes["station"], input=records)
    synced = json.loads(gt("sync", "--once", "--json", home=homes["station"]).stdout)
    assert synced["entries"] == 40 and synced["backlog"] == 0

    station_head = _heads(homes["station"])["js.wx.jy.s012"]
    deadline = time.monotonic() + 60
    while _heads(homes["province"]).get("js.wx.jy.s012") != station_head:
        assert time.monotonic() < deadline, (tmp_path / "county.log").read_text()[-3000:]
        time.sleep(0.5)
    verified = json.loads(gt("verify", "--json", home=homes["province"]).stdout)
    assert verified["ok"] and verified["origins"] == 4  # province, city, county, station
    assert _heads(homes["county"])["js.wx.jy.s012"] == station_head

    # tasks down, nobody asking by hand: the province issues one (from another process),
    # and the city's and the county's servers, each holding a long poll of the tier
    # above, take it down in turn
    notice_id = (
        gt(
            "task",
            "issue",
            "--to",
            "js.wx.jy",
            "--kind",
            "notice",
            "--payload",
            json.dumps({"text": "全省代表培训通知"}, ensure_ascii=False),
            home=homes["province"],
        )
        .stdout.decode()
        .strip()
    )
    deadline = time.monotonic() + 60
    while notice_id not in _inbox(homes["county"]):
        assert time.monotonic() < deadline, (tmp_path / "county.log").read_text()[-3000:]
        time.sleep(0.5)

    # the closed loop: the county assigns a citizen's opinion to a handling unit with a
    # deadline; the unit reports it done; the station records the citizen's rating
    unit = tmp_path / "unit"
    _enroll(homes["county"], unit, "js.wx.jy.u-zjj", "unit", url["county"])
    opinions = [
        json.loads(line)
        for line in gt("list", "opinion", "--json", home=homes["county"]).stdout.splitlines()
    ]
    done = ("resolved", "closed", "rejected")
    opinion = next(o for o in opinions if o["data"]["status"] not in done)
    payload = json.dumps(
        {
            "record": {"contract": "opinion", "id": opinion["id"], "origin": opinion["origin"]},
            "instructions": "请核实并限期解决",
        },
        ensure_ascii=False,
    )
    task_id = (
        gt(
            "task",
            "issue",
            "--to",
            "js.wx.jy.u-zjj",
            "--kind",
            "assign",
            "--payload",
            payload,
            "--due",
            "+7d",
            home=homes["county"],
        )
        .stdout.decode()
        .strip()
    )
    gt("sync", "--once", home=unit)
    inbox = json.loads(gt("task", "list", "--inbox", "--json", home=unit).stdout)
    assert [t["id"] for t in inbox] == [task_id]
    gt("task", "report", task_id, "--status", "accepted", home=unit)
    gt("task", "report", task_id, "--status", "done", "--resolution", "已维修并回访群众", home=unit)
    gt("sync", "--once", home=unit)
    (issued,) = [
        t
        for t in json.loads(gt("task", "list", "--json", home=homes["county"]).stdout)
        if t["id"] == task_id
    ]
    assert (issued["state"], issued["overdue"]) == ("done", False)
    assert [h["status"] for h in issued["history"]] == ["received", "accepted", "done"]
    notice = json.dumps(
        {"record": opinion["id"], "resolution": "已维修并回访群众"}, ensure_ascii=False
    )
    gt(
        "task",
        "issue",
        "--to",
        "js.wx.jy.s012",
        "--kind",
        "notice",
        "--payload",
        notice,
        home=homes["county"],
    )
    gt("sync", "--once", home=homes["station"])
    record = json.loads(gt("get", "opinion", opinion["id"], home=homes["station"]).stdout)["data"]
    closed = {
        **record,
        "id": opinion["id"],
        "status": "closed",
        "resolution": "已维修并回访群众",
        "accepted_at": record.get("accepted_at", record["received_at"]),
        "assigned_at": record.get("assigned_at", record["received_at"]),
        "resolved_at": "2026-11-20T08:00:00.000Z",
        "closed_at": "2026-11-20T09:00:00.000Z",
        "rated_at": "2026-11-20T09:00:00.000Z",
        "rating": 5,
        "handling_unit": "js.wx.jy.u-zjj",
    }
    gt(
        "put",
        "opinion",
        home=homes["station"],
        input=json.dumps(closed, ensure_ascii=False).encode(),
    )
    gt("sync", "--once", home=homes["station"])
    at_county = json.loads(gt("get", "opinion", opinion["id"], home=homes["county"]).stdout)
    assert (at_county["data"]["status"], at_county["data"]["rating"]) == ("closed", 5)
    assert "reporter_name" not in at_county["data"]

    # a stop does not wait out the long polls it holds: they are answered at once
    answered = _long_poll_in_thread(homes["city"], "js.wx", url["province"])
    province = servers.procs[0]
    stopping = time.monotonic()
    province.terminate()
    province.wait(timeout=60)
    answered.join(timeout=60)
    assert time.monotonic() - stopping < 20  # the poll asked for 60 s
    assert answered.result == (200, b"")  # nothing new: a header line and no task

    # the parent going away: a clear error line and a non-zero exit
    servers.stop()
    gt(
        "put",
        "opinion",
        "--offline",
        home=homes["station"],
        input=records.splitlines(keepends=True)[0],
    )
    failed = gt("sync", "--once", home=homes["station"], check=False)
    assert failed.returncode == 1
    assert failed.stderr.decode().startswith("error: parent_unreachable:")
