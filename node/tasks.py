"""Tasks at a node: issuing, receiving, reporting, and the issuer's view (PROTOCOL §5).

Every node keeps the task revisions that concern it — issued by itself, or relayed from
above for its subtree — in ``tasks``; they form its task feed, numbered in commit order,
which its children page through (``node/taskfeed.py``). Bytes are stored as signed and
served verbatim.

A task is accepted from above only if it parses, its issuer is an ancestor of its target,
its signature verifies with a key the keyring knows for the issuer (chained to the root;
the issuer's certificates travel with the tasks), and it concerns this node. When it
*reaches* this node (the target, or any node below it for ``subtree``), the node reports
``received`` in its own log — so the issuer sees delivery the same way it sees all data —
and acts on the kinds that need no person: ``contracts`` installs the bundle (only from the
province, never rolling back) and ``revoke`` stops trusting keys.

The target answers with ``task_report`` records; every node notes the reports it holds in
``task_events``, from which the issuer derives each task's state:
issued → delivered → accepted → in progress → done / rejected, overdue past ``due``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, case, func, select

from contracts.compat import compare_installed
from contracts.registry import Registry
from hub.pending import apply_pending
from node.db import after_commit, before_commit, insert_ignore
from node.keyring import cert_record
from node.runtime import Node
from node.tables import RECORDS, TASK_EVENTS, TASKS
from node.taskfeed import number_feed
from schemas.canonical import canonical_bytes, parse_json
from schemas.certs import Certificate
from schemas.errors import ErrorCode, GuantongError
from schemas.ids import Tier, check_node_id, is_in_subtree, is_uuid, parent_of, uuid7
from schemas.tasks import KINDS, Task, sign_task
from schemas.times import format_time, parse_time

__all__ = [
    "CANCELLED_NOTE",
    "FINAL",
    "ReceiveReport",
    "TaskView",
    "amend_task",
    "issue_task",
    "latest_task",
    "publish_contracts",
    "receive_tasks",
    "report_task",
    "revoke_node",
    "task_views",
    "write_receipts",
]

FINAL = frozenset({"done", "rejected", "cancelled"})
CANCELLED_NOTE = "cancelled by the issuer"
"""The note of the receipt acknowledging a cancellation (a plain receipt has none)."""
_PROGRESS = ["issued", "delivered", "accepted", "in_progress", "done"]
_STATUS_STATE = {
    "received": "delivered",
    "accepted": "accepted",
    "in_progress": "in_progress",
    "done": "done",
    "rejected": "rejected",
}


# -- issuing -------------------------------------------------------------------------------


def issue_task(
    node: Node,
    *,
    target: str,
    kind: str,
    payload: dict[str, Any],
    subtree: bool = False,
    due: str | None = None,
) -> Task:
    """Issue a task of any kind but ``contracts``: a bundle is sent by
    :func:`publish_contracts` alone, after the checks that keep every node able to read
    what it holds (newer than the installed bundle, no published version changed)."""
    if kind == "contracts":
        raise GuantongError(
            ErrorCode.FORBIDDEN,
            "contracts tasks are issued by publishing a bundle "
            "(guantong contracts publish DIR), which checks it first",
        )
    return _issue(node, target=target, kind=kind, payload=payload, subtree=subtree, due=due)


def _issue(
    node: Node,
    *,
    target: str,
    kind: str,
    payload: dict[str, Any],
    subtree: bool = False,
    due: str | None = None,
) -> Task:
    check_node_id(target)
    if kind not in KINDS:
        raise GuantongError(ErrorCode.MALFORMED, f"unknown task kind {kind!r} ({', '.join(KINDS)})")
    if not is_in_subtree(target, node.id):
        raise GuantongError(ErrorCode.NOT_IN_SUBTREE, f"{node.id} may only task its own subtree")
    if due is not None:
        due = format_time(parse_time(due))
    fields = {
        "id": uuid7(),
        "issuer": node.id,
        "target": target,
        "scope": "subtree" if subtree else "node",
        "kind": kind,
        "payload": payload,
        "issued": format_time(node.clock()),
        "due": due,
        "rev": 1,
    }
    task = sign_task(node.signer, fields)
    _store(node, [task])
    return task


def amend_task(
    node: Node,
    task_id: str,
    *,
    payload: dict[str, Any] | None = None,
    due: str | None = None,
    cancel: bool = False,
) -> Task:
    current = latest_task(node, task_id)
    if current is None or current.issuer != node.id:
        raise GuantongError(ErrorCode.NOT_FOUND, f"{node.id} issued no task {task_id}")
    if current.kind == "contracts" and (payload is not None or due is not None):
        raise GuantongError(
            ErrorCode.FORBIDDEN,
            "a contracts task's bundle is changed by publishing a newer one, not by amending",
        )
    new_payload = dict(payload if payload is not None else current.payload)
    if cancel:
        new_payload["cancelled"] = True
    fields = {
        **current.to_dict(),
        "payload": new_payload,
        "rev": current.rev + 1,
        "issued": format_time(node.clock()),
    }
    if due is not None:
        fields["due"] = format_time(parse_time(due))
    task = sign_task(node.signer, fields)
    _store(node, [task])
    return task


def _store(node: Node, tasks: Iterable[Task], conn: Connection | None = None) -> int:
    now = format_time(node.clock())
    rows = [
        {
            "task_id": t.id,
            "rev": t.rev,
            "issuer": t.issuer,
            "target": t.target,
            "scope": t.scope,
            "kind": t.kind,
            "issued": t.issued,
            "due": t.due,
            "raw": t.canonical(),
            "received_at": now,
        }
        for t in tasks
    ]
    if conn is not None:
        return _insert(node, conn, rows)
    with node.store.write() as own:
        return _insert(node, own, rows)


def _insert(node: Node, conn: Connection, rows: list[dict[str, Any]]) -> int:
    """Insert revisions not held yet; they are numbered in the feed when this transaction
    commits, so that children see the numbers in order, and the children waiting for them
    are woken once it has."""
    before = _count(conn)
    insert_ignore(conn, TASKS, rows, ["task_id", "rev"])
    stored = _count(conn) - before
    if stored:
        before_commit(conn, "task_feed", number_feed)
        after_commit(conn, "task_bell", lambda: _announce(node))
    return stored


def _announce(node: Node) -> None:
    """Revisions were committed: wake this process's waiting polls, and tell the others
    (the server beside a command, the other workers) through the stamp file."""
    node.task_bell.ring()
    node.task_stamp.touch()


def _count(conn: Connection) -> int:
    """Revisions not numbered yet: the ones this transaction stored (others' uncommitted
    rows are invisible to it, committed ones are numbered). Through the feed's index,
    however many revisions the node holds."""
    return int(
        conn.execute(
            select(func.count()).select_from(TASKS).where(TASKS.c.feed.is_(None))
        ).scalar_one()
    )


def latest_task(node: Node, task_id: str) -> Task | None:
    if not is_uuid(task_id):
        return None
    with node.store.read() as conn:
        raw = conn.execute(
            select(TASKS.c.raw)
            .where(TASKS.c.task_id == task_id)
            .order_by(TASKS.c.rev.desc())
            .limit(1)
        ).scalar()
    return None if raw is None else Task.parse(bytes(raw))


def publish_contracts(node: Node, registry: Registry) -> Task:
    """The province installs a newer bundle and sends it to every node (``contracts``)."""
    if node.settings.tier is not Tier.PROVINCE:
        raise GuantongError(ErrorCode.FORBIDDEN, "only the province publishes contract bundles")
    if registry.bundle_version <= node.registry.bundle_version:
        raise GuantongError(
            ErrorCode.BUNDLE_INVALID,
            f"bundle {registry.bundle_version} is not newer than the installed "
            f"{node.registry.bundle_version}; nodes never roll back",
        )
    changed = compare_installed(node.registry, registry)
    if changed:
        raise GuantongError(ErrorCode.INCOMPATIBLE_CHANGE, "; ".join(changed[:5]))
    node.install_contracts(registry)
    _apply_pending(node)
    payload = {
        "bundle_version": registry.bundle_version,
        "bundle": parse_json(registry.bundle_bytes()),
    }
    return _issue(node, target=node.id, kind="contracts", payload=payload, subtree=True)


def revoke_node(node: Node, target: str, *, revoked_from: str) -> Task:
    """Stop trusting ``target``'s keys from a time: here at once, up as ``node_cert``
    updates, down as a ``revoke`` task to every node of this subtree."""
    check_node_id(target)
    known = [k for k in node.keyring.keys_of(target) if k.cert is not None]
    if not known or target == node.id or not is_in_subtree(target, node.id):
        raise GuantongError(ErrorCode.NOT_FOUND, f"no certified key of {target} below {node.id}")
    # a revocation is never moved later: a key revoked from an earlier time keeps it, in
    # the record that travels up as in the keyrings (which keep the earliest they learn)
    records = [
        (
            None,
            cert_record(
                k.cert,
                issuer=node.id,
                status="revoked",
                revoked_from=min(revoked_from, k.revoked_from or revoked_from),
            ),
        )
        for k in known
        if k.cert is not None
    ]

    def revoke_here(conn: Connection) -> None:
        node.keyring.revoke(target, revoked_from=revoked_from, conn=conn)

    node.put("node_cert", records, also=revoke_here)
    payload = {"node": target, "from": revoked_from, "key_ids": [k.key_id for k in known]}
    return issue_task(node, target=node.id, kind="revoke", payload=payload, subtree=True)


# -- receiving -----------------------------------------------------------------------------


@dataclass(slots=True)
class ReceiveReport:
    stored: int = 0
    rejected: list[str] = field(default_factory=list)
    """Revisions refused (``code: message``), and the steps of ``deferred`` as such."""
    installed_bundle: int | None = None
    revoked: int = 0
    applied: int = 0
    """Pending entries the installed bundle now classifies (valid or invalid)."""
    unknown: int = 0
    """Revisions refused because no key of their signer is known here (among ``rejected``):
    their chain may come later, so a downlink takes them again (``node/downlink.py``)."""
    deferred: list[tuple[str, GuantongError]] = field(default_factory=list)
    """What failed after the tasks were stored (the contract bundle's install, the
    receipts), by step: made good by the next pull or import, nothing refused."""

    def defer(self, step: str, exc: GuantongError) -> None:
        self.deferred.append((step, exc))
        self.rejected.append(f"{exc.code.value}: {step}: {exc.message}")

    @property
    def refused(self) -> int:
        """How many revisions were refused."""
        return len(self.rejected) - len(self.deferred)


def receive_tasks(node: Node, raws: Sequence[bytes], certs: Sequence[Any] = ()) -> ReceiveReport:
    """Verify and store tasks from above; act on those that reach this node.

    What a task makes a node do is derived from the tasks it holds, not from what one pull
    brought, as receipts are: revocations are applied in the transaction that stores the
    tasks (a failure stores neither, and the pull is made again), and the newest contract
    bundle held is installed after it, on every pull until it is (a failure, or a crash
    between the commit and the install, is made good by the next pull)."""
    if not isinstance(certs, list | tuple):  # a header's "certs", from a peer or a file
        raise GuantongError(
            ErrorCode.MALFORMED, f'"certs" is a list of certificates, not {type(certs).__name__}'
        )
    report = ReceiveReport()
    with node.store.write() as conn:
        _learn_chains(node, certs, conn)
        accepted: list[Task] = []
        for raw in raws:
            task = None
            try:
                task = Task.parse(raw)
                _check(node, task, conn)
                _check_revision(task, conn, accepted)
            except GuantongError as exc:
                report.rejected.append(f"{exc.code.value}: {exc.message}")
                if (
                    exc.code is ErrorCode.UNKNOWN_ORIGIN
                    and task is not None
                    and node.keyring.lookup(task.key_id, conn) is None
                ):
                    report.unknown += 1
                continue
            accepted.append(task)
        fresh = {(t.id, t.rev) for t in _new_revisions(conn, accepted)}
        report.stored = _store(node, accepted, conn)
        report.revoked = _apply_revocations(node, conn, fresh, report)
    try:
        report.installed_bundle = _install_held_bundle(node, fresh, report)
    except GuantongError as exc:
        report.defer("contract bundle", exc)
    try:
        report.applied = _apply_pending(node)
    except GuantongError as exc:  # retried on the next pull, as receipts are
        report.defer("pending entries", exc)
    try:
        write_receipts(node)
    except GuantongError as exc:  # retried on the next pull: receipts are derived, not queued
        report.defer("receipts", exc)
    return report


def _learn_chains(node: Node, certs: Sequence[Any], conn: Connection) -> None:
    """Trust the issuers' certificates that verify to the root, in whatever order they come.

    A certificate is checked by its issuer's key, so it can only be added after the one
    above it; chains come leaf first (``Keyring.chain``), and several share their upper
    links. Taken once in the order sent, a county's new certificate, signed by a city key
    learnt only further down the list, was dropped and the county's tasks refused. So the
    ones that fail are tried again for as long as a pass adds one."""
    waiting: list[Certificate] = []
    for raw in certs:
        try:
            waiting.append(Certificate.parse_obj(raw))
        except GuantongError:
            continue
    progress = True
    while progress and waiting:
        progress = False
        for cert in list(waiting):
            try:
                node.keyring.add_certificate(cert, conn)
            except GuantongError:
                continue
            waiting.remove(cert)
            progress = True


def write_receipts(node: Node, *, attempts: int = 3) -> int:
    """Report ``received`` for the tasks reaching this node that lack a receipt of ours.

    Each task is acknowledged once, at the newest revision held when it is first seen —
    whichever revision that is: a task amended before its first delivery arrives at rev 2
    or later — and each cancellation once more, noted as such. Receipts derive from what
    the log holds, not from what one pull brought, so a failed write is simply made on the
    next pull, the same receipts come out however pages cut the revisions, and a node that
    recovered its log (with its receipts) does not report twice. Two writers at once (the
    server's pull beside ``guantong sync``) both read that a task lacks its receipt: the
    append checks again under the lock of the node's head, and the later one starts over."""
    with node.store.read() as conn:
        latest = _held_latest(conn, node.id)
        receipts = conn.execute(
            select(TASK_EVENTS.c.task_id, TASK_EVENTS.c.task_rev, TASK_EVENTS.c.note).where(
                TASK_EVENTS.c.origin == node.id, TASK_EVENTS.c.status == "received"
            )
        ).all()
    acknowledged = {r.task_id for r in receipts if r.note != CANCELLED_NOTE}
    cancellations = {(r.task_id, r.task_rev) for r in receipts if r.note == CANCELLED_NOTE}
    records = []
    for task in latest:
        if task.id not in acknowledged:
            records.append((None, _receipt(node, task)))
        if task.cancelled and (task.id, task.rev) not in cancellations:
            records.append((None, _receipt(node, task, note=CANCELLED_NOTE)))
    if not records:
        return 0
    ids = sorted({str(data["task_id"]) for _, data in records})
    try:
        node.put("task_report", records, also=functools.partial(_once, node.id, ids))
    except _Raced:
        # another writer (the server's pull beside `guantong sync`, two pulls at once)
        # wrote receipts between our read and our write: work out what is left
        return write_receipts(node, attempts=attempts - 1) if attempts > 1 else 0
    return len(records)


class _Raced(Exception):
    """Receipts written twice: the append is rolled back and the receipts worked out again."""


def _once(origin: str, ids: list[str], conn: Connection) -> None:
    """Inside the append, under the lock of the node's own head (which every writer of its
    log takes, in any process): none of these tasks acknowledged twice, no cancellation
    twice."""
    twice = conn.execute(
        select(TASK_EVENTS.c.task_id)
        .where(
            TASK_EVENTS.c.origin == origin,
            TASK_EVENTS.c.status == "received",
            TASK_EVENTS.c.task_id.in_(ids),
        )
        .group_by(
            TASK_EVENTS.c.task_id,
            case((TASK_EVENTS.c.note == CANCELLED_NOTE, TASK_EVENTS.c.task_rev), else_=0),
        )
        .having(func.count() > 1)
        .limit(1)
    ).first()
    if twice is not None:
        raise _Raced


def _receipt(node: Node, task: Task, *, note: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "task_id": task.id,
        "task_rev": task.rev,
        "status": "received",
        "reported_at": format_time(node.clock()),
    }
    if note is not None:
        data["note"] = note
    return data


def _check(node: Node, task: Task, conn: Connection) -> None:
    if not task.concerns(node.id):
        raise GuantongError(
            ErrorCode.NOT_IN_SUBTREE, f"task {task.id} is not for {node.id}'s subtree"
        )
    if task.issuer == node.id or not is_in_subtree(node.id, task.issuer):
        raise GuantongError(ErrorCode.FORBIDDEN, f"{task.issuer} is not above {node.id}")
    key = node.keyring.lookup(task.key_id, conn)
    if key is None or key.node != task.issuer:
        raise GuantongError(
            ErrorCode.UNKNOWN_ORIGIN, f"no certificate of {task.issuer} for key {task.key_id}"
        )
    if key.revoked_at(task.issued) or not key.valid_at(task.issued):
        raise GuantongError(
            ErrorCode.REVOKED_KEY,
            f"key {task.key_id} of {task.issuer} was not valid at {task.issued}",
        )
    if not task.verify(key.public_raw):
        raise GuantongError(
            ErrorCode.BAD_SIGNATURE, f"task {task.id} rev {task.rev} does not verify"
        )


def _check_revision(task: Task, conn: Connection, accepted: Sequence[Task]) -> None:
    """Only a task's issuer revises it: a revision whose issuer, kind, target or scope
    differs from one already held (or from one accepted in this pull) is refused, so that
    a hub in between cannot amend or cancel, under its own key, a task an ancestor issued
    (it could only withhold it, which the issuer sees as a missing receipt)."""
    held = conn.execute(
        select(TASKS.c.issuer, TASKS.c.kind, TASKS.c.target, TASKS.c.scope)
        .where(TASKS.c.task_id == task.id)
        .limit(1)
    ).first()
    first = (
        (held.issuer, held.kind, held.target, held.scope)
        if held is not None
        else next(
            ((t.issuer, t.kind, t.target, t.scope) for t in accepted if t.id == task.id), None
        )
    )
    if first is not None and first != (task.issuer, task.kind, task.target, task.scope):
        raise GuantongError(
            ErrorCode.FORBIDDEN,
            f"task {task.id} rev {task.rev} by {task.issuer} revises a {first[1]} task "
            f"{first[0]} issued to {first[2]}",
        )


def _new_revisions(conn: Connection, tasks: list[Task]) -> list[Task]:
    fresh = []
    for task in tasks:
        held = conn.execute(
            select(TASKS.c.rev).where(TASKS.c.task_id == task.id, TASKS.c.rev == task.rev)
        ).first()
        if held is None:
            fresh.append(task)
    return fresh


def _reaching(node_id: str) -> ColumnElement[bool]:
    """The held tasks that reach ``node_id``: it is their target, or below the target of a
    ``subtree`` one (:meth:`Task.reaches`, as a condition on the stored columns)."""
    ancestors = [node_id]
    while (up := parent_of(ancestors[-1])) is not None:
        ancestors.append(up)
    return (TASKS.c.target == node_id) | (
        (TASKS.c.scope == "subtree") & TASKS.c.target.in_(ancestors)
    )


def _held_latest(conn: Connection, node_id: str, kind: str | None = None) -> list[Task]:
    """The latest revision of every held task (of ``kind``) that reaches ``node_id`` and
    another node issued."""
    query = select(TASKS.c.raw).where(_reaching(node_id), TASKS.c.issuer != node_id)
    if kind is not None:
        query = query.where(TASKS.c.kind == kind)
    latest: dict[str, Task] = {}
    for raw in conn.execute(query).scalars():
        task = Task.parse(bytes(raw))
        if task.id not in latest or task.rev > latest[task.id].rev:
            latest[task.id] = task
    return list(latest.values())


def _apply_revocations(
    node: Node, conn: Connection, fresh: set[tuple[str, int]], report: ReceiveReport
) -> int:
    """Apply every held, uncancelled ``revoke`` task that reaches this node (a revocation
    only ever moves earlier, so applying one again changes nothing). A malformed one is
    reported when it arrives, and skipped after."""
    revoked = 0
    for task in _held_latest(conn, node.id, "revoke"):
        if task.cancelled:
            continue
        try:
            target, since = _revocation(task)
        except GuantongError as exc:
            if (task.id, task.rev) in fresh:
                report.rejected.append(f"{exc.code.value}: task {task.id}: {exc.message}")
            continue
        revoked += node.keyring.revoke(target, revoked_from=since, conn=conn)
    return revoked


def _install_held_bundle(
    node: Node, fresh: set[tuple[str, int]], report: ReceiveReport
) -> int | None:
    """Install the newest contract bundle the held ``contracts`` tasks carry, if it is newer
    than the installed one (only from the province, never rolling back). Each task carries
    a whole bundle: the latest revisions are read for their claimed ``bundle_version``
    alone, and only the ones to install are parsed and checked as tasks, newest first.

    A task that cannot be installed as it is (no integer ``bundle_version``; a bundle that
    does not load, or of another version than it claims; not from the root key) is refused
    for itself — reported when it arrives, passed over after — and the next newest is
    tried: one bad task, signed by the province by hand or by an older release, must not
    stop the tasks below it, nor the next bundle published properly. A failure to install
    a good bundle (the disk) is raised, and made good by the next pull."""
    candidates: list[tuple[int, str, bytes]] = []
    seen: set[str] = set()
    installed = node.registry.bundle_version
    with node.store.read() as conn:
        rows = conn.execute(
            select(TASKS.c.task_id, TASKS.c.rev, TASKS.c.issuer, TASKS.c.raw)
            .where(TASKS.c.kind == "contracts", _reaching(node.id), TASKS.c.issuer != node.id)
            .order_by(TASKS.c.task_id, TASKS.c.rev.desc())
        )
        for row in rows:
            if row.task_id in seen:
                continue  # an earlier revision
            seen.add(row.task_id)
            if parent_of(row.issuer) is not None:
                continue  # only the province publishes bundles
            payload = orjson.loads(bytes(row.raw)).get("payload")
            if not isinstance(payload, dict) or payload.get("cancelled") is True:
                continue
            claimed = payload.get("bundle_version")
            if not isinstance(claimed, int) or isinstance(claimed, bool):
                if (row.task_id, row.rev) in fresh:
                    report.rejected.append(
                        f"{ErrorCode.BUNDLE_INVALID.value}: task {row.task_id}: a contracts "
                        f"task carries an integer bundle_version, not {claimed!r}"
                    )
                continue
            if claimed > installed:
                candidates.append((claimed, row.task_id, bytes(row.raw)))
    for claimed, task_id, raw in sorted(candidates, reverse=True):
        task = Task.parse(raw)
        try:
            registry = _bundle_of(node, task, claimed)
        except GuantongError as exc:
            if (task.id, task.rev) in fresh:
                report.rejected.append(f"{exc.code.value}: task {task_id}: {exc.message}")
            continue
        if registry.bundle_version <= node.registry.bundle_version:
            return None  # installed meanwhile (another process): never roll back
        node.install_contracts(registry)
        return registry.bundle_version
    return None


def _apply_pending(node: Node) -> int:
    """Classify the entries held ``pending`` against the installed bundle, as the hub job
    does every minute at a hub. A station runs no hub job, and it holds pending entries
    too: its own, recovered from its parent (the first step of serve, sync and repair)
    while the bundle reinstalled with the release is older than the one they were written
    under. Done after every pull, not only after an install, so that a pull that fails
    between the two (or a recovery after the bundle came back) is made good by the next;
    with none pending it is one indexed query."""
    counts = apply_pending(node.store, node.registry, node.keyring)
    return counts["valid"] + counts["invalid"]


def _bundle_of(node: Node, task: Task, claimed: int) -> Registry:
    """The bundle a ``contracts`` task carries, checked: signed by the root key, loadable,
    and of the version it claims."""
    anchor = node.keyring.anchor
    key = node.keyring.lookup(task.key_id)
    if (
        anchor is None
        or key is None
        or key.cert is None
        or not key.cert.self_signed
        or key.key_id != anchor
    ):
        raise GuantongError(
            ErrorCode.FORBIDDEN, "contract bundles are published by the province only"
        )
    bundle = task.payload.get("bundle")
    if not isinstance(bundle, dict):
        raise GuantongError(
            ErrorCode.MALFORMED, 'a contracts task carries {"bundle": {index, schemas}}'
        )
    try:
        registry = Registry.from_bundle_bytes(canonical_bytes(bundle))
    except GuantongError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the compiler makes of it, a refusal
        raise GuantongError(ErrorCode.BUNDLE_INVALID, f"the bundle does not load: {exc!r}") from exc
    if registry.bundle_version != claimed:
        raise GuantongError(
            ErrorCode.BUNDLE_INVALID,
            f"the task claims bundle {claimed} and carries bundle {registry.bundle_version}",
        )
    return registry


def _revocation(task: Task) -> tuple[str, str]:
    """The node a ``revoke`` task names and the time its keys are revoked from."""
    target = task.payload.get("node")
    since = task.payload.get("from") or task.issued
    if (
        not isinstance(target, str)
        or not is_in_subtree(target, task.issuer)
        or target == task.issuer
    ):
        raise GuantongError(ErrorCode.MALFORMED, "a revoke task names a node below its issuer")
    try:
        return target, format_time(parse_time(since))
    except (GuantongError, TypeError, ValueError) as exc:
        raise GuantongError(
            ErrorCode.MALFORMED, f"a revoke task's from is not a time: {since!r}"
        ) from exc


# -- reporting -----------------------------------------------------------------------------


def report_task(
    node: Node,
    task_id: str,
    status: str,
    *,
    note: str | None = None,
    evidence: Sequence[dict[str, Any]] = (),
    resolution: str | None = None,
    record_ref: dict[str, str] | None = None,
    auto: bool = False,
) -> str:
    """Write a ``task_report`` record into this node's log; returns its record id."""
    task = latest_task(node, task_id)
    if task is None or not task.reaches(node.id):
        raise GuantongError(ErrorCode.NOT_FOUND, f"no task {task_id} for {node.id}")
    if task.cancelled and not auto:
        raise GuantongError(ErrorCode.FORBIDDEN, f"task {task_id} was cancelled by {task.issuer}")
    data: dict[str, Any] = {
        "task_id": task.id,
        "task_rev": task.rev,
        "status": status,
        "reported_at": format_time(node.clock()),
    }
    if note:
        data["note"] = note
    if evidence:
        data["evidence"] = list(evidence)
    if resolution:
        data["resolution"] = resolution
    if record_ref:
        data["record_ref"] = record_ref
    result = node.put("task_report", [(None, data)])
    return result.record_ids[0]


# -- the issuer's view ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskView:
    task: Task
    state: str
    overdue: bool
    """Open past its ``due``."""
    history: list[dict[str, Any]]
    responses: dict[str, int]
    closed_at: str | None = None
    """When the report that closed it (``done``, ``rejected``) was made; None while open."""

    @property
    def closed_on_time(self) -> bool:
        """Closed (done or rejected) by its ``due``, or closed with none set."""
        if self.closed_at is None:
            return False
        return self.task.due is None or self.closed_at <= self.task.due

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.task.to_dict(),
            "state": self.state,
            "overdue": self.overdue,
            "closed_at": self.closed_at,
            "history": self.history,
            **({"responses": self.responses} if self.task.kind == "collect" else {}),
        }


