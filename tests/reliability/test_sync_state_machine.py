"""A stateful model of a small federation syncing over faulty links.

Province ``js`` → city ``js.wx`` → county ``js.wx.jy`` → stations ``s1``, ``s2`` (and ``s3``,
which may enroll mid-run). Hypothesis interleaves writes (new records, updates, deletes),
pushes (whole, or in small requests cut at heads signed on demand), relays hop by hop and
task pulls over a wire that drops, loses answers, duplicates, delays, truncates, answers
5xx and resets; several pushes and pulls at once; partitions and heals hubs; restarts
nodes; issues, amends and cancels tasks and reports on them.

After every step: no hub holds an entry whose bytes differ from its origin's at that seq,
every held log is gapless from 1, every materialised record is the state of its latest
held entry, every task revision held anywhere is the issuer's exact bytes, and no uplink
cursor is ahead of what the parent holds. At the end of every run, with the faults off and
every link healed, syncing bottom-up and pulling top-down reaches quiescence where every
hub's heads equal the origins' heads, records equal the origins' records, and every task
took effect exactly once at each recipient.

The clock is the injected ``FakeClock`` (one second per step); nothing sleeps but the
wire's ``delay`` fault (at most half a millisecond, to let concurrent requests interleave).
"""

from __future__ import annotations

import random
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from contracts.samples import sample_records
from node.auth import NodeAuth
from node.downlink import PullReport
from node.log import Write
from node.runtime import Node
from node.tables import DOWNLINK, ENTRIES, RECORDS, TASK_EVENTS, TASK_FEED, TASKS, UPLINK_CURSOR
from node.taskfeed import link
from node.tasks import amend_task, issue_task, latest_task, report_task
from node.uplink import SyncReport
from schemas.errors import GuantongError
from schemas.hashing import ZERO_HASH
from schemas.ids import is_in_subtree, parent_of
from schemas.tasks import Task
from tests.conftest import FakeClock
from tests.federation.harness import reopen
from tests.reliability.faults import (
    NO_FAULTS,
    FaultPlan,
    FederationFactory,
    close_federation,
    faulty_pull,
    faulty_uplink,
)

NODES = ("js", "js.wx", "js.wx.jy", "js.wx.jy.s1", "js.wx.jy.s2", "js.wx.jy.s3")
LATE = NODES[-1]
"""A station that enrolls in the middle of a run (its key reaches the hubs above through
the county's log, over the same faulty links)."""
HUBS = NODES[:3]
CHILDREN = NODES[1:]
BOTTOM_UP = (*NODES[3:], "js.wx.jy", "js.wx")
TOP_DOWN = ("js.wx", "js.wx.jy", *NODES[3:])
PLAN = FaultPlan(
    drop=0.06,
    lose_answer=0.08,
    duplicate=0.06,
    delay=0.05,
    truncate=0.06,
    unavailable=0.05,
    reset=0.06,
)
AMEND_BEFORE_DELIVERY = True
"""Amend (and cancel) tasks that some recipient has not received yet: its first receipt
is then for a later revision (``test_fault_scenarios.py`` replays the simplest case)."""
SMALL = 1500
"""A push budget of a few entries: own logs are cut with heads signed on demand."""
CANCELLED_NOTE = "cancelled by the issuer"
SETTINGS = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=True,
    database=None,
)

FAULT_COUNTS: Counter[str] = Counter()
"""Faults injected over the whole run (printed with ``-s``; quoted in reports)."""


