"""The ASGI application of a node, built from its settings (composition root).

Every node serves ``/healthz``, ``/metrics`` and ``/v1/status``. A node whose tier has
children also mounts the hub role (``hub.api``: push, entries, heads). A node with a parent
runs its uplink on a timer and after each local write, under APScheduler in the lifespan.
"""

from __future__ import annotations

import fcntl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import anyio
import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from hub.api import router as hub_router
from hub.auth import purge_replay_cache
from hub.dashboard import router as dashboard_router
from hub.deadlines import check_deadlines
from hub.pending import apply_pending
from hub.quality import raise_quality_items
from node import web
from node.auth import NodeAuth
from node.downlink import pull_tasks
from node.ingest import Ingestor
from node.logs import configure_logging, get_logger
from node.recovery import ensure_recovered
from node.runtime import Node
from node.settings import NodeSettings, load_settings
from node.uplink import Uplink
from node.web.desk import router as desk_router
from node.web.intake import router as intake_router
from schemas.errors import ErrorCode, GuantongError
from schemas.ids import Tier
from schemas.times import Clock, system_clock

__all__ = ["HUB_TIERS", "app_from_env", "create_app", "node_client"]

HUB_TIERS = frozenset({Tier.PROVINCE, Tier.CITY, Tier.COUNTY, Tier.TOWNSHIP})
SYNC_INTERVAL_S = 15.0
HUB_JOB_INTERVAL_S = 60.0
KICK_DELAY_S = 1.0
RETRY_AFTER_S = 30
WRITE_WATCH_S = 2.0

_STATUS = {
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.CLOCK_SKEW: 401,
    ErrorCode.REPLAY: 401,
    ErrorCode.REVOKED_KEY: 401,
    ErrorCode.CERT_EXPIRED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_IN_SUBTREE: 403,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.STORE_ERROR: 503,
}

ClientFactory = Callable[[Node], httpx.AsyncClient]


