"""The store: engine set-up, migrations, and read/write transactions.

Writers must serialise per origin so that ``seq`` stays gapless. On SQLite the whole
database has one writer: :meth:`Store.write` opens ``BEGIN IMMEDIATE`` (waiting up to the
busy timeout), so the head read inside it cannot be stale. On PostgreSQL, writers lock the
origin's ``heads`` row with ``SELECT … FOR UPDATE`` (:func:`lock_head`), so pushes of
different origins proceed in parallel and two of the same origin queue.

pysqlite's own transaction handling starts transactions lazily and commits around DDL; we
switch it off (``isolation_level=None``) and emit ``BEGIN`` ourselves, the recipe of
SQLAlchemy's SQLite dialect documentation.

PostgreSQL text and JSONB cannot hold U+0000, which JSON (and SQLite) can. Entries keep
their exact bytes in ``bytea``, so nothing authentic is ever refused; but what is *derived*
from them into text columns — a record's materialised data, a report's note, a message
quoting untrusted input — goes through :func:`storable_json` or :func:`storable_text`,
which put U+FFFD (the replacement character) in its place, on every backend alike, so that
a SQLite station and a PostgreSQL hub show the same record.

Storage faults are translated here, at the boundary, into codes an operator can act on
(STYLE §7): a full disk is ``storage_full``, a read-only file or file system
``storage_read_only``, a damaged database ``store_corrupt``, anything else ``store_error``.
A write that fails this way rolls back whole, so nothing of it is stored. Integrity and
unique-key violations pass through untranslated: they are answers (a replayed request) or
bugs, not storage faults.

- **Read-only**: reads go on where the database can still be read. SQLite in WAL mode needs
  to create its ``-shm`` index beside the file, which a read-only folder forbids; then the
  store is read with ``mode=ro`` when a ``-wal`` file is there (its index is read as is),
  else as ``immutable`` (everything is in the main file). Writes fail as above.
- **Corrupt**: the first time SQLite (or PostgreSQL) reports damage, or ``guantong verify``
  finds it, the store is quarantined: a marker file beside it records why, and every write
  is refused until ``guantong repair`` rebuilt the store (``node/repair.py``). Reads go on
  where SQLite can still read, so an operator can look before repairing.
"""

from __future__ import annotations

import functools
import operator
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    String,
    Table,
    create_engine,
    event,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.pool import NullPool

from node.files import replace_file
from schemas.errors import ErrorCode, GuantongError
from schemas.hashing import ZERO_HASH

__all__ = [
    "REPLACEMENT",
    "RowsInsert",
    "CORRUPT_MARKER",
    "Store",
    "after_commit",
    "before_commit",
    "bulk",
    "dialect_insert",
    "insert_ignore",
    "lock_head",
    "normalise_url",
    "storable_json",
    "storable_text",
    "upsert",
]

