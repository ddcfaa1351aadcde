"""HTTP-level names of the protocol (PROTOCOL §4, §6)."""

from __future__ import annotations

from schemas.hashing import sha256_hex

__all__ = [
    "MAX_SKEW_S",
    "NDJSON",
    "NODE_HEADER",
    "SIGNATURE_HEADER",
    "TIME_HEADER",
    "request_signing_bytes",
]

NDJSON = "application/x-ndjson"
NODE_HEADER = "Guantong-Node"
TIME_HEADER = "Guantong-Time"
SIGNATURE_HEADER = "Guantong-Signature"
MAX_SKEW_S = 300


def request_signing_bytes(method: str, target: str, body: bytes, time: str) -> bytes:
    """What a node signs for a request: ``METHOD\nPATH?QUERY\n<hash(body)>\n<time>``."""
    return f"{method.upper()}\n{target}\n{sha256_hex(body)}\n{time}".encode()
