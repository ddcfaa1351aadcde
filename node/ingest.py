"""Ingest: verify and store segments — the hub's hot path (PROTOCOL §3–4).

It lives in ``node/`` rather than ``hub/`` because every node needs it: a hub for pushes
and imported bundles, any node to take its own log back from its parent (recovery).

A push body is NDJSON segments (header + exact entry lines). Framing is decoded first and
in full: a body whose framing breaks anywhere is refused as a whole (``400 malformed``,
naming the line) and nothing of it is stored, so a truncated upload or USB bundle can never
leave half a segment behind.

Each segment then goes through two phases.

1. **Verify, outside any transaction** (pure CPU, no locks held): the origin lies strictly
   inside this hub's subtree and inside the caller's; every entry line parses as a
   canonical entry of that origin with consecutive seqs; each ``prev`` is the hash of the
   entry before it; the last hash equals ``SH.head``; ``SH.sig`` verifies with a key the
   keyring knows for that origin, valid at ``SH.time`` and not revoked from before it; and
   every entry is classified against the contracts: ``valid``, ``invalid`` (kept, relayed,
   reported, not applied) or ``pending`` (unknown contract version: kept, applied later).

2. **Apply, in one write transaction per request**: the head rows of every origin in the
   request are locked in sorted order (``SELECT … FOR UPDATE`` on PostgreSQL, the database
   write lock on SQLite), so pushes of the same origin serialise and different workers
   cannot deadlock. Against the held head ``(seq, hash)``:

   - a segment starting beyond ``held + 1`` is a ``gap`` (``expected = held + 1``);
   - entries at or below ``held`` are compared by hash with what is stored: equal means a
     harmless resend, different means ``fork`` (the origin equivocated or was restored from
     an old backup) and nothing of the segment is stored — never overwritten;
   - the first new entry must chain from the held hash, else ``fork``;
   - new entries are inserted with their exact bytes, the signed head is stored, the head
     row advances, and valid entries update the materialised records.

   Segments are applied in request order, so one request may carry several consecutive
   segments of one origin. A rejected segment does not affect the others.

``held`` in each result is what is durably held after commit: the sender's cursor moves
to it and nowhere else.

**Group commit.** A durable commit costs a flush to disk, and a county receiving a hundred
stations at once would spend most of its time waiting for flushes, one per request. So
requests that arrive while another is being applied queue up, and the next leader applies
the whole queue in one transaction and one flush (the leader/follower scheme of database
group commit): every request of the batch is answered only after that commit, so
``held`` keeps its meaning. The heads of every origin in the batch are locked up front in
sorted order, as for a single request. If anything unexpected fails in a batch (not a
segment rejection: those are answers), it is rolled back as a whole and each request is
applied again on its own, so one bad request cannot take others down with it. A request
may carry a check to run inside its transaction (the replay cache of signed requests), so
that a request is remembered exactly when its data is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from contracts.registry import Registry, Violation
from node.db import Store, bulk, lock_head, storable_text
from node.keyring import Keyring, KnownKey
from node.log import apply_records, entry_row, insert_entries, record_row
from node.reports import note_reports
from node.rollups import Key, apply_deltas, day_of
from node.runtime import Node
from node.tables import ENTRIES, HEADS, REJECTIONS
from schemas.errors import ErrorCode, GuantongError
from schemas.hashing import sha256_hex
from schemas.ids import is_in_subtree
from schemas.log import Entry
from schemas.segments import Segment, decode_segments, split_lines
from schemas.signing import is_signature
from schemas.times import Clock, format_time

__all__ = ["Ingestor", "SegmentResult"]

MAX_BATCH_REQUESTS = 64
MAX_BATCH_ENTRIES = 20_000
MAX_ADMITTED = 4
"""Requests decoded, verified and applied at once; more wait their turn. Two cores gain
nothing from more, and each holds its body and every entry parsed (about 7 KB an entry,
about 1 MiB of segments in a hub's relay): a province taking 13 cities' relays at once
would otherwise hold them all, and its memory would grow with the number of children."""
ADMISSION_WAIT_S = 5.0
"""How long a request waits for one of those places before the hub answers ``503 busy``
with a short ``Retry-After``. Waiting longer would spend the sender's timeout (30 s at
hubs): a relay that times out backs off exponentially and later resends what the hub had
in fact stored, which is then verified a second time."""


@dataclass(slots=True)
class SegmentResult:
    origin: str
    held: int
    status: str = "ok"
    invalid: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"origin": self.origin, "held": self.held, "status": self.status}
        if self.invalid:
            out["invalid"] = self.invalid
        if self.pending:
            out["pending"] = self.pending
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(slots=True)
class _Checked:
    """A segment that passed phase 1: parsed entries with hashes and classification."""

    segment: Segment
    entries: list[Entry]
    hashes: list[str]
    statuses: list[str]
    invalid: list[dict[str, Any]]


@dataclass(slots=True)
class _Job:
    """One request on its way through group commit."""

    segments: Sequence[Segment]
    caller: str | None
    recovering: bool
    check: Callable[[Connection], None] | None
    verified: list[_Checked | None]
    early: list[SegmentResult | None]  # rejected before any transaction
    results: list[SegmentResult | None] = field(default_factory=list)
    error: BaseException | None = None
    lead: bool = False
    wake: threading.Event = field(default_factory=threading.Event)

    @property
    def entries(self) -> int:
        return sum(len(s.entries) for s in self.segments)


class _GroupCommit:
    """Leader/follower group commit: whoever finds nobody applying becomes the leader and
    applies everything queued, in one transaction; followers wait for their answer, and
    the leader hands over to the oldest waiting request when it is done."""

    def __init__(self, apply_batch: Callable[[list[_Job]], None]) -> None:
        self._apply_batch = apply_batch
        self._lock = threading.Lock()
        self._queue: list[_Job] = []
        self._busy = False

    def run(self, job: _Job) -> None:
        with self._lock:
            self._queue.append(job)
            lead = not self._busy
            self._busy = True
        if not lead:
            job.wake.wait()
            if not job.lead:
                return  # a leader applied it
        with self._lock:
            batch: list[_Job] = []
            size = 0
            while self._queue and len(batch) < MAX_BATCH_REQUESTS:
                if batch and size + self._queue[0].entries > MAX_BATCH_ENTRIES:
                    break
                size += self._queue[0].entries
                batch.append(self._queue.pop(0))
        try:
            self._apply_batch(batch)
        finally:
            for other in batch:
                if other is not job:
                    other.wake.set()
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                    successor.wake.set()
                else:
                    self._busy = False


class _Reject(Exception):
    def __init__(self, code: ErrorCode, message: str, **details: Any) -> None:
        super().__init__(message)
        self.body = {"code": code.value, "message": message, **details}


class _Materials:
    """Records and entry counts of one write transaction, applied once at its end.

    A county's batch holds many stations' pushes; applying their records and rollups in
    one statement each (instead of one per segment) lets rollup rows of the same origin
    and day fold into one upsert. A record is named by its origin and its id; of one
    record's states in the batch the newest wins, as the newer-seq guard of
    :func:`apply_records` would decide row by row.
    """

    def __init__(self, rules: dict[str, Any]) -> None:
        self.rules = rules
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.counts: dict[Key, int] = {}

    def record(self, row: dict[str, Any]) -> None:
        key = (row["origin"], row["record_id"])
        held = self.records.get(key)
        if held is None or held["seq"] < row["seq"]:
            self.records[key] = row

    def count(self, origin: str, time: str) -> None:
        key = (origin, day_of(time), "entries", "count")
        self.counts[key] = self.counts.get(key, 0) + 1

    def flush(self, conn: Connection) -> None:
        apply_records(conn, list(self.records.values()), self.rules)
        apply_deltas(conn, self.counts)
        self.records, self.counts = {}, {}


class Ingestor:
    def __init__(
        self,
        *,
        store: Store,
        hub_id: str,
        registry: Registry | Callable[[], Registry],
        keyring: Keyring,
        clock: Clock,
    ) -> None:
        """``registry``: the bundle, or where to find the installed one at each use (a
        server's ingestor outlives the bundles its node installs)."""
        self.store = store
        self.hub_id = hub_id
        self._registry = registry
        self.keyring = keyring
        self.clock = clock
        self._group = _GroupCommit(self._apply_batch)
        self._admission = threading.BoundedSemaphore(MAX_ADMITTED)
        self.admission_wait = ADMISSION_WAIT_S

    @classmethod
    def of(cls, node: Node, *, clock: Clock | None = None) -> Ingestor:
        """The ingestor of ``node``: its store, keyring and clock (or ``clock``), and the
        contract bundle it has installed at each use."""
        return cls(
            store=node.store,
            hub_id=node.id,
            registry=lambda: node.registry,
            keyring=node.keyring,
            clock=clock or node.clock,
        )

    @property
    def registry(self) -> Registry:
        source = self._registry
        return source if isinstance(source, Registry) else source()

    @contextmanager
    def admitted(self) -> Iterator[None]:
        """Hold one of the :data:`MAX_ADMITTED` places while a request is decoded and
        ingested; after :attr:`admission_wait` seconds without one, refuse it as ``busy``
        (nothing of it was read; the sender keeps it and comes back after ``Retry-After``)."""
        if not self._admission.acquire(timeout=self.admission_wait):
            raise GuantongError(
                ErrorCode.BUSY,
                f"{MAX_ADMITTED} requests are being ingested; try again after Retry-After",
            )
        try:
            yield
        finally:
            self._admission.release()

    def push(
        self,
        body: bytes,
        *,
        caller: str | None,
        check: Callable[[Connection], None] | None = None,
    ) -> list[SegmentResult]:
        """Ingest a push body; raises :class:`FramingError` if its framing is broken."""
        segments = list(decode_segments(split_lines(body)))
        return self.ingest(segments, caller=caller, check=check)

    def ingest(
        self,
        segments: Sequence[Segment],
        *,
        caller: str | None,
        recovering: bool = False,
        check: Callable[[Connection], None] | None = None,
    ) -> list[SegmentResult]:
        """Verify and apply ``segments``; ``recovering`` takes back this node's own log.

        ``check`` runs first inside the write transaction; if it raises, nothing of this
        request is stored and the error is raised here.
        """
        verified: list[_Checked | None] = [None] * len(segments)
        early: list[SegmentResult | None] = [None] * len(segments)
        keys = self.keyring.lookup_many(s.head.key_id for s in segments)
        for i, segment in enumerate(segments):
            try:
                verified[i] = self._verify(segment, caller, recovering, keys=keys)
            except _Reject as reject:
                early[i] = SegmentResult(segment.origin, 0, "rejected", error=reject.body)
        job = _Job(segments, caller, recovering, check, verified, early)
        self._group.run(job)
        if job.error is not None:
            raise job.error
        final = [r for r in job.results if r is not None]
        self._fill_held(final)
        return final

    def _apply_batch(self, jobs: list[_Job]) -> None:
        """Apply every job in one transaction; on an unexpected failure, one by one."""
        now = format_time(self.clock())
        try:
            with self.store.write() as conn:
                origins = sorted(
                    {
                        s.origin
                        for job in jobs
                        for s, c in zip(job.segments, job.verified, strict=True)
                        if c is not None
                    }
                )
                held = {origin: lock_head(conn, origin, now) for origin in origins}
                materials = _Materials(self.registry.rules("performance_index"))
                for job in jobs:
                    self._apply_job(conn, job, held, now, materials)
                materials.flush(conn)
        except Exception as exc:  # noqa: BLE001 - raised again in the request's own thread
            if len(jobs) == 1:
                jobs[0].error = exc
                return
            for job in jobs:
                job.error = None
                self._apply_batch([job])

    def _apply_job(
        self,
        conn: Connection,
        job: _Job,
        held: dict[str, tuple[int, str]],
        now: str,
        materials: _Materials,
    ) -> None:
        if job.check is not None:
            try:
                job.check(conn)
            except GuantongError as exc:
                job.error = exc
                return
        results = list(job.early)
        unlearnt: list[tuple[str, dict[str, Any], str]] = []
        for i, item in enumerate(job.verified):
            if item is None:
                continue
            try:
                results[i] = self._apply(conn, item, held, now, unlearnt, materials)
            except _Reject as reject:
                origin = item.segment.origin
                results[i] = SegmentResult(origin, held[origin][0], "rejected", error=reject.body)
        self._retry_unknown(
            conn, job.segments, results, held, now, unlearnt, job.caller, job.recovering, materials
        )
        caller = job.caller
        if caller is not None:
            _note_peer(conn, caller, [r for r in results if r is not None], now)
        refused = [
            {
                "origin": r.origin,
                "caller": caller,
                "code": r.error["code"],
                "message": storable_text(str(r.error.get("message", "")))[:500],
                "at": now,
                "reviewed": False,
            }
            for r in results
            if r is not None and r.error is not None and r.error["code"] != "gap"
        ]
        if refused:
            conn.execute(REJECTIONS.insert(), refused)
        job.results = results

    def _retry_unknown(
        self,
        conn: Connection,
        segments: Sequence[Segment],
        results: list[SegmentResult | None],
        held: dict[str, tuple[int, str]],
        now: str,
        unlearnt: list[tuple[str, dict[str, Any], str]],
        caller: str | None,
        recovering: bool,
        materials: _Materials,
    ) -> None:
        """Certificates and the segments they unlock may arrive in one request: a county's
        log announcing a station's key comes before the station's segments. Retry what
        could not be verified until nothing more can be."""
        progress = True
        while progress:
            progress = False
            for item in list(unlearnt):
                if self.keyring.learn(*item, conn):
                    unlearnt.remove(item)
                    progress = True
            for i, result in enumerate(results):
                if (
                    result is None
                    or result.error is None
                    or result.error["code"] != "unknown_origin"
                ):
                    continue
                segment = segments[i]
                try:
                    checked = self._verify(segment, caller, recovering, conn)
                except _Reject as reject:
                    if reject.body["code"] != ErrorCode.UNKNOWN_ORIGIN.value:
                        # its key is known now, and the segment fails for another reason
                        # (a bad signature, a revoked key): that is the answer to give
                        origin = segment.origin
                        held_seq = held[origin][0] if origin in held else 0
                        results[i] = SegmentResult(origin, held_seq, "rejected", error=reject.body)
                    continue
                if segment.origin not in held:
                    held[segment.origin] = lock_head(conn, segment.origin, now)
                try:
                    results[i] = self._apply(conn, checked, held, now, unlearnt, materials)
                except _Reject as reject:
                    results[i] = SegmentResult(
                        segment.origin, held[segment.origin][0], "rejected", error=reject.body
                    )
                progress = True

    def _fill_held(self, results: list[SegmentResult]) -> None:
        """Rejected-before-apply results still tell the sender what this hub holds."""
        missing = sorted({r.origin for r in results if r.status == "rejected" and r.held == 0})
        if not missing:
            return
        with self.store.read() as conn:
            rows = dict(
                conn.execute(
                    select(HEADS.c.origin, HEADS.c.seq).where(HEADS.c.origin.in_(missing))
                ).all()
            )
        for result in results:
            if result.origin in rows and result.status == "rejected" and result.held == 0:
                result.held = int(rows[result.origin])

    # -- phase 1: verify -----------------------------------------------------------------

    def _verify(
        self,
        segment: Segment,
        caller: str | None,
        recovering: bool,
        conn: Connection | None = None,
        *,
        keys: Mapping[str, KnownKey] | None = None,
    ) -> _Checked:
        """Phase 1 for one segment. ``keys`` are the request's keys read up front
        (:meth:`Keyring.lookup_many`); without them the key is looked up here."""
        origin, head = segment.origin, segment.head
        if recovering:
            if origin != self.hub_id:
                raise _Reject(ErrorCode.NOT_IN_SUBTREE, f"recovery takes back only {self.hub_id}")
        elif origin == self.hub_id or not is_in_subtree(origin, self.hub_id):
            raise _Reject(ErrorCode.NOT_IN_SUBTREE, f"{origin} is not below {self.hub_id}")
        if caller is not None and not is_in_subtree(origin, caller):
            raise _Reject(ErrorCode.NOT_IN_SUBTREE, f"{caller} may not push segments of {origin}")
        entries: list[Entry] = []
        hashes: list[str] = []
        for offset, raw in enumerate(segment.entries):
            seq = segment.start + offset
            try:
                entry = Entry.parse(raw)
            except GuantongError as exc:
                code = (
                    ErrorCode.TOO_LARGE if exc.code is ErrorCode.TOO_LARGE else ErrorCode.MALFORMED
                )
                raise _Reject(code, f"entry {seq}: {exc.message}", seq=seq) from exc
            if entry.origin != origin or entry.seq != seq:
                raise _Reject(
                    ErrorCode.BAD_CHAIN,
                    f"entry line {offset + 1} claims {entry.origin} seq {entry.seq}, "
                    f"expected {origin} seq {seq}",
                    seq=seq,
                )
            digest = sha256_hex(raw)
            if hashes and entry.prev != hashes[-1]:
                raise _Reject(
                    ErrorCode.BAD_CHAIN, f"entry {seq} does not chain from entry {seq - 1}", seq=seq
                )
            entries.append(entry)
            hashes.append(digest)
        if hashes[-1] != head.head:
            raise _Reject(
                ErrorCode.BAD_HASH,
                f"entry {head.seq} hashes to {hashes[-1]}, the signed head says {head.head}",
            )
        if not is_signature(head.sig):
            raise _Reject(
                ErrorCode.BAD_SIGNATURE,
                f"signed head of {origin} seq {head.seq}: a signature is "
                "'<16 hex key id>:<86 base64url characters>'",
            )
        key = keys.get(head.key_id) if keys is not None else self.keyring.lookup(head.key_id, conn)
        if key is None or key.node != origin:
            raise _Reject(
                ErrorCode.UNKNOWN_ORIGIN, f"no certificate of {origin} for key {head.key_id}"
            )
        if key.revoked_at(head.time):
            raise _Reject(
                ErrorCode.REVOKED_KEY,
                f"key {head.key_id} of {origin} is revoked from {key.revoked_from}",
            )
        if not key.valid_at(head.time):
            raise _Reject(
                ErrorCode.BAD_SIGNATURE,
                f"key {head.key_id} of {origin} is not valid at {head.time}",
            )
        if not head.verify(key.public_raw):
            raise _Reject(
                ErrorCode.BAD_SIGNATURE, f"signed head of {origin} seq {head.seq} does not verify"
            )
        statuses: list[str] = []
        invalid: list[dict[str, Any]] = []
        registry = self.registry
        for entry in entries:
            status, problems = registry.check(entry.contract, entry.version, entry.op, entry.data)
            statuses.append(status)
            if status == "invalid":
                invalid.append(_invalid(entry, problems))
        return _Checked(segment, entries, hashes, statuses, invalid)

    # -- phase 2: apply ------------------------------------------------------------------

    def _apply(
        self,
        conn: Connection,
        item: _Checked,
        held: dict[str, tuple[int, str]],
        now: str,
        unlearnt: list[tuple[str, dict[str, Any], str]],
        materials: _Materials,
    ) -> SegmentResult:
        segment = item.segment
        origin, start, end = segment.origin, segment.start, segment.end
        held_seq, held_hash = held[origin]
        if start > held_seq + 1:
            raise _Reject(
                ErrorCode.GAP, f"{origin}: this hub holds up to {held_seq}", expected=held_seq + 1
            )
        overlap_end = min(end, held_seq)
        if start <= overlap_end:
            stored = dict(
                conn.execute(
                    select(ENTRIES.c.seq, ENTRIES.c.hash).where(
                        ENTRIES.c.origin == origin,
                        ENTRIES.c.seq >= start,
                        ENTRIES.c.seq <= overlap_end,
                    )
                ).all()
            )
            for seq in range(start, overlap_end + 1):
                if stored.get(seq) != item.hashes[seq - start]:
                    raise _Reject(
                        ErrorCode.FORK, f"{origin} seq {seq} differs from the entry held", seq=seq
                    )
        if end <= held_seq:
            return SegmentResult(origin, held_seq, "ok")
        first_new = held_seq + 1 - start
        if first_new == 0 and item.entries[0].prev != held_hash:
            raise _Reject(
                ErrorCode.FORK,
                f"{origin} seq {start} does not chain from the entry held",
                seq=start,
            )
        rows: list[dict[str, Any]] = []
        pending: list[dict[str, Any]] = []
        for entry, digest, raw, status in zip(
            item.entries[first_new:],
            item.hashes[first_new:],
            segment.entries[first_new:],
            item.statuses[first_new:],
            strict=True,
        ):
            rows.append(entry_row(entry, raw, digest, status, now))
            materials.count(origin, entry.time)
            if status == "pending":
                pending.append(_pending(entry, self.registry))
            if status == "valid":
                materials.record(record_row(entry, raw))
        insert_entries(conn, rows)
        note_reports(
            conn,
            (
                e
                for e, st in zip(item.entries[first_new:], item.statuses[first_new:], strict=True)
                if st == "valid"
            ),
        )
        for entry, status in zip(item.entries[first_new:], item.statuses[first_new:], strict=True):
            # every announcement in order: a certificate and its later revocation may share
            # one record id, so the latest record state alone would lose the certificate
            if entry.contract == "node_cert" and entry.op == "put" and status == "valid":
                assert entry.data is not None
                learnt = (origin, entry.data, entry.time)
                if not self.keyring.learn(*learnt, conn):
                    unlearnt.append(learnt)
        raw_head = segment.head.canonical()
        bulk(conn, _KEEP_HEAD, [(origin, end, raw_head)])
        bulk(conn, _ADVANCE, [(end, segment.head.head, end, raw_head, now, origin)])
        held[origin] = (end, segment.head.head)
        new_invalid = [i for i in item.invalid if i["seq"] > held_seq]
        return SegmentResult(origin, end, "ok", invalid=new_invalid, pending=pending)


_KEEP_HEAD = (
    "INSERT INTO signed_heads (origin, seq, raw) VALUES (?, ?, ?) "
    "ON CONFLICT (origin, seq) DO NOTHING"
)
_ADVANCE = (
    "UPDATE heads SET seq = ?, hash = ?, signed_seq = ?, signed_head = ?, updated_at = ? "
    "WHERE origin = ?"
)


def _note_peer(conn: Connection, caller: str, results: list[SegmentResult], now: str) -> None:
    """Remember when each child was last heard from, and how its last push went."""
    errors = [r.error["code"] for r in results if r.error is not None]
    last_error = f"{errors[0]} ({len(errors)} segment(s))" if errors else None
    bulk(conn, _NOTE_PEER, [(caller, now, last_error)])


_NOTE_PEER = (
    "INSERT INTO peers (node, last_seen, last_error, pushes) VALUES (?, ?, ?, 1) "
    "ON CONFLICT (node) DO UPDATE SET last_seen = excluded.last_seen, "
    "last_error = excluded.last_error, pushes = peers.pushes + 1"
)


def _pending(entry: Entry, registry: Registry) -> dict[str, Any]:
    """PROTOCOL §4 names one code for an unknown contract or contract version."""
    return {
        "seq": entry.seq,
        "code": ErrorCode.UNKNOWN_CONTRACT.value,
        "message": f"{entry.contract} {entry.version} is not in bundle "
        f"{registry.bundle_version} here: kept pending, applied when the contracts arrive",
    }


def _invalid(entry: Entry, problems: list[Violation]) -> dict[str, Any]:
    first = problems[0]
    return {
        "seq": entry.seq,
        "code": ErrorCode.CONTRACT_VIOLATION.value,
        "path": first.pointer,
        "rule": first.rule,
        "message": f"{entry.contract} {entry.version}: {first.message}",
    }
