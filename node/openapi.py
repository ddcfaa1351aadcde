"""The OpenAPI document of the machine endpoints (``/openapi.json``), told truthfully.

FastAPI derives the query parameters from the handlers; this module adds what it cannot
see, because the handlers read their bodies and headers raw (bounded, gzip, exact bytes):
the signed-request headers of PROTOCOL §6 as three API-key security schemes that a
request carries together, the NDJSON and JSON request bodies, and every answer with its
status and the one error body ``{"error":{"code","message",…}}``. The models here only
describe; nothing is parsed or serialised through them.

Node ids are strings of ``format: node-id`` with the pattern of PROTOCOL §1; a handler
refuses other strings itself (``400 invalid_node_id``), so the format is a hint for
clients and fuzzers rather than a framework check.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from schemas.errors import ErrorCode
from schemas.http import NDJSON, NODE_HEADER, SIGNATURE_HEADER, TIME_HEADER
from schemas.ids import Tier

__all__ = [
    "PREFIX",
    "KEY_ID",
    "NODE_ID",
    "NODE_ID_PATTERN",
    "PUSH_BODY",
    "SIGNED",
    "ChainAnswer",
    "EnrollAnswer",
    "EnrollRequest",
    "ErrorBody",
    "HeadsAnswer",
    "Health",
    "NDJSONResponse",
    "PushAnswer",
    "RootAnswer",
    "RotateRequest",
    "StatsAnswer",
    "Status",
    "answers",
    "install",
    "json_body",
]

NODE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,31}(\.[a-z0-9][a-z0-9-]{0,31}){0,5}$"
NODE_ID: dict[str, Any] = {"format": "node-id", "pattern": NODE_ID_PATTERN, "maxLength": 128}
"""JSON Schema keywords of a node id (for ``Query(json_schema_extra=...)``)."""
PREFIX: dict[str, Any] = {
    **NODE_ID,
    "pattern": f"^$|{NODE_ID_PATTERN}",
    "description": "A node id; absent or empty: this hub's own id",
}
"""A subtree's prefix, which defaults to the hub itself."""
KEY_ID: dict[str, Any] = {"pattern": r"^[0-9a-f]{16}$"}

_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"
_HASH = r"^[0-9a-f]{64}$"

NodeId = Annotated[str, Field(pattern=NODE_ID_PATTERN, max_length=128)]
Time = Annotated[str, Field(pattern=_TIME)]
Hash = Annotated[str, Field(pattern=_HASH)]
KeyId = Annotated[str, Field(pattern=KEY_ID["pattern"])]
Count = Annotated[int, Field(ge=0)]

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 0},
    }
}

_SCHEMES = {
    "GuantongNode": (NODE_HEADER, "The calling node's id."),
    "GuantongTime": (TIME_HEADER, "The request time, RFC 3339 UTC with milliseconds."),
    "GuantongSignature": (
        SIGNATURE_HEADER,
        "`<key id>:<base64url Ed25519 signature>` over `METHOD\\nPATH?QUERY\\n"
        "<hex SHA-256 of the body as sent>\\n<time>` (PROTOCOL §6).",
    ),
}

SIGNED: dict[str, Any] = {"security": [dict.fromkeys(_SCHEMES, [])]}
"""``openapi_extra`` of an endpoint that takes only signed requests (all three headers)."""


