"""SHA-256 as the protocol uses it: lowercase hex over exact bytes."""

from __future__ import annotations

import hashlib

__all__ = ["ZERO_HASH", "sha256_hex"]

ZERO_HASH = "0" * 64


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
