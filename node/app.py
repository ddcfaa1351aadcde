"""The ASGI application of a node, built from its settings (composition root).

Every node serves ``/healthz``, ``/metrics`` and ``/v1/status``. A node whose tier has
children also mounts the hub role (``hub.api``: push, entries, heads). A node with a parent
runs its uplink on a timer and after each local write, under APScheduler in the lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import anyio
import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from hub.api import router as hub_router
from hub.auth import purge_replay_cache
from hub.dashboard import router as dashboard_router
from hub.deadlines import check_deadlines
from hub.pending import apply_pending
from hub.quality import raise_quality_items
from node import web
from node.auth import NodeAuth
from node.bell import Stamp
from node.compression import HUB_GZIP_LEVEL, STATION_GZIP_LEVEL
from node.downlink import PullReport, pull_tasks
from node.ingest import Ingestor
from node.logs import configure_logging, get_logger
from node.openapi import Health, Status, install
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
RELAY_SPACING_S = 5.0
"""A kicked uplink run starts no sooner than this after the previous run began. A hub
taking in pushes one every few seconds (an ordinary day at a county, or a catch-up spread
over many counties) relayed each on its own a second after it came, and every relay round
costs both ends a request, a transaction and an answer whatever it carries; spaced, a
round carries what came meanwhile. A write after a quiet spell still goes up after
KICK_DELAY_S; the cost is up to this much more time per tier under load
(docs/performance.md, eighth round)."""
RECONCILE_INTERVAL_S = 300.0
RETRY_AFTER_S = 30
BUSY_RETRY_AFTER_S = 2
"""A busy hub (admission full) asks for a short wait: it will have room in seconds, and
its children add jitter of their own so they do not come back all at once."""
STORAGE_RETRY_AFTER_S = 120
"""A full, read-only or corrupt store needs an operator: children come back less often."""
WRITE_WATCH_S = 2.0
TASK_WAIT_S = 50.0
"""How long a node's pull of its parent's task feed waits for news (the long poll): a
task comes down within a second or so per tier, and an idle child asks about once a
minute instead of at every uplink run. Under a minute, so that a proxy's default read
timeout (nginx's 60 s) does not cut it."""
FEED_WATCH_S = 2.0
"""How often a hub's server looks at the task stamp for revisions another process stored
(the command line beside it, another worker): one ``stat``, whoever waits."""
TASK_RETRY_S = 15.0
TASK_RETRY_MAX_S = 300.0
"""The task pull's wait after a failure, doubled with each failure in a row up to the
most; it starts again at once when a pull succeeds."""
CLIENT_GONE = 499
"""Logged for a request whose sender disconnected before its body arrived (nginx's code)."""

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
    ErrorCode.BUSY: 503,
    ErrorCode.STORE_ERROR: 503,
    ErrorCode.STORAGE_FULL: 503,
    ErrorCode.STORAGE_READ_ONLY: 503,
    ErrorCode.STORE_CORRUPT: 503,
}
_RETRY_AFTER = {
    ErrorCode.BUSY: BUSY_RETRY_AFTER_S,
    ErrorCode.STORAGE_FULL: STORAGE_RETRY_AFTER_S,
    ErrorCode.STORAGE_READ_ONLY: STORAGE_RETRY_AFTER_S,
    ErrorCode.STORE_CORRUPT: STORAGE_RETRY_AFTER_S,
}
"""``Retry-After`` of a 503 by its code; every other code asks for :data:`RETRY_AFTER_S`."""

