"""A city hub served by two uvicorn workers: counties push concurrently, each twice at
once, and every chain stays intact (per-origin head-row locks on PostgreSQL; on SQLite the
database's one writer at a time)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.federation.test_processes import Servers, _enroll, _free_port, gt

pytestmark = pytest.mark.slow
COUNTIES = [f"js.wx.c{i}" for i in range(1, 5)]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def test_two_workers_keep_every_chain(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    db: list[str] = []
    if backend == "postgresql":
        pg_schemas: Callable[[], str] = request.getfixturevalue("pg_schemas")
        db = ["--db", pg_schemas()]
    servers = Servers()
    try:
        province, city = tmp_path / "js", tmp_path / "wx"
        p_port, c_port = _free_port(), _free_port()
        gt("init", "--id", "js", "--tier", "province", home=province)
        servers.start(province, p_port, tmp_path / "js.log")
        gt(
            "init",
            "--id",
            "js.wx",
            "--tier",
            "city",
            "--parent",
            f"http://127.0.0.1:{p_port}",
            *db,
            home=city,
        )
        token = (
            gt("token", "create", "js.wx", "--tier", "city", home=province).stdout.decode().strip()
        )
        gt("enroll", "--token", token, home=city)
        servers.start(city, c_port, tmp_path / "wx.log", workers=2)
        for county in COUNTIES:
            _enroll(city, tmp_path / county, county, "county", f"http://127.0.0.1:{c_port}")
            records = gt(
                "sample",
                "opinion",
                "--count",
                "150",
                "--seed",
                county[-1],
                "--origin",
                county + ".s1",
            ).stdout
            for chunk in range(3):  # three batches, three signed heads
                lines = records.splitlines(keepends=True)[chunk * 50 : (chunk + 1) * 50]
                gt("put", "opinion", "--offline", home=tmp_path / county, input=b"".join(lines))
        env_home = [tmp_path / c for c in COUNTIES for _ in range(2)]
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "node", "sync", "--once", "--home", str(home)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for home in env_home
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode()
        verified = json.loads(gt("verify", "--json", home=city).stdout)
        assert verified["ok"]
        held = {
            row["origin"]: row["seq"] for row in json.loads(gt("heads", "--json", home=city).stdout)
        }
        for county in COUNTIES:
            own = json.loads(gt("status", "--json", home=tmp_path / county).stdout)["head"]["seq"]
            assert held[county] == own == 150
    finally:
        servers.stop()
