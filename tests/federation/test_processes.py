"""Real processes on loopback ports: province ← city ← county ← station, enrolled online,
the station's data relayed verbatim and verified at the province."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

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

    def start(self, home: Path, port: int, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GUANTONG_")}
        self.logs.append(log.open("wb"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "node", "serve", "--port", str(port), "--home", str(home)],
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
