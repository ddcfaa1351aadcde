"""Entries and signed heads: the two objects of an origin's log (PROTOCOL §3).

An entry's bytes are fixed at creation and never re-serialised, so the models here are
views: :meth:`Entry.parse` checks that bytes are canonical and well formed and returns the
model; :func:`build_entry` is the only place that produces entry bytes.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.canonical import (
    MAX_SAFE_INTEGER,
    canonical_bytes,
    is_plain_canonical,
    parse_canonical,
)
from schemas.errors import CanonicalError, ErrorCode, GuantongError
from schemas.hashing import ZERO_HASH, sha256_hex
from schemas.ids import is_contract_name, is_node_id, is_uuid
from schemas.signing import Signer, is_signature, signing_bytes, verify_bytes
from schemas.times import is_time

__all__ = [
    "MAX_ENTRY_BYTES",
    "Entry",
    "Signature",
    "SignedHead",
    "build_entry",
    "sign_head",
]

MAX_ENTRY_BYTES = 64 * 1024

_HASH = re.compile(r"[0-9a-f]{64}")
_VERSION = re.compile(r"(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})")


def _pattern(regex: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if regex.fullmatch(value) is None:
            raise ValueError(f"not a valid {what}")
        return value

    return AfterValidator(check)


def _predicate(test: Any, what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not test(value):
            raise ValueError(f"not a valid {what}")
        return value

    return AfterValidator(check)


NodeId = Annotated[str, _predicate(is_node_id, "node id")]
Hash = Annotated[str, _pattern(_HASH, "SHA-256 hex digest")]
Time = Annotated[str, _predicate(is_time, "RFC 3339 UTC millisecond time")]
RecordId = Annotated[str, _predicate(is_uuid, "lowercase UUID")]
ContractName = Annotated[str, _predicate(is_contract_name, "contract name")]
Version = Annotated[str, _pattern(_VERSION, "contract version <major>.<minor>")]
Seq = Annotated[int, Field(ge=1, le=2**53 - 1)]
Signature = Annotated[str, _predicate(is_signature, "signature '<key id>:<base64url>'")]

_FROZEN = ConfigDict(frozen=True, extra="forbid", strict=True)


class Entry(BaseModel):
    model_config = _FROZEN

    origin: NodeId
    seq: Seq
    prev: Hash
    time: Time
    contract: ContractName
    version: Version
    id: RecordId
    op: Literal["put", "del"]
    data: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _data_matches_op(self) -> Entry:
        if self.op == "put" and self.data is None:
            raise ValueError("a put entry carries data")
        if self.op == "del" and "data" in self.model_fields_set:
            # absent, not null (PROTOCOL §3): one del has one byte form
            raise ValueError("a del entry carries no data")
        if self.seq == 1 and self.prev != ZERO_HASH:
            raise ValueError("entry 1 chains from 64 zeros")
        return self

    @classmethod
    def parse(cls, raw: bytes) -> Entry:
        """Parse exact entry bytes: canonical JSON, at most 64 KiB, well-formed fields."""
        if len(raw) > MAX_ENTRY_BYTES:
            raise GuantongError(
                ErrorCode.TOO_LARGE, f"entry is {len(raw)} bytes; the limit is {MAX_ENTRY_BYTES}"
            )
        fast = _parse_plain(raw)
        if fast is not None:
            return fast
        try:
            value = parse_canonical(raw)
        except CanonicalError as exc:
            raise GuantongError(ErrorCode.MALFORMED, f"entry: {exc.message}") from exc
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            raise GuantongError(ErrorCode.MALFORMED, f"entry: {_first_error(exc)}") from exc


def _parse_plain(raw: bytes) -> Entry | None:
    """:meth:`Entry.parse` for the common case, in a third of the time: every field checked
    by the same predicates as the model's, by hand, then the model built without
    validating again. None hands the bytes to the full path, which alone refuses (and
    names the reason); ``tests/schemas/test_log.py`` checks both paths agree."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(value) is not dict:
        return None
    op, data = value.get("op"), value.get("data")
    if op == "put":
        if type(data) is not dict or len(value) != 9:
            return None
    elif op != "del" or "data" in value or len(value) != 8:
        return None
    origin, seq, prev, time = (
        value.get("origin"),
        value.get("seq"),
        value.get("prev"),
        value.get("time"),
    )
    contract, version, record_id = value.get("contract"), value.get("version"), value.get("id")
    if (
        type(seq) is not int
        or not 1 <= seq <= MAX_SAFE_INTEGER
        or type(origin) is not str
        or type(prev) is not str
        or type(time) is not str
        or type(contract) is not str
        or type(version) is not str
        or type(record_id) is not str
        or not is_node_id(origin)
        or _HASH.fullmatch(prev) is None
        or (seq == 1 and prev != ZERO_HASH)
        or not is_time(time)
        or not is_contract_name(contract)
        or _VERSION.fullmatch(version) is None
        or not is_uuid(record_id)
        or not is_plain_canonical(value, raw)
    ):
        return None
    # what ``model_construct`` does, without its generic field loop: the model's state is
    # its field values, the names given, and no extra or private attributes
    entry = object.__new__(Entry)
    fields = {
        "origin": origin,
        "seq": seq,
        "prev": prev,
        "time": time,
        "contract": contract,
        "version": version,
        "id": record_id,
        "op": op,
        "data": data,
    }
    object.__setattr__(entry, "__dict__", fields)
    object.__setattr__(entry, "__pydantic_fields_set__", set(value))
    object.__setattr__(entry, "__pydantic_extra__", None)
    object.__setattr__(entry, "__pydantic_private__", None)
    return entry


