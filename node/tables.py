"""The node's tables (SQLModel). Alembic migrations in ``node/migrations`` create them;
``tests/node/test_migrations.py`` proves the two agree on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, LargeBinary, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

__all__ = [
    "ENTRIES",
    "HEADS",
    "KEYS",
    "LOCAL_PRIVATE",
    "META",
    "RECORDS",
    "SIGNED_HEADS",
    "EntryRow",
    "HeadRow",
    "KeyRow",
    "LocalPrivateRow",
    "MetaRow",
    "RecordRow",
    "SignedHeadRow",
    "ACCEPTANCE_REPORTS",
    "DOWNLINK",
    "PEERS",
    "TASKS",
    "TASK_ALERTS",
    "TASK_EVENTS",
    "TASK_FEED",
    "RECEIPTS",
    "REGISTER",
    "REJECTIONS",
    "REPLAY_CACHE",
    "ROLLUPS",
    "SESSIONS",
    "TOKENS",
    "QUALITY_RAISED",
    "UPLINK_CURSOR",
    "UPLINK_STATE",
    "USERS",
    "PeerRow",
    "QualityRaisedRow",
    "UplinkCursorRow",
    "UplinkStateRow",
    "metadata",
]

metadata = SQLModel.metadata
_JSON = JSON().with_variant(JSONB(), "postgresql")


class EntryRow(SQLModel, table=True):
    """Every entry held, own or relayed: the exact bytes and the fields needed to use them."""

    __tablename__ = "entries"
    __table_args__ = (
        Index("ix_entries_origin_record", "origin", "record_id"),
        Index("ix_entries_status", "status"),
    )

    origin: str = Field(sa_column=Column(String(128), primary_key=True))
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: str = Field(sa_column=Column(String(64), nullable=False))
    prev: str = Field(sa_column=Column(String(64), nullable=False))
    time: str = Field(sa_column=Column(String(24), nullable=False))
    contract: str = Field(sa_column=Column(String(64), nullable=False))
    version: str = Field(sa_column=Column(String(16), nullable=False))
    record_id: str = Field(sa_column=Column(String(36), nullable=False))
    op: str = Field(sa_column=Column(String(3), nullable=False))
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    status: str = Field(sa_column=Column(String(8), nullable=False))
    received_at: str = Field(sa_column=Column(String(24), nullable=False))


class HeadRow(SQLModel, table=True):
    """Per origin: the highest seq held (gapless from 1) and the latest signed head."""

    __tablename__ = "heads"

    origin: str = Field(sa_column=Column(String(128), primary_key=True))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    hash: str = Field(sa_column=Column(String(64), nullable=False))
    signed_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    signed_head: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    updated_at: str = Field(sa_column=Column(String(24), nullable=False))


class SignedHeadRow(SQLModel, table=True):
    """Every signed head held: segments can only end where one exists (relays never sign)."""

    __tablename__ = "signed_heads"

    origin: str = Field(sa_column=Column(String(128), primary_key=True))
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class RecordRow(SQLModel, table=True):
    """The materialised latest state of each record (the latest valid put or del), keyed by
    its origin and its id: a record is written by its origin alone, and an id another
    origin reuses names another record (migration 2026_12_07_0013)."""

    __tablename__ = "records"
    __table_args__ = (Index("ix_records_contract", "contract", "origin"),)

    origin: str = Field(sa_column=Column(String(128), primary_key=True))
    record_id: str = Field(sa_column=Column(String(36), primary_key=True))
    contract: str = Field(sa_column=Column(String(64), nullable=False))
    version: str = Field(sa_column=Column(String(16), nullable=False))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    deleted: bool = Field(default=False, nullable=False)
    data: dict[str, Any] | None = Field(default=None, sa_column=Column(_JSON, nullable=True))
    updated_at: str = Field(sa_column=Column(String(24), nullable=False))


class LocalPrivateRow(SQLModel, table=True):
    """Originals of a record's private fields (``x-privacy``), by JSON pointer: never sent."""

    __tablename__ = "local_private"

    record_id: str = Field(sa_column=Column(String(36), primary_key=True))
    data: dict[str, Any] = Field(sa_column=Column(_JSON, nullable=False))


class KeyRow(SQLModel, table=True):
    """Public keys this node trusts for verifying signatures, by key id."""

    __tablename__ = "keys"
    __table_args__ = (Index("ix_keys_node", "node"),)

    key_id: str = Field(sa_column=Column(String(16), primary_key=True))
    node: str = Field(sa_column=Column(String(128), nullable=False))
    public_key: str = Field(sa_column=Column(String(64), nullable=False))
    not_before: str = Field(sa_column=Column(String(24), nullable=False))
    not_after: str | None = Field(default=None, sa_column=Column(String(24), nullable=True))
    revoked_from: str | None = Field(default=None, sa_column=Column(String(24), nullable=True))
    tier: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    issuer: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    cert: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


class MetaRow(SQLModel, table=True):
    """Small facts about this store (its node id, when it was created)."""

    __tablename__ = "meta"

    key: str = Field(sa_column=Column(String(64), primary_key=True))
    value: str = Field(sa_column=Column(String(1024), nullable=False))