def create_app(
    settings: NodeSettings,
    *,
    clock: Clock = system_clock,
    node: Node | None = None,
    client_factory: ClientFactory | None = None,
    scheduler: bool = True,
) -> FastAPI:
    """Build the app for the node at ``settings.home``.

    ``node`` may be passed already open (tests run several in one process); otherwise it
    is opened in the lifespan. ``client_factory`` builds the uplink's HTTP client (tests
    pass one bound to another app's ``ASGITransport``).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(
            node_id=settings.node_id, tier=settings.tier.value, level=settings.log_level
        )
        opened = node or Node.open(settings, clock=clock)
        _attach(app, opened, clock)
        log = get_logger("guantong.app")
        jobs: AsyncIOScheduler | None = None
        client: httpx.AsyncClient | None = None
        if settings.parent_url:
            client = (client_factory or node_client)(opened)
            app.state.uplink = Uplink(
                opened.log, parent_url=settings.parent_url, client=client, clock=clock
            )
        if client is not None and opened.settings.parent_url:
            try:  # before this node writes anything (quality items, certificates)
                await ensure_recovered(opened, client)
            except GuantongError as exc:
                log.warning("recovery.pending", code=exc.code.value, error=exc.message)
        lock = _scheduler_lock(settings) if scheduler else None
        if lock is not None:  # one worker runs the jobs; the others only serve requests
            jobs = _schedule(app, opened, client)
            jobs.start()
        log.info("node.started", key_id=opened.signer.key_id, hub=settings.tier in HUB_TIERS)
        try:
            yield
        finally:
            if jobs is not None:
                jobs.shutdown(wait=False)
            if lock is not None:
                lock.close()
            if client is not None:
                await client.aclose()
            if node is None:
                opened.close()

    app = FastAPI(title=f"Guantong node {settings.node_id}", version="1", lifespan=lifespan)
    if node is not None:
        _attach(app, node, clock)
    registry = CollectorRegistry()
    own_seq = Gauge("guantong_own_seq", "Highest seq of this node's own log", registry=registry)

    @app.exception_handler(GuantongError)
    async def _on_error(_request: Request, exc: GuantongError) -> JSONResponse:
        status = _STATUS.get(exc.code, 400)
        # back-pressure (PROTOCOL §4): a hub that cannot write now says when to come back
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status in (429, 503) else None
        return JSONResponse(exc.to_body(), status_code=status, headers=headers)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/status")
    def status(request: Request) -> dict[str, Any]:
        current: Node = request.app.state.node
        info = current.status()
        uplink: Uplink | None = getattr(request.app.state, "uplink", None)
        if uplink is not None:
            backlog = uplink.backlog()
            info["uplink"] = {**uplink.state(), "backlog": sum(b.entries for b in backlog)}
        return info

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> PlainTextResponse:
        current: Node = request.app.state.node
        head = current.log.head()
        own_seq.set(head.seq if head else 0)
        return PlainTextResponse(
            generate_latest(registry).decode(), media_type="text/plain; version=0.0.4"
        )

    if settings.tier in HUB_TIERS:
        app.include_router(hub_router)
        app.include_router(dashboard_router)
    else:

        @app.get("/", include_in_schema=False)
        def home() -> RedirectResponse:
            return RedirectResponse("/desk", 303)

    app.state.is_hub = settings.tier in HUB_TIERS
    app.include_router(desk_router)
    app.include_router(intake_router)
    app.mount(
        "/static", StaticFiles(directory=str(Path(web.__file__).parent / "static")), name="static"
    )
    return app


def app_from_env() -> FastAPI:
    """The app of the node at ``GUANTONG_HOME`` (uvicorn's factory when it runs workers)."""
    return create_app(load_settings())


def _attach(app: FastAPI, node: Node, clock: Clock) -> None:
    app.state.node = node
    app.state.ingestor = Ingestor(
        store=node.store, hub_id=node.id, registry=node.registry, keyring=node.keyring, clock=clock
    )


def node_client(node: Node, timeout: float = 30.0) -> httpx.AsyncClient:
    """An HTTP client whose every request is signed by ``node`` (PROTOCOL §6)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        auth=NodeAuth(node.id, node.signer, node.clock),
    )


def _schedule(app: FastAPI, node: Node, client: httpx.AsyncClient | None) -> AsyncIOScheduler:
    """Every background job of a node, registered in one place (STYLE §10)."""
    jobs = AsyncIOScheduler()
    uplink: Uplink | None = getattr(app.state, "uplink", None)
    if uplink is not None and client is not None:
        jobs.add_job(
            _sync_job,
            "interval",
            args=[node, uplink, client],
            seconds=SYNC_INTERVAL_S,
            id="uplink",
            max_instances=1,
            coalesce=True,
            next_run_time=_soon(0),
        )
    if node.settings.tier in HUB_TIERS:
        jobs.add_job(
            _hub_job,
            "interval",
            args=[node],
            seconds=HUB_JOB_INTERVAL_S,
            id="hub",
            max_instances=1,
            coalesce=True,
            next_run_time=_soon(0),
        )

    if uplink is not None:
        seen = {"seq": -1}

        def watch_writes() -> None:
            """Push on write: local writes may come from another process (``guantong put``),
            so the own head is polled (one indexed read) and a change kicks the uplink."""
            head = node.log.head()
            seq = head.seq if head else 0
            if seen["seq"] not in (-1, seq):
                kick()
            seen["seq"] = seq

        jobs.add_job(
            watch_writes,
            "interval",
            seconds=WRITE_WATCH_S,
            id="writes",
            max_instances=1,
            coalesce=True,
        )

    def kick() -> None:
        """After a push arrives: relay it and raise its quality items soon (debounced)."""
        for job_id in ("uplink", "hub"):
            job = jobs.get_job(job_id)
            if job is not None and (
                job.next_run_time is None or job.next_run_time > _soon(KICK_DELAY_S)
            ):
                job.modify(next_run_time=_soon(KICK_DELAY_S))

    app.state.kick = kick

    async def sync_now() -> None:
        if uplink is not None and client is not None:
            await _sync_job(node, uplink, client)

    app.state.sync_now = sync_now
    return jobs


def _scheduler_lock(settings: NodeSettings) -> IO[bytes] | None:
    """An exclusive lock on ``<home>/scheduler.lock``; None if another worker holds it."""
    handle = (settings.home / "scheduler.lock").open("ab")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def _sync_job(node: Node, uplink: Uplink, client: httpx.AsyncClient) -> None:
    log = get_logger("guantong.uplink")
    if not uplink.due():
        return
    try:
        await ensure_recovered(node, client)
        report = await uplink.sync()
        pulled = await pull_tasks(node, client)
        if pulled.stored or pulled.rejected:
            log.info(
                "downlink.pulled",
                tasks=pulled.tasks,
                stored=pulled.stored,
                rejected=pulled.rejected,
                bundle=pulled.installed_bundle,
            )
    except GuantongError as exc:
        log.warning("uplink.failed", code=exc.code.value, error=exc.message)
        return
    if report.requests:
        log.info("uplink.pushed", **report.to_dict())


async def _hub_job(node: Node) -> None:
    pending = await anyio.to_thread.run_sync(apply_pending, node.store, node.registry, node.keyring)
    raised = await anyio.to_thread.run_sync(raise_quality_items, node)
    await anyio.to_thread.run_sync(node.keyring.relearn)
    await anyio.to_thread.run_sync(purge_replay_cache, node)
    deadlines = await anyio.to_thread.run_sync(check_deadlines, node)
    if deadlines.warnings or deadlines.reminders:
        get_logger("guantong.hub").info(
            "deadlines", reminders=len(deadlines.reminders), warnings=deadlines.warnings
        )
    if raised or pending["valid"] or pending["invalid"]:
        get_logger("guantong.hub").info("hub.maintenance", quality_items=raised, **pending)
