"""Ed25519 signatures over canonical bytes (PROTOCOL §1–2).

Pure functions and one small ``Signer``; no files, no clocks. Signature strings are
``"<key id>:<base64url signature, no padding>"`` and a key id is the first 16 hex characters
of SHA-256 over the raw 32-byte public key.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from schemas.canonical import canonical_bytes
from schemas.errors import ErrorCode, GuantongError
from schemas.hashing import sha256_hex
from schemas.ids import is_key_id

__all__ = [
    "Signer",
    "b64u_decode",
    "b64u_encode",
    "is_signature",
    "is_weak_key",
    "key_id",
    "signing_bytes",
    "split_signature",
    "verify_bytes",
    "verify_object",
]

_B64U = re.compile(r"[A-Za-z0-9_-]*")
_SIGNATURE = re.compile(r"[0-9a-f]{16}:[A-Za-z0-9_-]{86}")


def b64u_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    """Strict base64url without padding; raises ``ValueError`` on anything else."""
    if _B64U.fullmatch(text) is None or len(text) % 4 == 1:
        raise ValueError("not base64url without padding")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError(str(exc)) from exc
    if b64u_encode(raw) != text:  # non-zero trailing bits: not the unique encoding
        raise ValueError("non-canonical base64url")
    return raw


def key_id(public_raw: bytes) -> str:
    return sha256_hex(public_raw)[:16]


def signing_bytes(obj: dict[str, Any]) -> bytes:
    """Canonical bytes of ``obj`` without its ``sig`` member."""
    return canonical_bytes({k: v for k, v in obj.items() if k != "sig"})


def is_signature(value: str) -> bool:
    """Whether ``value`` has the form of a signature string (not whether it verifies)."""
    return _SIGNATURE.fullmatch(value) is not None


def split_signature(sig: str) -> tuple[str, bytes]:
    kid, sep, body = sig.partition(":")
    if not sep or not is_key_id(kid):
        raise GuantongError(ErrorCode.BAD_SIGNATURE, "signature must be '<16 hex key id>:<b64url>'")
    try:
        raw = b64u_decode(body)
    except ValueError as exc:
        raise GuantongError(ErrorCode.BAD_SIGNATURE, f"signature is not base64url: {exc}") from exc
    if len(raw) != 64:
        raise GuantongError(ErrorCode.BAD_SIGNATURE, "an Ed25519 signature has 64 bytes")
    return kid, raw


_P = 2**255 - 19
_Y8 = int.from_bytes(
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), "little"
)
_SMALL_ORDER_Y = frozenset({0, 1, _P - 1, _Y8, _P - _Y8})
"""The y coordinates of the eight points of small order (the identity, one of order 2,
two of order 4, four of order 8); x is fixed by y up to its sign bit. As libsodium's
blocklist, which the tests derive again from the curve's arithmetic."""


def is_weak_key(public_raw: bytes) -> bool:
    """Whether ``public_raw`` is no usable Ed25519 public key: not 32 bytes, a y that is
    not reduced, or a point of small order. OpenSSL verifies signatures by such keys, and
    for them a signature made without any private key (``R`` the key itself, ``S`` zero)
    verifies every message: a node enrolled with one could have anything signed in its
    name, and disown what it wrote."""
    if len(public_raw) != 32:
        return True
    y = int.from_bytes(public_raw, "little") & ((1 << 255) - 1)
    return y >= _P or y in _SMALL_ORDER_Y


def verify_bytes(sig: str, data: bytes, public_raw: bytes) -> bool:
    """True iff ``sig`` is a valid signature by ``public_raw`` (and names its key id); never
    for a weak key (:func:`is_weak_key`)."""
    try:
        kid, raw = split_signature(sig)
    except GuantongError:
        return False
    if kid != key_id(public_raw) or is_weak_key(public_raw):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(raw, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_object(obj: dict[str, Any], public_raw: bytes) -> bool:
    sig = obj.get("sig")
    if not isinstance(sig, str):
        return False
    return verify_bytes(sig, signing_bytes(obj), public_raw)


class Signer:
    """An Ed25519 private key with its key id."""

    __slots__ = ("_key", "key_id", "public_raw")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = key_id(self.public_raw)

    @classmethod
    def from_seed(cls, seed: bytes) -> Signer:
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_b64u(self) -> str:
        return b64u_encode(self.public_raw)

    def sign(self, data: bytes) -> str:
        return f"{self.key_id}:{b64u_encode(self._key.sign(data))}"

    def sign_object(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Return a copy of ``obj`` with ``sig`` set over its canonical bytes."""
        unsigned = {k: v for k, v in obj.items() if k != "sig"}
        return {**unsigned, "sig": self.sign(canonical_bytes(unsigned))}
