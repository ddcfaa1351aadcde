"""Re-verify everything a node holds: bytes, chains, heads and signatures.

For each origin (optionally under a prefix) we stream its entries in seq order and check
that seq runs 1, 2, 3… without gaps, that each stored byte string hashes to its recorded
hash, parses as a canonical entry of that origin and seq, and chains to its predecessor;
that the ``heads`` row matches the last entry; and that every stored signed head commits to
the hash at its seq and carries a valid signature by a key known for that origin.

The first problem per origin is reported (later ones usually follow from it); every origin
is checked. A signed head that does not verify with a key known for its origin is damage
like a broken chain (the bytes or the signature changed since a hub verified them); one
whose key is not known is not (a certificate may not have arrived yet). Every origin's
entries must end at a signed head: entries beyond the last one are covered by no
signature, and nothing a province could verify. A signed head beyond the entries held names
entries the store has lost (its tail is gone, whatever the ``heads`` row says): damage, as
are a ``heads`` row whose signed head lies beyond its seq and entries held beyond the row.
Entries written while the check runs are left for the next one: each origin is checked up
to the head it had when the check began (signed heads above it are damage only if their
entries are not held).

:func:`check_store` is what ``guantong verify`` runs: the database's own integrity check
(SQLite ``PRAGMA integrity_check``: every page, b-tree and index) and then every chain. Damage
found either way quarantines the store (``node/db.py``): a hub verified all of it when it
accepted it, so a broken chain in the store can only be damage, and nothing more is written
or sent from it until ``guantong repair`` (``node/repair.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import orjson
from sqlalchemy import func, select

from node.log import Log
from node.tables import ENTRIES, HEADS, KEYS, SIGNED_HEADS
from schemas.canonical import parse_canonical
from schemas.errors import ErrorCode, GuantongError
from schemas.hashing import ZERO_HASH, sha256_hex
from schemas.log import Entry, SignedHead
from schemas.signing import b64u_decode

__all__ = ["DAMAGE", "Problem", "StoreCheck", "VerifyReport", "check_store", "verify_log"]

_SIGNED = SIGNED_HEADS
_ENTRIES = ENTRIES
_HEADS = HEADS
_KEYS = KEYS
DAMAGE = frozenset({ErrorCode.GAP, ErrorCode.BAD_HASH, ErrorCode.BAD_CHAIN, ErrorCode.MALFORMED})
"""Chain problems that only damage to the stored bytes explains (not a missing key)."""


@dataclass(frozen=True, slots=True)
class Problem:
    origin: str
    seq: int
    code: ErrorCode
    message: str
    altered: bool = False
    """A signature that does not verify with a key known for its origin."""

    @property
    def damage(self) -> bool:
        """Only damage to the stored bytes explains it (not a key yet to arrive)."""
        return self.code in DAMAGE or self.altered

    def __str__(self) -> str:
        return f"{self.origin} seq {self.seq}: {self.code.value}: {self.message}"


@dataclass(slots=True)
class VerifyReport:
    origins: int = 0
    entries: int = 0
    signed_heads: int = 0


@dataclass(frozen=True, slots=True)
class StoreCheck:
    damage: list[str]
    """What the database's integrity check found (empty when sound, and on PostgreSQL)."""
    problems: list[Problem]
    """The first problem of every broken origin."""

    @property
    def problem(self) -> Problem | None:
        """The one to report: the first damage, else the first problem."""
        return next((p for p in self.problems if p.damage), None) or next(iter(self.problems), None)

    @property
    def quarantined(self) -> bool:
        return bool(self.damage) or any(p.damage for p in self.problems)


def check_store(
    log: Log, *, prefix: str | None = None, report: VerifyReport | None = None
) -> StoreCheck:
    """The integrity of the database, then every chain; quarantine the store if damaged
    (anywhere: a missing key at one origin does not hide damage at another)."""
    damage = log.store.integrity_problems()
    problems: list[Problem] = []
    try:
        problems = list(verify_log(log, prefix=prefix, report=report))
    except GuantongError as exc:
        if exc.code is not ErrorCode.STORE_CORRUPT:
            raise
        if exc.message not in damage:
            damage.append(exc.message)
    check = StoreCheck(damage, problems)
    if damage:
        log.store.mark_corrupt("integrity check: " + "; ".join(damage[:3]))
    elif check.quarantined:
        log.store.mark_corrupt(f"verify: {check.problem}")
    return check


def verify_log(
    log: Log, *, prefix: str | None = None, report: VerifyReport | None = None, fast: bool = False
) -> Iterator[Problem]:
    """Yield the first problem of each broken origin; fill ``report`` with what was checked."""
    report = report if report is not None else VerifyReport()
    # Heads first, keys after: a key is stored no later than the entries it signs, so every
    # head read here has its keys in the later read, even while children push (the other
    # order failed a sound store whose new child arrived in between: bad_signature).
    heads = log.heads(prefix)
    keys = _known_keys(log)
    for info in heads:
        report.origins += 1
        problem = _verify_origin(log, info.origin, info.seq, info.head, keys, report, fast)
        if problem is not None:
            yield problem


@dataclass(frozen=True, slots=True)
class _Fields:
    """What the chain check needs, read without the full model (``fast``: the bytes were
    validated in full when they were accepted; hashes and chains are still all checked)."""

    origin: str
    seq: int
    prev: str

    @classmethod
    def of(cls, raw: bytes) -> _Fields:
        value = orjson.loads(raw)
        return cls(str(value["origin"]), int(value["seq"]), str(value["prev"]))


