"""Identifiers (PROTOCOL §1): node ids, tiers and subtree logic; the grammar of record,
task and key ids and of contract names.

Every id a peer or a user hands us is checked against its grammar before it reaches a
query: besides refusing nonsense early with a stable code, this keeps out of the store
what it cannot hold (PostgreSQL refuses U+0000 in text with an error, not a miss).
"""

from __future__ import annotations

import os
import random
import re
import time
import uuid
from enum import StrEnum

from schemas.errors import ErrorCode, GuantongError

__all__ = [
    "MAX_DEPTH",
    "Tier",
    "check_node_id",
    "check_tier_depth",
    "depth",
    "is_contract_name",
    "is_in_subtree",
    "is_key_id",
    "is_node_id",
    "is_uuid",
    "parent_of",
    "uuid7",
]

MAX_DEPTH = 6
MAX_LENGTH = 128
_SEGMENT = r"[a-z0-9][a-z0-9-]{0,31}"
_NODE_ID = re.compile(rf"{_SEGMENT}(?:\.{_SEGMENT}){{0,{MAX_DEPTH - 1}}}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_CONTRACT = re.compile(r"[a-z][a-z0-9_]{0,63}")


class Tier(StrEnum):
    PROVINCE = "province"
    CITY = "city"
    COUNTY = "county"
    TOWNSHIP = "township"
    STATION = "station"
    UNIT = "unit"

    @property
    def is_root(self) -> bool:
        return self is Tier.PROVINCE


def is_node_id(value: str) -> bool:
    return len(value) <= MAX_LENGTH and _NODE_ID.fullmatch(value) is not None


def check_node_id(value: str) -> str:
    """Return ``value`` if it is a valid node id, else raise ``invalid_node_id``."""
    if not is_node_id(value):
        raise GuantongError(
            ErrorCode.INVALID_NODE_ID,
            f"invalid node id {value!r}: expected up to {MAX_DEPTH} dot-separated segments "
            "of [a-z0-9][a-z0-9-]{0,31}, at most 128 characters",
        )
    return value


def depth(node_id: str) -> int:
    return node_id.count(".") + 1


_FIXED_DEPTH = {Tier.PROVINCE: 1, Tier.CITY: 2, Tier.COUNTY: 3, Tier.TOWNSHIP: 4}


def check_tier_depth(node_id: str, tier: Tier) -> None:
    """The id's depth must fit the tier, else ``tier_mismatch``: fixed for province, city,
    county and township (1-4 segments), at least 2 for a station or a unit.

    Checked at ``init``, when a hub makes a token, and for every certificate a keyring
    takes: the tier decides who may certify children, so a station-level id certified as a
    city would pass for a hub everywhere."""
    want = _FIXED_DEPTH.get(tier)
    if want is not None and depth(node_id) != want:
        raise GuantongError(
            ErrorCode.TIER_MISMATCH,
            f"a {tier} node id has {want} segment(s); {node_id!r} has {depth(node_id)}",
        )
    if tier is not Tier.PROVINCE and depth(node_id) < 2:
        raise GuantongError(
            ErrorCode.TIER_MISMATCH, f"a {tier} node id extends its parent's id: got {node_id!r}"
        )


def parent_of(node_id: str) -> str | None:
    head, dot, _ = node_id.rpartition(".")
    return head if dot else None


def is_in_subtree(node_id: str, prefix: str) -> bool:
    """True iff ``node_id`` is ``prefix`` or one of its descendants."""
    return node_id == prefix or node_id.startswith(prefix + ".")


def is_uuid(value: str) -> bool:
    """A record or task id: a lowercase UUID."""
    return _UUID.fullmatch(value) is not None


def is_key_id(value: str) -> bool:
    """The first 16 hex characters of SHA-256 over a raw Ed25519 public key."""
    return _KEY_ID.fullmatch(value) is not None


def is_contract_name(value: str) -> bool:
    return _CONTRACT.fullmatch(value) is not None


def uuid7(unix_ms: int | None = None, *, rng: random.Random | None = None) -> str:
    """A lowercase UUIDv7 string (RFC 9562): 48-bit millisecond time, then 74 random bits
    (from ``rng`` when given, for reproducible simulations; else the system's)."""
    ms = int(time.time() * 1000) if unix_ms is None else unix_ms
    rand = rng.getrandbits(80) if rng is not None else int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))