# Core tables for the hot paths (bulk inserts, keyset reads), typed for mypy.
ENTRIES = metadata.tables["entries"]
HEADS = metadata.tables["heads"]
SIGNED_HEADS = metadata.tables["signed_heads"]
RECORDS = metadata.tables["records"]
KEYS = metadata.tables["keys"]
LOCAL_PRIVATE = metadata.tables["local_private"]
META = metadata.tables["meta"]


class UplinkCursorRow(SQLModel, table=True):
    """Per origin in the outbox: the highest seq the parent has acknowledged as held."""

    __tablename__ = "uplink_cursor"

    origin: str = Field(sa_column=Column(String(128), primary_key=True))
    acked: int = Field(sa_column=Column(BigInteger, nullable=False))
    blocked: str | None = Field(default=None, sa_column=Column(String(512), nullable=True))
    updated_at: str = Field(sa_column=Column(String(24), nullable=False))


class UplinkStateRow(SQLModel, table=True):
    """The uplink's backoff state, stored so a restart resumes where it left off."""

    __tablename__ = "uplink_state"

    id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    failures: int = Field(sa_column=Column(BigInteger, nullable=False))
    next_attempt_at: str | None = Field(default=None, sa_column=Column(String(24), nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(String(512), nullable=True))
    last_contact: str | None = Field(default=None, sa_column=Column(String(24), nullable=True))


class PeerRow(SQLModel, table=True):
    """What a hub knows of each node that pushed to it: when, and how it went."""

    __tablename__ = "peers"

    node: str = Field(sa_column=Column(String(128), primary_key=True))
    last_seen: str = Field(sa_column=Column(String(24), nullable=False))
    last_error: str | None = Field(default=None, sa_column=Column(String(512), nullable=True))
    pushes: int = Field(sa_column=Column(BigInteger, nullable=False))


class QualityRaisedRow(SQLModel, table=True):
    """Invalid entries for which a ``data_quality`` record was written (idempotence)."""

    __tablename__ = "quality_raised"

    origin: str = Field(sa_column=Column(String(128), primary_key=True))
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    record_id: str = Field(sa_column=Column(String(36), nullable=False))


class TokenRow(SQLModel, table=True):
    """One-time enrollment tokens this hub issued, by SHA-256 of the token text."""

    __tablename__ = "tokens"

    token_hash: str = Field(sa_column=Column(String(64), primary_key=True))
    child: str = Field(sa_column=Column(String(128), nullable=False))
    tier: str = Field(sa_column=Column(String(16), nullable=False))
    created_at: str = Field(sa_column=Column(String(24), nullable=False))
    expires_at: str = Field(sa_column=Column(String(24), nullable=False))
    used_at: str | None = Field(default=None, sa_column=Column(String(24), nullable=True))


class ReplayRow(SQLModel, table=True):
    """Request signatures seen within the clock-skew window (PROTOCOL §6)."""

    __tablename__ = "replay_cache"
    __table_args__ = (Index("ix_replay_expires", "expires_at"),)

    sig_hash: str = Field(sa_column=Column(String(64), primary_key=True))
    expires_at: str = Field(sa_column=Column(String(24), nullable=False))


class TaskRow(SQLModel, table=True):
    """Every task revision held (own, or relayed for the subtree): ``delivery`` numbers the
    rows as inserted; ``feed`` numbers them as committed — the order children page in —
    and ``chain`` hashes the feed up to the row (``node/taskfeed.py``)."""

    __tablename__ = "tasks"
    __table_args__ = (
        Index("ux_tasks_rev", "task_id", "rev", unique=True),
        Index("ix_tasks_target", "target"),
        Index("ux_tasks_feed", "feed", unique=True),
    )

    delivery: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=True))
    feed: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    chain: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    task_id: str = Field(sa_column=Column(String(36), nullable=False))
    rev: int = Field(sa_column=Column(Integer, nullable=False))
    issuer: str = Field(sa_column=Column(String(128), nullable=False))
    target: str = Field(sa_column=Column(String(128), nullable=False))
    scope: str = Field(sa_column=Column(String(8), nullable=False))
    kind: str = Field(sa_column=Column(String(16), nullable=False))
    issued: str = Field(sa_column=Column(String(24), nullable=False))
    due: str | None = Field(default=None, sa_column=Column(String(24), nullable=True))
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    received_at: str = Field(sa_column=Column(String(24), nullable=False))


class TaskEventRow(SQLModel, table=True):
    """Reports on tasks (``task_report`` entries) seen here, own or relayed, by entry."""

    __tablename__ = "task_events"
    __table_args__ = (Index("ix_task_events_task", "task_id"),)

    origin: str = Field(sa_column=Column(String(128), primary_key=True))
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    task_id: str = Field(sa_column=Column(String(36), nullable=False))
    task_rev: int = Field(sa_column=Column(Integer, nullable=False))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    at: str = Field(sa_column=Column(String(24), nullable=False))
    note: str | None = Field(default=None, sa_column=Column(String(2000), nullable=True))


