"""Crash soak: kill -9 any tier of a federation at random points during writes, sync, relays
and USB imports, restart it, and prove nothing was lost or duplicated.

The federation is a station under a county, a city and the province, the three hubs served
as real ``guantong serve`` processes (the county relays to the city, the city to the
province, each on its own uplink job, a second after it took a push). Each iteration the
station writes a batch and one fault is drawn at random (seeded):

- the station's ``put`` killed mid-batch, or its ``sync`` mid-push;
- the county's server killed while the station pushes to it, or while it relays to the city;
- the city's server killed while it takes the county's relay or relays to the province;
- the province's server killed while it takes the city's relay;
- a USB ``import`` killed at the county (a station's bundle), at the city (a county's
  bundle) or at the province (a city's bundle);
- or nothing.

Processes are killed a random time after they opened their store (a station's ``sync``,
after it connected to the county), so that kills land in their work rather than in the
interpreter's start; a kill counts only if the process was still running. A server is
always running, so its kills always count; ``outstanding`` says how many of them found
a transfer unfinished (the push still running, or the tier above holding less).

Commands the soak does not kill (``verify``, a ``put`` or ``sync`` left alone, ``export``)
run in forks of one process that imported the command line once, which saves a second of
imports each; killed commands and the servers are fresh interpreters.

After every iteration the hubs are given a few seconds to relay (then ``guantong sync
--once`` relays by hand), every store passes ``guantong verify``, the station's batch is
all or nothing, and each tier holds a prefix of the tier below, origin by origin (county ≤
station, city ≤ county, province ≤ city, by seq and hash). At the end the station syncs,
the hubs must relay everything on their own (within ``HEAL_S``), every tier syncs until its
backlog is empty, and every hub must hold exactly what every origin below it wrote: lost =
0, duplicated = 0, counted at the county, the city and the province.

Run: ``python -m benchmarks.soak [--iterations 100] [--seed 1] [--db postgresql://…]``.
With ``--db`` the three hubs store on that PostgreSQL server, each in a fresh schema
(dropped at the end); the station stays on SQLite. ``make soak`` runs it on SQLite and,
when GUANTONG_TEST_PG_URL is set, on PostgreSQL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

STATION, COUNTY, CITY, PROVINCE = "js.wx.jy.s1", "js.wx.jy", "js.wx", "js"
CHAIN = (STATION, COUNTY, CITY, PROVINCE)
"""Each tier's parent is the next one."""
HUBS = (COUNTY, CITY, PROVINCE)
TIER_NAMES = {STATION: "station", COUNTY: "county", CITY: "city", PROVINCE: "province"}

FAULTS = (
    "station put",
    "station sync",
    "county server (station push)",
    "county import",
    "county server (relay to city)",
    "city server",
    "city import",
    "province server",
    "province import",
    "clean",
)
"""Drawn uniformly, one per iteration; every kind but ``clean`` kills a process."""

HOPS = tuple(zip(CHAIN, CHAIN[1:], strict=False))
"""(lower, upper): the station pushes to the county, which relays to the city, and so on."""

SETTLE_S = 4.0
"""How long a hub may take to relay on its own before the soak relays by hand (its uplink
runs a second after each push it takes, unless it is backing off from a dead parent)."""
HEAL_S = 120.0
"""At the end, how long the hubs may take to relay everything on their own."""


_FORKER = """
import json, os, sys, traceback
from node.cli import app
answers = os.fdopen(os.dup(1), "w")
for line in sys.stdin.buffer:
    children = {}
    for n, (args, out, err) in enumerate(json.loads(line)):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for fd, path in ((1, out), (2, err)):
                    os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
                sys.argv = ["guantong", *args]
                app()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = n
    codes = [1] * len(children)
    while children:
        pid, status = os.wait()
        codes[children.pop(pid)] = os.waitstatus_to_exitcode(status)
    answers.write(json.dumps(codes) + "\\n")
    answers.flush()
"""


