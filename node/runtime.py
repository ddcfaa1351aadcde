"""A node as one object: settings, store, key, clock and log, opened or initialised.

The CLI and the ASGI app are thin layers over this; tests build several side by side.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Connection, Select, and_, select

from contracts.privacy import merge_private, project
from contracts.registry import ContractVersion, Registry
from contracts.upcast import present
from node.bell import Bell, Stamp
from node.db import CORRUPT_MARKER, Store, driver_rows, insert_ignore, lock_head
from node.keyring import Keyring
from node.keys import create_key, load_key
from node.log import AppendResult, Log, Write
from node.rollups import ROLLUP_DAYS, ensure_rollup_days, rebuild
from node.settings import CONFIG_FILE, NodeSettings, write_config
from node.tables import KEYS, LOCAL_PRIVATE, META, RECORDS
from schemas.canonical import canonical_bytes, find_nul
from schemas.certs import Certificate, issue_certificate
from schemas.errors import ErrorCode, GuantongError
from schemas.ids import Tier, is_contract_name, is_in_subtree, is_node_id, is_uuid, uuid7
from schemas.signing import Signer
from schemas.times import Clock, format_time, system_clock

__all__ = ["SALVAGED", "Node", "RecordView", "keep_private", "load_registry", "open_store"]

_RECORDS = RECORDS
_CHUNK = 500
_META = META
_KEYS = KEYS


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


def _private(home: Path, settings: NodeSettings) -> None:
    """A node's home and SQLite store are for its own user only (keys, private fields)."""
    home.chmod(0o700)
    if not settings.db_url:
        for suffix in ("", "-wal", "-shm"):
            path = home / f"node.db{suffix}"
            if path.exists():
                path.chmod(0o600)


def keep_private(settings: NodeSettings) -> None:
    """:func:`_private` for a store made or put back after ``init`` (``guantong repair``
    rebuilds one under the process umask; an operator restores one from a backup): every
    open makes it private again. Best effort: a user who may open but does not own the
    home (an auditor's read-only account) changes nothing."""
    with contextlib.suppress(OSError):
        _private(settings.home, settings)


