"""A simulated province on one machine: real hubs, simulated stations (``make bench-province``).

Topology: one province, ``--cities`` cities, ``--counties`` counties per city — every hub a
real ``guantong serve`` process with its own home and store (the province's on PostgreSQL
with ``--province-db``) — and ``--stations`` stations spread evenly over the counties. The
stations are not processes: each is a key, an enrollment and a hash chain held in this
process, which writes real entries, signs real heads and pushes real segments over HTTP to
its county, exactly as ``guantong sync`` would. Counties relay to cities, cities to the
province, by their own uplinks, as in production.

Phases, each printed with its figures:

1. **Set-up** (timed, not a goal): hub homes initialised and enrolled by file; servers
   started; every station enrolled online with a one-time token from its county (the
   county writes its ``node_cert`` record, which travels up so the province learns the
   key); wait until the province knows every station key.
2. **Sustained**: every station pushes ``--sustain-pushes`` segments of
   ``--sustain-entries`` entries, one after the other (all stations online, many small
   pushes); the rate is what the province receives.
3. **Catch-up**: every station was offline for a day and holds ``--backlog`` entries
   (written beforehand, not timed); all reconnect at once; timed until the province holds
   every station's head, with how busy the machine's cores were in its first 10 %, middle
   80 % and last 10 %. Goal: 1,000,000 entries (10,000 × 100) in < 120 s.
4. **Queries**: ``/v1/root`` at the province (whole province, one city with its children),
   and the acceptance check of one city against the live city hub (goal < 30 s).
5. **Memory**: peak RSS (``VmHWM``) of every hub process (goal: none above 1 GiB).

Entries are generated before each timed phase (a day's backlog exists before the stations
reconnect), in worker processes, so the clock measures the federation, not the generator.
Arrival is watched in the province's store (its ``heads`` table), one indexed query a
second.

Run ``python -m benchmarks.province --stations 1000,10000`` for the growth table;
``--province-db postgresql://…`` puts the province on PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import text

from benchmarks.pgschema import drop_schema, fresh_schema
from contracts.privacy import project
from contracts.registry import Registry
from contracts.samples import sample_records
from hub.acceptance import accept
from hub.enrollment import answer_enrollment, create_tokens
from node.auth import NodeAuth
from node.cli.scenario import free_port, spawn_server, stop_servers
from node.compression import STATION_GZIP_LEVEL, gzip_body
from node.db import Store
from node.enrollment import enrollment_request, install_enrollment
from node.reconcile import RemoteRoots
from node.runtime import Node
from node.settings import NodeSettings
from node.tasks import issue_task
from node.uplink import RETRY_AFTER_JITTER, parse_retry_after
from schemas.enrollment import sign_proof
from schemas.errors import describe
from schemas.hashing import ZERO_HASH
from schemas.ids import Tier, parent_of, uuid7
from schemas.log import build_entry, sign_head
from schemas.segments import encode_segment
from schemas.signing import Signer
from schemas.times import format_time, parse_time, system_clock

GiB = 1 << 30
CORES = os.cpu_count() or 1


@dataclass(frozen=True)
class Topology:
    cities: int
    counties: int  # per city
    stations: int

    def city_ids(self) -> list[str]:
        return [f"js.c{c:02d}" for c in range(1, self.cities + 1)]

    def county_ids(self) -> list[str]:
        return [f"{city}.k{k:02d}" for city in self.city_ids() for k in range(1, self.counties + 1)]

    def hubs(self) -> list[tuple[str, Tier]]:
        """Parents before children, so each hub can be enrolled by the one above."""
        return [
            ("js", Tier.PROVINCE),
            *((c, Tier.CITY) for c in self.city_ids()),
            *((k, Tier.COUNTY) for k in self.county_ids()),
        ]

    def station_ids(self) -> list[str]:
        counties = self.county_ids()
        return [
            f"{counties[i % len(counties)]}.s{i // len(counties) + 1:04d}"
            for i in range(self.stations)
        ]


@dataclass
class Station:
    """A simulated station: a key, a certificate from its county, and its chain's tip."""

    id: str
    seed: int
    seq: int = 0
    prev: str = ZERO_HASH

    @property
    def county(self) -> str:
        county = parent_of(self.id)
        assert county is not None
        return county

    def signer(self) -> Signer:
        return Signer.from_seed(self.seed.to_bytes(32, "big"))


