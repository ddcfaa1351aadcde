"""Records keyed by ``(origin, record_id)`` instead of ``record_id`` alone.

A record is written by its origin alone (protocol §3, single writer), so what names it is
its origin and its id. Keyed by the id alone, two things went wrong:

- **Hubs could disagree.** An id reused by a second origin (a station restored from
  another's image, a buggy or hostile one) was taken by whichever origin's entry reached
  a hub first; the other origin's record was not materialised there. Its entries were
  relayed all the same, so a hub above that saw them in the other order materialised the
  other record: two tiers holding every byte alike showed different records. Keyed by
  both, each origin's record is its own, at every hub, in any order of arrival.
- **Every record was written at a random place.** Record ids are UUIDv7, ordered by the
  moment a record was made, and a hub takes in many stations' records of the same hours
  at once, so the key's b-tree took each new record on a leaf page of its own, and SQLite
  writes every page a commit touches in full to its WAL. Under ``origin`` first, a push's
  new records are appended to its origin's run of the key: a page or two per push
  (``benchmarks.ingest --record-ids uuid7 --held 200000``, three alternating pairs: 112
  against 74 µs of CPU per entry ingested on average, 119 against 76 µs of wall time).
  The index on ``origin`` alone is the key's leading column now and goes.

A lookup by id alone (a record id typed into a form) probes each origin the hub holds
(``node.runtime.Node.find``): one key lookup per origin, 25 ms on SQLite and 40 on
PostgreSQL with 10,000 origins and a million records held, instead of an index written
at a random place by every record.

SQLite cannot change a table's primary key: the table is built again, in key order.

Revision ID: 2026_12_07_0013
Revises: 2026_12_06_0012
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "2026_12_07_0013"
down_revision = "2026_12_06_0012"
branch_labels = None
depends_on = None

_COLUMNS = "origin, record_id, contract, version, seq, deleted, data, updated_at"


def _rebuild_sqlite(key: str, *, index_origin: bool) -> None:
    op.execute(
        "CREATE TABLE records_new ("
        "origin VARCHAR(128) NOT NULL, record_id VARCHAR(36) NOT NULL, "
        "contract VARCHAR(64) NOT NULL, version VARCHAR(16) NOT NULL, seq BIGINT NOT NULL, "
        "deleted BOOLEAN NOT NULL, data JSON, updated_at VARCHAR(24) NOT NULL, "
        f"PRIMARY KEY ({key}))"
    )
    op.execute(
        f"INSERT INTO records_new ({_COLUMNS}) SELECT {_COLUMNS} FROM records ORDER BY {key}"
    )
    op.execute("DROP TABLE records")
    op.execute("ALTER TABLE records_new RENAME TO records")
    op.create_index("ix_records_contract", "records", ["contract", "origin"])
    if index_origin:
        op.create_index("ix_records_origin", "records", ["origin"])


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite("origin, record_id", index_origin=False)
        return
    op.drop_constraint("records_pkey", "records", type_="primary")
    op.create_primary_key("records_pkey", "records", ["origin", "record_id"])
    op.drop_index("ix_records_origin", "records")


def downgrade() -> None:
    """Fails with the store's own unique-key error if two origins hold the same id: keyed
    by the id alone, one of them would have to be dropped."""
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite("record_id", index_origin=True)
        return
    op.create_index("ix_records_origin", "records", ["origin"])
    op.drop_constraint("records_pkey", "records", type_="primary")
    op.create_primary_key("records_pkey", "records", ["record_id"])