def _folder_state(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns


def load_registry(home: Path) -> Registry:
    """The bundle installed in ``home/contracts``, else the one shipped with this release."""
    installed = home / "contracts"
    if not (installed / "index.json").is_file():
        settle_contracts(home)
    if (installed / "index.json").is_file():
        return Registry.from_dir(installed)
    return Registry.default()


CONTRACTS_LOCK = "contracts.lock"
"""Held while a bundle is installed (``Node.install_contracts``) and while an interrupted
install is settled, so that no process settles what another is in the middle of."""


@contextmanager
def _contracts_lock(home: Path) -> Iterator[bool]:
    """The install lock; yields False where it cannot be taken (a read-only home, where
    nothing could be installed or settled anyway)."""
    try:
        handle = (home / CONTRACTS_LOCK).open("ab")
    except OSError:
        yield False
        return
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield True


def settle_contracts(home: Path) -> None:
    """Finish or undo an install killed between its two renames (``contracts/`` to
    ``contracts.old/``, then ``contracts.new/`` to ``contracts/``), which left no
    ``contracts/``: the release's shipped bundle would be used, a roll back. A complete
    ``contracts.new/`` (it loads) is the bundle being installed: the swap is finished;
    else ``contracts.old/`` goes back. A staging folder cut short before the swap, with
    ``contracts/`` still in place, is left for the next install to clear."""
    if not ((home / "contracts.new").is_dir() or (home / "contracts.old").is_dir()):
        return
    with _contracts_lock(home) as locked:
        if locked:
            _settle(home)


def _settle(home: Path) -> None:
    """:func:`settle_contracts`, the install lock held."""
    installed = home / "contracts"
    if (installed / "index.json").is_file():
        return
    for candidate in (home / "contracts.new", home / "contracts.old"):
        if not candidate.is_dir():
            continue
        try:
            Registry.from_dir(candidate)
        except (GuantongError, OSError, ValueError):
            continue  # cut short while it was written
        shutil.rmtree(installed, ignore_errors=True)
        candidate.rename(installed)
        return


WATERMARK = "head.json"
SALVAGED = "salvaged.db"
"""Own entries a repair read beyond the log it could rebuild, kept until the parent gave
back what lies before them (``node/recovery.py``)."""
TASK_STAMP = "tasks.stamp"
"""Replaced after every commit that stored task revisions, by whichever process made it."""
ROOT_VALIDITY_DAYS = 20 * 366
EPOCH = "1970-01-01T00:00:00.000Z"


def open_store(settings: NodeSettings) -> Store:
    """The node's store, quarantined by a marker file in its home when found corrupt."""
    return Store(settings.database_url, marker=settings.home / CORRUPT_MARKER)


class Node:
    def __init__(
        self, settings: NodeSettings, store: Store, *, clock: Clock = system_clock
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.signer = load_key(settings.key_path)
        self._registry = load_registry(settings.home)
        self._contracts_seen = _folder_state(settings.home / "contracts")
        self.keyring = Keyring(store, anchor=settings.root_key_id)
        self.log = Log(
            store,
            origin=settings.node_id,
            signer=self.signer,
            clock=clock,
            watermark=settings.home / WATERMARK,
        )
        self.log.rules = self.registry.rules("performance_index")
        self.recovery_reason: str | None = None
        """Why this node must pull its own log back from its parent before writing."""
        self.task_bell = Bell()
        """Rung after every commit that stored task revisions in this process, and by the
        server when another process did (``task_stamp``): a child's long poll of the task
        feed answers at once (``hub.api.tasks``)."""
        self.task_stamp = Stamp(settings.home / TASK_STAMP)

    @property
    def id(self) -> str:
        return self.settings.node_id

    # -- life cycle ----------------------------------------------------------------------

    @classmethod
    def open(cls, settings: NodeSettings, *, clock: Clock = system_clock) -> Node:
        store = open_store(settings)
        try:
            try:
                store.migrate()
            except GuantongError as exc:
                if exc.code is not ErrorCode.STORE_CORRUPT:
                    raise
            keep_private(settings)
            node = cls(settings, store, clock=clock)
            try:
                node._check_evidence()
                # a store of an earlier release counted UTC days: recounted once
                ensure_rollup_days(store, node.log.rules)
            except GuantongError as exc:
                # A quarantined store still opens, so that status, verify and repair can
                # say what is wrong; a server does not crash-loop on it. Writes are refused.
                if exc.code is not ErrorCode.STORE_CORRUPT:
                    raise
        except BaseException:
            store.dispose()
            raise
        return node

    def _check_evidence(self) -> None:
        """Whose store this is, and whether it lost data this node wrote (recovery)."""
        settings, store = self.settings, self.store
        with store.read() as conn:
            owner = conn.execute(select(_META.c.value).where(_META.c.key == "node_id")).scalar()
        if owner is None:
            # The key and config survived but the store did not (disk replaced, file
            # deleted): start an empty store and recover the log before any write. Our
            # own key signed that log before today, so it is trusted from the start.
            self.seed_store(format_time(self.clock()), key_from=EPOCH)
            owner = settings.node_id
            self.recovery_reason = "the store was empty (lost or replaced)"
        if owner != settings.node_id:
            raise GuantongError(
                ErrorCode.SETTINGS_INVALID,
                f"the store at {settings.database_url} belongs to {owner!r}, "
                f"not {settings.node_id!r}",
            )
        own = self.log.head()
        behind = self.log.read_watermark()
        if self.recovery_reason is None and behind > (own.seq if own else 0):
            self.recovery_reason = (
                f"the store holds own seq {own.seq if own else 0} but seq {behind} was "
                "written (restored from an older backup?)"
            )
        if self.recovery_reason is None and (settings.home / SALVAGED).is_file():
            self.recovery_reason = (
                f"a repair kept own entries beyond seq {own.seq if own else 0} in {SALVAGED}, "
                "to be stored once the parent gave back what lies before them"
            )

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
        store = open_store(settings)
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
            config: dict[str, str | int | bool] = {
                "id": settings.node_id,
                "tier": settings.tier.value,
            }
            if settings.parent_url:
                config["parent_url"] = settings.parent_url
            if settings.db_url:
                config["db_url"] = settings.db_url
            if settings.province_secret is None and settings.tier is Tier.PROVINCE:
                # The province owns the secret that keys `hash` privacy fields (PROTOCOL §9).
                fresh = SecretStr(secrets.token_urlsafe(32))
                settings = settings.model_copy(update={"province_secret": fresh})
            if settings.province_secret is not None:
                config["province_secret"] = settings.province_secret.get_secret_value()
            if settings.tier is Tier.PROVINCE:
                # The root of trust: every node is configured with this key id (the anchor).
                settings = settings.model_copy(update={"root_key_id": signer.key_id})
            if settings.root_key_id:
                config["root_key_id"] = settings.root_key_id
            created.append(home / CONFIG_FILE)
            write_config(home, config)
            node = cls(settings, store, clock=clock)
            node.seed_store(format_time(clock()))
            _private(home, settings)
            if settings.tier is Tier.PROVINCE:
                node._issue_root_certificate()
        except BaseException:
            store.dispose()
            if created_home:
                shutil.rmtree(home, ignore_errors=True)
            else:
                for path in created:
                    path.unlink(missing_ok=True)
            raise
        return node

    def _issue_root_certificate(self) -> None:
        now = self.clock()
        root = issue_certificate(
            self.signer,
            issuer_id=self.id,
            node=self.id,
            tier=Tier.PROVINCE,
            public_raw=self.signer.public_raw,
            not_before=format_time(now),
            not_after=format_time(now + timedelta(days=ROOT_VALIDITY_DAYS)),
        )
        self.keyring.add_certificate(root)

    def adopt_key(self, fresh: Signer, pending: Path) -> None:
        """Make ``fresh`` (written at ``pending``) this node's key; retire the old one."""
        retired = self.settings.key_path.parent / "retired"
        retired.mkdir(mode=0o700, exist_ok=True)
        os.replace(self.settings.key_path, retired / f"{self.signer.key_id}.key")
        os.replace(pending, self.settings.key_path)
        self.signer = fresh
        self.log.signer = fresh

    @property
    def certificate(self) -> Certificate | None:
        """This node's own certificate (the root's, or the one its parent issued)."""
        known = self.keyring.lookup(self.signer.key_id)
        return known.cert if known else None

    def seed_store(self, now: str, *, key_from: str | None = None) -> None:
        """The rows every store starts with: whose it is, its key, its empty head."""
        with self.store.write() as conn:
            insert_ignore(
                conn,
                _META,
                [
                    {"key": "node_id", "value": self.id},
                    {"key": "tier", "value": self.settings.tier.value},
                    {"key": "created", "value": now},
                    {"key": "rollup_days", "value": ROLLUP_DAYS},  # nothing to recount
                ],
                ["key"],
            )
            self.keyring.add(self.id, self.signer.public_raw, not_before=key_from or now, conn=conn)
            lock_head(conn, self.id, now)

    def close(self) -> None:
        self.store.dispose()

    # -- local records -------------------------------------------------------------------

    def put(
        self,
        contract: str,
        records: Sequence[tuple[int | None, dict[str, Any]]],
        *,
        version: str | None = None,
        also: Callable[[Connection], None] | None = None,
    ) -> AppendResult:
        """Validate and append records: one transaction, one signed head, all or nothing.

        ``records`` pairs each object with the input line it came from (for errors). A
        record's ``id`` member, when present, names the record to update; it is lifted out
        of the data into the entry envelope. ``version`` defaults to the contract's current
        version. Private fields are projected out of the entry and kept locally.
        """
        if self.recovery_reason is not None:
            raise GuantongError(
                ErrorCode.RECOVERY_REQUIRED,
                f"{self.recovery_reason}; this node recovers its own log from its parent "
                "before writing again",
            )
        cv = self.registry.for_writing(contract, version)
        writes = [self._prepare(cv, line, record) for line, record in records]
        return self.log.append(writes, also=also)

    def _prepare(self, cv: ContractVersion, line: int | None, record: dict[str, Any]) -> Write:
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
            raw = canonical_bytes(data)
        except GuantongError as exc:
            raise GuantongError(exc.code, f"{where}{exc.message}", line=line) from exc
        # canonical JSON escapes U+0000, so only a record whose bytes show it is searched
        if b"\\u0000" in raw and (nul := find_nul(data)) is not None:
            raise GuantongError(
                ErrorCode.NUL_IN_TEXT,
                f"{where}{cv.name} {nul or '/'}: text may not hold U+0000",
                line=line,
                path=nul,
            )
        problems = cv.violations(data)
        if problems:
            first = problems[0]
            raise GuantongError(
                ErrorCode.CONTRACT_VIOLATION,
                f"{where}{cv.name} {cv.version} {first.pointer or '/'}: "
                f"{first.rule}: {first.message}",
                line=line,
                path=first.pointer,
                rule=first.rule,
                violations=[p.to_dict() for p in problems],
            )
        rules = cv.privacy
        public, private = project(data, rules, self._secret()) if rules else (data, {})
        return Write(
            contract=cv.name,
            version=cv.version,
            record_id=record_id,
            data=public,
            line=line,
            private=private if rules else None,
        )

    def _secret(self) -> bytes | None:
        secret = self.settings.province_secret
        return secret.get_secret_value().encode("utf-8") if secret else None

    def get(
        self,
        contract: str,
        record_id: str,
        *,
        origin: str | None = None,
        major: int | None = None,
    ) -> RecordView:
        """The record ``record_id`` of ``origin``; without an origin, the one record of
        that id held for any origin (``ambiguous_record`` if several origins hold one)."""
        if not is_contract_name(contract):
            raise GuantongError(ErrorCode.UNKNOWN_CONTRACT, f"unknown contract {contract!r}")
        if origin is None:
            found = self.find(record_id, contract=contract, major=major)
            if len(found) > 1:
                raise GuantongError(
                    ErrorCode.AMBIGUOUS_RECORD,
                    f"{contract} record {record_id} is held for {len(found)} origins "
                    f"({', '.join(v.origin for v in found)}): name the origin",
                    origins=[v.origin for v in found],
                )
            if not found:
                raise GuantongError(ErrorCode.NOT_FOUND, f"no {contract} record {record_id}")
            return found[0]
        _check_record_id(record_id)
        if not is_node_id(origin):
            raise GuantongError(ErrorCode.INVALID_NODE_ID, f"origin {origin!r} is not a node id")
        with self.store.read() as conn:
            row = conn.execute(
                self._records().where(
                    _RECORDS.c.origin == origin,
                    _RECORDS.c.record_id == record_id,
                    _RECORDS.c.contract == contract,
                )
            ).first()
        if row is None:
            raise GuantongError(
                ErrorCode.NOT_FOUND, f"no {contract} record {record_id} of {origin}"
            )
        return self._view(row, major)

    def find(
        self,
        record_id: str,
        *,
        contract: str | None = None,
        under: str | None = None,
        major: int | None = None,
    ) -> list[RecordView]:
        """Every record of id ``record_id`` (of ``contract``, of an origin in the subtree of
        ``under``), this node's own first, then by origin.

        Records are keyed by origin and id, with no index of ids alone (each record would
        write it at a random place: migration 2026_12_07_0013), so this probes the key
        once for every origin held (:func:`_holders`): for an id typed by a person, not for
        a hot path (25 ms on SQLite, 40 on PostgreSQL, with 10,000 origins held).
        """
        _check_record_id(record_id)
        with self.store.read() as conn:
            origins = [o for o, _ in _holders(conn, [record_id])]
            if under is not None:
                origins = [o for o in origins if is_in_subtree(o, under)]
            query = self._records().where(
                _RECORDS.c.origin.in_(origins), _RECORDS.c.record_id == record_id
            )
            if contract is not None:
                query = query.where(_RECORDS.c.contract == contract)
            rows = list(conn.execute(query)) if origins else []
        rows.sort(key=lambda r: (r.origin != self.id, r.origin))
        return [self._view(row, major) for row in rows]

    def foreign(self, record_ids: Sequence[str]) -> dict[str, str]:
        """Of ``record_ids``, those this node holds for another origin and not for its own,
        each with such an origin: ids given by a person that name another node's record,
        which only that node writes (``not_record_owner``). Probes every origin held for
        every id (as :meth:`find`), so it is for what people type, not for a hot path."""
        wanted = sorted(set(record_ids))
        own: set[str] = set()
        out: dict[str, str] = {}
        with self.store.read() as conn:
            for i in range(0, len(wanted), _CHUNK):
                for origin, record_id in _holders(conn, wanted[i : i + _CHUNK]):
                    if origin == self.id:
                        own.add(record_id)
                    else:
                        out.setdefault(record_id, origin)
        return {r: o for r, o in out.items() if r not in own}

    def refuse_foreign(self, records: Sequence[tuple[int | None, dict[str, Any]]]) -> None:
        """``not_record_owner`` if a record to be put names by its ``id`` a record another
        origin holds here and this node does not: what a person writing ``guantong put`` or
        saving a form means to change is that node's to write, and would otherwise start
        a record of this node's own under the same id. Writers that make their own ids do
        not need it (:meth:`foreign` probes every origin held)."""
        lines = {
            r["id"]: line
            for line, r in reversed(records)
            if isinstance(r.get("id"), str) and is_uuid(r["id"])
        }
        taken = self.foreign(list(lines))
        if taken:
            record_id = min(taken, key=lambda r: lines[r] or 0)
            line = lines[record_id]
            where = f"line {line}: " if line is not None else ""
            raise GuantongError(
                ErrorCode.NOT_RECORD_OWNER,
                f"{where}record {record_id} was created by {taken[record_id]}; only its "
                "creator writes it (record a new one that references it)",
                **({"line": line} if line is not None else {}),
            )

    def _records(self) -> Select[Any]:
        """Records with the originals of their private fields: held for own records only,
        so joined for this node's origin alone (a child's record may reuse an own id)."""
        return select(_RECORDS, LOCAL_PRIVATE.c.data.label("private")).outerjoin(
            LOCAL_PRIVATE,
            and_(LOCAL_PRIVATE.c.record_id == _RECORDS.c.record_id, _RECORDS.c.origin == self.id),
        )

    def list(
        self,
        contract: str,
        *,
        limit: int | None = None,
        include_deleted: bool = False,
        major: int | None = None,
        newest_first: bool = False,
    ) -> list[RecordView]:
        """Records of ``contract`` in the order they were last changed (``newest_first``:
        the other way, so that a ``limit`` keeps the latest)."""
        self.registry.versions(contract)  # unknown contract: a clear error, not an empty list
        order = (_RECORDS.c.updated_at, _RECORDS.c.origin, _RECORDS.c.record_id)
        query = (
            self._records()
            .where(_RECORDS.c.contract == contract)
            .order_by(*(c.desc() for c in order) if newest_first else order)
        )
        if not include_deleted:
            query = query.where(_RECORDS.c.deleted.is_(False))
        if limit:
            query = query.limit(limit)
        with self.store.read() as conn:
            return [self._view(row, major) for row in conn.execute(query)]

    def _view(self, row: Any, major: int | None) -> RecordView:
        version, data = row.version, merge_private(row.data, row.private or {})
        if data is not None and major is not None and self.registry.knows(row.contract, version):
            version, data = present(self.registry, row.contract, version, data, major=major)
        return RecordView(
            id=row.record_id,
            contract=row.contract,
            version=version,
            origin=row.origin,
            seq=int(row.seq),
            deleted=bool(row.deleted),
            updated_at=row.updated_at,
            data=data,
        )

    @property
    def registry(self) -> Registry:
        """The installed contract bundle. One that another process of this node installed
        since (another worker of ``serve --workers``, a command beside the server) is
        loaded at the next use: a ``stat`` of the folder, whose inode every install
        replaces."""
        seen = _folder_state(self.settings.home / "contracts")
        if seen != self._contracts_seen:
            try:
                loaded = load_registry(self.settings.home)
            except (GuantongError, OSError):
                return self._registry  # being replaced this moment: looked at again next use
            self._contracts_seen = seen
            if loaded.bundle_version > self._registry.bundle_version:
                self._registry = loaded
                self.log.rules = loaded.rules("performance_index")
        return self._registry

    @registry.setter
    def registry(self, registry: Registry) -> None:
        self._registry = registry

    def install_contracts(self, registry: Registry) -> None:
        """Install a bundle in this node's home; never roll back to an older bundle."""
        if registry.bundle_version < self.registry.bundle_version:
            raise GuantongError(
                ErrorCode.BUNDLE_INVALID,
                f"bundle {registry.bundle_version} is older than the installed "
                f"{self.registry.bundle_version}; nodes never roll back",
            )
        staging = self.settings.home / "contracts.new"
        retired = self.settings.home / "contracts.old"
        target = self.settings.home / "contracts"
        with _contracts_lock(self.settings.home):
            _settle(self.settings.home)  # another process's install killed mid-swap
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(retired, ignore_errors=True)
            registry.export(staging)
            if target.exists():
                # two renames: a reader finds one bundle or, briefly, none; killed between
                # them, the next load finishes the swap (settle_contracts)
                target.rename(retired)
            staging.rename(target)
            shutil.rmtree(retired, ignore_errors=True)
        self._registry = registry
        self._contracts_seen = _folder_state(target)
        if self.log.rules != registry.rules("performance_index"):
            self.log.rules = registry.rules("performance_index")
            rebuild(self.store, self.log.rules)  # new rules: every index point recounted

    def status(self) -> dict[str, Any]:
        """What this node is and holds; on a quarantined store, what can still be read."""
        own, entries, origins = None, None, None
        try:
            own = self.log.head()
            entries, origins = self.log.counts()
        except GuantongError as exc:
            if exc.code is not ErrorCode.STORE_CORRUPT:
                raise
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
            "store_corrupt": self.store.corrupt_reason(),
        }


def _check_record_id(record_id: str) -> None:
    if not is_uuid(record_id):
        raise GuantongError(
            ErrorCode.INVALID_RECORD_ID, f"record id {record_id!r} is not a lowercase UUID"
        )


def _holders(conn: Connection, record_ids: Sequence[str]) -> list[tuple[str, str]]:
    """``(origin, record_id)`` of every record held under one of ``record_ids``, by origin.

    The key leads with the origin, so the lookup goes origin by origin: every origin whose
    entries a node holds has a head (its own too, once it has written), and each origin
    and id is one probe of the key. SQLite plans ``origin IN (SELECT origin FROM heads)``
    so (``SEARCH records USING COVERING INDEX … (origin=? AND record_id=?)``); PostgreSQL
    (before 18, which can skip through a key) plans it as a scan of every record, and
    probes the key with the origins handed over as one array instead.
    """
    ids = list(record_ids)
    if conn.dialect.name == "postgresql":
        sql = (
            "SELECT origin, record_id FROM records "
            "WHERE origin = ANY(ARRAY(SELECT origin FROM heads)) AND record_id = ANY(?)"
        )
        rows = driver_rows(conn, sql, [ids])
    else:
        sql = (
            "SELECT origin, record_id FROM records WHERE record_id IN "
            f"({', '.join('?' * len(ids))}) AND origin IN (SELECT origin FROM heads)"
        )
        rows = driver_rows(conn, sql, ids)
    return sorted((str(o), str(r)) for o, r in rows)
