"""Crash soak: kill -9 a station or its county hub at random points during writes, sync and
USB import, restart them, and prove nothing was lost or duplicated.

Each iteration picks a fault at random (seeded): kill the station's ``put`` mid-batch, kill
its ``sync`` mid-push, kill the county's server mid-ingest, or kill the county's ``import``
of a USB bundle. After every iteration both logs must verify, the station's batch must be
all-or-nothing, and the county may hold only a prefix of the station's log. At the end the
links heal and the county must hold exactly the station's log: lost = 0, duplicated = 0.

Run: ``python -m benchmarks.soak [--iterations 100] [--seed 1] [--db postgresql://…]``
(``make soak`` runs it on SQLite and, when GUANTONG_TEST_PG_URL is set, on PostgreSQL).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

STATION, COUNTY = "js.wx.jy.s1", "js.wx.jy"


@dataclass
class Soak:
    root: Path
    rng: random.Random
    db_url: str | None = None
    faults: Counter[str] = field(default_factory=Counter)
    port: int = 0
    server: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def gt(
        self, *args: str, home: str, input: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run(
            [sys.executable, "-m", "node", *args, "--home", str(self.root / home)],
            input=input,
            capture_output=True,
            env=_env(),
            timeout=300,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"guantong {' '.join(args)}: {result.stderr.decode()}")
        return result

    def spawn(self, *args: str, home: str, input: bytes | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "node", *args, "--home", str(self.root / home)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=_env(),
        )
        if input is not None and proc.stdin is not None:
            try:
                proc.stdin.write(input)
            except BrokenPipeError:
                pass  # it was killed, or refused the input early
            finally:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
        return proc

    def kill_later(self, proc: subprocess.Popen[bytes], within: float) -> bool:
        """SIGKILL after a random delay; True if it died by our hand (not finished first)."""
        deadline = time.monotonic() + self.rng.uniform(0.05, within)
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        if proc.poll() is not None:
            return False
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True

    # -- the federation ------------------------------------------------------------------

    def build(self) -> None:
        self.gt("init", "--id", "js", "--tier", "province", home="js")
        self.gt(
            "init",
            "--id",
            "js.wx",
            "--tier",
            "city",
            "--parent",
            "http://127.0.0.1:9",
            home="js.wx",
        )
        self._enroll_offline("js", "js.wx", "city")
        self.port = _free_port()
        db = ["--db", self.db_url] if self.db_url else []
        self.gt(
            "init",
            "--id",
            COUNTY,
            "--tier",
            "county",
            "--parent",
            "http://127.0.0.1:9",
            *db,
            home=COUNTY,
        )
        self._enroll_offline("js.wx", COUNTY, "county")
        self.gt(
            "init",
            "--id",
            STATION,
            "--tier",
            "station",
            "--parent",
            f"http://127.0.0.1:{self.port}",
            home=STATION,
        )
        self._enroll_offline(COUNTY, STATION, "station")
        self.start_county()

    def _enroll_offline(self, parent: str, child: str, tier: str) -> None:
        token = (
            self.gt("token", "create", child, "--tier", tier, home=parent).stdout.decode().strip()
        )
        request, answer = self.root / f"{child}.req", self.root / f"{child}.ans"
        self.gt("enroll", "--token", token, "--request-file", str(request), home=child)
        self.gt("token", "answer", str(request), "--out", str(answer), home=parent)
        self.gt("enroll", "--token", token, "--response-file", str(answer), home=child)

    def start_county(self) -> None:
        self.log = (self.root / "county.log").open("ab")
        self.server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "node",
                "serve",
                "--port",
                str(self.port),
                "--home",
                str(self.root / COUNTY),
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env=_env(),
        )
        deadline = time.monotonic() + 120  # a loaded machine starts Python slowly
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.3):
                    return
            except OSError:
                assert self.server.poll() is None, "the county did not start"
                assert time.monotonic() < deadline, "the county did not start in time"
                time.sleep(0.05)

    def stop_county(self, hard: bool) -> None:
        if self.server is not None:
            self.server.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
            self.server.wait()
            self.server = None
        if self.log is not None:
            self.log.close()
            self.log = None

    # -- one iteration -------------------------------------------------------------------

    def batch(self, n: int) -> bytes:
        seed = str(self.rng.randrange(1 << 30))
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "node",
                "sample",
                "opinion",
                "--count",
                str(n),
                "--seed",
                seed,
                "--origin",
                STATION,
            ],
            capture_output=True,
            env=_env(),
            check=True,
        ).stdout

    def iteration(self) -> None:
        fault = self.rng.choice(["kill_put", "kill_sync", "kill_county", "kill_import", "clean"])
        before = self.seq(STATION)
        records = self.batch(self.rng.randint(20, 200))
        if fault == "kill_put":
            killed = self.kill_later(
                self.spawn("put", "opinion", "--offline", home=STATION, input=records), 1.5
            )
            after = self.seq(STATION)
            assert after in (before, before + records.count(b"\n")), "a batch was half written"
            self.faults["put killed"] += killed
        else:
            self.gt("put", "opinion", "--offline", home=STATION, input=records)
        if fault == "kill_sync":
            self.faults["sync killed"] += self.kill_later(
                self.spawn("sync", "--once", home=STATION), 1.5
            )
        elif fault == "kill_county":
            sync = self.spawn("sync", "--once", home=STATION)
            time.sleep(self.rng.uniform(0.0, 0.8))
            self.stop_county(hard=True)
            self.faults["county killed"] += 1
            sync.wait(timeout=120)
            self.start_county()
        elif fault == "kill_import":
            bundle = self.root / "s1.gtb"
            self.gt("export", "--out", str(bundle), home=STATION)
            self.stop_county(hard=False)
            self.faults["import killed"] += self.kill_later(
                self.spawn("import", str(bundle), home=COUNTY), 1.0
            )
            self.start_county()
        else:
            self.gt("sync", "--once", home=STATION, check=False)
        self.check_prefix()

    def seq(self, home: str, origin: str | None = None) -> int:
        heads = json.loads(self.gt("heads", "--json", home=home).stdout)
        return next((h["seq"] for h in heads if h["origin"] == (origin or home)), 0)

    def check_prefix(self) -> None:
        for home in (STATION, COUNTY):
            verified = self.gt("verify", "--json", home=home, check=False)
            assert verified.returncode == 0, f"{home}: {verified.stderr.decode()}"
        assert self.seq(COUNTY, STATION) <= self.seq(STATION), (
            "the county holds more than the station wrote"
        )

    def heal(self) -> tuple[int, int]:
        for _ in range(20):
            result = self.gt("sync", "--once", "--json", home=STATION, check=False)
            if result.returncode == 0 and json.loads(result.stdout)["backlog"] == 0:
                break
        own = self.seq(STATION)
        held = self.seq(COUNTY, STATION)
        rows = json.loads(self.gt("verify", "--json", "--prefix", STATION, home=COUNTY).stdout)[
            "entries"
        ]
        return own - held, rows - held


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GUANTONG_")}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(iterations: int, seed: int = 1, db_url: str | None = None) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        soak = Soak(Path(tmp), random.Random(seed), db_url)
        soak.build()
        try:
            for _ in range(iterations):
                soak.iteration()
            lost, duplicated = soak.heal()
        finally:
            soak.stop_county(hard=False)
        return {
            "iterations": iterations,
            "faults": dict(soak.faults),
            "entries": soak.seq(STATION),
            "lost": lost,
            "duplicated": duplicated,
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--db", default=None, help="PostgreSQL URL for the county hub")
    args = parser.parse_args(argv)
    started = time.monotonic()
    figures = run(args.iterations, args.seed, args.db)
    backend = "postgresql" if args.db else "sqlite"
    took = time.monotonic() - started
    print(f"crash soak ({backend}): {figures['iterations']} iterations in {took:.0f} s")
    print(f"  faults injected: {figures['faults']}")
    print(f"  station entries: {figures['entries']}")
    print(f"  lost: {figures['lost']}; duplicated: {figures['duplicated']}")
    if figures["lost"] or figures["duplicated"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
