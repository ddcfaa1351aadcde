"""The node's own append-only log and the reading side shared with relayed origins.

Append (PROTOCOL §3): one call = one write transaction = one signed head. Inside it we lock
our own head row (:func:`node.db.lock_head`), number the entries from ``head.seq + 1``,
chain each ``prev`` to the previous entry's hash, insert the exact canonical bytes, update
the materialised records and store the new signed head. Because the head row is locked for
the whole transaction, concurrent writers (threads or processes) queue, and ``seq`` has
neither gaps nor duplicates; a failure anywhere rolls the whole batch back.

Reading: segments always end at a stored signed head, because relays cannot sign for
another origin. For our own origin we may sign a head on demand when a byte or count limit
cuts the log between two stored heads.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from sqlalchemy import Connection, func, select

from node.db import (
    RowsInsert,
    Store,
    bulk,
    driver_rows,
    insert_ignore,
    lock_head,
    storable_json,
    upsert,
)
from node.files import replace_file
from node.logs import get_logger
from node.reports import note_reports
from node.rollups import apply_deltas, entry_counts, record_deltas
from node.tables import ENTRIES, HEADS, LOCAL_PRIVATE, RECORDS, SIGNED_HEADS
from schemas.canonical import parse_canonical
from schemas.errors import ErrorCode, GuantongError
from schemas.log import Entry, SignedHead, build_entry, sign_head
from schemas.segments import Segment
from schemas.signing import Signer
from schemas.times import Clock, format_time

__all__ = [
    "AppendResult",
    "HeadInfo",
    "Log",
    "Write",
    "apply_records",
    "entry_row",
    "record_row",
]

_ENTRIES = ENTRIES
_HEADS = HEADS
_SIGNED = SIGNED_HEADS
_RECORDS = RECORDS
_CHUNK = 500
_NUL_ESCAPE = b"\\u0000"


@dataclass(frozen=True, slots=True)
class Write:
    contract: str
    version: str
    record_id: str
    op: Literal["put", "del"] = "put"
    data: dict[str, Any] | None = None
    line: int | None = None
    """Where the record came from in the caller's input, named in errors."""
    private: dict[str, Any] | None = None
    """Originals of private fields (JSON pointer → value); None when the contract has none."""


@dataclass(frozen=True, slots=True)
class AppendResult:
    first: int
    last: int
    head: SignedHead
    record_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HeadInfo:
    origin: str
    seq: int
    head: str
    signed: SignedHead | None


