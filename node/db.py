"""The store: engine set-up, migrations, and read/write transactions.

Writers must serialise per origin so that ``seq`` stays gapless. On SQLite the whole
database has one writer: :meth:`Store.write` opens ``BEGIN IMMEDIATE`` (waiting up to the
busy timeout), so the head read inside it cannot be stale. On PostgreSQL, writers lock the
origin's ``heads`` row with ``SELECT … FOR UPDATE`` (:func:`lock_head`), so pushes of
different origins proceed in parallel and two of the same origin queue.

pysqlite's own transaction handling starts transactions lazily and commits around DDL; we
switch it off (``isolation_level=None``) and emit ``BEGIN`` ourselves, the recipe of
SQLAlchemy's SQLite dialect documentation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from node.tables import HEADS
from schemas.errors import ErrorCode, GuantongError
from schemas.hashing import ZERO_HASH

__all__ = [
    "Store",
    "dialect_insert",
    "insert_ignore",
    "lock_head",
    "normalise_url",
    "upsert",
]

_MIGRATIONS = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` as operators write it; we drive it with psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Store:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalise_url(url)
        self.engine = _create_engine(self.url, echo=echo)
        self.is_sqlite = self.engine.dialect.name == "sqlite"

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        with self.engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed on success, rolled back on any error."""
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(guantong_write=True)
                with conn.begin():
                    yield conn
        except OperationalError as exc:
            raise GuantongError(ErrorCode.STORE_ERROR, f"store error: {exc.orig}") from exc

    def dispose(self) -> None:
        self.engine.dispose()


def _create_engine(url: str, *, echo: bool) -> Engine:
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": 60},
            poolclass=NullPool if url == "sqlite://" else None,
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=10)


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before we answer `held`; a power cut loses nothing acked.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    write = conn.get_execution_options().get("guantong_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


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
    table = HEADS
    insert_ignore(
        conn,
        table,
        [{"origin": origin, "seq": 0, "hash": ZERO_HASH, "signed_seq": 0, "updated_at": now}],
        ["origin"],
    )
    query = select(table.c.seq, table.c.hash).where(table.c.origin == origin)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).one()
    return int(row.seq), str(row.hash)
