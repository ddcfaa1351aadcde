"""``guantong demo``: a province on loopback, as real processes, with real enrollment.

1 province, 2 cities, 2 counties each, 3 stations per county and 1 handling unit. Every hub
runs as its own ``guantong serve`` process; stations are driven from this process through
the same library calls the CLI makes. The scenario: enroll everything online, record
realistic data at every station, sync, watch it relay up to the province, take one station
offline and carry its data by USB bundle, bring it back online, check that the province
holds exactly what each station signed; then the closed loop (a county assigns an opinion
to a handling unit, the unit reports it done, the station closes it with the citizen's
rating) and the province's acceptance check of one city.

Each step is printed as it happens; ``--exit`` makes the run a test (exit 0 only if every
step worked); otherwise the federation keeps running until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
from rich.console import Console
from rich.table import Table

from contracts.samples import sample_records
from hub.acceptance import accept
from hub.enrollment import create_token
from hub.report_html import render_report
from node.auth import NodeAuth
from node.bundles import export_bundle, import_bundle
from node.downlink import pull_tasks
from node.enrollment import enroll_online
from node.reconcile import RemoteRoots, subtree_roots
from node.runtime import Node
from node.settings import NodeSettings
from node.tables import ACCEPTANCE_REPORTS
from node.tasks import issue_task, report_task, task_views
from node.uplink import Uplink
from node.verify import verify_log
from node.web.accounts import add_user
from schemas.ids import Tier, parent_of
from schemas.times import format_time

__all__ = ["Demo", "run_demo"]

CITIES = {"wx": ("无锡市", ["jy", "yx"]), "sz": ("苏州市", ["cs", "kd"])}
COUNTIES = {"jy": "江阴市", "yx": "宜兴市", "cs": "常熟市", "kd": "昆山市"}
STATIONS_PER_COUNTY = 3
UNIT = "js.wx.jy.u-zjj"
DESK_STATION = "js.wx.jy.s01"
OFFLINE = "js.sz.kd.s03"
_DONE = ("resolved", "closed", "rejected")
DATA = {"deputy": 12, "opinion": 40, "duty_activity": 30, "reception": 8}


class DemoFailed(Exception):
    pass


@dataclass
class Demo:
    root: Path
    console: Console
    ports: dict[str, int] = field(default_factory=dict)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(9))
    servers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: list[IO[bytes]] = field(default_factory=list)

    # -- topology ------------------------------------------------------------------------

    def hubs(self) -> list[tuple[str, Tier]]:
        out = [("js", Tier.PROVINCE)]
        for city, (_, counties) in CITIES.items():
            out.append((f"js.{city}", Tier.CITY))
            out.extend((f"js.{city}.{county}", Tier.COUNTY) for county in counties)
        return out

    def leaves(self) -> list[tuple[str, Tier]]:
        out: list[tuple[str, Tier]] = []
        for city, (_, counties) in CITIES.items():
            for county in counties:
                out.extend(
                    (f"js.{city}.{county}.s{n:02d}", Tier.STATION)
                    for n in range(1, STATIONS_PER_COUNTY + 1)
                )
        return [*out, (UNIT, Tier.UNIT)]

    def url(self, node_id: str) -> str:
        return f"http://127.0.0.1:{self.ports[node_id]}"

    def home(self, node_id: str) -> Path:
        return self.root / node_id

    # -- steps ---------------------------------------------------------------------------

    def step(self, text: str) -> None:
        self.console.print(f"[bold cyan]▶[/] {text}")

    def build(self) -> None:
        self.step("province, 2 cities, 4 counties as server processes; enrolled online")
        for node_id, tier in self.hubs():
            self.ports[node_id] = free_port()
            parent = parent_of(node_id)
            self._init(node_id, tier, self.url(parent) if parent else None)
            if parent:
                self._enroll(node_id)
            self._serve(node_id)
        self.step(
            f"{len(self.leaves())} stations and a handling unit, enrolled with their counties"
        )
        for node_id, tier in self.leaves():
            parent = parent_of(node_id)
            assert parent is not None
            self._init(node_id, tier, self.url(parent))
            self._enroll(node_id)
        for node_id in self.ports:
            self._add_user(node_id, "admin", "admin")
        for node_id in (DESK_STATION, UNIT):  # their desks and the citizen form, in a browser
            self.ports[node_id] = free_port()
            self._add_user(node_id, "operator", "operator")
            self._serve(node_id)

    def record(self) -> int:
        self.step("every station records deputies, citizens' opinions, duty activities, receptions")
        total = 0
        for node_id, tier in self.leaves():
            if tier is not Tier.STATION:
                continue
            with self.node(node_id) as node:
                for contract, count in DATA.items():
                    records = sample_records(contract, count, seed=7, origin=node_id)
                    node.put(contract, [(None, r) for r in records])
                    total += count
        return total

    def sync(self, node_ids: list[str]) -> int:
        pushed = 0
        for node_id in node_ids:
            with self.node(node_id) as node:
                pushed += asyncio.run(_push(node))
        return pushed

    def offline_station(self) -> None:
        self.step(f"{OFFLINE} goes offline: it keeps recording, then its data travels by USB")
        with self.node(OFFLINE) as node:
            records = sample_records("opinion", 25, seed=11, origin=OFFLINE)
            node.put("opinion", [(None, r) for r in records])
            bundle = self.root / f"{OFFLINE}.gtb"
            report = export_bundle(node, bundle)
        self.console.print(
            f"  exported {report.entries} entries to {bundle.name} ({report.bytes} bytes)"
        )
        county = parent_of(OFFLINE)
        assert county is not None
        with self.node(county) as hub:
            _, results = import_bundle(hub, bundle)
        if any(r.status != "ok" for r in results):
            raise DemoFailed(f"import refused: {[r.to_dict() for r in results]}")
        self.console.print(f"  imported at {county}: held {results[-1].held}")
        self.step(f"{OFFLINE} is back online: the resend is compared by hash and acknowledged")
        self.sync([OFFLINE])

    def wait_for_province(self, timeout: float = 120.0) -> dict[str, int]:
        self.step("hubs relay on their own; waiting until the province holds every station's head")
        expected: dict[str, tuple[int, str]] = {}
        for node_id, _ in self.leaves():
            with self.node(node_id) as node:
                head = node.log.head()
                if head and head.seq:
                    expected[node_id] = (head.seq, head.head)
        deadline = time.monotonic() + timeout
        while True:
            with self.node("js") as province:
                held = {h.origin: (h.seq, h.head) for h in province.log.heads()}
            missing = [o for o, h in expected.items() if held.get(o) != h]
            if not missing:
                return {o: s for o, (s, _) in held.items()}
            if time.monotonic() > deadline:
                raise DemoFailed(f"the province still lacks {missing}")
            time.sleep(1.0)

    def check(self) -> None:
        self.step("the province re-verifies every byte: hashes, chains, signatures, to the root")
        with self.node("js") as province:
            problems = list(verify_log(province.log))
            if problems:
                raise DemoFailed(f"verify failed: {problems[0]}")
            province_heads = {h.origin: h.head for h in province.log.heads()}
        for city in CITIES:
            with self.node(f"js.{city}") as hub:
                city_heads = {h.origin: h.head for h in hub.log.heads()}
            differs = [o for o, h in city_heads.items() if province_heads.get(o) != h]
            if differs:
                raise DemoFailed(f"js.{city} and the province differ on {differs}")
            self.console.print(f"  js.{city}: {len(city_heads)} origins, identical at the province")

    def closed_loop(self) -> None:
        county, station = "js.wx.jy", "js.wx.jy.s01"
        self.step(
            f"{county} assigns a citizen's opinion to the handling unit {UNIT}, due in 7 days"
        )
        with self.node(county) as hub:
            opinion = next(
                o
                for o in hub.list("opinion", limit=0)
                if o.origin == station and o.data and o.data["status"] not in _DONE
            )
            task = issue_task(
                hub,
                target=UNIT,
                kind="assign",
                due=format_time(hub.clock() + timedelta(days=7)),
                payload={
                    "record": {"contract": "opinion", "id": opinion.id, "origin": station},
                    "instructions": "请核实情况并限期解决，办结后回复。",
                },
            )
        self.console.print(f"  task {task.id}: {opinion.data and opinion.data.get('title', '')}")
        with self.node(UNIT) as unit:
            asyncio.run(_pull(unit))
            report_task(unit, task.id, "accepted")
            report_task(
                unit, task.id, "done", resolution="已现场处理并电话回访反映人，群众表示满意。"
            )
        self.sync([UNIT])
        with self.node(county) as hub:
            (view,) = task_views(hub, task_id=task.id)
            issue_task(
                hub,
                target=station,
                kind="notice",
                payload={"record": opinion.id, "resolution": "已现场处理并电话回访反映人。"},
            )
        self.console.print(
            f"  the unit reported: {' → '.join(h['status'] for h in view.history)} "
            f"({'on time' if view.closed_on_time else 'late'})"
        )
        with self.node(station) as node:
            asyncio.run(_pull(node))
            record = node.get("opinion", opinion.id, origin=node.id)
            assert record.data is not None
            now = format_time(node.clock())
            closed = {
                **record.data,
                "id": opinion.id,
                "status": "closed",
                "handling_unit": UNIT,
                "resolution": "已现场处理并电话回访反映人。",
                "rating": 5,
                "resolved_at": now,
                "closed_at": now,
                "rated_at": now,
            }
            closed.setdefault("accepted_at", now)
            closed.setdefault("assigned_at", now)
            node.put("opinion", [(None, closed)])
        self.sync([station])
        self.console.print(f"  {station} closed it with the citizen's rating ★★★★★")
        self.wait_for_province()

    def acceptance(self, city: str = "js.wx") -> None:
        self.step(f"the province runs the acceptance check of {city}")
        deadline = time.monotonic() + 60
        while True:
            with self.node("js") as province, self.node(city) as hub:
                if (
                    subtree_roots(province.store, city)[0].root
                    == subtree_roots(hub.store, city)[0].root
                ):
                    break
            if time.monotonic() > deadline:
                raise DemoFailed(f"{city} and the province never reconciled")
            time.sleep(1.0)
        with self.node("js") as province:
            report = asyncio.run(_accept(province, city, self.url(city)))
            with province.store.write() as conn:  # browsable on the province dashboard
                conn.execute(
                    ACCEPTANCE_REPORTS.insert().values(
                        prefix=city,
                        checked_at=report["checked_at"],
                        passed=bool(report["passed"]),
                        report=orjson.dumps(report),
                    )
                )
        (self.root / f"acceptance-{city}.json").write_bytes(
            orjson.dumps(report, option=orjson.OPT_INDENT_2)
        )
        (self.root / f"acceptance-{city}.html").write_text(render_report(report), "utf-8")
        for criterion in report["criteria"]:
            mark = "[green]通过[/]" if criterion["passed"] else "[red]未通过[/]"
            self.console.print(f"  {mark} {criterion['title']}: {criterion['summary']}")
        if not report["passed"]:
            raise DemoFailed(f"acceptance of {city} failed")

    def summary(self, heads: dict[str, int]) -> None:
        table = Table("node", "tier", "entries held at the province", "status")
        for node_id, tier in [*self.hubs(), *self.leaves()]:
            status = f"{self.url(node_id)}/v1/status" if node_id in self.ports else "—"
            table.add_row(node_id, tier.value, str(heads.get(node_id, 0)), status)
        self.console.print(table)
        web = Table(
            "web page", "address", "sign in as", title=f"password for every login: {self.password}"
        )
        for node_id in ("js", "js.wx", "js.wx.jy"):
            web.add_row(f"{node_id} dashboard 总览", f"{self.url(node_id)}/", "admin")
        web.add_row(f"{DESK_STATION} desk 工作台", f"{self.url(DESK_STATION)}/desk", "operator")
        web.add_row(
            "citizen form 扫码反映问题", f"{self.url(DESK_STATION)}/c/{DESK_STATION}", "(public)"
        )
        web.add_row(f"{UNIT} desk", f"{self.url(UNIT)}/desk", "operator")
        self.console.print(web)
        self.console.print(
            "The acceptance report is acceptance-js.wx.html (and .json, signed) in the demo "
            "folder, and on the province dashboard under 验收."
        )

    # -- plumbing ------------------------------------------------------------------------

    @contextmanager
    def node(self, node_id: str) -> Iterator[Node]:
        node = Node.open(NodeSettings(home=self.home(node_id)))
        try:
            yield node
        finally:
            node.close()

    def _add_user(self, node_id: str, name: str, role: str) -> None:
        with self.node(node_id) as node:
            add_user(node, name, role, self.password)

    def _init(self, node_id: str, tier: Tier, parent_url: str | None) -> None:
        settings = NodeSettings(
            home=self.home(node_id), id=node_id, tier=tier, parent_url=parent_url
        )
        Node.init(settings).close()

    def _enroll(self, node_id: str) -> None:
        parent = parent_of(node_id)
        assert parent is not None
        with self.node(parent) as hub, self.node(node_id) as node:
            token = create_token(hub, node_id, node.settings.tier)
            asyncio.run(_enroll(node, self.url(parent), token))

    def _serve(self, node_id: str) -> None:
        log = (self.root / f"{node_id}.log").open("wb")
        self.logs.append(log)
        self.servers[node_id] = spawn_server(self.home(node_id), self.ports[node_id], log)
        _wait_port(self.ports[node_id], self.servers[node_id], self.root / f"{node_id}.log")

    def stop(self) -> None:
        stop_servers(self.servers.values(), timeout=15)
        for log in self.logs:
            log.close()


async def _enroll(node: Node, url: str, token: str) -> None:
    async with httpx.AsyncClient(
        timeout=30.0, auth=NodeAuth(node.id, node.signer, node.clock)
    ) as http:
        await enroll_online(node, url, token, http)


async def _push(node: Node) -> int:
    parent = node.settings.parent_url
    assert parent is not None
    async with httpx.AsyncClient(
        timeout=30.0, auth=NodeAuth(node.id, node.signer, node.clock)
    ) as http:
        report = await Uplink(node.log, parent_url=parent, client=http, clock=node.clock).sync()
    if report.rejected:
        raise DemoFailed(f"{node.id}: {report.rejected}")
    return report.entries


async def _pull(node: Node) -> None:
    async with httpx.AsyncClient(
        timeout=30.0, auth=NodeAuth(node.id, node.signer, node.clock)
    ) as http:
        report = await pull_tasks(node, http)
    if report.rejected:
        raise DemoFailed(f"{node.id} refused tasks: {report.rejected}")


async def _accept(province: Node, city: str, url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(
        timeout=30.0, auth=NodeAuth(province.id, province.signer, province.clock)
    ) as http:
        return await accept(province, city, lower=RemoteRoots(http, url))


def spawn_server(
    home: Path,
    port: int,
    stderr: IO[bytes],
    env: dict[str, str] | None = None,
    *,
    workers: int = 1,
) -> subprocess.Popen[bytes]:
    """``guantong serve`` of the node at ``home`` as a process of its own (with ``workers``
    worker processes under it); by default with this environment minus every
    ``GUANTONG_*`` variable (the home's settings rule)."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GUANTONG_")}
    return subprocess.Popen(
        [sys.executable, "-m", "node", "serve", "--home", str(home), "--port", str(port)]
        + ["--workers", str(workers)],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        env=env,
    )


def stop_servers(servers: Iterable[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGTERM to all at once, then wait for each; kill what does not stop in time."""
    procs = list(servers)
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if proc.poll() is not None:
                raise DemoFailed(f"a server exited: {log.read_text()[-2000:]}") from None
            time.sleep(0.1)
    raise DemoFailed(f"server on port {port} did not start")


def run_demo(
    folder: Path | None,
    *,
    exit_after: bool,
    console: Console,
    wait: Callable[[], None] | None = None,
) -> bool:
    """Run the scenario; True if every step worked."""
    root = folder or Path(tempfile.mkdtemp(prefix="guantong-demo-"))
    if folder is not None and folder.exists() and any(folder.iterdir()):
        raise DemoFailed(f"{folder} is not empty")
    root.mkdir(parents=True, exist_ok=True)
    demo = Demo(root=root, console=console)
    started = time.monotonic()
    try:
        demo.build()
        recorded = demo.record()
        stations = [n for n, t in demo.leaves() if t is Tier.STATION and n != OFFLINE]
        demo.step(f"stations sync ({recorded} records written)")
        pushed = demo.sync(stations)
        console.print(f"  pushed {pushed} entries to the counties")
        demo.offline_station()
        heads = demo.wait_for_province()
        demo.check()
        demo.closed_loop()
        demo.acceptance()
        demo.summary(heads)
        kept = "" if folder is None and exit_after else f"; homes, logs and reports in {root}"
        console.print(
            f"[bold green]every step worked[/] in {time.monotonic() - started:.0f} s{kept}"
        )
        if not exit_after:
            console.print("the federation keeps running; Ctrl-C stops it")
            (wait or _forever)()
        return True
    except DemoFailed as exc:
        console.print(f"[bold red]demo failed:[/] {exc}")
        return False
    finally:
        demo.stop()
        if folder is None and exit_after:
            shutil.rmtree(root, ignore_errors=True)


def _forever() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