def _known_keys(log: Log) -> dict[str, tuple[str, bytes]]:
    with log.store.read() as conn:
        rows = conn.execute(select(_KEYS.c.key_id, _KEYS.c.node, _KEYS.c.public_key)).all()
    return {r.key_id: (r.node, b64u_decode(r.public_key)) for r in rows}


def _verify_origin(
    log: Log,
    origin: str,
    head_seq: int,
    head_hash: str,
    keys: dict[str, tuple[str, bytes]],
    report: VerifyReport,
    fast: bool = False,
) -> Problem | None:
    with log.store.read() as conn:
        # Every signed head, then the last entry held, then the heads row: in this order a
        # write committed between two reads (PostgreSQL reads each statement afresh) only
        # adds entries that a signed head read before names, and moves the row further on.
        signed = {
            int(r.seq): bytes(r.raw)
            for r in conn.execute(
                select(_SIGNED.c.seq, _SIGNED.c.raw).where(_SIGNED.c.origin == origin)
            )
        }
        last_held = select(func.coalesce(func.max(_ENTRIES.c.seq), 0))
        held = int(conn.execute(last_held.where(_ENTRIES.c.origin == origin)).scalar_one())
        row = conn.execute(
            select(_HEADS.c.seq, _HEADS.c.signed_seq).where(_HEADS.c.origin == origin)
        ).one()
    row_seq, row_signed = int(row.seq), int(row.signed_seq)
    # signed heads above the head the check began with whose entries are held were written
    # since (checked next time); one naming an entry the store does not hold is damage
    lost = sorted(seq for seq in signed if seq > held)
    signed = {seq: raw for seq, raw in signed.items() if seq <= head_seq}
    expected, prev, covered = 1, ZERO_HASH, 0
    for seq, stored_hash, raw in log.iter_entries(origin):
        if seq > head_seq:
            break  # written since the check began
        report.entries += 1
        if seq != expected:
            return Problem(
                origin, expected, ErrorCode.GAP, f"entry {expected} is missing (next held is {seq})"
            )
        actual = sha256_hex(raw)
        if actual != stored_hash:
            return Problem(
                origin,
                seq,
                ErrorCode.BAD_HASH,
                f"stored bytes hash to {actual}, recorded hash is {stored_hash}",
            )
        try:
            entry = _Fields.of(raw) if fast else Entry.parse(raw)
        except (GuantongError, ValueError, KeyError, TypeError) as exc:
            return Problem(origin, seq, ErrorCode.MALFORMED, getattr(exc, "message", str(exc)))
        if entry.origin != origin or entry.seq != seq:
            return Problem(
                origin, seq, ErrorCode.BAD_CHAIN, f"bytes claim {entry.origin} seq {entry.seq}"
            )
        if entry.prev != prev:
            return Problem(
                origin,
                seq,
                ErrorCode.BAD_CHAIN,
                f"prev {entry.prev} does not match entry {seq - 1} ({prev})",
            )
        if seq in signed:
            problem = _verify_head(origin, seq, actual, signed.pop(seq), keys)
            report.signed_heads += 1
            if problem is not None:
                return problem
            covered = seq
        prev, expected = actual, seq + 1
    last = expected - 1
    if last != head_seq or (last and prev != head_hash):
        return Problem(
            origin,
            last,
            ErrorCode.BAD_CHAIN,
            f"head row says seq {head_seq} {head_hash}, log ends at {last} {prev}",
        )
    if lost:
        # the log's tail is gone, the signed heads that committed to it are not; entries
        # after the last signed head left are uncovered because of it
        return Problem(
            origin,
            lost[0],
            ErrorCode.BAD_CHAIN,
            f"a signed head names seq {lost[0]}, beyond the log (held up to seq {held}): "
            "its entries are lost",
        )
    if row_signed > row_seq:
        return Problem(
            origin,
            row_signed,
            ErrorCode.BAD_CHAIN,
            f"head row's signed head is at seq {row_signed}, beyond its seq {row_seq}",
        )
    if row_seq < held:
        return Problem(
            origin,
            row_seq + 1,
            ErrorCode.BAD_CHAIN,
            f"entries {row_seq + 1}-{held} are held beyond the head row's seq {row_seq}",
        )
    if last and last > covered:
        return Problem(
            origin,
            last,
            ErrorCode.BAD_SIGNATURE,
            f"entries {covered + 1}-{last} are covered by no signed head",
        )
    return None


def _verify_head(
    origin: str, seq: int, digest: str, raw: bytes, keys: dict[str, tuple[str, bytes]]
) -> Problem | None:
    try:
        head = SignedHead.parse_obj(parse_canonical(raw))
    except GuantongError as exc:
        return Problem(origin, seq, ErrorCode.MALFORMED, f"signed head: {exc.message}")
    if head.origin != origin or head.seq != seq or head.head != digest:
        return Problem(
            origin,
            seq,
            ErrorCode.BAD_HASH,
            "signed head does not commit to the entry held at its seq",
        )
    known = keys.get(head.key_id)
    if known is None or known[0] != origin:
        return Problem(
            origin,
            seq,
            ErrorCode.BAD_SIGNATURE,
            f"signed head key {head.key_id} is not a known key of {origin}",
        )
    if not head.verify(known[1]):
        return Problem(
            origin,
            seq,
            ErrorCode.BAD_SIGNATURE,
            "signed head signature does not verify",
            altered=True,
        )
    return None
