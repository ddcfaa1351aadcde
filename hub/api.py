"""The hub's HTTP endpoints: push (data up), entries and heads (reconciliation, recovery).

Routes are thin: they decode the request, ask the auth seam who is calling, and call the
ingestor or the log. Bodies are bounded before and after gzip (a gzip bomb inflates to at
most ``MAX_INFLATED`` bytes before it is refused).
"""

from __future__ import annotations

import functools
from datetime import date
from typing import Annotated, Any

import anyio
import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import AfterValidator
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from hub.auth import authenticate, check_request, remember
from hub.enrollment import answer_enrollment, issue_successor, response_for
from node.compression import gunzip
from node.ingest import Ingestor, SegmentResult
from node.openapi import (
    KEY_ID,
    NODE_ID,
    PREFIX,
    PUSH_BODY,
    SIGNED,
    ChainAnswer,
    EnrollAnswer,
    EnrollRequest,
    HeadsAnswer,
    NDJSONResponse,
    PushAnswer,
    RootAnswer,
    RotateRequest,
    StatsAnswer,
    answers,
    json_body,
)
from node.reconcile import subtree_roots
from node.rollups import opinion_categories, stats
from node.runtime import Node
from node.tables import HEADS
from node.taskfeed import task_stream, tasks_for
from schemas.canonical import MAX_SAFE_INTEGER, parse_json
from schemas.enrollment import verify_proof
from schemas.errors import ErrorCode, GuantongError
from schemas.http import NDJSON, SIGNATURE_HEADER
from schemas.ids import check_node_id, is_in_subtree, is_key_id, is_node_id, parent_of
from schemas.segments import encode_segment

__all__ = ["MAX_BODY", "MAX_INFLATED", "inflate", "router"]

MAX_BODY = 32 << 20
MAX_INFLATED = 64 << 20

router = APIRouter()
_DAY = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"  # ASCII digits: Python's \d takes any script's


def _real_day(value: str | None) -> str | None:
    """A day of the calendar, not only of its shape (``2026-13-45``, 30 February): one
    that does not exist is refused ``422 malformed`` with the other bad parameters."""
    if value is not None:
        try:
            date.fromisoformat(value)
        except ValueError:
            raise ValueError("not a day of the calendar") from None
    return value


_Day = Annotated[str | None, AfterValidator(_real_day)]
_DATE = {"format": "date", "pattern": _DAY}  # in the document as the prefix's is


def inflate(body: bytes, *, limit: int = MAX_INFLATED) -> bytes:
    """Gunzip a request body with a hard output limit (see :func:`node.bundles.gunzip`)."""
    return gunzip(body, limit=limit, what="gzip body")