@dataclass
class Forker:
    """Runs ``guantong`` commands the soak does not kill (``verify``, a ``put`` or ``sync``
    left alone, ``export``) each in a fork of one process that imported the command line
    once: the same command in a process of its own, without a second of imports each time.
    Batches run in order, the commands of one batch at once."""

    folder: Path
    proc: subprocess.Popen[bytes] | None = None
    sent: list[list[list[str]]] = field(default_factory=list)
    codes: list[list[int]] = field(default_factory=list)

    def start(self) -> None:
        self.folder.mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _FORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_env(),
            bufsize=0,
        )

    def submit(self, commands: list[list[str]]) -> int:
        assert self.proc is not None and self.proc.stdin is not None
        ticket = len(self.sent)
        batch = [
            [c, str(self._out(ticket, n, "out")), str(self._out(ticket, n, "err"))]
            for n, c in enumerate(commands)
        ]
        self.proc.stdin.write(json.dumps(batch).encode() + b"\n")
        self.proc.stdin.flush()
        self.sent.append(commands)
        return ticket

    def collect(
        self, ticket: int, timeout: float = 300
    ) -> list[subprocess.CompletedProcess[bytes]]:
        assert self.proc is not None and self.proc.stdout is not None
        while len(self.codes) <= ticket:
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            assert ready, (
                f"a command did not finish in {timeout:.0f} s: {self.sent[len(self.codes)]}"
            )
            line = b""
            while not line.endswith(b"\n"):
                byte = self.proc.stdout.read(1)
                assert byte, "the command forker died"
                line += byte
            self.codes.append(json.loads(line))
        results = []
        for n, (command, code) in enumerate(
            zip(self.sent[ticket], self.codes[ticket], strict=True)
        ):
            out, err = self._out(ticket, n, "out"), self._out(ticket, n, "err")
            results.append(
                subprocess.CompletedProcess(command, code, out.read_bytes(), err.read_bytes())
            )
            out.unlink()
            err.unlink()
        return results

    def stop(self) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
            self.proc = None

    def _out(self, ticket: int, n: int, stream: str) -> Path:
        return self.folder / f"{ticket}-{n}.{stream}"


@dataclass
class Server:
    tier: str
    home: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None