class _Doc(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ErrorDetail(BaseModel):
    """A stable code, a message for people, and details named per code (``expected``,
    ``seq``, ``time`` …)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    code: ErrorCode
    message: str


class ErrorBody(_Doc):
    error: ErrorDetail


class Health(_Doc):
    status: Literal["ok", "degraded"]
    store: str | None = None


class OwnHead(_Doc):
    seq: Count
    hash: Hash | None
    time: Time | None


class UplinkState(_Doc):
    failures: Count
    next_attempt_at: str | None
    last_error: str | None
    last_contact: str | None
    backlog: Count


class Status(_Doc):
    id: NodeId
    tier: Tier
    parent: str | None
    key_id: KeyId
    head: OwnHead
    entries: Count
    origins: Count
    store: Literal["sqlite", "postgresql"]
    store_corrupt: str | None = Field(
        default=None, description="why the store is quarantined (`guantong repair`), if it is"
    )
    uplink: UplinkState | None = None


class EntryProblem(BaseModel):
    """An entry newly stored by this push but ``invalid`` (kept, not applied) or
    ``pending`` (its contract version is unknown here)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    seq: Annotated[int, Field(ge=1)]
    code: ErrorCode
    message: str


class SegmentAnswer(_Doc):
    origin: str
    held: Count
    status: Literal["ok", "rejected"]
    invalid: list[EntryProblem] | None = None
    pending: list[EntryProblem] | None = None
    error: ErrorDetail | None = None


class PushAnswer(_Doc):
    results: list[SegmentAnswer]


class EnrollRequest(_Doc):
    node: NodeId
    tier: Tier
    key: Annotated[str, Field(description="base64url raw Ed25519 public key")]
    token: Annotated[str, Field(description="the one-time token, gt1.…")]
    proof: Annotated[str, Field(description="signature of node\\nkey\\ntoken by the new key")]


class RotateRequest(_Doc):
    key: Annotated[str, Field(description="base64url raw Ed25519 public key")]
    proof: Annotated[str, Field(description="signature of node\\nkey\\nrotate by the new key")]


class Certificate(_Doc):
    node: NodeId
    tier: Tier
    key: str
    key_id: KeyId
    issuer: NodeId
    not_before: Time
    not_after: Time
    sig: str


class EnrollAnswer(_Doc):
    cert: Certificate
    chain: list[Certificate]
    root_key_id: KeyId | None
    province_secret: str | None


class ChainAnswer(_Doc):
    chain: list[Certificate]


class HeadAt(_Doc):
    seq: Annotated[int, Field(ge=1)]
    head: Hash


class SubtreeRoot(_Doc):
    origins: Count
    entries: Count
    root: Hash
    head: HeadAt | None = None


class RootAnswer(_Doc):
    prefix: NodeId
    origins: Count
    entries: Count
    root: Hash
    head: HeadAt | None = None
    children: dict[str, SubtreeRoot] | None = None


class HeldHead(_Doc):
    origin: NodeId
    seq: Annotated[int, Field(ge=1)]
    head: Hash
    time: Time | None


class HeadsAnswer(_Doc):
    heads: list[HeldHead]
    next: NodeId | None


class StatsAnswer(BaseModel):
    """Rollups (docs/metrics.md); the figures themselves are open-ended."""

    model_config = ConfigDict(frozen=True, extra="allow")

    prefix: NodeId
    from_: Annotated[str | None, Field(alias="from")]
    to: str | None
    by_node: dict[str, dict[str, Any]]
    by_month: dict[str, dict[str, Any]]


class NDJSONResponse(Response):
    media_type = NDJSON


_DESCRIPTIONS = {
    400: "Malformed request, or refused with a stable code (`invalid_node_id`, token errors …)",
    401: "Not a valid signed request: `unauthenticated`, `clock_skew` (with the hub's "
    "`time`), `replay`, `revoked_key`, `cert_expired`",
    403: "`forbidden` or `not_in_subtree`: the caller may not do this here",
    404: "`not_found`",
    413: "`too_large`: the body is over the limit, before or after gzip",
    422: "Parameters outside their schema (`malformed`, with the framework's `errors`)",
    503: "`busy` (a push found the hub ingesting as much as it takes at once) or "
    "`store_error`, `storage_full`, `storage_read_only`, `store_corrupt` (the store cannot "
    "be written now): nothing of the request was stored; try again after `Retry-After`",
}


def answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """FastAPI ``responses`` for the error statuses an endpoint can answer."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": ErrorBody, "description": _DESCRIPTIONS[status]}
        if status in (429, 503):
            entry["headers"] = _RETRY_AFTER
        out[status] = entry
    return out


PUSH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "description": "Segments (PROTOCOL §4): per segment a header line "
        '`{"from":N,"head":{signed head}}` and then the exact bytes of entries N…head.seq, '
        "one per line; gzip when `Content-Encoding: gzip`. An empty body carries no "
        "segment and gets no result.",
        "content": {NDJSON: {"schema": {"type": "string", "format": "binary"}}},
    },
    "parameters": [
        {
            "name": "Content-Encoding",
            "in": "header",
            "required": False,
            "description": "`gzip` or `identity` (case-insensitive); anything else is `400`",
            "schema": {"type": "string", "enum": ["gzip", "identity"]},
        }
    ],
}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` of an endpoint that reads a JSON object described by ``model``."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


_REQUEST_MODELS: tuple[type[BaseModel], ...] = (EnrollRequest, RotateRequest)


def install(app: FastAPI) -> None:
    """Serve the document with the security schemes and the request body schemas."""

    def document() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {})
        _, defs = models_json_schema(
            [(m, "validation") for m in _REQUEST_MODELS],
            ref_template="#/components/schemas/{model}",
        )
        components.setdefault("schemas", {}).update(defs.get("$defs", {}))
        components["securitySchemes"] = {
            name: {"type": "apiKey", "in": "header", "name": header, "description": text}
            for name, (header, text) in _SCHEMES.items()
        }
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                _errors_as_json(operation.get("responses", {}))
        app.openapi_schema = schema
        return schema

    app.openapi = document  # type: ignore[method-assign]


def _errors_as_json(responses: dict[str, Any]) -> None:
    """FastAPI gives an error model the media type of the endpoint's own answers; error
    bodies are JSON whatever the endpoint answers when it succeeds (NDJSON, text)."""
    for status, response in responses.items():
        content = response.get("content", {})
        if status[0] in "45" and content and "application/json" not in content:
            response["content"] = {"application/json": next(iter(content.values()))}
