"""Signed requests, client side (PROTOCOL §6): every node-to-node call carries
``Guantong-Node``, ``Guantong-Time`` and ``Guantong-Signature``.

A hub that finds our clock more than 300 s off answers ``401 clock_skew`` with its own
time; we then keep the offset and sign the request again, once. Stations with bad clocks
(common on village PCs) thus keep syncing without anyone touching them, whichever way
their clock is off. A ``401 replay`` is another process of this node that signed the same
request in the same millisecond: signed again a millisecond later, once.

Request times increase strictly, so that two equal requests never make one signature.
What the hub needs is only that no time it may have remembered comes again, and it
refuses a time out of its window before it looks at its replay cache: a time refused
``clock_skew`` was never remembered. So a correction backwards (a clock that ran fast)
lowers the floor to the latest time not refused for skew, and the request is signed again
at the hub's time instead of a millisecond after the time just refused (which left a fast
clock refused until real time caught up with it).
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
        """The latest time signed: the next is after it."""
        self._kept: datetime | None = None
        """The latest time signed that a hub may have remembered (answered other than
        ``clock_skew``): the floor a correction of the offset comes back to."""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        sent = self._sign(request)
        response = yield request
        refused = _refusal(response)
        hub_time = refused.get("time")
        if refused.get("code") == ErrorCode.CLOCK_SKEW.value and isinstance(hub_time, str):
            self.offset = parse_time(hub_time) - self.clock()
            # Nothing refused for skew was remembered (the hub checks the time before the
            # replay cache): only the times it may have remembered stay below the next.
            # A request in flight at the old offset may still be taken; an equal one at
            # the same millisecond is the collision ``replay`` below signs again.
            self._last = self._kept
            sent = self._sign(request)
            response = yield request
            refused = _refusal(response)
        self._answered(sent, refused)
        if refused.get("code") == ErrorCode.REPLAY.value:
            # Another process of this node (a second ``sync --once``, a worker) signed the
            # same request in the same millisecond: this process never sends a signature
            # twice (``_sign``), so it is a collision, not a resend. Once more, a
            # millisecond later, is a different request.
            sent = self._sign(request)
            response = yield request
            self._answered(sent, _refusal(response))

    def _answered(self, sent: datetime, refused: dict[str, Any]) -> None:
        if refused.get("code") != ErrorCode.CLOCK_SKEW.value:
            self._kept = sent if self._kept is None else max(self._kept, sent)

    def _sign(self, request: httpx.Request) -> datetime:
        # Ed25519 is deterministic: two identical requests in one millisecond would carry
        # the same signature and the second would be refused as a replay. Keep our request
        # times strictly increasing instead (see the module's docstring for a correction).
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
        return moment


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