_MIGRATIONS = Path(__file__).parent / "migrations"
_HOOKS = "guantong_before_commit"
_AFTER = "guantong_after_commit"
REPLACEMENT = "\ufffd"
"""What stands for U+0000 in derived text (the entry's bytes keep the original)."""
CORRUPT_MARKER = "store-corrupt.json"
"""Beside the store (in the node's home): written when the store is found corrupt."""
_LOW_SPACE = 64 << 10
# SQLite primary result codes (the low byte of an extended code).
_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL = 8, 10, 11, 13
_SQLITE_CANTOPEN, _SQLITE_NOTADB = 14, 26
# PostgreSQL SQLSTATEs: disk_full, read_only_sql_transaction, data_corrupted, index_corrupted.
_PG_CODES = {
    "53100": ErrorCode.STORAGE_FULL,
    "25006": ErrorCode.STORAGE_READ_ONLY,
    "XX001": ErrorCode.STORE_CORRUPT,
    "XX002": ErrorCode.STORE_CORRUPT,
}
_HINTS = {
    ErrorCode.STORAGE_FULL: "the disk holding the store is full ({}): free space, then retry",
    ErrorCode.STORAGE_READ_ONLY: "the store cannot be written ({}): read-only file or file system",
    ErrorCode.STORE_CORRUPT: "the store is corrupt ({}): `guantong verify` tells where, "
    "`guantong repair` rebuilds it",
    ErrorCode.STORE_ERROR: "store error: {}",
}


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` as operators write it; we drive it with psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Store:
    def __init__(self, url: str, *, echo: bool = False, marker: Path | None = None) -> None:
        self.url = normalise_url(url)
        self.engine = _create_engine(self.url, echo=echo)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self.path = _sqlite_path(self.url)
        """The SQLite database file (None for PostgreSQL and in-memory stores)."""
        self.marker = marker
        """Where a detected corruption is recorded (outside the store, which is damaged)."""
        self._readers: dict[bool, Engine] = {}

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent). A read-only store whose
        schema is already current is fine: it can still be read."""
        cfg = _alembic_config()
        try:
            with self._translated(), self.engine.connect() as conn:
                cfg.attributes["connection"] = conn
                try:
                    command.upgrade(cfg, "head")
                except CommandError:  # "Can't locate revision": let alone a traceback
                    _refuse_newer(cfg, MigrationContext.configure(conn).get_current_revision())
                    raise
        except GuantongError as exc:
            if exc.code is not ErrorCode.STORAGE_READ_ONLY:
                raise
            head = ScriptDirectory.from_config(cfg).get_current_head()
            with self.read() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
            _refuse_newer(cfg, current)
            if current != head:
                raise GuantongError(
                    exc.code, f"{exc.message}; its schema needs migrating to {head}"
                ) from exc

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._translated(), self._reader() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[Connection]:
        """A write transaction: committed on success, rolled back on any error. Work
        registered with :func:`before_commit` runs last, just before the commit.

        ``durable=False`` is for state that is cheap to lose in a power cut and never
        acknowledged to anyone — the replay cache, upload cursors (resending is harmless,
        compared by hash), backoff state: its commit is not flushed to disk by itself
        (SQLite ``synchronous=NORMAL`` for this transaction in WAL mode; PostgreSQL
        ``SET LOCAL synchronous_commit = off``). The log is ordered, so the next durable
        commit flushes it too, and a power cut loses at most a suffix of such commits,
        never a durable one and never consistency.
        """
        self.refuse_if_corrupt()
        after: dict[str, Callable[[], object]] = {}
        with self._translated(), self.engine.connect() as conn:
            conn = conn.execution_options(guantong_write=True, guantong_durable=durable)
            hooks: dict[str, Callable[[Connection], object]] = {}
            conn.info[_HOOKS] = hooks
            conn.info[_AFTER] = after
            try:
                with conn.begin():
                    if not durable and not self.is_sqlite:
                        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                    yield conn
                    while hooks:
                        hooks.pop(next(iter(hooks)))(conn)
            finally:
                conn.info.pop(_HOOKS, None)
                conn.info.pop(_AFTER, None)
        for hook in after.values():  # committed: tell whoever waits for it
            hook()

    def dispose(self) -> None:
        self.engine.dispose()
        for engine in self._readers.values():
            engine.dispose()

    # -- faults --------------------------------------------------------------------------

    def quarantine(self) -> dict[str, Any] | None:
        """The marker's content (``reason``, ``detected``, and ``repair`` while a repair
        runs), or None when the store is not quarantined."""
        if self.marker is None or not self.marker.is_file():
            return None
        try:
            found = orjson.loads(self.marker.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            found = None
        if not isinstance(found, dict):
            return {"reason": "the store was found corrupt", "detected": "?"}
        return found

    def corrupt_reason(self) -> str | None:
        """Why this store was quarantined, or None."""
        found = self.quarantine()
        if found is None:
            return None
        return f"{found.get('reason', 'corrupt')} (found {found.get('detected', '?')})"

    def refuse_if_corrupt(self) -> None:
        reason = self.corrupt_reason()
        if reason is not None:
            raise GuantongError(
                ErrorCode.STORE_CORRUPT,
                f"the store is quarantined as corrupt: {reason}; nothing is written to it or "
                "sent from it until `guantong repair` rebuilt it",
            )

    def mark_corrupt(self, reason: str, *, repair: str | None = None) -> None:
        """Quarantine the store: writes stop until a repair. Best effort: the disk holding
        the marker may itself be failing, and the error that led here is raised anyway.
        The first reason stays; ``repair`` records a rebuild under way (and replaces it)."""
        if self.marker is None:
            return
        found = self.quarantine()
        if found is not None and repair is None:
            return
        detected = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        body: dict[str, Any] = {"reason": reason[:2000], "detected": detected}
        if found is not None:
            body = {**found, "reason": found.get("reason", reason[:2000])}
        if repair is not None:
            body["repair"] = repair
        with suppress(OSError):
            replace_file(self.marker, orjson.dumps(body))

    def clear_corrupt(self) -> None:
        if self.marker is not None:
            self.marker.unlink(missing_ok=True)

    def integrity_problems(self, *, limit: int = 20) -> list[str]:
        """SQLite's ``PRAGMA integrity_check`` (b-trees, pages, every index against its
        table); empty when sound. PostgreSQL keeps its own checks (data checksums, amcheck),
        so nothing is reported there."""
        if not self.is_sqlite:
            return []
        try:
            with self.read() as conn:
                lines = conn.exec_driver_sql(f"PRAGMA integrity_check({int(limit)})").scalars()
                found = [str(line) for line in lines]
        except GuantongError as exc:
            if exc.code is not ErrorCode.STORE_CORRUPT:
                raise
            return [exc.message]
        return [] if found == ["ok"] else found

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except (IntegrityError, ProgrammingError):
            raise
        except DBAPIError as exc:
            error = self._translate(exc)
            if error.code is ErrorCode.STORE_CORRUPT:
                self.mark_corrupt(str(exc.orig).replace("\n", " "))
            raise error from exc

    def _translate(self, exc: DBAPIError) -> GuantongError:
        orig = exc.orig
        code = ErrorCode.STORE_ERROR
        sqlite_code = getattr(orig, "sqlite_errorcode", None)
        if isinstance(sqlite_code, int):
            primary = sqlite_code & 0xFF
            if primary == _SQLITE_FULL:
                code = ErrorCode.STORAGE_FULL
            elif primary == _SQLITE_READONLY:
                code = ErrorCode.STORAGE_READ_ONLY
            elif primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
                code = ErrorCode.STORE_CORRUPT
            elif primary in (_SQLITE_IOERR, _SQLITE_CANTOPEN) and self.path is not None:
                code = _storage_condition(self.path) or code
        else:
            code = _PG_CODES.get(str(getattr(orig, "sqlstate", "")), code)
        return GuantongError(code, _HINTS[code].format(str(orig).replace("\n", " ")))

    def _reader(self) -> Connection:
        try:
            return self.engine.connect()
        except OperationalError as exc:
            if self.path is None or self._translate(exc).code is not ErrorCode.STORAGE_READ_ONLY:
                raise
            return self._read_only_engine().connect()

    def _read_only_engine(self) -> Engine:
        """An engine that reads the SQLite file without creating anything beside it."""
        assert self.path is not None
        wal = self.path.with_name(self.path.name + "-wal")
        immutable = not (wal.is_file() and wal.stat().st_size > 0)
        if immutable not in self._readers:
            query = "mode=ro&immutable=1" if immutable else "mode=ro"
            uri = f"file:{quote(str(self.path))}?{query}"
            engine = create_engine(
                "sqlite://",
                creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False),
                poolclass=NullPool,
            )
            event.listen(engine, "connect", _sqlite_read_only_connect)
            event.listen(engine, "begin", _sqlite_begin)
            self._readers[immutable] = engine
        return self._readers[immutable]


def _refuse_newer(cfg: Config, current: str | None) -> None:
    """Refuse a store whose schema revision this release does not know: a newer release
    wrote it (a node upgraded, then its older release started again)."""
    script = ScriptDirectory.from_config(cfg)
    if current is None or current in {r.revision for r in script.walk_revisions()}:
        return
    raise GuantongError(
        ErrorCode.STORE_ERROR,
        f"the store was written by a newer release of guantong (schema revision {current}; "
        f"this release knows up to {script.get_current_head()}): run that release or a "
        "later one; a store is never migrated back",
    )


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


def _sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url.removeprefix("sqlite:///"))
    return None


def _storage_condition(path: Path) -> ErrorCode | None:
    """What the file system says about the store's folder, when SQLite only says I/O."""
    folder = path.parent
    try:
        stats = os.statvfs(folder)
    except OSError:
        return None
    if stats.f_flag & os.ST_RDONLY or not os.access(folder, os.W_OK):
        return ErrorCode.STORAGE_READ_ONLY
    if path.exists() and not os.access(path, os.W_OK):
        return ErrorCode.STORAGE_READ_ONLY
    if stats.f_bavail * stats.f_frsize < _LOW_SPACE:
        return ErrorCode.STORAGE_FULL
    return None


SQLITE_CACHE_KIB = 32 * 1024
SQLITE_WAL_CHECKPOINT_PAGES = 16_384
"""Pages the WAL holds before a commit checkpoints it into the database (SQLite's default
is 1,000). A checkpoint copies each page once however many commits changed it and
flushes the database file; a hub's heads, rollups and the upper levels of its indexes
change in every push. With 64 MiB of WAL (4 KiB pages), a hub holding 100,000 entries
spends a quarter less CPU on pushes of 10 entries and a tenth less on pushes of 100; a
small store and the 10,000-station catch-up (one pair) showed no difference
(docs/performance.md, eighth round). What it costs: up to that much more disk beside
the store, read back once by a crash's recovery."""
SQLITE_WAL_LIMIT_BYTES = 64 << 20
"""The WAL file is cut back to this size when it starts over after a checkpoint, so a
burst that outgrew it does not keep its disk."""


def _create_engine(url: str, *, echo: bool) -> Engine:
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        pooling: dict[str, Any] = (
            {"poolclass": NullPool}
            if url == "sqlite://"
            # the most recently used connection first: its page cache is the warm one
            else {"pool_use_lifo": True}
        )
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": 60},
            json_serializer=_json_dumps,
            json_deserializer=orjson.loads,
            **pooling,
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(
        url,
        echo=echo,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
    )


def _json_dumps(value: Any) -> str:
    """JSON columns through orjson: several times faster than the standard library."""
    return orjson.dumps(value).decode()


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before we answer `held`; a power cut loses nothing acked.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=60000")
    # SQLite's default page cache is 2 MiB; a hub's indexes of record ids are written at
    # random places, and with millions of entries they miss the cache on almost every
    # insert. 32 MiB per connection, filled only as it is used.
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_CHECKPOINT_PAGES}")
    cursor.execute(f"PRAGMA journal_size_limit={SQLITE_WAL_LIMIT_BYTES}")
    cursor.close()


def _sqlite_read_only_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None


def _sqlite_begin(conn: Connection) -> None:
    options = conn.get_execution_options()
    if options.get("guantong_write", False):
        # per transaction: SQLite reads the setting when it commits
        durable = options.get("guantong_durable", True)
        conn.exec_driver_sql(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


@dataclass(frozen=True)
class RowsInsert:
    """An ``INSERT`` of many rows into ``table`` (``columns`` in the order of each row's
    values), then ``tail`` (an ``ON CONFLICT`` clause, or nothing); ``key`` names the
    conflict columns of a ``DO UPDATE`` tail.

    Written once, it takes the fast form of each backend through :func:`bulk`. SQLite
    runs ``INSERT … VALUES (?, …)`` once per row inside one ``executemany``, in C.
    psycopg runs an ``executemany`` row by row in Python (about 15 µs of CPU a row, half
    of a PostgreSQL hub's ingest: docs/performance.md, ninth round), so PostgreSQL gets
    one statement for all the rows, each column sent as one array in binary (psycopg's
    text form escapes every element with a regular expression) and the rows made again
    by ``unnest``: ``INSERT INTO t (a, b) SELECT a, b::jsonb FROM unnest(%b::bigint[],
    %b::text[]) AS v(a, b) …``. Text goes as ``text[]`` and is cast to the column's type
    when it is stored, so a value too long for its column is refused as it was (an
    explicit cast to ``varchar(n)[]`` would cut it short); JSON goes as text and is cast
    to ``jsonb``.

    One ``INSERT`` may not update a row twice (``ON CONFLICT DO UPDATE`` refuses it), where
    one row per statement did so in order; :func:`bulk` therefore starts a new statement
    at a row whose ``key`` an earlier row of the statement has, which keeps that order.
    """

    table: Table
    columns: tuple[str, ...]
    tail: str = ""
    key: tuple[str, ...] = ()

    @functools.cached_property
    def sqlite(self) -> str:
        return (
            f"INSERT INTO {self.table.name} ({', '.join(self.columns)}) "
            f"VALUES ({', '.join('?' for _ in self.columns)}) {self.tail}"
        ).rstrip()

    @functools.cached_property
    def postgresql(self) -> str:
        arrays, values = [], []
        for name in self.columns:
            kind = self.table.c[name].type
            if isinstance(kind, JSON):
                arrays.append("%b::text[]")
                values.append(f"{name}::jsonb")
            else:
                arrays.append(f"%b::{_pg_array(kind)}")
                values.append(name)
        tail = self.tail.replace("%", "%%")
        return (
            f"INSERT INTO {self.table.name} ({', '.join(self.columns)}) "
            f"SELECT {', '.join(values)} FROM unnest({', '.join(arrays)}) "
            f"AS v({', '.join(self.columns)}) {tail}"
        ).rstrip()

    @functools.cached_property
    def key_at(self) -> tuple[int, ...]:
        return tuple(self.columns.index(name) for name in self.key)


def _pg_array(kind: Any) -> str:
    """The array type a column's values travel in to PostgreSQL."""
    if isinstance(kind, String):
        return "text[]"
    if isinstance(kind, Integer):  # BigInteger too
        return "bigint[]"
    if isinstance(kind, LargeBinary):
        return "bytea[]"
    if isinstance(kind, Boolean):
        return "boolean[]"
    raise TypeError(f"no array type for a column of type {kind!r}")


def bulk(conn: Connection, sql: str | RowsInsert, rows: Sequence[Sequence[Any]]) -> None:
    """Many rows of a hand-written statement, straight on the driver.

    For the statements of the ingest hot path (entries, records, rollups), where
    SQLAlchemy's per-row parameter processing costs more than SQLite's own work. A
    :class:`RowsInsert` takes each backend's fast form. Other statements are written with
    ``?`` placeholders, which become ``%s`` for PostgreSQL; they run as one
    ``executemany``.
    """
    if not rows:
        return
    if isinstance(sql, str):
        conn.exec_driver_sql(_driver_sql(sql, conn.dialect.name), list(rows))
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql(sql.sqlite, list(rows))
    else:
        for part in _distinct_runs(rows, sql.key_at):
            conn.exec_driver_sql(sql.postgresql, tuple(map(list, zip(*part, strict=True))))


def _distinct_runs(
    rows: Sequence[Sequence[Any]], key_at: tuple[int, ...]
) -> Iterator[Sequence[Sequence[Any]]]:
    """``rows`` cut where a row's key repeats one of its run (all of it at once without a
    key, or when no key repeats)."""
    if not key_at:
        yield rows
        return
    key = operator.itemgetter(*key_at)
    if len(set(map(key, rows))) == len(rows):  # the usual case, checked in C
        yield rows
        return
    seen: set[Any] = set()
    start = 0
    for i, row in enumerate(rows):
        k = key(row)
        if k in seen:
            yield rows[start:i]
            seen.clear()
            start = i
        seen.add(k)
    yield rows[start:]


@functools.cache
def _driver_sql(sql: str, dialect: str) -> str:
    if dialect == "sqlite":
        return sql
    return sql.replace("%", "%%").replace("?", "%s")


def driver_rows(conn: Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    """Rows of a hand-written query, straight on the driver (``?`` placeholders, as for
    :func:`bulk`): for the lookups of the ingest hot path."""
    return list(conn.exec_driver_sql(_driver_sql(sql, conn.dialect.name), tuple(params)).all())


def before_commit(conn: Connection, name: str, hook: Callable[[Connection], object]) -> None:
    """Run ``hook(conn)`` once (per ``name``), last thing before this write transaction
    commits: what must happen in commit order — and hold a lock only for the instant of
    the commit — is done there (``node/taskfeed.py`` numbers the task feed so)."""
    hooks = conn.info.get(_HOOKS)
    if hooks is None:
        raise RuntimeError("before_commit needs a transaction of Store.write()")
    hooks.setdefault(name, hook)


def after_commit(conn: Connection, name: str, hook: Callable[[], object]) -> None:
    """Run ``hook()`` once (per ``name``) after this write transaction has committed, and
    not at all if it rolls back: to wake what waits for its rows (``node/bell.py``). A
    hook runs in the writer's thread and must not fail: the rows are stored whatever it
    does."""
    hooks = conn.info.get(_AFTER)
    if hooks is None:
        raise RuntimeError("after_commit needs a transaction of Store.write()")
    hooks.setdefault(name, hook)


def storable_text(text: str) -> str:
    """``text`` with U+0000 replaced by U+FFFD: what every backend can hold."""
    return text.replace("\x00", REPLACEMENT) if "\x00" in text else text


def storable_json(value: Any) -> Any:
    """``value`` with U+0000 replaced by U+FFFD in every string and member name (two names
    that differ only there become one: the later wins)."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(k): storable_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable_json(v) for v in value]
    return value


def dialect_insert(conn: Connection, table: Any) -> Any:
    """``INSERT`` with the dialect's ``ON CONFLICT`` support (SQLite and PostgreSQL)."""
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    return dialect.insert(table)


def insert_ignore(
    conn: Connection, table: Any, rows: list[dict[str, Any]], keys: list[str]
) -> None:
    if rows:
        conn.execute(dialect_insert(conn, table).on_conflict_do_nothing(index_elements=keys), rows)


def upsert(
    conn: Connection, table: Any, rows: list[dict[str, Any]], keys: list[str], update: list[str]
) -> None:
    if not rows:
        return
    stmt = dialect_insert(conn, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=keys, set_={col: stmt.excluded[col] for col in update}
    )
    conn.execute(stmt, rows)


def lock_head(conn: Connection, origin: str, now: str) -> tuple[int, str]:
    """Create the origin's head row if needed, lock it, and return ``(seq, hash)``."""
    # hand-written: once per origin in every push, where SQLAlchemy's statement building
    # cost more than the statements
    bulk(conn, _NEW_HEAD, [(origin, ZERO_HASH, now)])
    lock = " FOR UPDATE" if conn.dialect.name == "postgresql" else ""
    (row,) = driver_rows(conn, _HELD + lock, (origin,))
    return int(row[0]), str(row[1])


_NEW_HEAD = (
    "INSERT INTO heads (origin, seq, hash, signed_seq, updated_at) VALUES (?, 0, ?, 0, ?) "
    "ON CONFLICT (origin) DO NOTHING"
)
_HELD = "SELECT seq, hash FROM heads WHERE origin = ?"