@dataclass
class Soak:
    root: Path
    rng: random.Random
    db_url: str | None = None
    """A PostgreSQL server for the hubs (a fresh schema each), or None for SQLite."""
    faults: Counter[str] = field(default_factory=Counter)
    """Kills that happened, per kind (a process that finished first is not counted)."""
    outstanding: Counter[str] = field(default_factory=Counter)
    """Server kills that found a transfer unfinished."""
    by_hand: int = 0
    """Relays the soak ran with ``guantong sync --once`` because a hub was backing off."""
    servers: dict[str, Server] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    schemas: list[str] = field(default_factory=list)
    engines: dict[str, Engine] = field(default_factory=dict)
    forker: Forker | None = None

    def home(self, tier: str) -> Path:
        return self.root / tier

    # -- processes -----------------------------------------------------------------------

    def gt(
        self, *args: str, home: str, input: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        """A ``guantong`` command at ``home``, to its end (in a fork of the forker)."""
        (result,) = self.collect(self.submit([self.command(*args, home=home, input=input)]))
        if check and result.returncode != 0:
            raise AssertionError(f"guantong {' '.join(args)} at {home}: {result.stderr.decode()}")
        return result

    def command(self, *args: str, home: str, input: bytes | None = None) -> list[str]:
        if input is not None:  # a command's input goes by file (a fork has no stdin of its own)
            path = self.root / "input.ndjson"
            path.write_bytes(input)
            args = (*args, "--file", str(path))
        return [*args, "--home", str(self.home(home))]

    def submit(self, commands: list[list[str]]) -> int | list[subprocess.Popen[bytes]]:
        """Start commands side by side (in forks, or as fresh processes without fork)."""
        if self.forker is not None:
            return self.forker.submit(commands)
        return [
            subprocess.Popen(
                [sys.executable, "-m", "node", *c],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=_env(),
            )
            for c in commands
        ]

    def collect(
        self, started: int | list[subprocess.Popen[bytes]]
    ) -> list[subprocess.CompletedProcess[bytes]]:
        if isinstance(started, int):
            assert self.forker is not None
            return self.forker.collect(started)
        results = []
        for proc in started:
            out, err = proc.communicate(timeout=300)
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
        return results

    def spawn(self, *args: str, home: str, input: bytes | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "node", *args, "--home", str(self.home(home))],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=_env(),
        )
        if proc.stdin is not None:
            try:
                if input is not None:
                    proc.stdin.write(input)
            except BrokenPipeError:
                pass  # it was killed, or refused the input early
            finally:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
        return proc

    def kill_when(
        self, proc: subprocess.Popen[bytes], ready: Callable[[int], bool], within: float
    ) -> bool:
        """SIGKILL a random time (up to ``within`` s) after ``ready(pid)`` first holds; True
        if it died by our hand (it had not finished first)."""
        delay = self.rng.uniform(0.0, within)
        deadline = time.monotonic() + 120
        while proc.poll() is None and not ready(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.kill_later(proc, delay)

    @staticmethod
    def kill_later(proc: subprocess.Popen[bytes], delay: float) -> bool:
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        if proc.poll() is not None:
            return False
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True

    def store_open(self, tier: str) -> Callable[[int], bool]:
        """Whether a process has opened ``tier``'s store (its SQLite file, or a socket to
        PostgreSQL: a command opens no other socket before its store)."""
        if tier != STATION and self.db_url:
            return _has_socket
        path = str((self.home(tier) / "node.db").resolve())
        return lambda pid: any(t.startswith(path) for t in _open_files(pid))

    # -- the federation ------------------------------------------------------------------

    def build(self) -> None:
        """Four nodes, initialised and enrolled in this process (setting up is not what is
        tested), then the three hubs served as processes."""
        from hub.enrollment import answer_enrollment, create_token
        from node.enrollment import enrollment_request, install_enrollment
        from node.runtime import Node
        from node.settings import load_settings
        from schemas.ids import Tier

        ports = {hub: _free_port() for hub in HUBS}
        stores = self.make_stores()
        nodes: dict[str, Node] = {}
        try:
            for tier in reversed(CHAIN):
                parent = CHAIN[CHAIN.index(tier) + 1] if tier != PROVINCE else None
                overrides: dict[str, Any] = {"id": tier, "tier": Tier(TIER_NAMES[tier])}
                if parent is not None:
                    overrides["parent_url"] = f"http://127.0.0.1:{ports[parent]}"
                if tier in stores:
                    overrides["db_url"] = stores[tier]
                nodes[tier] = Node.init(load_settings(self.home(tier), **overrides))
                if parent is not None:
                    child = nodes[tier]
                    token = create_token(
                        nodes[parent], tier, Tier(TIER_NAMES[tier]), valid_for=timedelta(days=1)
                    )
                    answer = answer_enrollment(nodes[parent], enrollment_request(child, token))
                    install_enrollment(child, token, answer)
            self.urls = {tier: node.settings.database_url for tier, node in nodes.items()}
        finally:
            for node in nodes.values():
                node.close()
        self.engines = {
            tier: create_engine(_driver(url), poolclass=NullPool) for tier, url in self.urls.items()
        }
        if hasattr(os, "fork"):
            self.forker = Forker(self.root / "commands")
            self.forker.start()
        for hub in HUBS:
            self.servers[hub] = Server(hub, self.home(hub), ports[hub])
        for hub in reversed(HUBS):
            self.start(hub, wait=False)
        for hub in HUBS:
            self.wait_listening(hub)

    def make_stores(self) -> dict[str, str]:
        """With PostgreSQL, a fresh schema per hub (they share one server, not a schema)."""
        if not self.db_url:
            return {}
        base = _without_options(self.db_url)
        tag = "soak_" + uuid.uuid4().hex[:8]
        sep = "&" if "?" in base else "?"
        admin = create_engine(_driver(base), isolation_level="AUTOCOMMIT", poolclass=NullPool)
        urls: dict[str, str] = {}
        try:
            with admin.connect() as conn:
                for hub in HUBS:
                    schema = f"{tag}_{TIER_NAMES[hub]}"
                    conn.execute(text(f'CREATE SCHEMA "{schema}"'))
                    self.schemas.append(schema)
                    urls[hub] = f"{base}{sep}options=-csearch_path%3D{schema}"
        finally:
            admin.dispose()
        return urls

    def drop_stores(self) -> None:
        for engine in self.engines.values():
            engine.dispose()
        if not (self.db_url and self.schemas):
            return
        admin = create_engine(
            _driver(_without_options(self.db_url)), isolation_level="AUTOCOMMIT", poolclass=NullPool
        )
        try:
            with admin.connect() as conn:
                for schema in self.schemas:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        finally:
            admin.dispose()

    def start(self, hub: str, *, wait: bool = True) -> None:
        server = self.servers[hub]
        server.log = (self.root / f"{TIER_NAMES[hub]}.log").open("ab")
        server.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "node",
                "serve",
                "--port",
                str(server.port),
                "--home",
                str(server.home),
            ],
            stdout=subprocess.DEVNULL,
            stderr=server.log,
            env=_env(),
        )
        if wait:
            self.wait_listening(hub)

    def wait_listening(self, hub: str) -> None:
        server = self.servers[hub]
        deadline = time.monotonic() + 120  # a loaded machine starts Python slowly
        while True:
            try:
                with socket.create_connection(("127.0.0.1", server.port), timeout=0.3):
                    return
            except OSError:
                assert server.proc is not None and server.proc.poll() is None, (
                    f"the {TIER_NAMES[hub]} did not start"
                )
                assert time.monotonic() < deadline, f"the {TIER_NAMES[hub]} did not start in time"
                time.sleep(0.05)

    def stop(self, hub: str, *, hard: bool) -> None:
        server = self.servers[hub]
        if server.proc is not None:
            server.proc.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
            server.proc.wait()
            server.proc = None
        if server.log is not None:
            server.log.close()
            server.log = None

    def stop_all(self) -> None:
        for hub in HUBS:
            if hub in self.servers:
                self.stop(hub, hard=False)
        if self.forker is not None:
            self.forker.stop()

    def kill_server(self, hub: str, kind: str, unfinished: Callable[[], bool]) -> None:
        """kill -9 a hub's server, noting whether a transfer was unfinished; restart it."""
        outstanding = unfinished()
        self.stop(hub, hard=True)
        self.faults[kind] += 1
        self.outstanding[kind] += outstanding
        self.start(hub)

    # -- reading the stores (in this process: cheap enough to poll) ----------------------

    def heads(self, tier: str) -> dict[str, tuple[int, str]]:
        with self.engines[tier].connect() as conn:
            rows = conn.execute(text("SELECT origin, seq, hash FROM heads")).all()
        return {r.origin: (int(r.seq), str(r.hash)) for r in rows}

    def seq(self, tier: str, origin: str | None = None) -> int:
        return self.heads(tier).get(origin or tier, (0, ""))[0]

    def hash_at(self, tier: str, origin: str, seq: int) -> str | None:
        with self.engines[tier].connect() as conn:
            value = conn.execute(
                text("SELECT hash FROM entries WHERE origin = :o AND seq = :s"),
                {"o": origin, "s": seq},
            ).scalar()
        return None if value is None else str(value)

    def rows(self, tier: str, origin: str) -> int:
        with self.engines[tier].connect() as conn:
            count = conn.execute(
                text("SELECT count(*) FROM entries WHERE origin = :o"), {"o": origin}
            ).scalar()
        return int(count or 0)

    def behind(self, lower: str, upper: str) -> bool:
        """Whether ``upper`` holds less than ``lower`` of some origin of ``lower``'s subtree
        (read the upper tier first: the lower one only grows meanwhile)."""
        held = self.heads(upper)
        return any(
            held.get(origin, (0, ""))[0] < seq
            for origin, (seq, _) in self.heads(lower).items()
            if _in_subtree(origin, lower)
        )

    def wait_until(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def relay(self, lower: str, upper: str, timeout: float = SETTLE_S) -> None:
        """Let ``lower``'s server relay to ``upper``; after ``timeout`` (a hub backing off
        from a parent that was dead), relay with ``guantong sync --once``."""
        if not self.wait_until(lambda: not self.behind(lower, upper), timeout):
            self.by_hand += 1
            self.gt("sync", "--once", home=lower, check=False)

    # -- one iteration -------------------------------------------------------------------

    def batch(self, n: int) -> bytes:
        from contracts.samples import sample_records

        seed = self.rng.randrange(1 << 30)
        return b"".join(
            orjson.dumps(r) + b"\n" for r in sample_records("opinion", n, seed=seed, origin=STATION)
        )

    def iteration(self, fault: str) -> None:
        before = self.seq(STATION)
        count = self.rng.randint(20, 200)
        records = self.batch(count)
        if fault == "station put":
            put = self.spawn("put", "opinion", "--offline", home=STATION, input=records)
            self.faults[fault] += self.kill_when(put, self.store_open(STATION), 0.5)
            after = self.seq(STATION)
            assert after in (before, before + count), "a batch was half written"
        else:
            self.gt("put", "opinion", "--offline", home=STATION, input=records)

        if fault == "station sync":
            sync = self.spawn("sync", "--once", home=STATION)
            self.faults[fault] += self.kill_when(sync, _has_socket, 0.5)
        elif fault == "county server (station push)":
            sync = self.spawn("sync", "--once", home=STATION)
            delay = self.rng.uniform(0.0, 0.5)
            deadline = time.monotonic() + 120
            while sync.poll() is None and not _has_socket(sync.pid):
                assert time.monotonic() < deadline, "the station's sync hung"
                time.sleep(0.005)
            time.sleep(delay)
            self.kill_server(COUNTY, fault, lambda: sync.poll() is None)
            sync.wait(timeout=120)
        elif fault == "county import":
            bundle = self.root / "station.gtb"
            self.gt("export", "--out", str(bundle), home=STATION)
            self.stop(COUNTY, hard=False)
            imported = self.spawn("import", str(bundle), home=COUNTY)
            self.faults[fault] += self.kill_when(imported, self.store_open(COUNTY), 0.5)
            self.start(COUNTY)
        elif fault in ("county server (relay to city)", "city server", "province server"):
            # A hub relays a second after it took a push: kill it, or the tier above, a
            # random time after the push (or the relay) reached the tier below it.
            if fault == "county server (relay to city)":
                hub, reached = COUNTY, COUNTY
            elif fault == "city server":  # while it takes the relay, or while it relays
                hub, reached = CITY, self.rng.choice((COUNTY, CITY))
            else:
                hub, reached = PROVINCE, CITY
            delay = self.rng.uniform(0.0, 1.6)
            target = self.seq(STATION)
            sync = self.spawn("sync", "--once", home=STATION)
            self.wait_until(lambda: self.seq(reached, STATION) >= target, SETTLE_S + 60)
            time.sleep(delay)
            # the transfers this hub takes part in: from the tier below, to the tier above
            below = CHAIN[CHAIN.index(hub) - 1]
            above = CHAIN[CHAIN.index(hub) + 1] if hub != PROVINCE else None
            self.kill_server(
                hub,
                fault,
                lambda: (
                    (below != STATION and self.behind(below, hub))
                    or (above is not None and self.behind(hub, above))
                ),
            )
            sync.wait(timeout=120)
        elif fault == "city import":
            self.stop(CITY, hard=False)
            self.gt("sync", "--once", home=STATION, check=False)
            bundle = self.root / "county.gtb"
            self.gt("export", "--out", str(bundle), home=COUNTY)
            imported = self.spawn("import", str(bundle), home=CITY)
            self.faults[fault] += self.kill_when(imported, self.store_open(CITY), 0.5)
            self.start(CITY)
        elif fault == "province import":
            self.stop(PROVINCE, hard=False)
            self.gt("sync", "--once", home=STATION, check=False)
            self.relay(COUNTY, CITY)
            bundle = self.root / "city.gtb"
            self.gt("export", "--out", str(bundle), home=CITY)
            imported = self.spawn("import", str(bundle), home=PROVINCE)
            self.faults[fault] += self.kill_when(imported, self.store_open(PROVINCE), 0.5)
            self.start(PROVINCE)
        else:
            self.gt("sync", "--once", home=STATION, check=False)
        verifying = self.verify()  # while the hubs relay: a store verifies at any moment
        self.relay(COUNTY, CITY)
        self.relay(CITY, PROVINCE)
        self.check(verifying)

    def sync_empty(self, *tiers: str) -> None:
        """``guantong sync --once`` at ``tiers`` side by side, until none has anything its
        parent lacks."""
        left = list(tiers)
        for _ in range(10):
            commands = [self.command("sync", "--once", "--json", home=tier) for tier in left]
            results = self.collect(self.submit(commands))
            left = [
                tier
                for tier, result in zip(left, results, strict=True)
                if result.returncode != 0 or json.loads(result.stdout)["backlog"] != 0
            ]
            if not left:
                return
        raise AssertionError(f"{left} still have a backlog: {results[0].stderr.decode()}")

    def verify(self) -> int | list[subprocess.Popen[bytes]]:
        """``guantong verify`` of every store, all at once."""
        return self.submit([self.command("verify", "--json", home=tier) for tier in CHAIN])

    def check(self, verifying: int | list[subprocess.Popen[bytes]] | None = None) -> None:
        """Every store verifies; every tier holds a prefix of the tier below, per origin."""
        if verifying is None:
            verifying = self.verify()
        views = {tier: self.heads(tier) for tier in reversed(CHAIN)}  # the upper tiers first
        for lower, upper in HOPS:
            for origin, (seq, digest) in views[upper].items():
                if not _in_subtree(origin, lower) or seq == 0:
                    continue
                below = views[lower].get(origin, (0, ""))[0]
                assert seq <= below, f"{upper} holds {origin} to seq {seq}, {lower} to {below}"
                assert self.hash_at(lower, origin, seq) == digest, (
                    f"{upper} and {lower} differ on {origin} seq {seq}"
                )
        for tier, result in zip(CHAIN, self.collect(verifying), strict=True):
            assert result.returncode == 0, f"guantong verify at {tier}: {result.stderr.decode()}"

    def heal(self) -> dict[str, dict[str, int]]:
        """The station syncs what it still holds; the hubs must relay it on their own (their
        uplinks run at least every 15 s, and backoff ends once a parent answered); then
        every tier syncs until its backlog is empty (a cursor a kill left behind is caught
        up by a resend). Counts, per hub, what it lacks and what it holds twice of every
        origin below it."""
        self.sync_empty(STATION)
        relayed = self.wait_until(
            lambda: not any(self.behind(lower, upper) for lower, upper in HOPS[1:]), HEAL_S
        )
        assert relayed, f"the hubs did not relay everything on their own in {HEAL_S:.0f} s"
        for _ in range(5):
            self.sync_empty(*HUBS[:-1])
            if not any(self.behind(lower, upper) for lower, upper in HOPS):
                break
        self.check()
        figures: dict[str, dict[str, int]] = {}
        for hub in HUBS:
            held = self.heads(hub)
            lost = duplicated = 0
            for origin in CHAIN[: CHAIN.index(hub)]:
                own = self.seq(origin)
                seq, head = held.get(origin, (0, ""))
                assert seq <= own, f"{hub} holds {origin} to seq {seq}, beyond its {own}"
                if seq:
                    assert self.hash_at(origin, origin, seq) == head, (
                        f"{hub} holds another log of {origin} than {origin} itself"
                    )
                lost += own - seq
                duplicated += self.rows(hub, origin) - seq
            figures[TIER_NAMES[hub]] = {
                "entries": held.get(STATION, (0, ""))[0],
                "lost": lost,
                "duplicated": duplicated,
            }
        return figures

    def logs(self) -> Iterator[tuple[str, str]]:
        for hub in HUBS:
            path = self.root / f"{TIER_NAMES[hub]}.log"
            if path.is_file():
                yield TIER_NAMES[hub], path.read_text("utf-8", "replace")[-4000:]


def _in_subtree(origin: str, node: str) -> bool:
    return origin == node or origin.startswith(node + ".")


def _open_files(pid: int) -> list[str]:
    """What a process holds open (Linux); empty when it is gone or /proc is not there."""
    folder = f"/proc/{pid}/fd"
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    targets = []
    for name in names:
        with contextlib.suppress(OSError):
            targets.append(os.readlink(f"{folder}/{name}"))
    return targets


def _has_socket(pid: int) -> bool:
    """Whether the process has a socket open; without /proc, at once (kills then land at
    random in the interpreter's start as well)."""
    if not os.path.isdir("/proc/self/fd"):
        return True
    return any(t.startswith("socket:") for t in _open_files(pid))


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GUANTONG_")}


def _driver(url: str) -> str:
    from node.db import normalise_url

    return normalise_url(url)


def _without_options(url: str) -> str:
    """The URL without an ``options`` query parameter (a search_path of its own)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def plan(iterations: int, seed: int) -> list[str]:
    """The fault of every iteration, drawn before the run (so a seed names its faults)."""
    rng = random.Random(seed)
    return [rng.choice(FAULTS) for _ in range(iterations)]


def run(
    iterations: int,
    seed: int = 1,
    db_url: str | None = None,
    progress: Callable[[int, Counter[str]], None] | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        soak = Soak(Path(tmp), random.Random(seed + 1), db_url)
        try:
            soak.build()
            for done, fault in enumerate(plan(iterations, seed), 1):
                soak.iteration(fault)
                if progress is not None:
                    progress(done, soak.faults)
            tiers = soak.heal()
            entries = soak.seq(STATION)
        except BaseException:
            for name, tail in soak.logs():
                print(f"--- {name} server log (tail) ---\n{tail}", file=sys.stderr)
            raise
        finally:
            soak.stop_all()
            soak.drop_stores()
        return {
            "iterations": iterations,
            "faults": dict(soak.faults),
            "outstanding": dict(soak.outstanding),
            "by_hand": soak.by_hand,
            "entries": entries,
            "tiers": tiers,
            "lost": sum(t["lost"] for t in tiers.values()),
            "duplicated": sum(t["duplicated"] for t in tiers.values()),
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--db",
        default=None,
        help="PostgreSQL server for the hubs (each gets a fresh schema, dropped at the end)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()

    def progress(done: int, faults: Counter[str]) -> None:
        if done % 10 == 0 and done < args.iterations:
            took = time.monotonic() - started
            print(
                f"  {done} iterations, {sum(faults.values())} kills, {took:.0f} s", file=sys.stderr
            )

    figures = run(args.iterations, args.seed, args.db, progress)
    took = time.monotonic() - started
    backend = "hubs on PostgreSQL" if args.db else "SQLite"
    print(f"crash soak ({backend}): {figures['iterations']} iterations in {took:.0f} s")
    print("  faults injected (processes killed):")
    for kind in FAULTS[:-1]:
        killed = figures["faults"].get(kind, 0)
        note = ""
        if kind in figures["outstanding"]:
            note = f" ({figures['outstanding'][kind]} with a transfer unfinished)"
        print(f"    {kind}: {killed}{note}")
    print(f"  relays run by hand (a hub backing off): {figures['by_hand']}")
    print(f"  station entries: {figures['entries']}")
    for tier, counts in figures["tiers"].items():
        print(
            f"  {tier}: holds {counts['entries']} station entries; "
            f"lost {counts['lost']}, duplicated {counts['duplicated']}"
        )
    print(f"  lost: {figures['lost']}; duplicated: {figures['duplicated']}")
    if figures["lost"] or figures["duplicated"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