_HTTP_CODES = {
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    413: ErrorCode.TOO_LARGE,
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
                opened.log,
                parent_url=settings.parent_url,
                client=client,
                clock=clock,
                # a station's link is often slow and metered: compress hard; a hub relays
                # megabytes over better links, where level 1 (ISA-L's) costs a tenth of the
                # CPU of zlib's level 6 for bodies about 20 % larger (node/compression.py)
                compresslevel=HUB_GZIP_LEVEL if settings.tier in HUB_TIERS else STATION_GZIP_LEVEL,
            )
        if client is not None and opened.settings.parent_url:
            try:  # before this node writes anything (quality items, certificates)
                await ensure_recovered(opened, client)
            except GuantongError as exc:
                log.warning("recovery.pending", code=exc.code.value, error=exc.message)
        lock = _scheduler_lock(settings) if scheduler else None
        loops: list[asyncio.Task[None]] = []
        if scheduler and settings.tier in HUB_TIERS:  # every worker: each answers polls
            loops.append(asyncio.create_task(_watch_tasks(opened), name="watch-tasks"))
        if lock is not None:  # one worker runs the jobs; the others only serve requests
            jobs = _schedule(app, opened, client)
            jobs.start()
            if client is not None:
                loops.append(asyncio.create_task(_downlink(opened, client), name="downlink"))
        log.info("node.started", key_id=opened.signer.key_id, hub=settings.tier in HUB_TIERS)
        try:
            yield
        finally:
            for task in loops:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
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
    polls = Gauge(
        "guantong_task_polls_waiting",
        "Children's long polls of the task feed waiting in this process",
        registry=registry,
    )

    @app.exception_handler(GuantongError)
    async def _on_error(_request: Request, exc: GuantongError) -> JSONResponse:
        status = _STATUS.get(exc.code, 400)
        # back-pressure (PROTOCOL §4): a hub that cannot write now says when to come back
        wait = _RETRY_AFTER.get(exc.code, RETRY_AFTER_S)
        headers = {"Retry-After": str(wait)} if status in (429, 503) else None
        return JSONResponse(exc.to_body(), status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # The protocol's one error body, also for what the framework refuses itself; the
        # refused input is not echoed back.
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        body = GuantongError(ErrorCode.MALFORMED, "invalid request parameters", errors=errors)
        return JSONResponse(body.to_body(), status_code=422)

    @app.exception_handler(ClientDisconnect)
    async def _on_gone(request: Request, _exc: ClientDisconnect) -> Response:
        # A sender whose link dropped mid-upload (a station on a bad line, a relay that
        # timed out): routine, nothing of the request was stored, and nobody is left to
        # answer. One line in the log instead of a traceback; 499 as proxies log it.
        get_logger("guantong.app").info(
            "request.disconnected",
            method=request.method,
            path=request.url.path,
            caller=request.headers.get("guantong-node"),
        )
        return Response(status_code=CLIENT_GONE)

    @app.exception_handler(HTTPException)
    async def _on_http(_request: Request, exc: HTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, ErrorCode.MALFORMED)
        body = GuantongError(code, str(exc.detail)).to_body()
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.get("/healthz", response_model=None, responses={200: {"model": Health}})
    def healthz(request: Request) -> dict[str, str]:
        """The process is up (200 either way, so a supervisor does not restart it in a loop);
        ``store`` says whether the store was quarantined as corrupt."""
        current: Node = request.app.state.node
        corrupt = current.store.corrupt_reason()
        if corrupt is not None:
            return {"status": "degraded", "store": f"{ErrorCode.STORE_CORRUPT.value}: {corrupt}"}
        return {"status": "ok"}

    @app.get("/v1/status", response_model=None, responses={200: {"model": Status}})
    def status(request: Request) -> dict[str, Any]:
        current: Node = request.app.state.node
        info = current.status()
        uplink: Uplink | None = getattr(request.app.state, "uplink", None)
        if uplink is not None:
            backlog = uplink.backlog()
            info["uplink"] = {**uplink.state(), "backlog": sum(b.entries for b in backlog)}
        return info

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={200: {"description": "Prometheus text exposition format"}},
    )
    def metrics(request: Request) -> PlainTextResponse:
        current: Node = request.app.state.node
        head = current.log.head()
        own_seq.set(head.seq if head else 0)
        polls.set(current.task_bell.waiting)
        return PlainTextResponse(
            generate_latest(registry).decode(), media_type="text/plain; version=0.0.4"
        )

    if settings.tier in HUB_TIERS:
        app.include_router(hub_router)
        app.include_router(dashboard_router)
    else:

        @app.get("/", include_in_schema=False)
        def home(request: Request) -> RedirectResponse:
            query = request.url.query  # ?lang=en: the desk in that language
            return RedirectResponse("/desk" + (f"?{query}" if query else ""), 303)

    app.state.is_hub = settings.tier in HUB_TIERS
    install(app)
    app.include_router(desk_router)
    if settings.tier == Tier.STATION:
        # citizens report at their station: a hub's log holds what stations signed, and an
        # anonymous form there would write opinions no station ever took (a 404 elsewhere)
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
    app.state.ingestor = Ingestor.of(node, clock=clock)  # the bundle installed now


