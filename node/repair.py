"""Repair: rebuild a damaged SQLite store from what can still be read, then from the parent.

A page of a database file can go bad (a failing disk, a torn write under a lying cache, a
copy taken without the WAL). SQLite then answers ``database disk image is malformed`` when
a query touches the page, and neither ``REINDEX`` nor ``VACUUM`` gets past it. Damage found
by SQLite or by ``guantong verify`` quarantines the store (``node/db.py``): writes and
uplink stop, reads go on where they can. ``guantong repair`` lifts the quarantine:

1. **Check.** ``PRAGMA integrity_check`` and every chain (:func:`node.verify.check_store`).
   A sound store is left as it is; only the quarantine is lifted.
2. **Move aside.** The database file with its ``-wal`` and ``-shm`` (the WAL holds
   committed data) goes into ``<home>/corrupt-<time>/``; nothing is deleted. The marker
   names that folder first, so a repair interrupted from here on starts again from it,
   wherever it stopped: the database file moves last, and the next run looks for it in the
   folder, else still in the home (then it moves it itself); a store found in the home
   beside a moved one is a partial rebuild, kept in ``rebuild-<time>/``. Found nowhere,
   the repair stops: an empty store is never passed off as the repaired one.
3. **Salvage what SQLite can still read, table by table, in rowid order.** A query that
   runs into a bad page fails; the reader then looks for the first rowid past it (doubling
   steps, then bisection) and goes on, so only the rows on damaged pages are lost. Index
   pages are never read: rows are found through the tables themselves.

   - The log (``entries``, ``signed_heads``) is not copied but **re-ingested** into a new
     store, segment by segment up to each stored signed head, through the very checks of a
     push (chain, hashes, signatures; this node's own origin as in recovery). So the new
     store holds only what verifies, every origin up to the last signed head before its
     first lost or damaged entry; heads, records, rollups and task reports are rebuilt by
     the ingest itself.
   - Every other table (keys, private fields, tasks, cursors, accounts, tokens…) is copied
     row by row; the keys come first, since the log is checked with them. One cursor is
     not when ``tasks`` lost rows: the ``downlink`` cursor in the parent's task feed would
     go on after the revisions lost, so it starts again from 0 and the next pull takes the
     feed again (stored once by task and revision; receipts derive from the log).

4. **Then the federation gives back the rest.** A node with a parent takes its own entries
   beyond the salvaged head back from it before writing again (``node/recovery.py``; the
   ``head.json`` watermark makes it refuse to write until then), and then the salvaged
   own entries that follow them: a lost page in the middle of the log costs only what was
   on it. The own log cannot have a hole, so those entries wait for the parent: asked now
   (``connect``), it gives back at once; not asked (``--offline``), away or refusing, the
   own entries read beyond the rebuilt head (the writes since the last sync among them,
   which no one else holds) are kept in ``<home>/salvaged.db``, and the recovery at the
   next start takes them after what the parent gives back (the file is evidence too: the
   node writes nothing before). Children of a hub resend what it lacks on their next sync:
   their uplinks lower their cursors to its heads. What never left the node and was on a
   lost page (its own entries not yet pushed, and every one after them in its chain;
   private fields) is lost; the province, which has no parent, keeps only what is
   salvaged.

PostgreSQL stores are not rebuilt here: restore them from their dump (``deploy/``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import select

from node.db import Store
from node.ingest import Ingestor
from node.keyring import Keyring
from node.recovery import ensure_recovered, salvaged_segments
from node.runtime import EPOCH, SALVAGED, Node, keep_private, load_registry, open_store
from node.settings import NodeSettings
from node.tables import DOWNLINK, TASK_FEED, TASKS, metadata
from node.verify import check_store
from schemas.errors import ErrorCode, GuantongError
from schemas.segments import Segment
from schemas.times import Clock, format_time, system_clock

__all__ = ["ClientFactory", "OriginSalvage", "RepairReport", "readable_rows", "repair"]

_BATCH = 1000
_INGEST_ENTRIES = 2000
_REBUILT = frozenset({"entries", "signed_heads", "heads", "records", "rollups", "task_events"})
"""Tables the re-ingested log rebuilds; every other table is copied."""
_FIRST = ("meta", "keys")
_REPLACED = frozenset({"task_feed"})
"""Tables whose row the new store seeds (the feed's head at 0) and the copy replaces."""
_DAMAGE_CODES = frozenset({10, 11, 26})  # SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_NOTADB
_FILES = ("-wal", "-shm", "")
"""The parts of a SQLite store, in the order they are moved: the database file last, so
that once it is aside the whole store is (a repair killed in between finds the rest)."""


@dataclass(frozen=True, slots=True)
class OriginSalvage:
    origin: str
    before: int | None
    """The seq the damaged store's head row named, if it could be read."""
    held: int
    """The seq the rebuilt store holds (salvaged, then from the parent), all verified."""


@dataclass(slots=True)
class RepairReport:
    rebuilt: bool
    damage: list[str] = field(default_factory=list)
    aside: Path | None = None
    origins: list[OriginSalvage] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    """Rows copied per table (the log: entries re-ingested)."""
    unreadable: dict[str, int] = field(default_factory=dict)
    """Per table, how many stretches of rowids could not be read."""
    restored: int | None = None
    """Own entries taken back from the parent (None: not asked)."""
    recovery_error: str | None = None
    kept: int = 0
    """Own entries read beyond the rebuilt head and kept in ``salvaged.db``: the parent
    was not asked or away, and they wait for the recovery at the next start."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "rebuilt": self.rebuilt,
            "damage": self.damage,
            "aside": str(self.aside) if self.aside else None,
            "origins": [
                {"origin": o.origin, "before": o.before, "held": o.held} for o in self.origins
            ],
            "rows": self.rows,
            "unreadable": self.unreadable,
            "restored_from_parent": self.restored,
            "recovery_error": self.recovery_error,
            "kept_for_recovery": self.kept,
        }


ClientFactory = Callable[[Node], httpx.AsyncClient]


async def repair(
    settings: NodeSettings,
    *,
    clock: Clock = system_clock,
    force: bool = False,
    connect: ClientFactory | None = None,
) -> RepairReport:
    """Check the store; rebuild it if damaged (or ``force``); lift the quarantine.

    With ``connect`` (a signed client to the parent for the new node), own entries the
    parent holds beyond the salvaged head are taken back, and then the salvaged entries
    that follow them: a lost page in the middle of the log costs only what was on it.
    """
    path = _sqlite_file(settings)
    with _exclusive(settings.home):
        marker = open_store(settings)  # the marker only: the database is not opened here
        found = marker.quarantine() or {}
        resume = found.get("repair")
        if resume is None:
            node = Node.open(settings, clock=clock)
            try:
                check = check_store(node.log)
            finally:
                node.close()
            if not (check.quarantined or force):
                marker.clear_corrupt()
                return RepairReport(rebuilt=False)
            damage = check.damage or [str(p) for p in check.problems if p.damage]
            reason = "; ".join(damage[:3]) or "rebuild asked for"
        else:
            damage = [f"resuming the repair from {resume}"]
            reason = str(found.get("reason", "an interrupted repair"))
        stamp = format_time(clock()).replace(":", "").replace(".", "")
        if resume:
            aside = Path(resume)
            _set_aside_again(path, aside, stamp)
        else:
            aside = _fresh(settings.home / f"corrupt-{stamp}")
            marker.mark_corrupt(reason, repair=str(aside))
            _move(path, aside)
        report = RepairReport(rebuilt=True, damage=damage, aside=aside)
        store = Store(settings.database_url)  # no marker: the node stays quarantined meanwhile
        try:
            store.migrate()
            keep_private(settings)  # made under the umask: private before anything is copied
            fresh = Node(settings, store, clock=clock)
            fresh.seed_store(format_time(clock()), key_from=EPOCH)
            with _Salvage(aside / path.name, fresh, report) as salvage:
                salvage.copy_tables()
                salvage.take_log()
                if connect is not None and settings.parent_url:
                    async with connect(fresh) as http:
                        await salvage.take_back(http)
                if settings.parent_url and not salvage.took_back:
                    salvage.keep_own()
        finally:
            store.dispose()
        marker.clear_corrupt()
    return report


# -- reading what can be read --------------------------------------------------------------


def readable_rows(
    db: sqlite3.Connection, table: str, columns: list[str], skipped: list[tuple[int, int]]
) -> Iterator[tuple[Any, ...]]:
    """The rows of ``table`` in rowid order, stepping over stretches on damaged pages
    (each appended to ``skipped`` as the rowids ``(first, last)`` it could not read)."""
    listed = ", ".join(f'"{c}"' for c in columns)
    after = 0
    while True:
        count = 0
        try:
            for row in db.execute(
                f'SELECT rowid, {listed} FROM "{table}" WHERE rowid > ? ORDER BY rowid LIMIT ?',
                (after, _BATCH),
            ):
                count += 1
                after = int(row[0])
                yield row[1:]
        except sqlite3.DatabaseError as exc:
            if not _is_damage(exc):
                raise
            resume = _next_readable(db, table, after)
            skipped.append((after + 1, resume - 1 if resume else -1))
            if resume is None:
                return
            after = resume - 1
            continue
        if count < _BATCH:
            return


def _next_readable(db: sqlite3.Connection, table: str, after: int) -> int | None:
    """The smallest rowid ``y > after + 1`` from which the table reads again, or None."""

    def readable(rowid: int) -> bool:
        try:
            db.execute(
                f'SELECT rowid FROM "{table}" WHERE rowid >= ? ORDER BY rowid LIMIT 1', (rowid,)
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            if not _is_damage(exc):
                raise
            return False
        return True

    bad, step = after + 1, 1
    while not readable(bad + step):
        bad, step = bad + step, step * 2
        if bad > 1 << 62:
            return None
    good = bad + step
    while good - bad > 1:
        middle = (bad + good) // 2
        if readable(middle):
            good = middle
        else:
            bad = middle
    return good


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in _DAMAGE_CODES


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    """The columns the damaged store and the new schema share, in the new order."""
    try:
        old = {str(row[1]) for row in db.execute(f'PRAGMA table_info("{table}")')}
    except sqlite3.DatabaseError as exc:
        if not _is_damage(exc):
            raise
        return []
    return [c.name for c in metadata.tables[table].columns if c.name in old]


def _sqlite_file(settings: NodeSettings) -> Path:
    url = settings.database_url
    if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
        raise GuantongError(
            ErrorCode.SETTINGS_INVALID,
            "repair rebuilds SQLite stores; restore a PostgreSQL store from its dump "
            "(deploy/restore.sh), then start the node with its parent reachable",
        )
    return Path(url.removeprefix("sqlite:///"))


# -- salvaging ----------------------------------------------------------------------------


class _Salvage:
    """The damaged store, read once into a scratch file of log rows, and the new node."""

    def __init__(self, source: Path, node: Node, report: RepairReport) -> None:
        self.node = node
        self.report = report
        self.scratch = source.with_name("salvage.db")
        self.old: sqlite3.Connection | None = None
        if not source.is_file():  # salvaging from nothing would pass an empty store as good
            raise GuantongError(ErrorCode.STORE_ERROR, f"the damaged store {source} is missing")
        with contextlib.suppress(sqlite3.Error):  # unreadable: the federation gives it back
            self.old = sqlite3.connect(f"file:{quote(str(source))}?mode=ro", uri=True)
        self.scratch.unlink(missing_ok=True)
        self.work = sqlite3.connect(self.scratch)
        self.work.executescript(
            "CREATE TABLE e (origin TEXT, seq INTEGER, raw BLOB, PRIMARY KEY (origin, seq));"
            "CREATE TABLE r (origin TEXT, seq INTEGER, received_at TEXT,"
            " PRIMARY KEY (origin, seq));"
            "CREATE TABLE s (origin TEXT, seq INTEGER, raw BLOB, PRIMARY KEY (origin, seq));"
            "CREATE TABLE h (origin TEXT PRIMARY KEY, seq INTEGER);"
        )
        self.ingestor = Ingestor(
            store=node.store,
            hub_id=node.id,
            registry=load_registry(node.settings.home),
            keyring=Keyring(node.store, anchor=node.settings.root_key_id),
            clock=node.clock,
        )
        self.held: dict[str, int] = {}
        self.restart_downlink = False
        self.took_back = False

    def __enter__(self) -> _Salvage:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.old is not None:
            self.old.close()
        self.work.close()
        self.scratch.unlink(missing_ok=True)

    def copy_tables(self) -> None:
        """Every table the log does not rebuild, row by row; keys first."""
        if self.old is None:
            return
        for table in [*_FIRST, *sorted(set(metadata.tables) - set(_FIRST))]:
            if table in _REBUILT or (table == "downlink" and self.restart_downlink):
                continue
            columns = _columns(self.old, table)
            if not columns:
                if table == "tasks":
                    self._restart_downlink()
                continue
            skipped: list[tuple[int, int]] = []
            listed = ", ".join(f'"{c}"' for c in columns)
            marks = ", ".join("?" for _ in columns)
            verb = "REPLACE" if table in _REPLACED else "IGNORE"
            insert = f'INSERT OR {verb} INTO "{table}" ({listed}) VALUES ({marks})'
            chunk: list[tuple[Any, ...]] = []
            copied = 0
            for row in readable_rows(self.old, table, columns, skipped):
                chunk.append(row)
                if len(chunk) >= _BATCH:
                    copied += _insert(self.node.store, insert, chunk)
            copied += _insert(self.node.store, insert, chunk)
            self.report.rows[table] = copied
            if skipped:
                self.report.unreadable[table] = len(skipped)
                if table == "tasks":
                    self._restart_downlink()
        self._feed_head()

    def _feed_head(self) -> None:
        """This node's task feed goes on from the damaged store's head (copied over the
        empty one the migration seeds), or, if that row was lost, from the highest number
        copied: the next revision stored is numbered after every one copied (else it took
        number 1 again and no task could be stored), and a child's cursor still names the
        same revision (``node/taskfeed.py``)."""
        with self.node.store.write() as conn:
            top = conn.execute(
                select(TASKS.c.feed, TASKS.c.chain)
                .where(TASKS.c.feed.is_not(None))
                .order_by(TASKS.c.feed.desc())
                .limit(1)
            ).first()
            last = conn.execute(select(TASK_FEED.c.last).where(TASK_FEED.c.id == 1)).scalar()
            if top is not None and (last is None or int(last) < int(top.feed)):
                conn.execute(TASK_FEED.delete())
                conn.execute(TASK_FEED.insert().values(id=1, last=top.feed, chain=top.chain))

    def _restart_downlink(self) -> None:
        """Task revisions were on a lost page: the cursor in the parent's feed (copied, or
        still to be) would go on after them, and they would never come down again. Without
        it the next pull takes the whole feed again; what is held already is stored once
        (by task and revision), and receipts derive from the log, so none is repeated."""
        self.restart_downlink = True
        with self.node.store.write() as conn:
            conn.execute(DOWNLINK.delete())

    def take_log(self) -> None:
        """Re-ingest the readable log, origin by origin, up to the last head that verifies."""
        if self.old is not None:
            for table, into, columns in (
                ("entries", "e", ["origin", "seq", "raw"]),
                # when each entry arrived: re-ingested, an entry would arrive now, and the
                # sync lag the acceptance check measures would be the time since
                ("entries", "r", ["origin", "seq", "received_at"]),
                ("signed_heads", "s", ["origin", "seq", "raw"]),
                ("heads", "h", ["origin", "seq"]),
            ):
                if not set(columns) <= set(_columns(self.old, table)):
                    continue
                skipped: list[tuple[int, int]] = []
                marks = ", ".join("?" for _ in columns)
                with self.work:
                    self.work.executemany(
                        f"INSERT OR IGNORE INTO {into} VALUES ({marks})",
                        readable_rows(self.old, table, columns, skipped),
                    )
                if skipped:
                    self.report.unreadable[table] = len(skipped)
        before = {str(o): int(s) for o, s in self.work.execute("SELECT origin, seq FROM h")}
        origins = sorted(
            {str(o) for (o,) in self.work.execute("SELECT DISTINCT origin FROM s")} | set(before),
            key=lambda o: (o != self.node.id, o),
        )
        self.held = dict.fromkeys(origins, 0)
        waiting = list(origins)
        while waiting:  # a key may be learnt from an origin taken later
            retry = [o for o in waiting if self._take(o) == "unknown"]
            if len(retry) == len(waiting):
                break
            waiting = retry
        self.report.origins = [OriginSalvage(o, before.get(o), self.held[o]) for o in origins]
        self._arrivals()
        self._count()

    def _arrivals(self) -> None:
        """Give the entries taken back the arrival times they had in the damaged store."""
        rows = self.work.execute(
            "SELECT received_at, origin, seq FROM r WHERE received_at IS NOT NULL"
        )
        while chunk := rows.fetchmany(_BATCH):
            with self.node.store.write() as conn:
                conn.exec_driver_sql(
                    "UPDATE entries SET received_at = ? WHERE origin = ? AND seq = ?", chunk
                )

    async def take_back(self, client: httpx.AsyncClient) -> None:
        """Own entries the parent holds beyond the salvaged head, then the salvaged rest."""
        try:
            recovered = await ensure_recovered(self.node, client)
        except GuantongError as exc:
            self.report.recovery_error = str(exc)
            return
        if recovered is None:
            self.report.recovery_error = "the parent could not be reached"
            return
        self.took_back = True
        self.report.restored = recovered.restored
        own = self.node.log.head()
        self.held[self.node.id] = own.seq if own else 0
        self._take(self.node.id)
        self._arrivals()
        self._count()

    def keep_own(self) -> None:
        """The parent not asked (``--offline``), away or refusing: the own entries read
        beyond the rebuilt head (writes since the last sync among them) could not follow
        what it would give back. They wait in ``<home>/salvaged.db`` (added to one an
        earlier repair kept) for the recovery at the next start (``node/recovery.py``)."""
        own = self.node.log.head()
        after = own.seq if own else 0
        where = ("origin = ? AND seq > ?", (self.node.id, after))
        if not self.work.execute(f"SELECT 1 FROM s WHERE {where[0]} LIMIT 1", where[1]).fetchone():
            return  # no signed head beyond: nothing there could ever be stored
        path = self.node.settings.home / SALVAGED
        with contextlib.closing(sqlite3.connect(path)) as kept:
            kept.executescript(
                "CREATE TABLE IF NOT EXISTS e (origin TEXT, seq INTEGER, raw BLOB,"
                " PRIMARY KEY (origin, seq));"
                "CREATE TABLE IF NOT EXISTS s (origin TEXT, seq INTEGER, raw BLOB,"
                " PRIMARY KEY (origin, seq));"
            )
            path.chmod(0o600)  # private fields travel in entries: the node's own user only
            with kept:
                for table in ("e", "s"):
                    kept.executemany(
                        f"INSERT OR IGNORE INTO {table} VALUES (?, ?, ?)",
                        self.work.execute(
                            f"SELECT origin, seq, raw FROM {table} WHERE {where[0]}", where[1]
                        ),
                    )
            self.report.kept = int(
                kept.execute("SELECT count(*) FROM e WHERE " + where[0], where[1]).fetchone()[0]
            )

    def _count(self) -> None:
        heads = {h.origin: h.seq for h in self.node.log.heads()}
        self.report.origins = [
            OriginSalvage(o.origin, o.before, heads.get(o.origin, 0)) for o in self.report.origins
        ]
        self.report.rows["entries"] = sum(heads.values())

    def _take(self, origin: str) -> str:
        """Ingest one origin's segments from ``held[origin]`` on: ``unknown`` if its key is
        not known (yet), else ``done`` once it ran out of segments that verify."""
        batch: list[Segment] = []
        size = 0
        for segment in salvaged_segments(self.work, origin, self.held[origin]):
            batch.append(segment)
            size += len(segment.entries)
            if size >= _INGEST_ENTRIES:
                status = self._ingest(origin, batch)
                if status != "ok":
                    return status
                batch, size = [], 0
        return self._ingest(origin, batch) if batch else "done"

    def _ingest(self, origin: str, batch: list[Segment]) -> str:
        own = origin == self.node.id
        for result in self.ingestor.ingest(batch, caller=None, recovering=own):
            if result.status == "ok":
                self.held[origin] = max(self.held[origin], result.held)
                continue
            code = (result.error or {}).get("code")
            unknown = code == ErrorCode.UNKNOWN_ORIGIN.value and not self.held[origin]
            return "unknown" if unknown else "done"
        return "ok"


def _insert(store: Store, insert: str, chunk: list[tuple[Any, ...]]) -> int:
    if not chunk:
        return 0
    with store.write() as conn:
        conn.exec_driver_sql(insert, chunk)
    count = len(chunk)
    chunk.clear()
    return count


# -- files ---------------------------------------------------------------------------------


def _fresh(folder: Path) -> Path:
    """``folder``, or ``folder-2``, ``-3``…: a repair never writes into an earlier one's."""
    candidate, n = folder, 1
    while candidate.exists():
        n += 1
        candidate = folder.with_name(f"{folder.name}-{n}")
    return candidate


