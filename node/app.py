"""The ASGI application of a node, built from its settings (composition root)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from node.logs import configure_logging, get_logger
from node.runtime import Node
from node.settings import NodeSettings
from schemas.errors import ErrorCode, GuantongError
from schemas.times import Clock, system_clock

__all__ = ["create_app"]

_STATUS = {
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.CLOCK_SKEW: 401,
    ErrorCode.REPLAY: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_IN_SUBTREE: 403,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.STORE_ERROR: 503,
}


def create_app(
    settings: NodeSettings, *, clock: Clock = system_clock, node: Node | None = None
) -> FastAPI:
    """Build the app for the node at ``settings.home``; the node is opened in the lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(
            node_id=settings.node_id, tier=settings.tier.value, level=settings.log_level
        )
        opened = node or Node.open(settings, clock=clock)
        app.state.node = opened
        get_logger("guantong.app").info("node.started", key_id=opened.signer.key_id)
        try:
            yield
        finally:
            if node is None:
                opened.close()

    app = FastAPI(title=f"Guantong node {settings.node_id}", version="1", lifespan=lifespan)
    registry = CollectorRegistry()
    own_seq = Gauge("guantong_own_seq", "Highest seq of this node's own log", registry=registry)

    @app.exception_handler(GuantongError)
    async def _on_error(_request: Request, exc: GuantongError) -> JSONResponse:
        return JSONResponse(exc.to_body(), status_code=_STATUS.get(exc.code, 400))

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/status")
    def status(request: Request) -> dict[str, Any]:
        current: Node = request.app.state.node
        return current.status()

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> PlainTextResponse:
        current: Node = request.app.state.node
        head = current.log.head()
        own_seq.set(head.seq if head else 0)
        return PlainTextResponse(
            generate_latest(registry).decode(), media_type="text/plain; version=0.0.4"
        )

    return app
