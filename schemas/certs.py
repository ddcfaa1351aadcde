"""Certificates (PROTOCOL §7): a node's public key, signed by its issuer (the parent).

``{"node","tier","key","key_id","issuer","not_before","not_after","sig"}``; the province's
root certificate is self-signed and its key id is every node's trust anchor.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.canonical import canonical_bytes
from schemas.errors import ErrorCode, GuantongError
from schemas.ids import Tier
from schemas.log import NodeId, Signature, Time
from schemas.signing import (
    Signer,
    b64u_decode,
    b64u_encode,
    is_weak_key,
    key_id,
    signing_bytes,
    verify_bytes,
)

__all__ = ["Certificate", "issue_certificate"]


class Certificate(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    node: NodeId
    tier: Annotated[Tier, Field(strict=False)]
    key: str
    key_id: str
    issuer: NodeId
    not_before: Time
    not_after: Time
    sig: Signature

    @model_validator(mode="after")
    def _consistent(self) -> Certificate:
        try:
            raw = b64u_decode(self.key)
        except ValueError as exc:
            raise ValueError(f"key is not base64url: {exc}") from exc
        if len(raw) != 32 or key_id(raw) != self.key_id:
            raise ValueError("key_id is not the id of key")
        if is_weak_key(raw):
            raise ValueError("key is no usable Ed25519 public key (a point of small order)")
        if self.not_after < self.not_before:
            raise ValueError("not_after precedes not_before")
        return self

    @property
    def public_raw(self) -> bytes:
        return b64u_decode(self.key)

    @property
    def signer_key_id(self) -> str:
        return self.sig.partition(":")[0]

    @property
    def self_signed(self) -> bool:
        return self.issuer == self.node and self.signer_key_id == self.key_id

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = self.model_dump(mode="json")
        return data

    def canonical(self) -> bytes:
        return canonical_bytes(self.to_dict())

    def verify_with(self, issuer_public: bytes) -> bool:
        return verify_bytes(self.sig, signing_bytes(self.to_dict()), issuer_public)

    def valid_at(self, time: str) -> bool:
        return self.not_before <= time <= self.not_after

    @classmethod
    def parse_obj(cls, value: Any) -> Certificate:
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = "/".join(str(p) for p in err["loc"])
            raise GuantongError(ErrorCode.MALFORMED, f"certificate {where}: {err['msg']}") from exc


def issue_certificate(
    issuer: Signer,
    *,
    issuer_id: str,
    node: str,
    tier: Tier,
    public_raw: bytes,
    not_before: str,
    not_after: str,
) -> Certificate:
    body = {
        "node": node,
        "tier": tier.value,
        "key": b64u_encode(public_raw),
        "key_id": key_id(public_raw),
        "issuer": issuer_id,
        "not_before": not_before,
        "not_after": not_after,
    }
    return Certificate.model_validate(issuer.sign_object(body))