def task_views(
    node: Node, *, issued_here: bool | None = None, task_id: str | None = None
) -> list[TaskView]:
    """Tasks with their derived state; ``issued_here`` filters by issuer (None: all held)."""
    query = select(TASKS.c.task_id, func.max(TASKS.c.rev).label("rev")).group_by(TASKS.c.task_id)
    if issued_here is True:
        query = query.where(TASKS.c.issuer == node.id)
    if task_id is not None:
        if not is_uuid(task_id):
            return []
        query = query.where(TASKS.c.task_id == task_id)
    now = format_time(node.clock())
    views = []
    with node.store.read() as conn:
        for row in conn.execute(query).all():
            raw = conn.execute(
                select(TASKS.c.raw).where(TASKS.c.task_id == row.task_id, TASKS.c.rev == row.rev)
            ).scalar_one()
            task = Task.parse(bytes(raw))
            if issued_here is False and not task.reaches(node.id):
                continue
            events = conn.execute(
                select(TASK_EVENTS)
                .where(TASK_EVENTS.c.task_id == task.id)
                .order_by(TASK_EVENTS.c.at, TASK_EVENTS.c.seq)
            ).all()
            # only a recipient reports on a task: anyone else's task_report is not counted
            events = [e for e in events if task.reaches(e.origin)]
            history = [
                {
                    "origin": e.origin,
                    "status": e.status,
                    "at": e.at,
                    "rev": e.task_rev,
                    **({"note": e.note} if e.note else {}),
                }
                for e in events
            ]
            state, closed_at = _state(task, events)
            overdue = task.due is not None and state not in FINAL and now > task.due
            responses = _responses(conn, task) if task.kind == "collect" else {}
            views.append(TaskView(task, state, overdue, history, responses, closed_at))
    views.sort(key=lambda v: (v.task.issued, v.task.id))
    return views


