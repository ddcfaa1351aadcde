"""Tasks: work moving down (PROTOCOL §5).

``{"id","issuer","target","scope","kind","payload","issued","due","rev","sig"}`` signed by
the issuer. ``scope`` is ``node`` (the target only) or ``subtree`` (the target and every
node below it). ``rev`` grows when the issuer amends or cancels (payload
``{"cancelled": true}``); ``kind`` never changes. Hubs store and relay the exact bytes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.canonical import canonical_bytes, parse_canonical
from schemas.errors import ErrorCode, GuantongError
from schemas.ids import is_in_subtree
from schemas.log import NodeId, RecordId, Signature, Time
from schemas.signing import Signer, signing_bytes, verify_bytes

__all__ = ["KINDS", "Task", "sign_task"]

Kind = Literal["assign", "supervise", "collect", "contracts", "revoke", "notice"]
KINDS: tuple[str, ...] = ("assign", "supervise", "collect", "contracts", "revoke", "notice")
MAX_TASK_BYTES = 4 << 20  # a `contracts` task carries a whole bundle


class Task(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    id: RecordId
    issuer: NodeId
    target: NodeId
    scope: Literal["node", "subtree"]
    kind: Kind
    payload: dict[str, Any]
    issued: Time
    due: Time | None = None
    rev: Annotated[int, Field(ge=1, le=2**31)]
    sig: Signature

    @model_validator(mode="after")
    def _issuer_above_target(self) -> Task:
        if not is_in_subtree(self.target, self.issuer):
            raise ValueError(f"{self.issuer} may only task nodes in its own subtree")
        return self

    @property
    def cancelled(self) -> bool:
        return self.payload.get("cancelled") is True

    @property
    def key_id(self) -> str:
        return self.sig.partition(":")[0]

    def to_dict(self) -> dict[str, Any]:
        """The task's members as it was signed: ``due`` absent when it came without one, and
        ``null`` when it came as ``null`` (PROTOCOL §2: the signature covers the object's
        canonical bytes, so the two forms are different bytes, and only the signed one
        verifies)."""
        data: dict[str, Any] = self.model_dump()
        if data["due"] is None and "due" not in self.model_fields_set:
            del data["due"]
        return data

    def canonical(self) -> bytes:
        return canonical_bytes(self.to_dict())

    def verify(self, public_raw: bytes) -> bool:
        return verify_bytes(self.sig, signing_bytes(self.to_dict()), public_raw)

    def reaches(self, node: str) -> bool:
        """Whether ``node`` is a recipient (the target, or below it for ``subtree``)."""
        return node == self.target or (self.scope == "subtree" and is_in_subtree(node, self.target))

    def concerns(self, node: str) -> bool:
        """Whether ``node`` must hold it: a recipient, or a hub on the way to one."""
        return self.reaches(node) or is_in_subtree(self.target, node)

    @classmethod
    def parse(cls, raw: bytes) -> Task:
        if len(raw) > MAX_TASK_BYTES:
            raise GuantongError(ErrorCode.TOO_LARGE, f"task is {len(raw)} bytes")
        try:
            return cls.model_validate(parse_canonical(raw))
        except GuantongError as exc:
            raise GuantongError(ErrorCode.MALFORMED, f"task: {exc.message}") from exc
        except ValidationError as exc:
            err = exc.errors()[0]
            where = "/".join(str(p) for p in err["loc"])
            raise GuantongError(ErrorCode.MALFORMED, f"task {where}: {err['msg']}") from exc


def sign_task(signer: Signer, fields: dict[str, Any]) -> Task:
    body = {k: v for k, v in fields.items() if k != "sig" and v is not None}
    return Task.model_validate(signer.sign_object(body))