@dataclass
class Federation:
    root: Path
    topology: Topology
    province_db: str | None
    ports: dict[str, int] = field(default_factory=dict)
    servers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    stations: list[Station] = field(default_factory=list)
    secret: bytes = b""
    tokens: dict[str, str] = field(default_factory=dict)
    nice: dict[Tier, int] = field(default_factory=dict)
    province_workers: int = 1

    def url(self, node_id: str) -> str:
        return f"http://127.0.0.1:{self.ports[node_id]}"

    def home(self, node_id: str) -> Path:
        return self.root / node_id

    # -- set-up --------------------------------------------------------------------------

    def build(self, pool: Any) -> None:
        """Initialise every hub (in parallel), enroll each with its parent by file, and issue
        the station tokens of every county (one transaction per county)."""
        hubs = self.topology.hubs()
        for node_id, _ in hubs:
            port = free_port()
            while port in self.ports.values():  # the OS may hand out a released port again
                port = free_port()
            self.ports[node_id] = port
        inits = []
        for node_id, tier in hubs:
            parent = parent_of(node_id)
            inits.append(
                NodeSettings(
                    home=self.home(node_id),
                    id=node_id,
                    tier=tier,
                    parent_url=self.url(parent) if parent else None,
                    db_url=self.province_db if tier is Tier.PROVINCE else None,
                )
            )
        for _ in pool.imap_unordered(_init_hub, inits, chunksize=4):
            pass
        opened: dict[str, Node] = {}
        try:
            for node_id, tier in hubs:
                node = opened[node_id] = Node.open(NodeSettings(home=self.home(node_id)))
                parent = parent_of(node_id)
                if parent is not None:
                    hub = opened[parent]
                    (token,) = create_tokens(hub, [(node_id, tier)])
                    request = enrollment_request(node, token)
                    install_enrollment(node, token, answer_enrollment(hub, request))
            self.stations = [
                Station(station_id, seed=1_000_003 * (i + 1))
                for i, station_id in enumerate(self.topology.station_ids())
            ]
            by_county: dict[str, list[Station]] = {}
            for station in self.stations:
                by_county.setdefault(station.county, []).append(station)
            for county, members in by_county.items():
                tokens = create_tokens(opened[county], [(s.id, Tier.STATION) for s in members])
                self.tokens.update({s.id: t for s, t in zip(members, tokens, strict=True)})
        finally:
            for node in opened.values():
                node.close()

    def start(self) -> None:
        """Every hub as its own ``guantong serve`` process, all started at once."""
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GUANTONG_")}
        env["GUANTONG_LOG_LEVEL"] = "WARNING"
        own = os.getpriority(os.PRIO_PROCESS, 0)  # the hubs inherit it; --nice adds to it
        for node_id, tier in self.topology.hubs():
            with (logs / f"{node_id}.log").open("wb") as log:
                server = self.servers[node_id] = spawn_server(
                    self.home(node_id),
                    self.ports[node_id],
                    log,
                    env,
                    workers=self.province_workers if tier is Tier.PROVINCE else 1,
                )
            if self.nice.get(tier, 0):
                # added to the niceness the hub inherited (lowering it would need
                # privileges); set on the hub's main thread before the interpreter has
                # started any other, so every thread it starts inherits it
                with suppress(ProcessLookupError):  # exited already: reported just below
                    os.setpriority(os.PRIO_PROCESS, server.pid, min(19, own + self.nice[tier]))
        deadline = time.monotonic() + 600
        waiting = dict(self.ports)
        while waiting:
            for node_id, port in list(waiting.items()):
                if self.servers[node_id].poll() is not None:
                    tail = (logs / f"{node_id}.log").read_text()[-2000:]
                    raise RuntimeError(f"{node_id} exited: {tail}")
                with suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                    del waiting[node_id]
            if time.monotonic() > deadline:
                raise RuntimeError(f"hubs did not start: {sorted(waiting)[:5]}")
            time.sleep(0.2)

    async def enroll_stations(self, http: httpx.AsyncClient, concurrency: int) -> None:
        """Online enrollment of every station with its county (``POST /v1/enroll``)."""
        gate = asyncio.Semaphore(concurrency)
        secrets: set[str] = set()

        async def one(station: Station) -> None:
            token = self.tokens[station.id]
            signer = station.signer()
            request = {
                "node": station.id,
                "tier": Tier.STATION.value,
                "key": signer.public_b64u,
                "token": token,
                "proof": sign_proof(signer, station.id, token),
            }
            failures: list[str] = []
            async with gate:
                response = await _retrying(
                    lambda: http.post(f"{self.url(station.county)}/v1/enroll", json=request),
                    failures=failures,
                )
            if response.status_code != 200:
                raise RuntimeError(
                    f"{station.id} enrollment: {response.text[:300]}"
                    + (f" (after {'; '.join(failures)})" if failures else "")
                )
            answer = orjson.loads(response.content)
            if answer["cert"]["key"] != signer.public_b64u:
                raise RuntimeError(f"{station.id}: certificate for another key")
            secrets.add(answer["province_secret"])

        await asyncio.gather(*(one(s) for s in self.stations))
        (secret,) = secrets
        self.secret = secret.encode()

    def stop(self) -> None:
        stop_servers(self.servers.values(), timeout=30)

    def profile(
        self, folder: Path, stations: int, phase: str, profiler: str = "py-spy"
    ) -> list[subprocess.Popen[bytes]]:
        """Sample the province, the first city and its first county until
        :func:`stop_profiles` (development tools, not dependencies). ``py-spy``: Python
        stacks, collapsed, in ``folder/<stations>-<phase>-<node>.txt``; ``perf``: native
        and kernel stacks (CPU time: the interpreter, SQLite, zlib, the kernel's writes
        and page faults, which py-spy cannot see), ``perf record`` data in
        ``….perf`` for ``perf report -i``."""
        folder.mkdir(parents=True, exist_ok=True)
        city = self.topology.city_ids()[0]
        county = next(c for c in self.topology.county_ids() if parent_of(c) == city)

        def command(node_id: str) -> list[str]:
            pid = self.servers[node_id].pid
            name = folder / f"{stations}-{phase}-{node_id}"
            if profiler == "perf":
                # the server's processes as they are now: its workers, if it has any
                pids = ",".join(str(p) for p in _process_tree(pid))
                return ["perf", "record", "--quiet", "-F", "499", "-g", "-p", pids,
                        "-o", f"{name}.perf"]  # fmt: skip
            return [
                shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--subprocesses",  # a hub's worker processes, if it has any
                "--pid",
                str(pid),
                "--rate",
                "100",
                # every thread that is running, not only the one holding the GIL:
                # worker threads let go of it inside SQLite, hashing and compression,
                # and --gil would put their CPU on whoever holds the lock meanwhile
                "--format",
                "raw",
                "--output",
                f"{name}.txt",
            ]

        return [
            subprocess.Popen(command(node_id), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for node_id in ("js", city, county)
        ]

    # -- observation ---------------------------------------------------------------------

    def hub_cpu(self) -> dict[str, tuple[float, float]]:
        """Per hub: (user, kernel) CPU seconds used so far, its worker processes included."""
        ticks = os.sysconf("SC_CLK_TCK")
        out: dict[str, tuple[float, float]] = {}
        for node_id, proc in self.servers.items():
            user = system = 0
            for pid in _process_tree(proc.pid):
                with suppress(OSError):
                    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                    user += int(fields[11])
                    system += int(fields[12])
            out[node_id] = (user / ticks, system / ticks)
        return out

    def cpu(self, hubs: dict[str, tuple[float, float]] | None = None) -> dict[str, float]:
        """CPU seconds used so far by each tier's hub processes (``hubs``, from
        :meth:`hub_cpu`, or read now), and by this simulator."""
        out = {"province": 0.0, "city": 0.0, "county": 0.0}
        for node_id, (user, system) in (self.hub_cpu() if hubs is None else hubs).items():
            out[_tier(node_id)] += user + system
        usage = os.times()
        out["stations"] = usage.user + usage.system
        return out

    def rss(self) -> dict[str, tuple[int, int]]:
        """Per hub: (peak, current) resident set size in bytes; for a hub with worker
        processes, the sums over its processes (the sum of peaks bounds the peak of the
        sum from above)."""
        out: dict[str, tuple[int, int]] = {}
        for node_id, proc in self.servers.items():
            peak = current = 0
            for pid in _process_tree(proc.pid):
                with suppress(OSError):
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        name, _, value = line.partition(":")
                        if name == "VmHWM":
                            peak += int(value.split()[0]) * 1024
                        elif name == "VmRSS":
                            current += int(value.split()[0]) * 1024
            out[node_id] = (peak, current)
        return out


def _tier(node_id: str) -> str:
    return ("province", "city", "county")[min(node_id.count("."), 2)]


def _process_tree(pid: int) -> list[int]:
    """``pid`` and every live process below it (Linux ``/proc/<pid>/task/*/children``)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        with suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                with suppress(OSError):
                    queue.extend(int(c) for c in (task / "children").read_text().split())
    return found


@contextmanager
def province_store(fed: Federation) -> Iterator[Store]:
    settings = NodeSettings(home=fed.home("js"))
    store = Store(settings.database_url)
    try:
        yield store
    finally:
        store.dispose()


def tasks_down(fed: Federation, timeout: float = 300.0) -> float:
    """Seconds from a ``subtree`` notice stored at the province until every city and
    county holds it: each pulls its parent's task feed on its own (a long poll), so this
    is how long work takes to come down two tiers. Issued from this process, as the
    command line beside the province's server would: that server learns of it from the
    task stamp."""
    province = Node.open(NodeSettings(home=fed.home("js")))
    try:
        started = time.perf_counter()
        task = issue_task(
            province, target="js", kind="notice", payload={"text": "全省通知"}, subtree=True
        )
    finally:
        province.close()
    below = [node_id for node_id, tier in fed.topology.hubs() if tier is not Tier.PROVINCE]
    stores = {
        node_id: sqlite3.connect(f"file:{fed.home(node_id) / 'node.db'}?mode=ro", uri=True)
        for node_id in below
    }
    try:
        waiting = set(below)
        while waiting:
            for node_id in sorted(waiting):
                query = "SELECT 1 FROM tasks WHERE task_id = ?"
                if stores[node_id].execute(query, (task.id,)).fetchone():
                    waiting.discard(node_id)
            elapsed = time.perf_counter() - started
            if elapsed > timeout:
                raise RuntimeError(f"{len(waiting)} hubs lack the notice after {elapsed:.0f} s")
            if waiting:
                time.sleep(0.05)
        return time.perf_counter() - started
    finally:
        for conn in stores.values():
            conn.close()


class Watch:
    """Samples what the province holds of the stations, once every ``period`` seconds."""

    QUERY = text(
        "SELECT coalesce(sum(seq), 0), count(*) FROM heads "
        "WHERE origin LIKE 'js.%.%.%' AND origin NOT LIKE 'js.%.%.%.%'"
    )
    KEYS = text(
        "SELECT count(*) FROM keys WHERE node LIKE 'js.%.%.%' AND node NOT LIKE 'js.%.%.%.%'"
    )

    def __init__(self, store: Store, period: float = 0.5) -> None:
        self.store = store
        self.period = period
        self.samples: list[tuple[float, int]] = []
        self.machine: list[tuple[int, int] | None] = []
        """Per sample: the machine's busy and total CPU time so far (``/proc/stat``)."""
        self.available: list[int] = []
        """Per sample: the memory the kernel could give without swapping (``MemAvailable``)."""
        self.stalls: list[dict[str, int]] = []
        """At the first and the last sample: the kernel's stall counters (:func:`stalls`)."""

    def held(self) -> int:
        with self.store.read() as conn:
            total, _ = conn.execute(self.QUERY).one()
        return int(total)

    def keys(self) -> int:
        with self.store.read() as conn:
            return int(conn.execute(self.KEYS).scalar_one())

    def until(self, target: int, timeout: float) -> float:
        """Seconds until the province holds ``target`` station entries in all."""
        started = time.perf_counter()
        self.samples, self.machine, self.available = [], [], []
        self.stalls = [stalls()]
        while True:
            held = self.held()
            now = time.perf_counter() - started
            self.samples.append((now, held))
            self.machine.append(machine_cpu())
            available = memory_available()
            if available is not None:
                self.available.append(available)
            if held >= target:
                self.stalls.append(stalls())
                return now
            if now > timeout:
                raise RuntimeError(f"the province holds {held:,} of {target:,} after {now:.0f} s")
            time.sleep(self.period)

    def steady_rate(self, base: int, target: int) -> float | None:
        """Entries/s while the province received the middle 80 % of the phase; None when
        that took less than two sampling periods (too short to measure)."""
        _, middle, _ = self.phases(base, target)
        if middle < 2 * self.period:
            return None
        return 0.8 * (target - base) / middle

    def phases(self, base: int, target: int) -> tuple[float, float, float]:
        """Seconds the province took for the first 10 % of the phase (the pipeline
        filling), the middle 80 % and the last 10 % (the tail)."""
        i_lo, i_hi = self._marks(base, target)
        t_lo, t_hi = self.samples[i_lo][0], self.samples[i_hi][0]
        return t_lo, t_hi - t_lo, self.samples[-1][0] - t_hi

    def busy(self, base: int, target: int) -> tuple[float, float, float] | None:
        """The share of the whole machine's CPU time that was busy (every process: the
        hubs, this simulator, a PostgreSQL server) during the first 10 %, the middle 80 %
        and the last 10 % of the phase; None without ``/proc/stat`` or when a part fell
        between two samples."""
        i_lo, i_hi = self._marks(base, target)
        marks = [self.machine[i] for i in (0, i_lo, i_hi, len(self.machine) - 1)]
        shares = []
        for start, end in itertools.pairwise(marks):
            if start is None or end is None or end[1] <= start[1]:
                return None
            shares.append((end[0] - start[0]) / (end[1] - start[1]))
        first, middle, last = shares
        return first, middle, last

    def stalled(self) -> dict[str, float]:
        """The share of the phase's wall time in which some task waited for memory (its
        pages reclaimed or read back) and for I/O, from the kernel's pressure counters;
        empty where the kernel has none."""
        if len(self.stalls) < 2 or not self.samples or self.samples[-1][0] <= 0:
            return {}
        first, last = self.stalls
        seconds = self.samples[-1][0]
        return {kind: (last[kind] - first[kind]) / 1e6 / seconds for kind in first if kind in last}

    def _marks(self, base: int, target: int) -> tuple[int, int]:
        """The samples at which the province first held 10 % and 90 % of the phase."""
        lo, hi = base + 0.1 * (target - base), base + 0.9 * (target - base)
        i_lo = next(i for i, (_, h) in enumerate(self.samples) if h >= lo)
        i_hi = next(i for i, (_, h) in enumerate(self.samples) if h >= hi)
        return i_lo, i_hi


def machine_cpu() -> tuple[int, int] | None:
    """The machine's busy and total CPU time so far, in clock ticks, from ``/proc/stat``
    (idle and I/O wait count as not busy); None where there is no such file."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    total = sum(ticks[:8])  # user … steal; guest time is already in user
    return total - ticks[3] - ticks[4], total


def memory_available() -> int | None:
    """Bytes of memory the kernel could hand out without swapping (``MemAvailable`` in
    ``/proc/meminfo``: free memory and the page cache it can drop); None without it."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def stalls() -> dict[str, int]:
    """Microseconds in which some task stalled on memory and on I/O so far (the ``some``
    line of ``/proc/pressure/memory`` and ``/proc/pressure/io``); missing kinds where the
    kernel does not account pressure."""
    out: dict[str, int] = {}
    for kind in ("memory", "io"):
        try:
            with open(f"/proc/pressure/{kind}", encoding="ascii") as pressure:
                line = pressure.readline()
        except OSError:
            continue
        with suppress(KeyError, ValueError):  # a line of another form: not counted
            fields = dict(f.split("=", 1) for f in line.split()[1:])
            out[kind] = int(fields["total"])
    return out


# -- entry generation, in worker processes ---------------------------------------------


def _templates(secret: bytes) -> list[dict[str, Any]]:
    registry = Registry.default()
    cv = registry.current("opinion")
    records = sample_records("opinion", 400, seed=3)
    return [
        project({k: v for k, v in r.items() if k != "id"}, cv.privacy, secret)[0] for r in records
    ]


_POOL_STATE: dict[str, Any] = {}


def _init_hub(settings: NodeSettings) -> None:
    Node.init(settings).close()


def _pool_init(secret: bytes) -> None:
    registry = Registry.default()
    _POOL_STATE["version"] = registry.current("opinion").version
    _POOL_STATE["templates"] = _templates(secret)


def _generate(
    job: tuple[list[tuple[str, int, int, str]], int, int, str, float],
) -> list[tuple[str, list[bytes], int, str]]:
    """Per station: ``pushes`` gzip bodies of ``per_push`` new entries each."""
    stations, pushes, per_push, start, spacing = job
    version = _POOL_STATE["version"]
    t0 = parse_time(start)
    templates = [_as_of(t, t0) for t in _POOL_STATE["templates"]]
    out = []
    for station_id, seed, seq, prev in stations:
        # record ids of one station's own: one seed for every batch of stations would give
        # stations of different batches the same ids, and a hub keeps a record id for
        # the first origin that wrote it
        rng = random.Random(f"{station_id}/{seq}")
        signer = Signer.from_seed(seed.to_bytes(32, "big"))
        bodies = []
        for push in range(pushes):
            raws = []
            first = seq + 1
            for n in range(per_push):
                seq += 1
                at = t0 + timedelta(seconds=spacing * (push * per_push + n))
                moment = format_time(at)
                _, raw, prev = build_entry(
                    origin=station_id,
                    seq=seq,
                    prev=prev,
                    time=moment,
                    contract="opinion",
                    version=version,
                    # a new record's id, as `Node.put` makes it: UUIDv7 of the moment
                    record_id=uuid7(int(at.timestamp() * 1000), rng=rng),
                    op="put",
                    data=templates[rng.randrange(len(templates))],
                )
                raws.append(raw)
            head = sign_head(signer, origin=station_id, seq=seq, head=prev, time=moment)
            bodies.append(gzip_body(encode_segment(head, first, raws), STATION_GZIP_LEVEL))
        out.append((station_id, bodies, seq, prev))
    return out


_MOMENTS = ("received_at", "accepted_at", "assigned_at", "resolved_at", "closed_at")


def _as_of(record: dict[str, Any], moment: Any) -> dict[str, Any]:
    """``record`` moved in time so that its latest change happened on ``moment``'s day:
    a day's entries record that day's work (opinions received, handled or closed that
    day), so they fall on the days a real day's would, not over the whole year."""
    times = {k: parse_time(record[k]) for k in _MOMENTS if isinstance(record.get(k), str)}
    if not times:
        return record
    shift = moment - max(times.values())
    return {**record, **{k: format_time(t + shift) for k, t in times.items()}}


def time_after(moment: str | None) -> str:
    """Now, and strictly after ``moment`` (entry times must follow the certificate)."""
    now = system_clock()
    if moment is not None and format_time(now) <= moment:
        now = parse_time(moment) + timedelta(milliseconds=1)
    return format_time(now)


def generate(
    fed: Federation, pool: Any, pushes: int, per_push: int, start: str
) -> dict[str, list[bytes]]:
    """Write ``pushes × per_push`` entries for every station, timed between ``start``
    (after the stations' certificates) and now; returns the push bodies."""
    span = (system_clock() - parse_time(start)).total_seconds()
    spacing = max(span, 0.0) / max(pushes * per_push, 1)
    chunk = 250
    jobs = [
        (
            [(s.id, s.seed, s.seq, s.prev) for s in fed.stations[i : i + chunk]],
            pushes,
            per_push,
            start,
            spacing,
        )
        for i in range(0, len(fed.stations), chunk)
    ]
    by_id = {s.id: s for s in fed.stations}
    bodies: dict[str, list[bytes]] = {}
    for part in pool.imap_unordered(_generate, jobs):
        for station_id, station_bodies, seq, prev in part:
            by_id[station_id].seq, by_id[station_id].prev = seq, prev
            bodies[station_id] = station_bodies
    return bodies


# -- pushing ---------------------------------------------------------------------------


async def _retrying(
    send: Any, attempts: int = 30, failures: list[str] | None = None
) -> httpx.Response:
    """The uplink's rule: back off on 429/503/5xx and connection errors, as the answer's
    ``Retry-After`` says (stretched by up to half again) or exponentially; else answer.
    ``failures`` collects what each failed attempt met."""
    delay = 0.2
    for attempt in range(attempts):
        wait = delay
        try:
            response: httpx.Response = await send()
        except httpx.HTTPError as exc:
            if failures is not None:
                failures.append(describe(exc))
            if attempt == attempts - 1:
                raise
        else:
            if response.status_code < 500 and response.status_code != 429:
                return response
            if failures is not None:
                failures.append(f"{response.status_code} {response.text[:200]}")
            asked = parse_retry_after(response.headers.get("retry-after"))
            if asked is not None:
                wait = asked * random.uniform(1.0, 1.0 + RETRY_AFTER_JITTER)
        await asyncio.sleep(wait)
        delay = min(delay * 2, 5.0)
    return response


async def push_all(
    fed: Federation,
    http: httpx.AsyncClient,
    bodies: dict[str, list[bytes]],
    concurrency: int,
    failures: list[str] | None = None,
) -> int:
    """Each station sends its bodies in order; stations run concurrently. Returns the
    pushes answered; ``failures`` collects what every attempt sent again met (a hub's
    ``503 busy``, say), each a request the hubs paid for without taking it in."""
    gate = asyncio.Semaphore(concurrency)
    by_id = {s.id: s for s in fed.stations}
    requests = 0

    async def station_loop(station_id: str) -> None:
        nonlocal requests
        station = by_id[station_id]
        auth = NodeAuth(station_id, station.signer(), system_clock)
        url = f"{fed.url(station.county)}/v1/push"
        headers = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
        for body in bodies[station_id]:
            async with gate:
                response = await _retrying(
                    lambda body=body: http.post(url, content=body, headers=headers, auth=auth),
                    failures=failures,
                )
            requests += 1
            if response.status_code != 200:
                raise RuntimeError(
                    f"{station_id} push: {response.status_code} {response.text[:300]}"
                )
            for result in orjson.loads(response.content)["results"]:
                if result["status"] != "ok":
                    raise RuntimeError(f"{station_id} push refused: {result}")

    order = list(bodies)
    random.Random(5).shuffle(order)
    await asyncio.gather(*(station_loop(s) for s in order))
    return requests


# -- one run ---------------------------------------------------------------------------


@dataclass
class Figures:
    stations: int
    hubs: int
    setup_s: float = 0.0
    enroll_s: float = 0.0
    sustained_entries: int = 0
    sustained_s: float = 0.0
    sustained_rate: float = 0.0
    catchup_entries: int = 0
    catchup_s: float = 0.0
    catchup_rate: float = 0.0
    steady_rate: float | None = None
    """None when the middle 80 % of the catch-up fell between two samples of the watch."""
    root_s: float = 0.0
    root_city_s: float = 0.0
    accept_s: float = 0.0
    accept_passed: bool = False
    task_down_s: float = 0.0
    """From a notice issued at the province to the moment every hub below held it."""
    rss: dict[str, tuple[int, int]] = field(default_factory=dict)
    catchup_cpu: dict[str, float] = field(default_factory=dict)
    catchup_kernel: dict[str, float] = field(default_factory=dict)
    """Per tier: the share of its catch-up CPU spent in the kernel (system time)."""
    catchup_busiest: dict[str, tuple[str, float]] = field(default_factory=dict)
    """Per tier: the hub that spent the most CPU in the catch-up, and its CPU seconds."""
    catchup_retried: list[str] = field(default_factory=list)
    """What each push sent again in the catch-up met (``503 busy…``, a refused connection)."""
    sustained_cpu: dict[str, float] = field(default_factory=dict)
    idle_cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds per tier while no station pushed (background jobs), per minute."""
    busy: tuple[float, float, float] | None = None
    """The machine's busy share in the catch-up's first 10 %, middle 80 % and last 10 %."""
    least_available: int | None = None
    """The least memory the kernel could hand out during the catch-up (bytes)."""
    stalled: dict[str, float] = field(default_factory=dict)
    """The share of the catch-up in which some task stalled on ``memory``, on ``io``."""
    processes: dict[str, int] = field(default_factory=dict)
    """Each hub's processes at the end (a server with workers: the master and its workers)."""
    niceness: dict[str, int] = field(default_factory=dict)
    """Each hub's niceness as the kernel reports it once the hubs serve (``--nice``)."""

    def peak(self, tier: str) -> int:
        return max((p for n, (p, _) in self.rss.items() if _tier(n) == tier), default=0)


def run(args: argparse.Namespace, stations: int) -> Figures:
    topology = Topology(args.cities, args.counties, stations)
    root = Path(tempfile.mkdtemp(prefix="guantong-province-"))
    schema = fresh_schema(args.province_db, "province") if args.province_db else None
    fed = Federation(
        root,
        topology,
        schema[1] if schema else None,
        nice=args.nice,
        province_workers=args.province_workers,
    )
    figures = Figures(stations, len(topology.hubs()))
    say = _say(stations)
    ctx = multiprocessing.get_context("fork")
    try:
        started = time.perf_counter()
        with ctx.Pool(args.generators) as pool:
            fed.build(pool)
        fed.start()
        figures.setup_s = time.perf_counter() - started
        figures.niceness = {
            node_id: os.getpriority(os.PRIO_PROCESS, server.pid)
            for node_id, server in fed.servers.items()
        }
        say(
            f"{figures.hubs} hub processes initialised, enrolled and serving "
            f"({figures.setup_s:.1f} s)"
        )
        limits = httpx.Limits(
            max_connections=args.concurrency, max_keepalive_connections=args.concurrency
        )
        with province_store(fed) as store:
            watch = Watch(store)
            started = time.perf_counter()
            asyncio.run(_enroll(fed, limits, min(args.concurrency, args.enroll_concurrency)))
            enrolled = time_after(None)
            waited = _wait_keys(watch, stations, timeout=args.timeout)
            figures.enroll_s = time.perf_counter() - started
            say(
                f"{stations:,} stations enrolled online; the province knows every key "
                f"({figures.enroll_s:.1f} s, of which {waited:.1f} s relaying certificates)"
            )
            with ctx.Pool(args.generators, initializer=_pool_init, initargs=(fed.secret,)) as pool:
                gen_started = time.perf_counter()
                bodies = generate(fed, pool, args.sustain_pushes, args.sustain_entries, enrolled)
                written = time_after(None)
                say(
                    f"sustained load written ({time.perf_counter() - gen_started:.1f} s, not timed)"
                )
                base = watch.held()
                target = base + stations * args.sustain_pushes * args.sustain_entries
                t0 = time.perf_counter()
                cpu_before = fed.cpu()
                profilers = (
                    fed.profile(args.profile, stations, "sustained", args.profiler)
                    if args.profile
                    else []
                )
                requests = asyncio.run(_push(fed, bodies, limits, args.concurrency))
                sent_s = time.perf_counter() - t0
                figures.sustained_s = watch.until(target, args.timeout) + sent_s
                stop_profiles(profilers)
                figures.sustained_entries = target - base
                figures.sustained_rate = figures.sustained_entries / figures.sustained_s
                say(
                    f"sustained: {figures.sustained_entries:,} entries in {requests:,} pushes of "
                    f"{args.sustain_entries}; the province held them all after "
                    f"{figures.sustained_s:.1f} s = {figures.sustained_rate:,.0f} entries/s"
                )
                figures.sustained_cpu = {k: v - cpu_before[k] for k, v in fed.cpu().items()}
                say(
                    "sustained CPU ms per push: "
                    + ", ".join(
                        f"{k} {v * 1000 / max(requests, 1):.1f}"
                        for k, v in figures.sustained_cpu.items()
                    )
                )
                del bodies
                gen_started = time.perf_counter()
                idle_before = fed.cpu()
                bodies = generate(fed, pool, 1, args.backlog, time_after(written))
                idle_s = time.perf_counter() - gen_started
                figures.idle_cpu = {
                    k: (v - idle_before[k]) * 60 / idle_s
                    for k, v in fed.cpu().items()
                    if k != "stations"
                }
                say(
                    f"a day's backlog written offline ({idle_s:.1f} s, not timed); meanwhile "
                    "the idle hubs used "
                    + ", ".join(f"{k} {v:.1f}" for k, v in figures.idle_cpu.items())
                    + " CPU-s per minute"
                )
            base = watch.held()
            target = base + stations * args.backlog
            hubs_before = fed.hub_cpu()
            cpu_before = fed.cpu(hubs_before)
            profilers = (
                fed.profile(args.profile, stations, "catchup", args.profiler)
                if args.profile
                else []
            )
            sender = threading.Thread(
                target=asyncio.run,
                args=(_push(fed, bodies, limits, args.concurrency, figures.catchup_retried),),
            )
            sender.start()
            figures.catchup_s = watch.until(target, args.timeout)
            sender.join()
            stop_profiles(profilers)
            hubs_after = fed.hub_cpu()
            figures.catchup_cpu = {k: v - cpu_before[k] for k, v in fed.cpu(hubs_after).items()}
            figures.catchup_kernel, figures.catchup_busiest = _by_hub(hubs_before, hubs_after)
            figures.catchup_entries = target - base
            figures.catchup_rate = figures.catchup_entries / figures.catchup_s
            figures.steady_rate = watch.steady_rate(base, target)
            first, middle, tail = watch.phases(base, target)
            figures.busy = watch.busy(base, target)
            steady = (
                "too short for a steady rate"
                if figures.steady_rate is None
                else f"{figures.steady_rate:,.0f}/s steady"
            )
            say(
                f"catch-up: {figures.catchup_entries:,} entries through counties and cities "
                f"into the province in {figures.catchup_s:.1f} s "
                f"({figures.catchup_rate:,.0f} entries/s; {steady}); "
                f"first 10 % {first:.1f} s, middle 80 % {middle:.1f} s, last 10 % {tail:.1f} s"
            )
            if figures.busy is not None:
                say(
                    "the machine's cores busy (every process"
                    + (", the PostgreSQL server included" if args.province_db else "")
                    + "): "
                    + ", ".join(
                        f"{name} {share:.0%}"
                        for name, share in zip(
                            ("first 10 %", "middle 80 %", "last 10 %"), figures.busy, strict=True
                        )
                    )
                )
            del bodies
            say(
                "catch-up CPU seconds: "
                + ", ".join(f"{k} {v:.1f}" for k, v in figures.catchup_cpu.items())
                + f" (of {CORES * figures.catchup_s:.0f} on {CORES} cores)"
            )
            say(
                "of the hubs' catch-up CPU, in the kernel: "
                + ", ".join(f"{k} {v:.0%}" for k, v in figures.catchup_kernel.items())
                + "; the busiest hub of each tier: "
                + ", ".join(
                    f"{node_id} {seconds:.1f} s"
                    for node_id, seconds in figures.catchup_busiest.values()
                )
            )
            say(f"pushes sent again in the catch-up: {_tally(figures.catchup_retried)}")
            figures.least_available = min(watch.available, default=None)
            figures.stalled = watch.stalled()
            if figures.least_available is not None:
                say(
                    f"memory in the catch-up: at least {figures.least_available / GiB:.1f} GiB "
                    "available"
                    + "".join(
                        f"; some task stalled on {kind} {share:.0%} of the time"
                        for kind, share in figures.stalled.items()
                    )
                )
        figures.root_s, figures.root_city_s, figures.accept_s, figures.accept_passed = asyncio.run(
            _queries(fed)
        )
        say(
            f"/v1/root at the province: whole province {figures.root_s * 1000:.0f} ms, "
            f"one city with its children {figures.root_city_s * 1000:.0f} ms"
        )
        say(
            f"acceptance of js.c01 against the live city hub: {figures.accept_s:.1f} s "
            f"({'passed' if figures.accept_passed else 'not passed'})"
        )
        figures.task_down_s = tasks_down(fed)
        say(
            f"a notice issued at the province (by another process, as `guantong task issue` "
            f"beside its server) held by all {figures.hubs - 1} hubs below in "
            f"{figures.task_down_s:.1f} s"
        )
        figures.rss = fed.rss()
        figures.processes = {
            node_id: len(_process_tree(server.pid)) for node_id, server in fed.servers.items()
        }
        say(
            f"peak RSS: province {figures.peak('province') / 2**20:.0f} MiB, "
            f"largest city {figures.peak('city') / 2**20:.0f} MiB, "
            f"largest county {figures.peak('county') / 2**20:.0f} MiB; all hubs together "
            f"{sum(current for _, current in figures.rss.values()) / GiB:.1f} GiB now"
        )
    finally:
        fed.stop()
        if args.keep:
            print(f"  homes and logs kept in {root}" + (f", schema {schema[0]}" if schema else ""))
        else:
            shutil.rmtree(root, ignore_errors=True)
            if schema and args.province_db:
                drop_schema(args.province_db, schema[0])
    return figures


def _tally(failures: list[str]) -> str:
    """``failures`` counted by what they met: an HTTP status with its error code, or the
    kind of connection error (``503 busy`` × 40, ``ReadTimeout`` × 2); ``none`` if empty."""
    kinds: dict[str, int] = {}
    for failure in failures:
        status, _, rest = failure.partition(" ")
        if status.isdigit():
            with suppress(orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
                status += " " + str(orjson.loads(rest)["error"]["code"])
        kind = status.split(":")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    return ", ".join(f"{k} × {n:,}" for k, n in sorted(kinds.items())) or "none"


def _by_hub(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> tuple[dict[str, float], dict[str, tuple[str, float]]]:
    """From two :meth:`Federation.hub_cpu` readings: per tier, the share of the CPU spent
    in the kernel, and the hub that spent the most with its CPU seconds."""
    total: dict[str, float] = {}
    kernel: dict[str, float] = {}
    busiest: dict[str, tuple[str, float]] = {}
    for node_id, (user, system) in after.items():
        user0, system0 = before.get(node_id, (0.0, 0.0))
        tier, spent = _tier(node_id), (user - user0) + (system - system0)
        total[tier] = total.get(tier, 0.0) + spent
        kernel[tier] = kernel.get(tier, 0.0) + (system - system0)
        if spent > busiest.get(tier, ("", -1.0))[1]:
            busiest[tier] = (node_id, spent)
    return {t: kernel[t] / total[t] if total[t] else 0.0 for t in total}, busiest


def stop_profiles(profilers: list[subprocess.Popen[bytes]]) -> None:
    """Interrupt every profiler at once (each writes its file as it stops), then wait."""
    for profiler in profilers:
        profiler.send_signal(signal.SIGINT)
    for profiler in profilers:
        profiler.wait(60)


async def _enroll(fed: Federation, limits: httpx.Limits, concurrency: int) -> None:
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        await fed.enroll_stations(http, concurrency)


async def _push(
    fed: Federation,
    bodies: dict[str, list[bytes]],
    limits: httpx.Limits,
    concurrency: int,
    failures: list[str] | None = None,
) -> int:
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        return await push_all(fed, http, bodies, concurrency, failures)


async def _queries(fed: Federation) -> tuple[float, float, float, bool]:
    province = Node.open(NodeSettings(home=fed.home("js")))
    try:
        auth = NodeAuth(province.id, province.signer, province.clock)
        async with httpx.AsyncClient(timeout=300, auth=auth) as http:
            started = time.perf_counter()
            response = await http.get(f"{fed.url('js')}/v1/root", params={"prefix": "js"})
            root_s = time.perf_counter() - started
            response.raise_for_status()
            started = time.perf_counter()
            response = await http.get(
                f"{fed.url('js')}/v1/root", params={"prefix": "js.c01", "children": 1}
            )
            city_s = time.perf_counter() - started
            response.raise_for_status()
            started = time.perf_counter()
            report = await accept(province, "js.c01", lower=RemoteRoots(http, fed.url("js.c01")))
            accept_s = time.perf_counter() - started
        return root_s, city_s, accept_s, bool(report["passed"])
    finally:
        province.close()


def _wait_keys(watch: Watch, stations: int, timeout: float) -> float:
    started = time.perf_counter()
    while watch.keys() < stations:
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"the province knows {watch.keys()} of {stations} station keys")
        time.sleep(0.5)
    return time.perf_counter() - started


def _say(stations: int) -> Any:
    def say(message: str) -> None:
        print(f"  [{stations:>6,}] {message}", flush=True)

    return say


def table(rows: list[Figures], backend: str) -> None:
    print(f"\nprovince on {backend}; {rows[0].hubs} hub processes; {CORES} cores")
    header = (
        f"{'stations':>9} {'sustained/s':>12} {'catch-up':>14} {'catch-up/s':>11} "
        f"{'root':>8} {'accept city':>12} {'task down':>10} {'RSS prov':>9} {'city':>7} "
        f"{'county':>7}"
    )
    print(header)
    for f in rows:
        print(
            f"{f.stations:>9,} {f.sustained_rate:>12,.0f} "
            f"{f.catchup_entries / 1e6:>5.2f}M {f.catchup_s:>6.1f} s {f.catchup_rate:>11,.0f} "
            f"{f.root_s * 1000:>6.0f}ms {f.accept_s:>10.1f} s {f.task_down_s:>8.1f} s "
            f"{f.peak('province') / 2**20:>5.0f}MiB {f.peak('city') / 2**20:>4.0f}MiB "
            f"{f.peak('county') / 2**20:>4.0f}MiB"
        )
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        scale = b.stations / a.stations
        print(
            f"growth ×{scale:.0f} stations: catch-up time ×{b.catchup_s / a.catchup_s:.1f}, "
            f"province RSS ×{b.peak('province') / max(a.peak('province'), 1):.2f}, "
            f"acceptance ×{b.accept_s / max(a.accept_s, 1e-9):.1f}"
        )
    last = rows[-1]
    if last.catchup_entries >= 1_000_000:
        print(
            f"goals: 1M entries in < 120 s: {'met' if last.catchup_s < 120 else 'NOT met'} "
            f"({last.catchup_s:.1f} s); every hub < 1 GiB: "
            f"{'met' if max(p for p, _ in last.rss.values()) < GiB else 'NOT met'}; "
            f"acceptance < 30 s: {'met' if last.accept_s < 30 else 'NOT met'}"
        )


def _niceness(text: str) -> dict[Tier, int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or not all(0 <= v <= 19 for v in values):
        raise argparse.ArgumentTypeError("three niceness values 0..19: province,city,county")
    return dict(zip((Tier.PROVINCE, Tier.CITY, Tier.COUNTY), values, strict=True))


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--stations", default="1000,10000", help="comma-separated station counts, one run each"
    )
    parser.add_argument("--cities", type=int, default=13)
    parser.add_argument("--counties", type=int, default=8, help="counties per city")
    parser.add_argument("--backlog", type=int, default=100, help="entries per station, catch-up")
    parser.add_argument("--sustain-pushes", type=int, default=1)
    parser.add_argument("--sustain-entries", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=128, help="pushes in flight")
    parser.add_argument(
        "--enroll-concurrency",
        type=int,
        default=128,
        help="enrollments in flight",
    )
    parser.add_argument("--generators", type=int, default=2, help="entry-writing processes")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument(
        "--province-db",
        default=None,
        help="PostgreSQL URL for the province: each run gets a fresh schema there",
    )
    parser.add_argument(
        "--province-workers",
        type=int,
        default=1,
        help="worker processes of the province's server (on SQLite their writes take turns)",
    )
    parser.add_argument(
        "--nice",
        type=_niceness,
        default={},
        metavar="PROVINCE,CITY,COUNTY",
        help="niceness added to each tier's hub processes, e.g. 0,10,19: on two shared "
        "cores the upper tiers run whenever they have work, as they would on machines of "
        "their own (default: all 0)",
    )
    parser.add_argument("--keep", action="store_true", help="keep homes and logs")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="folder for profiles of three hubs (the province, a city, one of its counties), "
        "one file per hub for the sustained phase and one for the catch-up",
    )
    parser.add_argument(
        "--profiler",
        choices=("py-spy", "perf"),
        default="py-spy",
        help="with --profile: py-spy (Python stacks, collapsed) or perf (native and kernel "
        "stacks; needs perf and the right to trace the hubs)",
    )
    args = parser.parse_args(argv)
    if args.province_workers < 1:
        parser.error("--province-workers is at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    backend = "PostgreSQL" if args.province_db else "SQLite"
    rows = []
    for count in (int(s) for s in args.stations.split(",")):
        print(
            f"simulated province, {count:,} stations, province on {backend}"
            + (f" with {args.province_workers} workers" if args.province_workers > 1 else "")
            + (
                ", niceness " + ",".join(str(v) for v in args.nice.values())
                if any(args.nice.values())
                else ""
            )
            + ":",
            flush=True,
        )
        rows.append(run(args, count))
    table(rows, backend)


if __name__ == "__main__":
    main()