def node_client(node: Node, timeout: float = 30.0) -> httpx.AsyncClient:
    """An HTTP client whose every request is signed by ``node`` (PROTOCOL §6)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        auth=NodeAuth(node.id, node.signer, node.clock),
    )


def _schedule(app: FastAPI, node: Node, client: httpx.AsyncClient | None) -> AsyncIOScheduler:
    """Every background job of a node, registered in one place (STYLE §10)."""
    jobs = AsyncIOScheduler(logger=_SCHEDULER_LOG)
    uplink: Uplink | None = getattr(app.state, "uplink", None)
    state = _SyncState()
    if uplink is not None and client is not None:
        jobs.add_job(
            _sync_job,
            "interval",
            args=[node, uplink, client, state],
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

    if uplink is not None and node.log.watermark is not None:
        watermark = Stamp(node.log.watermark)

        async def watch_writes() -> None:
            """Push on write: local writes may come from another process (``guantong
            put``), and every write of the own log replaces the head watermark after its
            commit (``head.json``), so a changed file kicks the uplink. One ``stat`` on the
            event loop: no thread, no transaction (it was a read of the own head in a worker
            thread, a third of an idle hub's CPU). A write whose watermark could not be
            written (a full disk) goes up with the next regular run."""
            if watermark.changed():
                kick()

        jobs.add_job(
            watch_writes,
            "interval",
            seconds=WRITE_WATCH_S,
            id="writes",
            max_instances=1,
            coalesce=True,
        )

    def kick(*, maintenance: bool = False) -> None:
        """After a push or a local write: relay it soon (debounced); with ``maintenance``
        (invalid or pending entries arrived) also run the hub job soon."""
        for job_id in ("uplink", "hub") if maintenance else ("uplink",):
            if job_id == "uplink" and not state.note_kick():
                continue  # the running uplink job runs again as it ends
            delay = state.kick_delay() if job_id == "uplink" else KICK_DELAY_S
            job = jobs.get_job(job_id)
            if job is not None and (job.next_run_time is None or job.next_run_time > _soon(delay)):
                job.modify(next_run_time=_soon(delay))

    app.state.kick = kick

    def wake(delay: float) -> None:
        """Run the uplink when its backoff ends, if that is sooner than its next tick (a
        busy parent asks for two seconds; the interval is fifteen)."""
        job = jobs.get_job("uplink")
        at = _soon(delay)
        if job is not None and (job.next_run_time is None or job.next_run_time > at):
            job.modify(next_run_time=at)

    state.wake = wake

    async def sync_now() -> None:
        if uplink is not None and client is not None:
            await _sync_job(node, uplink, client, state, full=True)

    app.state.sync_now = sync_now
    return jobs


class _OverlapIsExpected(logging.Filter):
    """Every job allows one run at a time on purpose (a relay busy with a long backlog is
    still relaying, and ``kick`` marks it to run again), so a tick that finds its job still
    running is not news: the scheduler's warning about it would repeat every interval of
    every busy hub. Everything else the scheduler says passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances" not in record.getMessage()


_SCHEDULER_LOG = logging.getLogger("guantong.scheduler")
_SCHEDULER_LOG.addFilter(_OverlapIsExpected())


def _scheduler_lock(settings: NodeSettings) -> IO[bytes] | None:
    """An exclusive lock on ``<home>/scheduler.lock``; None if another worker holds it."""
    path = settings.home / "scheduler.lock"
    handle: IO[bytes]
    try:
        handle = path.open("ab")
    except OSError:
        if not path.is_file():
            raise
        handle = path.open("rb")  # a read-only or full home: a lock needs no write
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


@dataclass(slots=True)
class _SyncState:
    """When the uplink job last did more than push (monotonic seconds).

    A push is cheap and runs after every write or relayed push; the rest is not needed
    that often: recovery is checked until it has succeeded once in this process (a store
    can only lose data while the node is down); cursors are reconciled with the parent's
    heads every few minutes and after any failure (the parent may come back from a
    backup). Tasks come down by their own long poll (:func:`_downlink`), and with a run
    asked for by hand (``full``).
    """

    recovered: bool = False
    reconciled_at: float = -math.inf
    wake: Callable[[float], None] | None = None
    running: int = 0
    """Runs in progress (the scheduled job, and ``sync_now`` from a request)."""
    kicked: bool = False
    started_at: float = -math.inf
    """When the last run began."""

    def kick_delay(self, now: float | None = None) -> float:
        """How soon a kicked run starts: after KICK_DELAY_S, and no sooner than
        RELAY_SPACING_S after the last run began."""
        now = time.monotonic() if now is None else now
        return max(KICK_DELAY_S, self.started_at + RELAY_SPACING_S - now)

    def note_kick(self) -> bool:
        """A local write or a child's push to relay: True if the job should be moved up.
        While it runs, it is marked to run again as it ends instead: a run moved up that
        finds it still running is skipped by the scheduler, and what arrived after its
        last push would wait a whole interval (at the tail of a burst, every relay)."""
        if self.running:
            self.kicked = True
            return False
        return True


async def _sync_job(
    node: Node, uplink: Uplink, client: httpx.AsyncClient, state: _SyncState, *, full: bool = False
) -> None:
    state.running += 1
    state.kicked = False
    state.started_at = time.monotonic()
    try:
        await _sync(node, uplink, client, state, full=full)
    finally:
        state.running -= 1
        if state.kicked and not state.running and state.wake is not None:
            state.kicked = False
            state.wake(state.kick_delay())


async def _sync(
    node: Node, uplink: Uplink, client: httpx.AsyncClient, state: _SyncState, *, full: bool
) -> None:
    log = get_logger("guantong.uplink")
    wait = uplink.wait()
    if wait > 0 and not full:  # a run someone asked for ("sync now") is tried at once
        if state.wake is not None:
            state.wake(wait)
        return
    now = time.monotonic()
    reconcile = full or now - state.reconciled_at >= RECONCILE_INTERVAL_S
    try:
        if full or not state.recovered or node.recovery_reason is not None:
            state.recovered = await ensure_recovered(node, client) is not None
        report = await uplink.sync(reconcile=reconcile)
        if reconcile:
            state.reconciled_at = now
        if full:
            _log_pulled(await pull_tasks(node, client))
    except GuantongError as exc:
        state.reconciled_at = -math.inf
        log.warning("uplink.failed", code=exc.code.value, error=exc.message)
        if state.wake is not None:
            state.wake(uplink.wait())
        return
    if report.requests:
        log.info("uplink.pushed", **report.to_dict())


def _log_pulled(pulled: PullReport) -> None:
    if pulled.stored or pulled.rejected:
        get_logger("guantong.downlink").info(
            "downlink.pulled",
            tasks=pulled.tasks,
            stored=pulled.stored,
            rejected=pulled.rejected,
            bundle=pulled.installed_bundle,
        )


async def _downlink(
    node: Node,
    client: httpx.AsyncClient,
    *,
    wait: float = TASK_WAIT_S,
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> None:
    """Tasks down, for as long as the server runs: one long poll of the parent's task feed
    after another (``GET /v1/tasks?wait=``). The parent answers as soon as it holds
    something new for this subtree, so a task crosses each tier in about a second;
    stored here, it wakes this node's own children's polls in turn.

    A failure (the parent down, busy, refusing) waits ``TASK_RETRY_S``, doubled with each
    failure in a row up to ``TASK_RETRY_MAX_S``, with jitter so that a parent's children
    do not all come back at once. An empty answer well before ``wait`` (a parent shutting
    down, or one of a release that does not wait) waits out ``SYNC_INTERVAL_S`` from the
    request's start, the pace of the pull before the long poll, so that it never spins.
    A pull that held its cursor before a task whose signer is not known yet waits as after
    a failure: the same page comes back at once, and would be asked for in a loop."""
    rng = rng or random.Random()
    log = get_logger("guantong.downlink")
    failures = 0
    while True:
        started = time.monotonic()
        try:
            pulled = await pull_tasks(node, client, wait=wait)
        except Exception as exc:  # the loop outlives every failure; cancelling ends it
            failures += 1
            delay = _task_retry(failures, rng)
            if isinstance(exc, GuantongError):
                log.warning(
                    "downlink.failed", code=exc.code.value, error=exc.message, retry_s=round(delay)
                )
            else:
                log.exception("downlink.failed", retry_s=round(delay))
            await sleep(delay)
            continue
        _log_pulled(pulled)
        if pulled.held:
            failures += 1
            delay = _task_retry(failures, rng)
            log.warning("downlink.held", held=pulled.held, retry_s=round(delay))
            await sleep(delay)
            continue
        failures = 0
        if not pulled.tasks and time.monotonic() - started < wait / 2:
            await sleep(max(0.0, started + SYNC_INTERVAL_S - time.monotonic()))


def _task_retry(failures: int, rng: random.Random) -> float:
    # weeks offline are thousands of failures: the doubling stops at the most
    delay: float = min(TASK_RETRY_S * 2 ** min(failures - 1, 16), TASK_RETRY_MAX_S)
    return delay * rng.uniform(0.8, 1.2)


async def _watch_tasks(
    node: Node,
    *,
    every: float = FEED_WATCH_S,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> None:
    """Ring the node's bell when another process stored task revisions (it replaced the
    task stamp): the children's polls waiting here answer within ``every`` seconds. One
    ``stat`` on the event loop per tick, whether or not anyone waits."""
    while True:
        await sleep(every)
        if node.task_stamp.changed():
            node.task_bell.ring()


async def _hub_job(node: Node) -> None:
    try:
        await _hub_maintenance(node)
    except GuantongError as exc:  # a full or read-only store: try again at the next run
        get_logger("guantong.hub").warning("hub.failed", code=exc.code.value, error=exc.message)


async def _hub_maintenance(node: Node) -> None:
    pending = await anyio.to_thread.run_sync(apply_pending, node.store, node.registry, node.keyring)
    raised = await anyio.to_thread.run_sync(raise_quality_items, node)
    await anyio.to_thread.run_sync(node.keyring.relearn)
    await anyio.to_thread.run_sync(purge_replay_cache, node)
    deadlines = await anyio.to_thread.run_sync(check_deadlines, node)
    if deadlines.warnings or deadlines.reminders or deadlines.lifted:
        get_logger("guantong.hub").info(
            "deadlines",
            reminders=len(deadlines.reminders),
            warnings=deadlines.warnings,
            lifted=deadlines.lifted,
        )
    if raised or pending["valid"] or pending["invalid"]:
        get_logger("guantong.hub").info("hub.maintenance", quality_items=raised, **pending)