class TaskAlertRow(SQLModel, table=True):
    """Deadline actions already taken for a task (reminder, overdue, escalations)."""

    __tablename__ = "task_alerts"

    task_id: str = Field(sa_column=Column(String(36), primary_key=True))
    alert: str = Field(sa_column=Column(String(32), primary_key=True))
    at: str = Field(sa_column=Column(String(24), nullable=False))


class TaskFeedRow(SQLModel, table=True):
    """The head of this node's task feed: its last number and chain. Its one row is the
    lock that numbers revisions in commit order."""

    __tablename__ = "task_feed"

    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    last: int = Field(sa_column=Column(BigInteger, nullable=False))
    chain: str = Field(sa_column=Column(String(64), nullable=False))


class DownlinkRow(SQLModel, table=True):
    """Where this node is in its parent's task feed: the number, and the parent's chain
    there (which feed that number belongs to)."""

    __tablename__ = "downlink"

    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    after: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_at: str = Field(sa_column=Column(String(24), nullable=False))
    chain: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))


class RollupRow(SQLModel, table=True):
    """Aggregates per origin, day and metric, kept incrementally (see ``node/rollups.py``).
    Read by subtree, the key's leading column; no index on ``day`` (migration 0011)."""

    __tablename__ = "rollups"

    origin: str = Field(sa_column=Column(String(128), primary_key=True))
    day: str = Field(sa_column=Column(String(10), primary_key=True))
    metric: str = Field(sa_column=Column(String(32), primary_key=True))
    key: str = Field(sa_column=Column(String(200), primary_key=True))
    value: int = Field(sa_column=Column(BigInteger, nullable=False))


class RegisterRow(SQLModel, table=True):
    """The province's organisation register: the nodes that should exist (应接尽接)."""

    __tablename__ = "register"

    node: str = Field(sa_column=Column(String(128), primary_key=True))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    tier: str = Field(sa_column=Column(String(16), nullable=False))
    region: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))


class RejectionRow(SQLModel, table=True):
    """Segments this hub refused, for the security review (PROTOCOL §4 codes)."""

    __tablename__ = "rejections"
    __table_args__ = (Index("ix_rejections_origin", "origin"),)

    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=True))
    origin: str = Field(sa_column=Column(String(128), nullable=False))
    caller: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    code: str = Field(sa_column=Column(String(32), nullable=False))
    message: str = Field(sa_column=Column(String(500), nullable=False))
    at: str = Field(sa_column=Column(String(24), nullable=False))
    reviewed: bool = Field(default=False, nullable=False)


class UserRow(SQLModel, table=True):
    """People who use this node's web pages (distinct from node keys)."""

    __tablename__ = "users"

    name: str = Field(sa_column=Column(String(64), primary_key=True))
    role: str = Field(sa_column=Column(String(16), nullable=False))
    password_hash: str = Field(sa_column=Column(String(256), nullable=False))
    created_at: str = Field(sa_column=Column(String(24), nullable=False))
    disabled: bool = Field(default=False, nullable=False)


class SessionRow(SQLModel, table=True):
    """Web sessions, by SHA-256 of the cookie value; each carries its CSRF token."""

    __tablename__ = "sessions"

    token_hash: str = Field(sa_column=Column(String(64), primary_key=True))
    user: str = Field(sa_column=Column(String(64), nullable=False))
    csrf: str = Field(sa_column=Column(String(64), nullable=False))
    expires_at: str = Field(sa_column=Column(String(24), nullable=False))


class ReceiptRow(SQLModel, table=True):
    """A citizen's receipt code for an opinion submitted through the public form."""

    __tablename__ = "receipts"

    code: str = Field(sa_column=Column(String(16), primary_key=True))
    record_id: str = Field(sa_column=Column(String(36), nullable=False))
    created_at: str = Field(sa_column=Column(String(24), nullable=False))


class AcceptanceReportRow(SQLModel, table=True):
    """Acceptance reports run from the dashboard, kept to browse later."""

    __tablename__ = "acceptance_reports"

    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=True))
    prefix: str = Field(sa_column=Column(String(128), nullable=False))
    checked_at: str = Field(sa_column=Column(String(24), nullable=False))
    passed: bool = Field(nullable=False)
    report: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


UPLINK_CURSOR = metadata.tables["uplink_cursor"]
USERS = metadata.tables["users"]
SESSIONS = metadata.tables["sessions"]
RECEIPTS = metadata.tables["receipts"]
ACCEPTANCE_REPORTS = metadata.tables["acceptance_reports"]
REGISTER = metadata.tables["register"]
REJECTIONS = metadata.tables["rejections"]
ROLLUPS = metadata.tables["rollups"]
TASKS = metadata.tables["tasks"]
TASK_EVENTS = metadata.tables["task_events"]
TASK_FEED = metadata.tables["task_feed"]
DOWNLINK = metadata.tables["downlink"]
TASK_ALERTS = metadata.tables["task_alerts"]
TOKENS = metadata.tables["tokens"]
REPLAY_CACHE = metadata.tables["replay_cache"]
UPLINK_STATE = metadata.tables["uplink_state"]
PEERS = metadata.tables["peers"]
QUALITY_RAISED = metadata.tables["quality_raised"]