class SyncMachine(RuleBasedStateMachine):
    tasks = Bundle("tasks")

    def __init__(self, federations: FederationFactory) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.fed, self.root = federations.make(self.clock)
        self._portal_cm: AbstractContextManager[BlockingPortal] = start_blocking_portal()
        self.portal = self._portal_cm.__enter__()
        self.auth: dict[str, NodeAuth] = {}
        self.reports: Counter[tuple[str, str, str]] = Counter()
        """(task id, reporting node, status) → reports written by the rules."""
        self.issued: dict[str, str] = {}
        """task id → issuer."""
        self.rng = random.Random(0)
        self.checked: dict[tuple[str, str], tuple[int, str]] = {}
        """(hub, origin) → (seq, hash) up to which the hub's copy was checked."""
        self.numbers: dict[str, int] = {}
        """node → number in its task feed up to which its task rows were checked."""

    @initialize(seed=st.integers(0, 2**32 - 1), count=st.integers(0, 4))
    def start(self, seed: int, count: int) -> None:
        """One seeded stream drives every fault of a run (the rates stay those of PLAN);
        every node starts with a backlog of its own."""
        self.rng = random.Random(seed)
        if count:
            for node_id in self.present():
                self.fed.write(node_id, count, seed=7)

    # -- helpers -------------------------------------------------------------------------

    def node(self, node_id: str) -> Node:
        return self.fed.nodes[node_id]

    def present(self, among: tuple[str, ...] = NODES) -> list[str]:
        return [n for n in among if n in self.fed.nodes]

    def signer_of(self, node_id: str) -> NodeAuth:
        """One request signer per running process (replaced when the node restarts)."""
        if node_id not in self.auth:
            self.auth[node_id] = NodeAuth(node_id, self.node(node_id).signer, self.clock)
        return self.auth[node_id]

    def tick(self) -> None:
        self.clock.advance(seconds=1)

    async def push_async(
        self, node_id: str, plan: FaultPlan, max_bytes: int = 4 << 20
    ) -> SyncReport:
        uplink = faulty_uplink(
            self.fed,
            node_id,
            rng=self.rng,
            plan=plan,
            counts=FAULT_COUNTS if plan is PLAN else None,
            auth=self.signer_of(node_id),
            max_bytes=max_bytes,
        )
        try:
            return await uplink.sync()
        finally:
            await uplink.client.aclose()

    async def pull_async(self, node_id: str, plan: FaultPlan) -> PullReport:
        return await faulty_pull(
            self.fed,
            node_id,
            rng=self.rng,
            plan=plan,
            counts=FAULT_COUNTS if plan is PLAN else None,
            auth=self.signer_of(node_id),
        )

    def push(self, node_id: str, plan: FaultPlan, max_bytes: int = 4 << 20) -> SyncReport:
        return self.portal.call(self.push_async, node_id, plan, max_bytes)

    def pull_down(self, node_id: str, plan: FaultPlan) -> PullReport:
        return self.portal.call(self.pull_async, node_id, plan)

    def delivered_everywhere(self, task: Task) -> bool:
        """Whether every node the task can ever reach (``s3`` too) holds its first revision."""
        for node_id in NODES:
            if not _below(node_id, task.issuer) or not task.reaches(node_id):
                continue
            if node_id not in self.fed.nodes:
                return False
            with self.node(node_id).store.read() as conn:
                held = conn.execute(
                    select(TASKS.c.rev).where(TASKS.c.task_id == task.id, TASKS.c.rev == 1)
                ).first()
            if held is None:
                return False
        return True

    def own_records(self, node_id: str) -> list[str]:
        if node_id not in self.fed.nodes:
            return []
        with self.node(node_id).store.read() as conn:
            return list(
                conn.execute(
                    select(RECORDS.c.record_id)
                    .where(
                        RECORDS.c.origin == node_id,
                        RECORDS.c.contract == "opinion",
                        RECORDS.c.deleted.is_(False),
                    )
                    .order_by(RECORDS.c.record_id)
                ).scalars()
            )

    # -- rules: data ---------------------------------------------------------------------

    @rule(node_id=st.sampled_from(NODES), count=st.integers(1, 3), seed=st.integers(0, 3))
    def write(self, node_id: str, count: int, seed: int) -> None:
        """New records (or the same sample records again: a re-put of equal data)."""
        if node_id not in self.fed.nodes:
            return
        self.tick()
        self.fed.write(node_id, count, seed=seed)

    @rule(node_id=st.sampled_from(NODES), pick=st.integers(0, 50), seed=st.integers(10, 20))
    def update(self, node_id: str, pick: int, seed: int) -> None:
        """A new state for an existing record of this origin."""
        mine = self.own_records(node_id)
        if not mine:
            return
        self.tick()
        (record,) = sample_records("opinion", 1, seed=seed, origin=node_id)
        record["id"] = mine[pick % len(mine)]
        self.node(node_id).put("opinion", [(None, record)])

    @rule(node_id=st.sampled_from(NODES), pick=st.integers(0, 50))
    def delete(self, node_id: str, pick: int) -> None:
        mine = self.own_records(node_id)
        if not mine:
            return
        self.tick()
        node = self.node(node_id)
        version = node.registry.for_writing("opinion", None).version
        node.log.append([Write("opinion", version, mine[pick % len(mine)], op="del")])

    @rule(node_id=st.sampled_from(CHILDREN), small=st.booleans())
    def sync(self, node_id: str, small: bool = False) -> None:
        """Push through the faulty wire (in small requests: segments cut at heads signed on
        demand); failures are expected and leave nothing half done."""
        if node_id not in self.fed.nodes:
            return
        self.tick()
        with suppress(GuantongError):
            self.push(node_id, PLAN, SMALL if small else 4 << 20)

    @rule(
        jobs=st.lists(
            st.tuples(st.sampled_from(["push", "pull"]), st.sampled_from(CHILDREN)),
            min_size=2,
            max_size=4,
        )
    )
    def race(self, jobs: list[tuple[str, str]]) -> None:
        """Pushes and pulls at once (several children, or one node's scheduler and a CLI
        ``sync`` side by side), interleaved by the wire's delays."""
        self.tick()

        async def one(kind: str, node_id: str) -> None:
            try:
                if kind == "push":
                    await self.push_async(node_id, PLAN, SMALL)
                else:
                    await self.pull_async(node_id, PLAN)
            except GuantongError:
                pass

        async def run() -> None:
            async with anyio.create_task_group() as group:
                for kind, node_id in jobs:
                    if node_id in self.fed.nodes:
                        group.start_soon(one, kind, node_id)

        self.portal.call(run)

    @rule(station=st.sampled_from(NODES[3:]))
    def relay(self, station: str) -> None:
        """Push a station's data hop by hop towards the province, each hop faulty."""
        node_id: str | None = station
        while node_id is not None and node_id != NODES[0]:
            self.sync(node_id)
            node_id = parent_of(node_id)

    # -- rules: links and processes ------------------------------------------------------

    @precondition(lambda self: LATE not in self.fed.nodes)
    @rule(count=st.integers(0, 3))
    def join(self, count: int) -> None:
        """A new station enrolls with the county and starts writing at once."""
        self.tick()
        self.fed.add(LATE)
        if count:
            self.fed.write(LATE, count, seed=5)

    @rule(hub=st.sampled_from(HUBS))
    def partition(self, hub: str) -> None:
        self.fed.down.add(hub)

    @rule(hub=st.sampled_from(HUBS))
    def heal(self, hub: str) -> None:
        self.fed.down.discard(hub)

    @rule(node_id=st.sampled_from(NODES))
    def restart(self, node_id: str) -> None:
        """Close the store and open it again, as after a crash between two operations."""
        if node_id not in self.fed.nodes:
            return
        self.tick()
        reopen(self.fed, node_id)
        self.auth.pop(node_id, None)

    @rule(node_id=st.sampled_from(CHILDREN), keep=st.integers(0, 3))
    def lose_cursors(self, node_id: str, keep: int) -> None:
        """A crash after the parent stored pushes but before our cursors were committed
        (and from further back than one lost answer): entries are pushed again, compared
        by hash."""
        if node_id not in self.fed.nodes:
            return
        with self.node(node_id).store.write() as conn:
            table = UPLINK_CURSOR
            conn.execute(table.update().where(table.c.acked > keep).values(acked=keep))

    # -- rules: tasks --------------------------------------------------------------------

    @rule(
        target=tasks,
        hub=st.sampled_from(HUBS),
        below=st.sampled_from(NODES),
        subtree=st.booleans(),
        kind=st.sampled_from(["notice", "assign"]),
    )
    def issue(self, hub: str, below: str, subtree: bool, kind: str) -> str:
        """A task from a hub to a node of its subtree (or, subtree-scoped, to itself)."""
        self.tick()
        if below not in self.fed.nodes or not is_in_subtree(below, hub) or below == hub:
            below, subtree = hub, True
        task = issue_task(
            self.node(hub), target=below, kind=kind, payload={"text": "请核实"}, subtree=subtree
        )
        self.issued[task.id] = hub
        return task.id

    @rule(task_id=tasks, cancel=st.booleans())
    def amend(self, task_id: str, cancel: bool) -> None:
        """A new revision (or a cancellation) of a task."""
        issuer = self.node(self.issued[task_id])
        current = latest_task(issuer, task_id)
        assert current is not None
        if current.cancelled:
            return
        if not AMEND_BEFORE_DELIVERY and not self.delivered_everywhere(current):
            return
        self.tick()
        payload = {**current.payload, "text": f"第{current.rev + 1}版"}
        amend_task(issuer, task_id, payload=payload, cancel=cancel)

    @rule(node_id=st.sampled_from(CHILDREN), crash=st.booleans())
    def pull(self, node_id: str, crash: bool) -> None:
        """Pull tasks through the faulty wire; with ``crash``, the node dies after storing
        them but before its downlink cursor is committed, so they come again next time
        (stored idempotently by (task id, rev), acted on once)."""
        if node_id not in self.fed.nodes:
            return
        self.tick()
        with self.node(node_id).store.read() as conn:
            before = conn.execute(select(DOWNLINK.c.after, DOWNLINK.c.chain)).first()
        with suppress(GuantongError):
            self.pull_down(node_id, PLAN)
        if crash:  # the cursor and the chain kept with it are one row, committed together
            with self.node(node_id).store.write() as conn:
                if before is None:
                    conn.execute(DOWNLINK.delete())
                else:
                    conn.execute(DOWNLINK.update().values(after=before.after, chain=before.chain))

    @rule(
        task_id=tasks,
        node_id=st.sampled_from(CHILDREN),
        status=st.sampled_from(["accepted", "in_progress", "done"]),
    )
    def report(self, task_id: str, node_id: str, status: str) -> None:
        """A recipient that holds the task answers it in its own log."""
        if node_id not in self.fed.nodes:
            return
        node = self.node(node_id)
        held = latest_task(node, task_id)
        if held is None or not held.reaches(node_id) or held.cancelled:
            return
        self.tick()
        report_task(node, task_id, status, note="已处理")
        self.reports[(task_id, node_id, status)] += 1

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def hubs_hold_exact_gapless_prefixes(self, full: bool = False) -> None:
        """Every hub's copy of an origin is a gapless prefix of the origin's own log.

        Entries are insert-only, so each step checks what arrived since the last (and that
        nothing already checked moved); ``full`` re-reads everything."""
        for hub in HUBS:
            node = self.node(hub)
            for info in node.log.heads():
                if info.origin == hub:
                    continue
                done = (0, ZERO_HASH) if full else self.checked.get((hub, info.origin))
                seq0, head0 = done or (0, ZERO_HASH)
                assert info.seq >= seq0, f"{hub} forgot entries of {info.origin}"
                if info.seq == seq0:
                    assert info.head == head0, f"{hub} changed its head of {info.origin}"
                    continue
                held = list(node.log.iter_entries(info.origin, seq0))
                assert [seq for seq, _, _ in held] == list(range(seq0 + 1, info.seq + 1)), (
                    f"{hub} holds a broken run of {info.origin}"
                )
                own = self.node(info.origin).log.iter_entries(info.origin, seq0)
                mine = {seq: raw for seq, _, raw in own if seq <= info.seq}
                for seq, _, raw in held:
                    assert raw == mine.get(seq), f"{hub} holds another {info.origin} seq {seq}"
                assert held[-1][1] == info.head
                self.checked[(hub, info.origin)] = (info.seq, info.head)

    @invariant()
    def records_are_the_latest_held_state(self, among: tuple[str, ...] = HUBS) -> None:
        """Each materialised record at a hub is its latest held entry: nothing lost, none
        stale, none applied twice (every node is checked at the end)."""
        for node_id in self.present(among):
            expected, actual = _record_states(self.node(node_id))
            assert actual == expected, f"records at {node_id} differ from their entries"

    @invariant()
    def tasks_are_verbatim_and_where_they_belong(self, full: bool = False) -> None:
        """Every task revision held is the issuer's exact bytes, at a node it concerns
        (task rows are insert-only and numbered in commit order: each step checks the rows
        committed since the last)."""
        for node_id in self.present():
            after = 0 if full else self.numbers.get(node_id, 0)
            with self.node(node_id).store.read() as conn:
                rows = conn.execute(
                    select(TASKS.c.feed, TASKS.c.raw).where(TASKS.c.feed > after)
                ).all()
            for number, raw in rows:
                task = Task.parse(bytes(raw))
                issuer = self.node(task.issuer)
                with issuer.store.read() as conn:
                    original = conn.execute(
                        select(TASKS.c.raw).where(
                            TASKS.c.task_id == task.id, TASKS.c.rev == task.rev
                        )
                    ).scalar_one()
                assert bytes(original) == bytes(raw), f"{node_id} holds altered task bytes"
                assert node_id == task.issuer or (
                    _below(node_id, task.issuer) and task.concerns(node_id)
                )
                self.numbers[node_id] = max(self.numbers.get(node_id, 0), int(number))

    @invariant()
    def cursors_never_pass_what_the_parent_holds(self) -> None:
        """The uplink moves a cursor only to what its parent said it holds."""
        for node_id in self.present(CHILDREN):
            parent = self.node(parent_of(node_id) or "")
            with self.node(node_id).store.read() as conn:
                cursors = conn.execute(select(UPLINK_CURSOR.c.origin, UPLINK_CURSOR.c.acked)).all()
            for origin, acked in cursors:
                head = parent.log.head(origin)
                assert acked <= (head.seq if head else 0), (
                    f"{node_id}'s cursor for {origin} is ahead of {parent.id}"
                )

    # -- the end of a run ----------------------------------------------------------------

    def converge(self) -> None:
        """Heal everything; push bottom-up and pull top-down without faults until quiet."""
        self.fed.down.clear()
        for _ in range(10):
            moved = False
            for node_id in self.present(BOTTOM_UP):
                self.tick()
                pushed = self.push(node_id, NO_FAULTS)
                assert pushed.rejected == {}, pushed.rejected
                moved |= pushed.requests > 0
            for node_id in self.present(TOP_DOWN):
                self.tick()
                pulled = self.pull_down(node_id, NO_FAULTS)
                assert pulled.rejected == [], pulled.rejected
                moved |= pulled.stored > 0
            if not moved:
                return
        raise AssertionError("the federation did not quiesce")

    def check_converged(self) -> None:
        for hub in HUBS:
            node = self.node(hub)
            expected = [
                (n, head.seq, head.head)
                for n in self.present()
                if is_in_subtree(n, hub)
                for head in [self.node(n).log.head()]
                if head is not None and head.seq > 0
            ]
            assert [(h.origin, h.seq, h.head) for h in node.log.heads(hub)] == expected
            for origin in self.present():
                if origin == hub or not is_in_subtree(origin, hub):
                    continue
                assert list(node.log.iter_entries(origin)) == list(
                    self.node(origin).log.iter_entries(origin)
                ), f"{hub} lost entries of {origin}"
                assert _records_of(node, origin) == _records_of(self.node(origin), origin)
        for task_id, issuer_id in self.issued.items():
            self.check_task(task_id, issuer_id)
        for node_id in self.present():
            self.check_feed(node_id)

    def check_feed(self, node_id: str) -> None:
        """A node's task feed numbers every revision it holds, 1, 2, 3… without a gap, each
        chained to the one before; the head row says where it ends."""
        with self.node(node_id).store.read() as conn:
            rows = conn.execute(
                select(TASKS.c.feed, TASKS.c.chain, TASKS.c.raw).order_by(TASKS.c.feed)
            ).all()
            head = conn.execute(select(TASK_FEED.c.last, TASK_FEED.c.chain)).first()
        chain = ZERO_HASH
        for number, row in enumerate(rows, start=1):
            chain = link(chain, bytes(row.raw))
            assert (row.feed, row.chain) == (number, chain), f"{node_id}'s feed at {number}"
        assert head is not None and (int(head.last), head.chain) == (len(rows), chain)

    def check_task(self, task_id: str, issuer_id: str) -> None:
        """Every revision once at every node concerned; one receipt per recipient (and one
        more per cancellation), and every report the rules made, once, at the issuer."""
        issuer = self.node(issuer_id)
        latest = latest_task(issuer, task_id)
        assert latest is not None
        revisions = [Task.parse(raw) for raw in _task_rows(issuer) if Task.parse(raw).id == task_id]
        cancels = sum(1 for t in revisions if t.cancelled)
        for node_id in self.present():
            if not _below(node_id, issuer_id) or not latest.concerns(node_id):
                continue
            held = [Task.parse(raw) for raw in _task_rows(self.node(node_id))]
            revs = sorted(t.rev for t in held if t.id == task_id)
            assert revs == list(range(1, latest.rev + 1)), f"{node_id} holds revisions {revs}"
        events = _task_events(issuer, task_id)
        for node_id in self.present():
            got = Counter((status, note) for origin, status, note in events if origin == node_id)
            if _below(node_id, issuer_id) and latest.reaches(node_id):
                assert got[("received", None)] == 1, f"{node_id} received {task_id} {got}"
                assert got[("received", CANCELLED_NOTE)] == cancels
            else:
                assert got[("received", None)] == 0
            for status in ("accepted", "in_progress", "done"):
                made = self.reports[(task_id, node_id, status)]
                assert got[(status, "已处理")] == made, f"{node_id} {status} {got}"

    def teardown(self) -> None:
        try:
            self.converge()
            self.check_converged()
            self.hubs_hold_exact_gapless_prefixes(full=True)
            self.records_are_the_latest_held_state(NODES)
            self.tasks_are_verbatim_and_where_they_belong(full=True)
            self.cursors_never_pass_what_the_parent_holds()
        finally:
            self._portal_cm.__exit__(None, None, None)
            close_federation(self.fed)
            shutil.rmtree(self.root, ignore_errors=True)