class Log:
    def __init__(
        self,
        store: Store,
        *,
        origin: str,
        signer: Signer,
        clock: Clock,
        watermark: Path | None = None,
    ) -> None:
        self.store = store
        self.origin = origin
        self.signer = signer
        self.clock = clock
        self.watermark = watermark
        self.rules: dict[str, Any] = {}
        """The performance-index rules the rollups count by (from the contract bundle)."""
        """A file outside the database holding the last own head written: if the store is
        ever restored from an older backup, the node sees it is behind and recovers first."""

    # -- writing -------------------------------------------------------------------------

    def append(
        self, writes: Sequence[Write], *, also: Callable[[Connection], None] | None = None
    ) -> AppendResult:
        """Append ``writes``; ``also`` runs inside the same transaction (bookkeeping)."""
        if not writes:
            raise ValueError("nothing to append")
        now = format_time(self.clock())
        with self.store.write() as conn:
            seq, prev = lock_head(conn, self.origin, now)
            self._check_ownership(conn, writes)
            first = seq + 1
            entry_rows: list[dict[str, Any]] = []
            entries: list[Entry] = []
            latest: dict[str, dict[str, Any]] = {}
            private: dict[str, dict[str, Any]] = {}
            for write in writes:
                seq += 1
                try:
                    entry, raw, digest = build_entry(
                        origin=self.origin,
                        seq=seq,
                        prev=prev,
                        time=now,
                        contract=write.contract,
                        version=write.version,
                        record_id=write.record_id,
                        op=write.op,
                        data=write.data,
                    )
                except GuantongError as exc:
                    if write.line is None:
                        raise
                    raise GuantongError(
                        exc.code, f"line {write.line}: {exc.message}", line=write.line
                    ) from exc
                entry_rows.append(entry_row(entry, raw, digest, "valid", now))
                entries.append(entry)
                latest[entry.id] = record_row(entry, raw)
                if write.private is not None:
                    private[entry.id] = write.private
                prev = digest
            insert_entries(conn, entry_rows)
            note_reports(conn, entries)
            self._store_private(conn, private)
            apply_records(conn, list(latest.values()), self.rules)
            apply_deltas(conn, entry_counts((self.origin, now) for _ in entry_rows))
            head = sign_head(self.signer, origin=self.origin, seq=seq, head=prev, time=now)
            self._store_head(conn, head, now)
            if also is not None:
                also(conn)
        self.write_watermark(seq, prev)
        return AppendResult(first=first, last=seq, head=head, record_ids=tuple(latest))

    def _check_ownership(self, conn: Connection, writes: Sequence[Write]) -> None:
        """Single writer: a write names a record of this node's own, so an id it has not
        used before starts a new record. Records are keyed by origin and id, so the same
        id held for another origin is another record and is not looked up here (a lookup
        by id alone probes every origin held: ``Node.find``, for ids typed by people)."""
        ids = sorted({w.record_id for w in writes})
        known: dict[str, str] = {}
        for i in range(0, len(ids), _CHUNK):
            rows = conn.execute(
                select(_RECORDS.c.record_id, _RECORDS.c.contract).where(
                    _RECORDS.c.origin == self.origin,
                    _RECORDS.c.record_id.in_(ids[i : i + _CHUNK]),
                )
            )
            known.update({r.record_id: r.contract for r in rows})
        for write in writes:
            contract = known.get(write.record_id)
            if contract is None:
                if write.op == "del":
                    raise GuantongError(
                        ErrorCode.NOT_FOUND, f"no record {write.record_id} to delete"
                    )
                continue
            if contract != write.contract:
                raise GuantongError(
                    ErrorCode.NOT_RECORD_OWNER,
                    f"record {write.record_id} is a {contract} record, not {write.contract}",
                )

    @staticmethod
    def _store_private(conn: Connection, private: dict[str, dict[str, Any]]) -> None:
        keep = [{"record_id": rid, "data": data} for rid, data in private.items() if data]
        upsert(conn, LOCAL_PRIVATE, keep, ["record_id"], ["data"])
        drop = [rid for rid, data in private.items() if not data]
        for i in range(0, len(drop), _CHUNK):
            conn.execute(
                LOCAL_PRIVATE.delete().where(LOCAL_PRIVATE.c.record_id.in_(drop[i : i + _CHUNK]))
            )

    def _store_head(self, conn: Connection, head: SignedHead, now: str) -> None:
        raw = head.canonical()
        insert_ignore(
            conn, _SIGNED, [{"origin": head.origin, "seq": head.seq, "raw": raw}], ["origin", "seq"]
        )
        conn.execute(
            _HEADS.update()
            .where(_HEADS.c.origin == head.origin)
            .values(
                seq=head.seq, hash=head.head, signed_seq=head.seq, signed_head=raw, updated_at=now
            )
        )

    def write_watermark(self, seq: int, digest: str) -> None:
        """Best effort: it runs after the commit, so the entries are stored whatever
        happens here; a watermark left behind (a full or read-only disk) only weakens the
        detection of a restored store, it never makes a sound one look restored."""
        if self.watermark is None:
            return
        body = orjson.dumps({"origin": self.origin, "seq": seq, "head": digest})
        try:
            replace_file(self.watermark, body)
        except OSError as exc:
            get_logger("guantong.log").warning("watermark.unwritten", seq=seq, error=str(exc))

    def read_watermark(self) -> int:
        if self.watermark is None or not self.watermark.is_file():
            return 0
        try:
            return int(orjson.loads(self.watermark.read_bytes())["seq"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return 0

    # -- reading -------------------------------------------------------------------------

    def head(self, origin: str | None = None) -> HeadInfo | None:
        with self.store.read() as conn:
            row = conn.execute(
                select(_HEADS).where(_HEADS.c.origin == (origin or self.origin))
            ).first()
        return None if row is None else _head_info(row)

    def heads(self, prefix: str | None = None) -> list[HeadInfo]:
        query = select(_HEADS).where(_HEADS.c.seq > 0).order_by(_HEADS.c.origin)
        if prefix:
            query = query.where(
                (_HEADS.c.origin == prefix) | _HEADS.c.origin.startswith(prefix + ".")
            )
        with self.store.read() as conn:
            return [_head_info(row) for row in conn.execute(query)]

    def iter_entries(
        self, origin: str, after: int = 0, *, batch: int = 2000
    ) -> Iterator[tuple[int, str, bytes]]:
        """``(seq, hash, raw)`` in seq order, read in batches: never the whole log at once."""
        while True:
            with self.store.read() as conn:
                rows = conn.execute(
                    select(_ENTRIES.c.seq, _ENTRIES.c.hash, _ENTRIES.c.raw)
                    .where(_ENTRIES.c.origin == origin, _ENTRIES.c.seq > after)
                    .order_by(_ENTRIES.c.seq)
                    .limit(batch)
                ).all()
            for row in rows:
                yield int(row.seq), str(row.hash), bytes(row.raw)
            if len(rows) < batch:
                return
            after = int(rows[-1].seq)

    def read_segment(
        self,
        origin: str,
        after: int,
        *,
        max_entries: int = 5000,
        max_bytes: int = 4 << 20,
        conn: Connection | None = None,
    ) -> Segment | None:
        """The next segment of ``origin`` after ``after``, ending at a signed head.

        ``conn``: a read transaction the caller holds (the uplink reads every origin of a
        push in one). The lookups are hand-written statements on the driver: a relay makes
        them once per origin it forwards, and a county forwards a thousand stations."""
        if conn is None:
            with self.store.read() as own:
                return self.read_segment(
                    origin, after, max_entries=max_entries, max_bytes=max_bytes, conn=own
                )
        held = driver_rows(conn, _HELD, (origin,))
        if not held or int(held[0][0]) <= after:
            return None
        rows = driver_rows(conn, _READ_ENTRIES, (origin, after, max_entries))
        if not rows or int(rows[0][0]) != after + 1:
            return None
        size, end = 0, after
        for seq, _, raw in rows:
            size += len(raw) + 1
            if size > max_bytes and end > after:
                break
            end = int(seq)
        signed = driver_rows(conn, _LAST_SIGNED, (origin, after + 1, end))
        if origin == self.origin and (not signed or int(signed[0][0]) != end):
            # a write on another connection: the read transaction holds no lock against it
            head = self._sign_prefix(rows, end)
        elif signed:
            head = SignedHead.parse_obj(parse_canonical(bytes(signed[0][1])))
        else:
            return self._read_to_next_head(origin, after)
        entries = tuple(bytes(raw) for seq, _, raw in rows if int(seq) <= head.seq)
        return Segment(head=head, start=after + 1, entries=entries)

    def _sign_prefix(self, rows: Sequence[Any], end: int) -> SignedHead:
        last_hash = next(digest for seq, digest, _ in rows if int(seq) == end)
        now = format_time(self.clock())
        head = sign_head(self.signer, origin=self.origin, seq=end, head=str(last_hash), time=now)
        with self.store.write() as conn:
            insert_ignore(
                conn,
                _SIGNED,
                [{"origin": self.origin, "seq": end, "raw": head.canonical()}],
                ["origin", "seq"],
            )
        return head

    def _read_to_next_head(self, origin: str, after: int) -> Segment | None:
        """A relayed origin whose first signed head lies beyond the limits: take all of it."""
        with self.store.read() as conn:
            signed = conn.execute(
                select(_SIGNED.c.seq, _SIGNED.c.raw)
                .where(_SIGNED.c.origin == origin, _SIGNED.c.seq > after)
                .order_by(_SIGNED.c.seq)
                .limit(1)
            ).first()
            if signed is None:
                return None
            raws = (
                conn.execute(
                    select(_ENTRIES.c.raw)
                    .where(
                        _ENTRIES.c.origin == origin,
                        _ENTRIES.c.seq > after,
                        _ENTRIES.c.seq <= signed.seq,
                    )
                    .order_by(_ENTRIES.c.seq)
                )
                .scalars()
                .all()
            )
        head = SignedHead.parse_obj(parse_canonical(bytes(signed.raw)))
        return Segment(head=head, start=after + 1, entries=tuple(bytes(r) for r in raws))

    def counts(self) -> tuple[int, int]:
        """``(entries, origins)`` held."""
        with self.store.read() as conn:
            entries = conn.execute(select(func.count()).select_from(_ENTRIES)).scalar_one()
            origins = conn.execute(
                select(func.count()).select_from(_HEADS).where(_HEADS.c.seq > 0)
            ).scalar_one()
        return int(entries), int(origins)


def entry_row(
    entry: Entry, raw: bytes, digest: str, status: str, received_at: str
) -> dict[str, Any]:
    """The ``entries`` row of one entry: its exact bytes and the fields needed to use them."""
    return {
        "origin": entry.origin,
        "seq": entry.seq,
        "hash": digest,
        "prev": entry.prev,
        "time": entry.time,
        "contract": entry.contract,
        "version": entry.version,
        "record_id": entry.id,
        "op": entry.op,
        "raw": raw,
        "status": status,
        "received_at": received_at,
    }


_ENTRY_COLUMNS = (
    "origin",
    "seq",
    "hash",
    "prev",
    "time",
    "contract",
    "version",
    "record_id",
    "op",
    "raw",
    "status",
    "received_at",
)
_INSERT_ENTRIES = RowsInsert(ENTRIES, _ENTRY_COLUMNS)
_UPSERT_RECORDS = RowsInsert(
    RECORDS,
    ("record_id", "origin", "contract", "version", "seq", "deleted", "data", "updated_at"),
    "ON CONFLICT (origin, record_id) DO UPDATE SET contract = excluded.contract, "
    "version = excluded.version, seq = excluded.seq, deleted = excluded.deleted, "
    "data = excluded.data, updated_at = excluded.updated_at "
    "WHERE records.seq < excluded.seq",
    key=("origin", "record_id"),
)


_entry_tuple = operator.itemgetter(*_ENTRY_COLUMNS)
_HELD = "SELECT seq FROM heads WHERE origin = ?"
_LAST_SIGNED = (
    "SELECT seq, raw FROM signed_heads WHERE origin = ? AND seq >= ? AND seq <= ? "
    "ORDER BY seq DESC LIMIT 1"
)
_READ_ENTRIES = (
    "SELECT seq, hash, raw FROM entries WHERE origin = ? AND seq > ? ORDER BY seq LIMIT ?"
)


def insert_entries(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``entries`` rows (from :func:`entry_row`) in one driver ``executemany``."""
    bulk(conn, _INSERT_ENTRIES, [_entry_tuple(row) for row in rows])


def record_row(entry: Entry, raw: bytes) -> dict[str, Any]:
    """The materialised state an entry gives its record: its data, except that text holding
    U+0000 holds U+FFFD instead (:func:`node.db.storable_json`). Canonical JSON escapes
    U+0000 as ``\\u0000``, so the raw bytes tell cheaply whether there is any."""
    data = entry.data
    if data is not None and _NUL_ESCAPE in raw:
        data = storable_json(data)
    return {
        "record_id": entry.id,
        "origin": entry.origin,
        "contract": entry.contract,
        "version": entry.version,
        "seq": entry.seq,
        "deleted": entry.op == "del",
        "data": data,
        "updated_at": entry.time,
    }


def apply_records(conn: Connection, rows: list[dict[str, Any]], rules: dict[str, Any]) -> None:
    """Materialise the latest state per record, keyed by origin and id: a newer seq wins.

    The guard makes re-delivery and late-applied (pending) entries harmless. An entry of
    another origin with the same id is another record (single writer), so no origin's
    entries shadow another's, whatever order they arrive in. The rollups move by exactly
    what the guard lets through (``node/rollups.py``).
    """
    if not rows:
        return
    apply_deltas(conn, record_deltas(conn, rows, rules))
    bulk(
        conn,
        _UPSERT_RECORDS,
        [
            (
                r["record_id"],
                r["origin"],
                r["contract"],
                r["version"],
                r["seq"],
                r["deleted"],
                None if r["data"] is None else orjson.dumps(r["data"]).decode(),
                r["updated_at"],
            )
            for r in rows
        ],
    )


def _head_info(row: Any) -> HeadInfo:
    signed = None
    if row.signed_head is not None:
        signed = SignedHead.parse_obj(parse_canonical(bytes(row.signed_head)))
    return HeadInfo(origin=row.origin, seq=int(row.seq), head=row.hash, signed=signed)