async def _read_raw(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise GuantongError(ErrorCode.TOO_LARGE, f"body over {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise GuantongError(ErrorCode.TOO_LARGE, f"body over {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(request: Request, body: bytes) -> bytes:
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding == "gzip":
        return inflate(body)
    if encoding != "identity":
        raise GuantongError(ErrorCode.MALFORMED, f"unsupported Content-Encoding {encoding}")
    return body


@router.post(
    "/v1/push",
    response_model=None,
    responses={200: {"model": PushAnswer}, **answers(400, 401, 403, 413, 503)},
    openapi_extra=SIGNED | PUSH_BODY,
)
async def push(request: Request) -> Response:
    """Ingest NDJSON segments (PROTOCOL §4); one result per segment, in order."""
    node: Node = request.app.state.node
    raw = await _read_raw(request)
    ingestor: Ingestor = request.app.state.ingestor

    def receive() -> list[SegmentResult]:
        # off the event loop: signature checks, decoding and the (group) commit
        caller, sig_hash, expires = check_request(request, node, raw)
        if parent_of(caller) != node.id:
            raise GuantongError(ErrorCode.FORBIDDEN, f"{caller} is not a direct child of {node.id}")
        with ingestor.admitted():  # bounded: memory does not grow with the children
            body = _decode(request, raw)
            return ingestor.push(
                body,
                caller=caller,
                check=functools.partial(remember, sig_hash=sig_hash, expires=expires),
            )

    results = await run_in_threadpool(receive)
    kick = getattr(request.app.state, "kick", None)
    if kick is not None and any(r.status == "ok" for r in results):
        kick(maintenance=any(r.invalid or r.pending for r in results))
    # encoded here: the framework's generic encoder walked every result of a relay's push
    body = orjson.dumps({"results": [r.to_dict() for r in results]})
    return Response(body, media_type="application/json")


@router.post(
    "/v1/enroll",
    response_model=None,
    responses={200: {"model": EnrollAnswer}, **answers(400, 413, 503)},
    openapi_extra=json_body(EnrollRequest),
)
async def enroll(request: Request) -> dict[str, Any]:
    """A child's enrollment: one-time token and proof of key in, certificate and chain out."""
    node: Node = request.app.state.node
    raw = await _read_raw(request)
    return await run_in_threadpool(answer_enrollment, node, parse_json(raw))


@router.post(
    "/v1/rotate",
    response_model=None,
    responses={200: {"model": EnrollAnswer}, **answers(400, 401, 403, 413, 503)},
    openapi_extra=SIGNED | json_body(RotateRequest),
)
async def rotate(request: Request) -> dict[str, Any]:
    """A child, signing with its current key, asks for a certificate for a new key."""
    node: Node = request.app.state.node
    raw = await _read_raw(request)
    caller = authenticate(request, node, raw)
    if parent_of(caller) != node.id:
        raise GuantongError(ErrorCode.FORBIDDEN, f"{caller} is not a direct child of {node.id}")
    body = parse_json(raw)
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("key"), str)
        or not isinstance(body.get("proof"), str)
    ):
        raise GuantongError(ErrorCode.MALFORMED, 'a rotation request is {"key","proof"}')
    if not verify_proof(body["proof"], caller, body["key"], "rotate"):
        raise GuantongError(ErrorCode.BAD_SIGNATURE, "proof of the new key does not verify")
    signing_key = request.headers[SIGNATURE_HEADER].partition(":")[0]  # authenticated above
    cert = await run_in_threadpool(issue_successor, node, caller, signing_key, body["key"])
    return response_for(node, cert)


@router.get(
    "/v1/entries",
    response_class=NDJSONResponse,
    responses={
        200: {"description": "One segment of `origin` (PROTOCOL §8), or an empty body"},
        **answers(400, 401, 403, 422, 503),
    },
    openapi_extra=SIGNED,
)
def entries(
    request: Request,
    origin: Annotated[str, Query(json_schema_extra=NODE_ID)],
    after: Annotated[int, Query(ge=0, le=MAX_SAFE_INTEGER)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> Response:
    """Held entries of one origin as one segment (PROTOCOL §8); empty when none."""
    node: Node = request.app.state.node
    _check_scope(request, node, origin)
    # A child recovering its log would take damaged bytes for a fork and stop writing; a
    # 503 only makes it wait, offline as it can be for weeks.
    node.store.refuse_if_corrupt()
    segment = node.log.read_segment(origin, after, max_entries=limit)
    if segment is None:
        return Response(b"", media_type=NDJSON)
    return Response(encode_segment(segment.head, segment.start, segment.entries), media_type=NDJSON)


@router.get(
    "/v1/tasks",
    response_class=NDJSONResponse,
    responses={
        200: {"description": 'A header line `{"next","head","certs"}`, then one task per line'},
        **answers(401, 422, 503),
    },
    openapi_extra=SIGNED,
)
async def tasks(
    request: Request,
    after: Annotated[int, Query(ge=0, le=MAX_SAFE_INTEGER)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    wait: Annotated[float, Query(ge=0, le=60)] = 0,
) -> Response:
    """Task revisions for the caller's subtree, in feed order (long poll with ``wait``).

    A long poll waits on the node's bell, rung after every commit that stored revisions
    (by the server's watch of the stamp file when another process made it,
    ``node/bell.py``), and queries the caller's revisions again only then."""
    node: Node = request.app.state.node
    caller = await run_in_threadpool(authenticate, request, node, b"")
    deadline = anyio.current_time() + wait
    bell = node.task_bell
    while True:
        seen = bell.generation  # before the query: a ring during it is not lost
        rows = await run_in_threadpool(tasks_for, node, caller, after, limit)
        left = deadline - anyio.current_time()
        if rows or left <= 0 or bell.closed or not await bell.wait(seen, left):
            break
    return Response(task_stream(node, rows, after), media_type=NDJSON)


@router.get(
    "/v1/root",
    response_model=None,
    responses={200: {"model": RootAnswer}, **answers(400, 401, 403, 422, 503)},
    openapi_extra=SIGNED,
)
def root(
    request: Request,
    prefix: Annotated[str | None, Query(json_schema_extra=PREFIX)] = None,
    children: Annotated[int, Query(ge=0, le=1)] = 0,
) -> dict[str, Any]:
    """The RFC 6962 root over the heads held under ``prefix`` (PROTOCOL §8); with
    ``children=1`` also each child prefix's root, for bisection."""
    node: Node = request.app.state.node
    scope = prefix or node.id
    _check_scope(request, node, scope)
    whole, kids = subtree_roots(node.store, scope, children=bool(children))
    body = whole.to_dict()
    if whole.head is not None:
        body["head"] = {"seq": whole.head[0], "head": whole.head[1]}
    if children:
        body["children"] = {
            name: {k: v for k, v in info.to_dict().items() if k != "prefix"}
            | ({"head": {"seq": info.head[0], "head": info.head[1]}} if info.head else {})
            for name, info in kids.items()
        }
    return body


@router.get(
    "/v1/stats",
    response_model=None,
    responses={200: {"model": StatsAnswer}, **answers(400, 401, 403, 422, 503)},
    openapi_extra=SIGNED,
)
def get_stats(
    request: Request,
    prefix: Annotated[str | None, Query(json_schema_extra=PREFIX)] = None,
    start: Annotated[_Day, Query(alias="from", pattern=_DAY, json_schema_extra=_DATE)] = None,
    end: Annotated[_Day, Query(alias="to", pattern=_DAY, json_schema_extra=_DATE)] = None,
) -> dict[str, Any]:
    """Rollups of a subtree between two days: rates, counts, station activity, the deputy
    performance index and its ranking, per child node and per month."""
    node: Node = request.app.state.node
    scope = prefix or node.id
    _check_scope(request, node, scope)
    rules = node.registry.rules("performance_index")
    return stats(
        node.store,
        scope,
        start=start,
        end=end,
        dimensions=rules.get("dimensions") or {},
        categories=opinion_categories(node.registry),
    )


@router.get(
    "/v1/chain",
    response_model=None,
    responses={200: {"model": ChainAnswer}, **answers(400, 401, 422, 503)},
    openapi_extra=SIGNED,
)
def chain(
    request: Request, key_id: Annotated[str, Query(json_schema_extra=KEY_ID)]
) -> dict[str, Any]:
    """The certificate chain of a key this hub trusts, up to the root: how a node that lost
    its store learns again the certificates its own log and its tasks are checked with."""
    node: Node = request.app.state.node
    authenticate(request, node, b"")
    if not is_key_id(key_id):
        raise GuantongError(ErrorCode.MALFORMED, "a key id is 16 lowercase hex characters")
    return {"chain": [c.to_dict() for c in node.keyring.chain(key_id)]}


@router.get(
    "/v1/heads",
    response_model=None,
    responses={200: {"model": HeadsAnswer}, **answers(400, 401, 403, 422, 503)},
    openapi_extra=SIGNED,
)
def heads(
    request: Request,
    prefix: Annotated[str | None, Query(json_schema_extra=PREFIX)] = None,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    """``{origin, seq, head, time}`` per origin held under ``prefix``, ordered by origin."""
    node: Node = request.app.state.node
    scope = prefix or node.id
    _check_scope(request, node, scope)
    query = select(HEADS).where(HEADS.c.seq > 0).order_by(HEADS.c.origin).limit(limit)
    query = query.where((HEADS.c.origin == scope) | HEADS.c.origin.startswith(scope + "."))
    if after is not None:  # an empty cursor is no origin id either
        query = query.where(HEADS.c.origin > check_node_id(after))
    with node.store.read() as conn:
        rows = conn.execute(query).all()
    items = [
        {"origin": r.origin, "seq": int(r.seq), "head": r.hash, "time": _signed_time(r.signed_head)}
        for r in rows
    ]
    return {"heads": items, "next": items[-1]["origin"] if len(items) == limit else None}


def _signed_time(raw: bytes | None) -> str | None:
    return None if raw is None else str(orjson.loads(raw)["time"])


def _check_scope(request: Request, node: Node, target: str) -> None:
    if not is_node_id(target):
        raise GuantongError(ErrorCode.INVALID_NODE_ID, f"invalid node id {target!r}")
    if not is_in_subtree(target, node.id):
        raise GuantongError(ErrorCode.NOT_IN_SUBTREE, f"{target} is not in {node.id}'s subtree")
    caller = authenticate(request, node, b"")
    # A node reads its own subtree; an ancestor's checker (an ancestor of this hub) reads all.
    if not (is_in_subtree(target, caller) or is_in_subtree(node.id, caller)):
        raise GuantongError(ErrorCode.FORBIDDEN, f"{caller} may not read {target}")
