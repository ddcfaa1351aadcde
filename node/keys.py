"""The node's Ed25519 key on disk: PKCS#8 PEM, mode 0600, refused when others can read it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from schemas.errors import ErrorCode, GuantongError
from schemas.signing import Signer

__all__ = ["create_key", "load_key"]


def create_key(path: Path, *, seed: bytes | None = None) -> Signer:
    """Generate (or derive from ``seed``) a key and write it with mode 0600, never overwriting."""
    key = Ed25519PrivateKey.from_private_bytes(seed) if seed else Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
        out.flush()
        os.fsync(out.fileno())
    return Signer(key)


def load_key(path: Path) -> Signer:
    """Load the node key; refuse group/world-accessible or corrupt files."""
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise GuantongError(ErrorCode.KEY_CORRUPT, f"key file {path} is missing") from exc
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise GuantongError(
            ErrorCode.KEY_PERMISSIONS,
            f"key file {path} has mode {stat.S_IMODE(info.st_mode):04o}; "
            f"others must not read it (chmod 600 {path})",
        )
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise GuantongError(ErrorCode.KEY_CORRUPT, f"key file {path} is not a valid key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise GuantongError(ErrorCode.KEY_CORRUPT, f"key file {path} is not an Ed25519 key")
    return Signer(key)
