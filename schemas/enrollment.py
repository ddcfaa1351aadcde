"""Enrollment objects (PROTOCOL §7): the one-time token and the proof of key possession.

A token is ``gt1.<base64url(canonical JSON)>`` of
``{"child","tier","issuer","root","expires","secret"}``: bound to one child id and tier,
expiring, carrying the province root key id so that it is the only thing an operator passes
out of band. The hub keeps only its SHA-256, so a stolen database does not leak tokens.
"""

from __future__ import annotations

import secrets
from typing import Any

from schemas.canonical import canonical_bytes, parse_canonical
from schemas.errors import ErrorCode, GuantongError
from schemas.hashing import sha256_hex
from schemas.ids import is_node_id
from schemas.signing import Signer, b64u_decode, b64u_encode, verify_bytes

__all__ = [
    "TOKEN_PREFIX",
    "decode_token",
    "encode_token",
    "proof_bytes",
    "sign_proof",
    "token_hash",
    "verify_proof",
]

TOKEN_PREFIX = "gt1."
_FIELDS = {"child", "tier", "issuer", "root", "expires", "secret"}


def encode_token(*, child: str, tier: str, issuer: str, root: str, expires: str) -> str:
    payload = {
        "child": child,
        "tier": tier,
        "issuer": issuer,
        "root": root,
        "expires": expires,
        "secret": b64u_encode(secrets.token_bytes(18)),
    }
    return TOKEN_PREFIX + b64u_encode(canonical_bytes(payload))


def decode_token(token: str) -> dict[str, Any]:
    if not token.startswith(TOKEN_PREFIX):
        raise GuantongError(ErrorCode.TOKEN_INVALID, "not an enrollment token (expected gt1.…)")
    try:
        payload = parse_canonical(b64u_decode(token[len(TOKEN_PREFIX) :]))
    except (ValueError, GuantongError) as exc:
        raise GuantongError(ErrorCode.TOKEN_INVALID, "enrollment token is damaged") from exc
    if (
        not isinstance(payload, dict)
        or set(payload) != _FIELDS
        or not all(isinstance(v, str) for v in payload.values())
    ):
        raise GuantongError(ErrorCode.TOKEN_INVALID, "enrollment token has the wrong fields")
    if not (is_node_id(payload["child"]) and is_node_id(payload["issuer"])):
        raise GuantongError(ErrorCode.TOKEN_INVALID, "enrollment token names invalid node ids")
    return payload


def token_hash(token: str) -> str:
    return sha256_hex(token.encode("utf-8"))


def proof_bytes(node: str, key: str, token: str) -> bytes:
    return f"{node}\n{key}\n{token}".encode()


def sign_proof(signer: Signer, node: str, token: str) -> str:
    return signer.sign(proof_bytes(node, signer.public_b64u, token))


def verify_proof(proof: str, node: str, key: str, token: str) -> bool:
    try:
        public = b64u_decode(key)
    except ValueError:
        return False
    return len(public) == 32 and verify_bytes(proof, proof_bytes(node, key, token), public)
