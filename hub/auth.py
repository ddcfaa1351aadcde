"""Signed requests, hub side (PROTOCOL §6): who is calling, and may they?

Every hub endpoint except ``/healthz``, ``/metrics``, ``/v1/enroll`` (which carries its own
one-time token) and public pages requires ``Guantong-Node``, ``Guantong-Time`` and
``Guantong-Signature: <key id>:<sig>`` over ``METHOD\\nPATH?QUERY\\n<hash(body)>\\n<time>``.

Checks, in order, each with its stable code: all three headers present and well formed
(``unauthenticated``); ``|time − now| ≤ 300 s`` (``clock_skew``, answered with our time so
the caller can correct itself); the key is in the keyring — so it chains to the root — and
belongs to the named node (``unauthenticated``), is not revoked (``revoked_key``) and is
within its certificate's validity (``cert_expired``); the signature verifies
(``unauthenticated``); and it was not seen before within the window (``replay``: the
signature's hash goes into ``replay_cache`` under a unique key, so it holds across workers).
A store that cannot be written (full, read-only, quarantined) still serves signed GETs.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import Request
from sqlalchemy import Connection, delete

from node.db import driver_rows
from node.runtime import Node
from node.tables import REPLAY_CACHE
from schemas.errors import ErrorCode, GuantongError
from schemas.hashing import sha256_hex
from schemas.http import (
    MAX_SKEW_S,
    NODE_HEADER,
    SIGNATURE_HEADER,
    TIME_HEADER,
    request_signing_bytes,
)
from schemas.ids import is_node_id
from schemas.signing import is_signature, verify_bytes
from schemas.times import format_time, is_time, parse_time

__all__ = ["authenticate", "check_request", "purge_replay_cache", "remember", "request_target"]

_STORAGE_FAULTS = frozenset(
    {ErrorCode.STORAGE_FULL, ErrorCode.STORAGE_READ_ONLY, ErrorCode.STORE_CORRUPT}
)


def request_target(request: Request) -> str:
    path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"")
    target = path.decode("latin-1")
    return f"{target}?{query.decode('latin-1')}" if query else target


def authenticate(request: Request, node: Node, body: bytes) -> str:
    """The verified id of the calling node; raises a 401-class error otherwise.

    The replay cache is written in a transaction of its own that is not flushed by itself
    (losing it in a power cut re-opens a 10-minute window for requests that are all
    idempotent or single-use anyway); a push remembers its request in its own ingest
    transaction instead (:func:`check_request` and :func:`remember`).
    """
    caller, sig_hash, expires = check_request(request, node, body)
    try:
        with node.store.write(durable=False) as conn:
            remember(conn, sig_hash, expires)
    except GuantongError as exc:
        # A full, read-only or quarantined store cannot remember signatures. Reads go on (a
        # replayed GET returns only what its signer could read); writes fail anyway.
        if exc.code not in _STORAGE_FAULTS or request.method != "GET":
            raise
    return caller


def remember(conn: Connection, sig_hash: str, expires: str) -> None:
    """Note a signed request as received; ``replay`` if it already was."""
    # on the driver: once per signed request; psycopg reports no rowcount for this insert
    if not driver_rows(conn, _REMEMBER, (sig_hash, expires)):
        raise GuantongError(ErrorCode.REPLAY, "this signed request was already received")


_REMEMBER = (
    "INSERT INTO replay_cache (sig_hash, expires_at) VALUES (?, ?) "
    "ON CONFLICT (sig_hash) DO NOTHING RETURNING sig_hash"
)


def check_request(request: Request, node: Node, body: bytes) -> tuple[str, str, str]:
    """Every check but the replay cache: ``(caller, signature hash, expiry)``."""
    caller = request.headers.get(NODE_HEADER)
    time = request.headers.get(TIME_HEADER)
    sig = request.headers.get(SIGNATURE_HEADER)
    if not caller or not time or not sig:
        raise GuantongError(
            ErrorCode.UNAUTHENTICATED,
            f"signed request required ({NODE_HEADER}, {TIME_HEADER}, {SIGNATURE_HEADER})",
        )
    if not is_node_id(caller) or not is_time(time) or not is_signature(sig):
        raise GuantongError(ErrorCode.UNAUTHENTICATED, "malformed authentication headers")
    now = node.clock()
    if abs((parse_time(time) - now).total_seconds()) > MAX_SKEW_S:
        raise GuantongError(
            ErrorCode.CLOCK_SKEW,
            f"request time {time} is more than {MAX_SKEW_S} s from ours",
            time=format_time(now),
        )
    kid = sig.partition(":")[0]
    key = node.keyring.lookup(kid)
    if key is None or key.node != caller:
        raise GuantongError(ErrorCode.UNAUTHENTICATED, f"no certificate of {caller} for key {kid}")
    if key.revoked_at(time):
        raise GuantongError(
            ErrorCode.REVOKED_KEY, f"key {kid} of {caller} is revoked from {key.revoked_from}"
        )
    if not key.valid_at(time):
        raise GuantongError(
            ErrorCode.CERT_EXPIRED, f"the certificate of {caller} for key {kid} is not valid now"
        )
    data = request_signing_bytes(request.method, request_target(request), body, time)
    if not verify_bytes(sig, data, key.public_raw):
        raise GuantongError(ErrorCode.UNAUTHENTICATED, "request signature does not verify")
    expires = format_time(parse_time(time) + timedelta(seconds=2 * MAX_SKEW_S))
    return caller, sha256_hex(sig.encode()), expires


def purge_replay_cache(node: Node) -> int:
    with node.store.write(durable=False) as conn:
        result = conn.execute(
            delete(REPLAY_CACHE).where(REPLAY_CACHE.c.expires_at < format_time(node.clock()))
        )
    return int(result.rowcount)
