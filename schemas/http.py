"""HTTP-level names of the protocol (PROTOCOL §4, §6)."""

from __future__ import annotations

__all__ = ["NDJSON", "NODE_HEADER", "SIGNATURE_HEADER", "TIME_HEADER"]

NDJSON = "application/x-ndjson"
NODE_HEADER = "Guantong-Node"
TIME_HEADER = "Guantong-Time"
SIGNATURE_HEADER = "Guantong-Signature"
