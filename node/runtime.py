"""A node as one object: settings, store, key, clock and log, opened or initialised.

The CLI and the ASGI app are thin layers over this; tests build several side by side.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from node.db import Store, insert_ignore, lock_head
from node.keys import create_key, load_key
from node.log import AppendResult, Log, Write
from node.settings import CONFIG_FILE, NodeSettings, write_config
from node.tables import KEYS, META, RECORDS
from schemas.canonical import canonical_bytes
from schemas.errors import ErrorCode, GuantongError
from schemas.ids import is_uuid, uuid7
from schemas.times import Clock, format_time, system_clock

__all__ = ["Node", "RecordView"]

_RECORDS = RECORDS
_META = META
_KEYS = KEYS
DEFAULT_VERSION = "1.0"


@dataclass(frozen=True, slots=True)
class RecordView:
    id: str
    contract: str
    version: str
    origin: str
    seq: int
    deleted: bool
    updated_at: str
    data: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "contract": self.contract,
            "version": self.version,
            "origin": self.origin,
            "seq": self.seq,
            "deleted": self.deleted,
            "updated_at": self.updated_at,
            "data": self.data,
        }


class Node:
    def __init__(
        self, settings: NodeSettings, store: Store, *, clock: Clock = system_clock
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.signer = load_key(settings.key_path)
        self.log = Log(store, origin=settings.node_id, signer=self.signer, clock=clock)

    @property
    def id(self) -> str:
        return self.settings.node_id

    # -- life cycle ----------------------------------------------------------------------

    @classmethod
    def open(cls, settings: NodeSettings, *, clock: Clock = system_clock) -> Node:
        store = Store(settings.database_url)
        try:
            store.migrate()
            node = cls(settings, store, clock=clock)
            with store.read() as conn:
                owner = conn.execute(select(_META.c.value).where(_META.c.key == "node_id")).scalar()
            if owner != settings.node_id:
                raise GuantongError(
                    ErrorCode.SETTINGS_INVALID,
                    f"the store at {settings.database_url} belongs to {owner!r}, "
                    f"not {settings.node_id!r}",
                )
        except BaseException:
            store.dispose()
            raise
        return node

    @classmethod
    def init(
        cls, settings: NodeSettings, *, seed: bytes | None = None, clock: Clock = system_clock
    ) -> Node:
        """Create the home folder, key, store and config; on any failure leave nothing behind."""
        home = settings.home
        if (home / CONFIG_FILE).exists() or settings.key_path.exists():
            raise GuantongError(
                ErrorCode.HOME_EXISTS, f"{home} already holds a node; nothing changed"
            )
        created_home = not home.exists()
        created: list[Path] = []
        store = Store(settings.database_url)
        try:
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
            store.migrate()
            with store.read() as conn:
                owner = conn.execute(select(_META.c.value).where(_META.c.key == "node_id")).scalar()
            if owner is not None:
                raise GuantongError(
                    ErrorCode.HOME_EXISTS,
                    f"the store already belongs to {owner!r}; nothing changed",
                )
            created.append(settings.key_path)
            signer = create_key(settings.key_path, seed=seed)
            now = format_time(clock())
            with store.write() as conn:
                insert_ignore(
                    conn,
                    _META,
                    [
                        {"key": "node_id", "value": settings.node_id},
                        {"key": "tier", "value": settings.tier.value},
                        {"key": "created", "value": now},
                    ],
                    ["key"],
                )
                insert_ignore(
                    conn,
                    _KEYS,
                    [
                        {
                            "key_id": signer.key_id,
                            "node": settings.node_id,
                            "public_key": signer.public_b64u,
                            "not_before": now,
                        }
                    ],
                    ["key_id"],
                )
                lock_head(conn, settings.node_id, now)
            config: dict[str, str | int | bool] = {
                "id": settings.node_id,
                "tier": settings.tier.value,
            }
            if settings.parent_url:
                config["parent_url"] = settings.parent_url
            if settings.db_url:
                config["db_url"] = settings.db_url
            created.append(home / CONFIG_FILE)
            write_config(home, config)
        except BaseException:
            store.dispose()
            if created_home:
                shutil.rmtree(home, ignore_errors=True)
            else:
                for path in created:
                    path.unlink(missing_ok=True)
            raise
        return cls(settings, store, clock=clock)

    def close(self) -> None:
        self.store.dispose()

    # -- local records -------------------------------------------------------------------

    def put(
        self,
        contract: str,
        records: Sequence[tuple[int | None, dict[str, Any]]],
        *,
        version: str = DEFAULT_VERSION,
    ) -> AppendResult:
        """Append one entry per record, all in one transaction under one signed head.

        ``records`` pairs each object with the input line it came from (for errors). A
        record's ``id`` member, when present, names the record to update; it is lifted out
        of the data into the entry envelope.
        """
        writes = [self._prepare(contract, version, line, record) for line, record in records]
        return self.log.append(writes)

    @staticmethod
    def _prepare(contract: str, version: str, line: int | None, record: dict[str, Any]) -> Write:
        where = f"line {line}: " if line is not None else ""
        data = dict(record)
        record_id = data.pop("id", None)
        if record_id is None:
            record_id = uuid7()
        elif not isinstance(record_id, str) or not is_uuid(record_id):
            raise GuantongError(
                ErrorCode.INVALID_RECORD_ID,
                f"{where}record id {record_id!r} is not a lowercase UUID",
                line=line,
            )
        try:
            canonical_bytes(data)
        except GuantongError as exc:
            raise GuantongError(exc.code, f"{where}{exc.message}", line=line) from exc
        return Write(contract=contract, version=version, record_id=record_id, data=data, line=line)

    def get(self, contract: str, record_id: str) -> RecordView:
        with self.store.read() as conn:
            row = conn.execute(
                select(_RECORDS).where(
                    _RECORDS.c.record_id == record_id, _RECORDS.c.contract == contract
                )
            ).first()
        if row is None:
            raise GuantongError(ErrorCode.NOT_FOUND, f"no {contract} record {record_id}")
        return _view(row)

    def list(
        self, contract: str, *, limit: int | None = None, include_deleted: bool = False
    ) -> list[RecordView]:
        query = (
            select(_RECORDS)
            .where(_RECORDS.c.contract == contract)
            .order_by(_RECORDS.c.updated_at, _RECORDS.c.record_id)
        )
        if not include_deleted:
            query = query.where(_RECORDS.c.deleted.is_(False))
        if limit:
            query = query.limit(limit)
        with self.store.read() as conn:
            return [_view(row) for row in conn.execute(query)]

    def status(self) -> dict[str, Any]:
        own = self.log.head()
        entries, origins = self.log.counts()
        return {
            "id": self.id,
            "tier": self.settings.tier.value,
            "parent": self.settings.parent_url,
            "key_id": self.signer.key_id,
            "head": {
                "seq": own.seq if own else 0,
                "hash": own.head if own else None,
                "time": own.signed.time if own and own.signed else None,
            },
            "entries": entries,
            "origins": origins,
            "store": "postgresql" if not self.store.is_sqlite else "sqlite",
        }


def _view(row: Any) -> RecordView:
    return RecordView(
        id=row.record_id,
        contract=row.contract,
        version=row.version,
        origin=row.origin,
        seq=int(row.seq),
        deleted=bool(row.deleted),
        updated_at=row.updated_at,
        data=row.data,
    )
