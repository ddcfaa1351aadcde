"""The one error tree of Guantong, with stable machine-readable codes.

::

    GuantongError(code, message, **details)      every failure a user or peer can see
     ├── CanonicalError                           a value outside the protocol's JSON space
     ├── FramingError                             NDJSON / segment framing is broken
     └── (subclasses in node/ and hub/ add no new codes, only context)

Codes are part of the protocol and the CLI contract: tests, operators and other vendors'
implementations match on them. Never rename one; add new ones at the end of their group.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

__all__ = [
    "CanonicalError",
    "ErrorCode",
    "FramingError",
    "GuantongError",
    "code_of",
    "describe",
]


class ErrorCode(StrEnum):
    # Segment-level results of a push (PROTOCOL §4).
    GAP = "gap"
    FORK = "fork"
    BAD_HASH = "bad_hash"
    BAD_CHAIN = "bad_chain"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_ORIGIN = "unknown_origin"
    NOT_IN_SUBTREE = "not_in_subtree"
    REVOKED_KEY = "revoked_key"
    UNKNOWN_CONTRACT = "unknown_contract"
    TOO_LARGE = "too_large"
    MALFORMED = "malformed"
    # Entry-level (reported in `invalid`, entry kept).
    CONTRACT_VIOLATION = "contract_violation"
    # Request authentication (PROTOCOL §6).
    UNAUTHENTICATED = "unauthenticated"
    CLOCK_SKEW = "clock_skew"
    REPLAY = "replay"
    FORBIDDEN = "forbidden"
    # Back-pressure: the hub is ingesting as much as it takes at once (503, Retry-After).
    BUSY = "busy"
    # Values and identifiers.
    NOT_CANONICAL = "not_canonical"
    FLOAT_NOT_ALLOWED = "float_not_allowed"
    INTEGER_OUT_OF_RANGE = "integer_out_of_range"
    INVALID_NODE_ID = "invalid_node_id"
    INVALID_RECORD_ID = "invalid_record_id"
    INVALID_TIME = "invalid_time"
    UNKNOWN_VERSION = "unknown_version"
    NUL_IN_TEXT = "nul_in_text"
    # Node set-up and local operation.
    TIER_MISMATCH = "tier_mismatch"
    HOME_EXISTS = "home_exists"
    HOME_MISSING = "home_missing"
    KEY_PERMISSIONS = "key_permissions"
    KEY_CORRUPT = "key_corrupt"
    NOT_FOUND = "not_found"
    NOT_RECORD_OWNER = "not_record_owner"
    VERIFY_FAILED = "verify_failed"
    STORE_ERROR = "store_error"
    SETTINGS_INVALID = "settings_invalid"
    STORAGE_FULL = "storage_full"
    STORAGE_READ_ONLY = "storage_read_only"
    STORE_CORRUPT = "store_corrupt"
    AMBIGUOUS_RECORD = "ambiguous_record"
    # Contracts.
    RETIRED_VERSION = "retired_version"
    BUNDLE_INVALID = "bundle_invalid"
    INCOMPATIBLE_CHANGE = "incompatible_change"
    PRIVACY_SECRET_MISSING = "privacy_secret_missing"
    # Sync.
    PARENT_UNREACHABLE = "parent_unreachable"
    RECOVERY_REQUIRED = "recovery_required"
    NO_PARENT = "no_parent"
    # Trust (PROTOCOL §7).
    TOKEN_INVALID = "token_invalid"
    TOKEN_USED = "token_used"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_MISMATCH = "token_mismatch"
    NOT_ENROLLED = "not_enrolled"
    CERT_EXPIRED = "cert_expired"


def code_of(value: Any) -> ErrorCode:
    """The code a peer sent, or ``malformed`` when it is not one we know."""
    try:
        return ErrorCode(value)
    except ValueError:
        return ErrorCode.MALFORMED


class GuantongError(Exception):
    """A failure with a stable code; ``details`` travel in the error body next to the code."""

    def __init__(self, code: ErrorCode, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code.value, "message": self.message, **self.details}}

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"


class CanonicalError(GuantongError):
    """A value that has no canonical form in the protocol's value space."""


class FramingError(GuantongError):
    """Broken NDJSON or segment framing; ``line`` names the 1-based line when known."""


def describe(exc: BaseException) -> str:
    """An exception for a message: its kind always (httpx's timeouts say nothing else)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