def _move(path: Path, into: Path, *, taken: Path | None = None) -> None:
    """Move the store's parts into ``into``; one already there goes to ``taken`` instead
    (never replaced: the first one moved is the store's own)."""
    into.mkdir(mode=0o700, parents=True, exist_ok=True)
    for suffix in _FILES:
        part = path.with_name(path.name + suffix)
        if not part.exists():
            continue
        if taken is not None and (into / part.name).exists():
            taken.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.replace(part, taken / part.name)
        else:
            os.replace(part, into / part.name)


def _set_aside_again(path: Path, aside: Path, stamp: str) -> None:
    """Resume an interrupted repair's step 2, wherever it stopped.

    The damaged database file in ``aside``: it was moved, and what lies at ``path`` is a
    partial rebuild (or a store a command opened since), set aside in ``rebuild-<time>/``.
    Not there: the repair died before the move (the marker is written first), and the
    damaged store is still at ``path``; it is moved now, parts already moved staying as
    they are. Neither: there is nothing to rebuild from, and an empty store must not be
    passed off as the repaired one."""
    rebuild = _fresh(aside / f"rebuild-{stamp}")
    if (aside / path.name).is_file():
        _move(path, rebuild)
    elif path.is_file():
        _move(path, aside, taken=rebuild)
    else:
        raise GuantongError(
            ErrorCode.STORE_ERROR,
            f"an interrupted repair named {aside} but the damaged store is neither there nor "
            f"at {path}: put the damaged {path.name} (with its -wal) into {aside} and run "
            "`guantong repair` again, or restore a backup (deploy/restore.sh); nothing changed",
        )


@contextmanager
def _exclusive(home: Path) -> Iterator[None]:
    """Hold the node's scheduler lock: a serving node holds it, and must be stopped first."""
    with (home / "scheduler.lock").open("ab") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise GuantongError(
                ErrorCode.STORE_ERROR,
                "the node is serving: stop it (and its sync timer) before repairing its store",
            ) from exc
        yield