class SignedHead(BaseModel):
    """A signed commitment to the prefix ``1..seq`` of ``origin``'s log."""

    model_config = _FROZEN

    origin: NodeId
    seq: Seq
    head: Hash
    time: Time
    sig: str
    """Left free here: a signature that is not one rejects its segment (``bad_signature``)
    at the receiver, where a broken header would refuse the whole stream."""

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    def canonical(self) -> bytes:
        return canonical_bytes(self.to_dict())

    @property
    def key_id(self) -> str:
        return self.sig.partition(":")[0]

    def verify(self, public_raw: bytes) -> bool:
        return verify_bytes(self.sig, signing_bytes(self.to_dict()), public_raw)

    @classmethod
    def parse_obj(cls, value: Any) -> SignedHead:
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            raise GuantongError(ErrorCode.MALFORMED, f"signed head: {_first_error(exc)}") from exc


def build_entry(
    *,
    origin: str,
    seq: int,
    prev: str,
    time: str,
    contract: str,
    version: str,
    record_id: str,
    op: Literal["put", "del"],
    data: dict[str, Any] | None,
) -> tuple[Entry, bytes, str]:
    """Create an entry; returns the model, its exact canonical bytes and their hash."""
    fields: dict[str, Any] = {
        "origin": origin,
        "seq": seq,
        "prev": prev,
        "time": time,
        "contract": contract,
        "version": version,
        "id": record_id,
        "op": op,
    }
    if data is not None:
        fields["data"] = data
    raw = canonical_bytes(fields)  # refuses floats and out-of-range integers in data
    if len(raw) > MAX_ENTRY_BYTES:
        raise GuantongError(
            ErrorCode.TOO_LARGE,
            f"record {record_id} makes a {len(raw)}-byte entry; the limit is {MAX_ENTRY_BYTES}",
        )
    try:
        entry = Entry.model_validate(fields)
    except ValidationError as exc:
        raise GuantongError(ErrorCode.MALFORMED, f"entry: {_first_error(exc)}") from exc
    return entry, raw, sha256_hex(raw)


def sign_head(signer: Signer, *, origin: str, seq: int, head: str, time: str) -> SignedHead:
    signed = signer.sign_object({"origin": origin, "seq": seq, "head": head, "time": time})
    return SignedHead.model_validate(signed)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = "/".join(str(p) for p in err["loc"])
    return f"{where or 'value'}: {err['msg']}"
