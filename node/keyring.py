"""Public keys this node trusts, by key id: its own, and those learnt for other nodes.

The trust issue fills it from certificates (enrollment, ``node_cert`` records); sync only
asks it one question per segment: which key is this, whose, and was it good at that time?
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from node.db import Store, upsert
from node.tables import KEYS
from schemas.signing import b64u_decode, b64u_encode, key_id

__all__ = ["KnownKey", "Keyring"]


@dataclass(frozen=True, slots=True)
class KnownKey:
    key_id: str
    node: str
    public_raw: bytes
    not_before: str
    not_after: str | None
    revoked_from: str | None

    def valid_at(self, time: str) -> bool:
        """Times are fixed-width RFC 3339 UTC strings, so they compare as strings."""
        return self.not_before <= time and (self.not_after is None or time <= self.not_after)

    def revoked_at(self, time: str) -> bool:
        return self.revoked_from is not None and time >= self.revoked_from


class Keyring:
    def __init__(self, store: Store) -> None:
        self.store = store

    def lookup(self, kid: str, conn: Connection | None = None) -> KnownKey | None:
        query = select(KEYS).where(KEYS.c.key_id == kid)
        if conn is not None:
            row = conn.execute(query).first()
        else:
            with self.store.read() as own:
                row = own.execute(query).first()
        if row is None:
            return None
        return KnownKey(
            key_id=row.key_id,
            node=row.node,
            public_raw=b64u_decode(row.public_key),
            not_before=row.not_before,
            not_after=row.not_after,
            revoked_from=row.revoked_from,
        )

    def add(
        self,
        node: str,
        public_raw: bytes,
        *,
        not_before: str,
        not_after: str | None = None,
        conn: Connection | None = None,
    ) -> str:
        kid = key_id(public_raw)
        row = {
            "key_id": kid,
            "node": node,
            "public_key": b64u_encode(public_raw),
            "not_before": not_before,
            "not_after": not_after,
        }
        if conn is not None:
            upsert(conn, KEYS, [row], ["key_id"], ["not_before", "not_after"])
        else:
            with self.store.write() as own:
                upsert(own, KEYS, [row], ["key_id"], ["not_before", "not_after"])
        return kid

    def revoke(self, kid: str, *, revoked_from: str) -> None:
        with self.store.write() as conn:
            conn.execute(
                KEYS.update().where(KEYS.c.key_id == kid).values(revoked_from=revoked_from)
            )