def _state(task: Task, events: Sequence[Any]) -> tuple[str, str | None]:
    """The task's state from its recipients' reports, and when it closed (its first
    ``done`` or ``rejected``, whichever came first: a task rejected in time and reported
    done later was answered in time), or None while open. A ``done`` decides the state
    over a ``rejected``.

    ``done`` and ``rejected`` answer one revision: an amendment (a new instruction, a later
    deadline) reopens a task its target closed before, so only the current revision's
    closing reports count. A ``done`` of an earlier revision still shows the work under
    way (``in_progress``); receipts and progress carry over."""
    if task.cancelled:
        return "cancelled", None
    current = [e for e in events if e.task_rev == task.rev]
    done = [e.at for e in current if e.status == "done"]
    rejected = [e.at for e in current if e.status == "rejected"]
    if done or rejected:
        return ("done" if done else "rejected"), min(done + rejected)
    best = 0
    for event in events:
        mapped = _STATUS_STATE.get(event.status)
        if mapped in ("done", "rejected"):
            mapped = "in_progress" if mapped == "done" else None
        if mapped in _PROGRESS:
            best = max(best, _PROGRESS.index(mapped))
    return _PROGRESS[best], None


def _responses(conn: Connection, task: Task) -> dict[str, int]:
    """Opinions tagged with a campaign (``collect``) per station."""
    campaign = RECORDS.c.data["campaign_id"].as_string()
    rows = conn.execute(
        select(RECORDS.c.origin, func.count())
        .where(RECORDS.c.contract == "opinion", campaign == task.id, RECORDS.c.deleted.is_(False))
        .group_by(RECORDS.c.origin)
    ).all()
    return {origin: int(count) for origin, count in rows}
