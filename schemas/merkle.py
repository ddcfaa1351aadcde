"""Merkle tree hashes of RFC 6962 §2.1, over the protocol's head leaves (PROTOCOL §8).

``MTH({}) = SHA-256()``, ``MTH({d0}) = SHA-256(0x00 || d0)``, and for n > 1 with k the
largest power of two below n: ``MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))``.
A reconciliation leaf is ``canonical({"origin","seq","head"})``, leaves sorted by origin.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from schemas.canonical import canonical_bytes

__all__ = ["head_leaf", "leaf_hash", "merkle_root", "node_hash"]


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def head_leaf(origin: str, seq: int, head: str) -> bytes:
    return canonical_bytes({"origin": origin, "seq": seq, "head": head})


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The tree head of ``leaves`` (raw leaf data, not yet hashed)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    level = [leaf_hash(leaf) for leaf in leaves]
    return _root(level)


def _root(hashes: Sequence[bytes]) -> bytes:
    # Iterative bottom-up building equals the recursive split at the largest power of two:
    # pairing left to right and carrying an odd last node up unchanged.
    level = list(hashes)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]
