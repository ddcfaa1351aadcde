"""Public keys this node trusts, by key id, each backed by a verified certificate chain.

Trust starts at one key id, the province's root (the trust anchor configured at install
time, carried by every enrollment token). A certificate is accepted only if it is the
self-signed root with exactly that key id, or if it is signed by a key already in the
keyring that belongs to its issuer, and the issuer is an ancestor of the certified node
(PROTOCOL §7). So any key found here is the end of a verified chain to the root, and the
hot paths ask one cheap question: which key is this, whose, and was it good at that time?

The node's own key is present from ``init`` (uncertified until enrollment); tests and tools
may add keys directly with :meth:`Keyring.add`.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, select

from node.db import Store, driver_rows, upsert
from node.tables import KEYS, RECORDS
from schemas.certs import Certificate
from schemas.errors import ErrorCode, GuantongError
from schemas.ids import Tier, check_tier_depth, is_in_subtree, is_key_id, parent_of
from schemas.signing import b64u_decode, b64u_encode, key_id

__all__ = ["KnownKey", "Keyring", "cert_record"]

_HUB_TIERS = frozenset({Tier.PROVINCE, Tier.CITY, Tier.COUNTY, Tier.TOWNSHIP})
_COLUMNS = ["node", "public_key", "not_before", "not_after", "tier", "issuer", "cert"]
_LOOKUP_MANY = (
    "SELECT key_id, node, public_key, not_before, not_after, revoked_from, cert "
    "FROM keys WHERE key_id IN"
)
_MANY = 500
"""Key ids per statement of :meth:`Keyring.lookup_many`, well under every backend's limit
on parameters."""
_CERT_FIELDS = ("node", "tier", "key", "key_id", "issuer", "not_before", "not_after", "sig")


_NAMESPACE = uuid.UUID("0b4f7a52-53c9-4c55-9b8e-1d3f5a7c9e21")


def cert_record(
    cert: Certificate, *, issuer: str, status: str = "active", revoked_from: str | None = None
) -> dict[str, Any]:
    """The ``node_cert`` record announcing ``cert`` (record id stable per issuer and key)."""
    record: dict[str, Any] = {
        "id": str(uuid.uuid5(_NAMESPACE, f"{issuer}:{cert.key_id}")),
        **cert.to_dict(),
        "status": status,
    }
    if revoked_from is not None:
        record["revoked_from"] = revoked_from
    return record


@dataclass(frozen=True, slots=True)
class KnownKey:
    key_id: str
    node: str
    public_raw: bytes
    not_before: str
    not_after: str | None
    revoked_from: str | None
    cert: Certificate | None = None

    def valid_at(self, time: str) -> bool:
        """Times are fixed-width RFC 3339 UTC strings, so they compare as strings."""
        return self.not_before <= time and (self.not_after is None or time <= self.not_after)

    def revoked_at(self, time: str) -> bool:
        return self.revoked_from is not None and time >= self.revoked_from


class Keyring:
    def __init__(self, store: Store, *, anchor: str | None = None) -> None:
        self.store = store
        self.anchor = anchor
        """The province root key id; None until this node is enrolled (or is the root)."""

    def lookup(self, kid: str, conn: Connection | None = None) -> KnownKey | None:
        """The key with id ``kid``; None if unknown, or if ``kid`` is not a key id at all
        (peers send key ids: one that breaks the grammar never reaches the store)."""
        return self.lookup_many((kid,), conn).get(kid)

    def lookup_many(
        self, kids: Iterable[str], conn: Connection | None = None
    ) -> dict[str, KnownKey]:
        """The known keys among ``kids``, by key id, read in one transaction and a few
        statements: a relay's push carries the heads of a hundred origins, and a read
        transaction and a statement for each cost a city a tenth of its CPU. Ids that
        break the grammar or are unknown are absent. On the driver: once per push, where
        building the statement cost more than the lookup."""
        wanted = sorted({kid for kid in kids if is_key_id(kid)})
        if not wanted:
            return {}
        if conn is None:
            with self.store.read() as own:
                return self.lookup_many(wanted, own)
        found: dict[str, KnownKey] = {}
        for i in range(0, len(wanted), _MANY):
            chunk = wanted[i : i + _MANY]
            sql = f"{_LOOKUP_MANY} ({', '.join('?' * len(chunk))})"
            for row in driver_rows(conn, sql, chunk):
                found[row.key_id] = _known(row)
        return found

    def keys_of(self, node: str, conn: Connection | None = None) -> list[KnownKey]:
        query = select(KEYS.c.key_id).where(KEYS.c.node == node).order_by(KEYS.c.not_before)
        if conn is not None:
            kids = list(conn.execute(query).scalars())
            return [k for k in (self.lookup(kid, conn) for kid in kids) if k is not None]
        with self.store.read() as own:
            kids = list(own.execute(query).scalars())
            return [k for k in (self.lookup(kid, own) for kid in kids) if k is not None]

    def add(
        self,
        node: str,
        public_raw: bytes,
        *,
        not_before: str,
        not_after: str | None = None,
        conn: Connection | None = None,
    ) -> str:
        """Trust a key without a certificate (this node's own key at ``init``; tests)."""
        kid = key_id(public_raw)
        row = {
            "key_id": kid,
            "node": node,
            "public_key": b64u_encode(public_raw),
            "not_before": not_before,
            "not_after": not_after,
            "tier": None,
            "issuer": None,
            "cert": None,
        }
        self._upsert(row, conn)
        return kid

    def add_certificate(self, cert: Certificate, conn: Connection | None = None) -> None:
        """Verify ``cert`` against the keyring and the anchor, then trust its key.

        A key belongs to one node: a certificate of a key already known for another node is
        refused. Public keys are public, so a hub could otherwise certify another node's key
        for a child of its own, and every hub above would give the key to that child and
        refuse its owner's authentic entries.

        A key holds one row: a second certificate for it (the node enrolled again with the
        same key) widens the key's validity to cover both, never narrows it — old
        certificates stay valid for what they signed during their validity (PROTOCOL §7);
        replacing the validity refused the heads signed before the new ``not_before``.
        The row keeps the certificate that runs longest. The union also covers a gap
        between two certificates, should the second start after the first ended; this
        implementation issues the second to a node still enrolled, within the first."""
        self.check_certificate(cert, conn)
        known = self.lookup(cert.key_id, conn)
        if known is not None and known.node != cert.node:
            raise GuantongError(
                ErrorCode.FORBIDDEN,
                f"key {cert.key_id} is {known.node}'s: {cert.issuer} may not certify it "
                f"for {cert.node}",
            )
        kept, not_before = cert, cert.not_before
        not_after: str | None = cert.not_after
        if known is not None and known.cert is not None:  # not the uncertified own key
            not_before = min(not_before, known.not_before)
            if known.not_after is None or known.not_after > cert.not_after:
                kept, not_after = known.cert, known.not_after
        row = {
            "key_id": cert.key_id,
            "node": cert.node,
            "public_key": cert.key,
            "not_before": not_before,
            "not_after": not_after,
            "tier": kept.tier.value,
            "issuer": kept.issuer,
            "cert": kept.canonical(),
        }
        self._upsert(row, conn)

    def check_certificate(self, cert: Certificate, conn: Connection | None = None) -> None:
        check_tier_depth(cert.node, cert.tier)  # a station-level id is never a hub
        if cert.self_signed:
            if self.anchor is None or cert.key_id != self.anchor:
                raise GuantongError(
                    ErrorCode.BAD_SIGNATURE,
                    f"self-signed certificate {cert.key_id} is not the trust anchor {self.anchor}",
                )
            if not cert.verify_with(cert.public_raw):
                raise GuantongError(ErrorCode.BAD_SIGNATURE, "root certificate does not verify")
            return
        if parent_of(cert.node) != cert.issuer:
            raise GuantongError(
                ErrorCode.NOT_IN_SUBTREE,
                f"{cert.issuer} may not certify {cert.node}: only its parent can",
            )
        issuer = self.lookup(cert.signer_key_id, conn)
        if issuer is None or issuer.node != cert.issuer:
            raise GuantongError(
                ErrorCode.UNKNOWN_ORIGIN,
                f"certificate of {cert.node} is signed by unknown key {cert.signer_key_id}",
            )
        if issuer.cert is None or issuer.cert.tier not in _HUB_TIERS:
            raise GuantongError(
                ErrorCode.FORBIDDEN, f"{cert.issuer} is not a hub: it certifies no one"
            )
        if issuer.revoked_at(cert.not_before) or not issuer.valid_at(cert.not_before):
            raise GuantongError(
                ErrorCode.REVOKED_KEY,
                f"issuer key {issuer.key_id} was not valid when it certified {cert.node}",
            )
        if not cert.verify_with(issuer.public_raw):
            raise GuantongError(
                ErrorCode.BAD_SIGNATURE, f"certificate of {cert.node} does not verify"
            )

    def chain(self, kid: str, conn: Connection | None = None) -> list[Certificate]:
        """The certificates from ``kid``'s up to the root, each signed by the next."""
        out: list[Certificate] = []
        seen: set[str] = set()
        while kid not in seen:
            seen.add(kid)
            known = self.lookup(kid, conn)
            if known is None or known.cert is None:
                raise GuantongError(ErrorCode.NOT_ENROLLED, f"no certificate for key {kid}")
            out.append(known.cert)
            if known.cert.self_signed:
                return out
            kid = known.cert.signer_key_id
        raise GuantongError(ErrorCode.BAD_SIGNATURE, "certificate chain loops")

    def learn(self, origin: str, data: dict[str, Any], time: str, conn: Connection) -> bool:
        """Apply a ``node_cert`` record that ``origin`` wrote; False if it cannot be verified
        yet (its issuer's key is not known here yet: the caller retries later).

        Only the issuer announces a certificate; the issuer or any ancestor of the node may
        announce its revocation.
        """
        try:
            cert = Certificate.parse_obj({k: data.get(k) for k in _CERT_FIELDS})
        except GuantongError:
            return False
        if data.get("status") == "revoked":
            if cert.node == origin or not is_in_subtree(cert.node, origin):
                return False
            known = self.lookup(cert.key_id, conn)
            if known is None:
                try:  # a revocation carries the certificate: trust it, then revoke it
                    self.add_certificate(cert, conn)
                except GuantongError:
                    return False
            elif known.node != cert.node:
                # the key is another node's: a writer above the node it names, not above
                # the key's owner, revokes nothing (a city could revoke a sibling's keys)
                return False
            self.revoke_key(cert.key_id, revoked_from=data.get("revoked_from") or time, conn=conn)
            return True
        if cert.issuer != origin or cert.self_signed:
            return False
        try:
            self.add_certificate(cert, conn)
        except GuantongError:
            return False
        return True

    def relearn(self) -> int:
        """Retry every announced certificate whose key is not trusted yet (a periodic job)."""
        learnt = 0
        with self.store.write() as conn:
            found = conn.execute(
                select(RECORDS.c.origin, RECORDS.c.data, RECORDS.c.updated_at)
                .select_from(
                    RECORDS.outerjoin(KEYS, KEYS.c.key_id == RECORDS.c.data["key_id"].as_string())
                )
                .where(RECORDS.c.contract == "node_cert", KEYS.c.key_id.is_(None))
            ).all()
            rows = list(found)
            progress = True
            while progress and rows:
                progress = False
                for row in list(rows):
                    if self.learn(row.origin, row.data, row.updated_at, conn):
                        rows.remove(row)
                        learnt += 1
                        progress = True
        return learnt

    def revoke_key(self, kid: str, *, revoked_from: str, conn: Connection) -> None:
        conn.execute(
            KEYS.update()
            .where(KEYS.c.key_id == kid)
            .where((KEYS.c.revoked_from.is_(None)) | (KEYS.c.revoked_from > revoked_from))
            .values(revoked_from=revoked_from)
        )

    def revoke(self, node: str, *, revoked_from: str, conn: Connection | None = None) -> int:
        """Revoke every key of ``node`` from ``revoked_from``; returns how many."""
        stmt = (
            KEYS.update()
            .where(KEYS.c.node == node)
            .where((KEYS.c.revoked_from.is_(None)) | (KEYS.c.revoked_from > revoked_from))
            .values(revoked_from=revoked_from)
        )
        if conn is not None:
            return int(conn.execute(stmt).rowcount)
        with self.store.write() as own:
            return int(own.execute(stmt).rowcount)

    def _upsert(self, row: dict[str, Any], conn: Connection | None) -> None:
        if conn is not None:
            upsert(conn, KEYS, [row], ["key_id"], _COLUMNS)
        else:
            with self.store.write() as own:
                upsert(own, KEYS, [row], ["key_id"], _COLUMNS)


def _known(row: Any) -> KnownKey:
    return KnownKey(
        key_id=row.key_id,
        node=row.node,
        public_raw=b64u_decode(row.public_key),
        not_before=row.not_before,
        not_after=row.not_after,
        revoked_from=row.revoked_from,
        cert=_certificate(bytes(row.cert)) if row.cert else None,
    )


def _json(raw: bytes) -> Any:
    return orjson.loads(raw)


@functools.lru_cache(maxsize=16_384)
def _certificate(raw: bytes) -> Certificate:
    """A stored certificate's model: the same bytes always give the same (frozen) model,
    so a hub checking thousands of stations' heads parses each certificate once. The key
    row itself, with its revocation, is read fresh every time."""
    return Certificate.parse_obj(_json(raw))