def _below(node_id: str, hub: str) -> bool:
    return node_id != hub and is_in_subtree(node_id, hub)


def _record_states(node: Node) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state each record should have from the entries held, state materialised)."""
    expected: dict[str, Any] = {}
    with node.store.read() as conn:
        rows = conn.execute(
            select(ENTRIES.c.origin, ENTRIES.c.seq, ENTRIES.c.raw, ENTRIES.c.status)
            .where(ENTRIES.c.status == "valid")
            .order_by(ENTRIES.c.origin, ENTRIES.c.seq)
        ).all()
        records = conn.execute(select(RECORDS)).all()
    for row in rows:
        entry = orjson.loads(row.raw)
        expected[entry["id"]] = (
            entry["origin"],
            entry["seq"],
            entry["version"],
            entry["op"] == "del",
            entry.get("data"),
        )
    actual = {
        r.record_id: (r.origin, int(r.seq), r.version, bool(r.deleted), r.data) for r in records
    }
    return expected, actual


def _records_of(node: Node, origin: str) -> list[tuple[Any, ...]]:
    with node.store.read() as conn:
        rows = conn.execute(
            select(RECORDS).where(RECORDS.c.origin == origin).order_by(RECORDS.c.record_id)
        ).all()
    return [(r.record_id, int(r.seq), r.version, bool(r.deleted), r.data) for r in rows]


def _task_rows(node: Node) -> list[bytes]:
    with node.store.read() as conn:
        return [bytes(raw) for raw in conn.execute(select(TASKS.c.raw)).scalars()]


def _task_events(node: Node, task_id: str) -> list[tuple[str, str, str | None]]:
    with node.store.read() as conn:
        rows = conn.execute(
            select(TASK_EVENTS.c.origin, TASK_EVENTS.c.status, TASK_EVENTS.c.note).where(
                TASK_EVENTS.c.task_id == task_id
            )
        ).all()
    return [(r.origin, r.status, r.note) for r in rows]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def hub_db(request: pytest.FixtureRequest) -> Iterator[Callable[[], str] | None]:
    """Hubs on SQLite, or each hub in its own PostgreSQL schema (stations stay on SQLite)."""
    if request.param == "sqlite":
        yield None
    else:
        yield request.getfixturevalue("pg_schemas")


def test_federation_survives_faulty_links(hub_db: Callable[[], str] | None, tmp_path: Path) -> None:
    """Under any interleaving of writes, faulty pushes and pulls, partitions, restarts and
    task traffic, nothing is lost, altered or duplicated, and the federation converges."""

    federations = FederationFactory(tmp_path, [n for n in NODES if n != LATE], hub_db=hub_db)
    run_state_machine_as_test(lambda: SyncMachine(federations), settings=SETTINGS)
    print("faults injected:", dict(sorted(FAULT_COUNTS.items())))  # noqa: T201
