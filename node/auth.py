"""Signed requests, client side (PROTOCOL §6): every node-to-node call carries
``Guantong-Node``, ``Guantong-Time`` and ``Guantong-Signature``.

A hub that finds our clock more than 300 s off answers ``401 clock_skew`` with its own
time; we then keep the offset and sign the request again, once. Stations with bad clocks
(common on village PCs) thus keep syncing without anyone touching them. A ``401 replay``
is another process of this node that signed the same request in the same millisecond:
signed again a millisecond later, once.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson

from schemas.errors import ErrorCode
from schemas.http import NODE_HEADER, SIGNATURE_HEADER, TIME_HEADER, request_signing_bytes
from schemas.signing import Signer
from schemas.times import Clock, format_time, parse_time

__all__ = ["NodeAuth", "error_of", "request_target"]


def request_target(url: httpx.URL) -> str:
    """``PATH?QUERY`` exactly as sent on the wire."""
    return url.raw_path.decode("ascii")


class NodeAuth(httpx.Auth):
    requires_request_body = True
    requires_response_body = True

    def __init__(self, node_id: str, signer: Signer, clock: Clock) -> None:
        self.node_id = node_id
        self.signer = signer
        self.clock = clock
        self.offset = timedelta(0)
        self._last: datetime | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self._sign(request)
        response = yield request
        refused = _refusal(response)
        hub_time = refused.get("time")
        if refused.get("code") == ErrorCode.CLOCK_SKEW.value and isinstance(hub_time, str):
            self.offset = parse_time(hub_time) - self.clock()
            self._sign(request)
            response = yield request
            refused = _refusal(response)
        if refused.get("code") == ErrorCode.REPLAY.value:
            # Another process of this node (a second ``sync --once``, a worker) signed the
            # same request in the same millisecond: this process never sends a signature
            # twice (``_sign``), so it is a collision, not a resend. Once more, a
            # millisecond later, is a different request.
            self._sign(request)
            yield request

    def _sign(self, request: httpx.Request) -> None:
        # Ed25519 is deterministic: two identical requests in one millisecond would carry
        # the same signature and the second would be refused as a replay. Keep our request
        # times strictly increasing instead.
        moment = self.clock() + self.offset
        if self._last is not None and moment <= self._last:
            moment = self._last + timedelta(milliseconds=1)
        self._last = moment
        time = format_time(moment)
        data = request_signing_bytes(
            request.method, request_target(request.url), request.content, time
        )
        request.headers[NODE_HEADER] = self.node_id
        request.headers[TIME_HEADER] = time
        request.headers[SIGNATURE_HEADER] = self.signer.sign(data)


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The ``error`` object of a protocol error answer, else empty."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _refusal(response: httpx.Response) -> dict[str, Any]:
    """The error of a ``401`` answer (authentication refused), else empty."""
    return error_of(response) if response.status_code == 401 else {}
