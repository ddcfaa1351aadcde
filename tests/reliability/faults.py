"""Fault injection for every hop of an in-process federation.

:class:`FaultyTransport` wraps another ``httpx.AsyncBaseTransport`` (in tests: an
``httpx.ASGITransport`` of a node's app, or the ``_Switch`` of ``Federation.client``) and,
driven by a seeded :class:`random.Random` and per-fault probabilities (:class:`FaultPlan`),
injects at most one fault per request:

- ``drop``: ``httpx.ConnectError`` before anything is sent;
- ``lose_answer``: the request reaches the hub, then ``httpx.ReadError`` (stored upstream,
  the client does not know);
- ``duplicate``: the request is sent twice, the second answer is returned;
- ``delay``: a tiny ``anyio.sleep`` before sending (other requests interleave);
- ``truncate``: the body is cut (re-signed when the transport holds the caller's
  :class:`~node.auth.NodeAuth`, so the cut bytes reach the decoder rather than the auth
  check);
- ``unavailable``: a 5xx/429 answer with ``Retry-After`` without sending;
- ``reset``: the connection breaks mid-way, either while the hub reads the body (it sees a
  broken stream) or while the client reads the answer (the hub has processed it).

Every request is counted in :attr:`FaultyTransport.counts` under its fault (``clean`` when
none), shared between transports when one :class:`collections.Counter` is passed to several.

Also here: :class:`LinkTransport` (the wire to a node's app, honouring ``fed.down`` and
restarts), :func:`faulty_uplink` and :func:`faulty_pull` (a node's ``Uplink`` and task
pull over a faulty wire), and :class:`FederationFactory` (a fresh copy of an enrolled
federation per hypothesis example).
"""

from __future__ import annotations

import random
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import anyio
import httpx
from sqlalchemy import text

from node.auth import NodeAuth
from node.db import Store
from node.downlink import PullReport, pull_tasks
from node.runtime import Node
from node.settings import NodeSettings, load_settings
from node.uplink import Uplink
from schemas.ids import parent_of
from tests.conftest import FakeClock
from tests.federation.harness import Federation

__all__ = [
    "FAULTS",
    "NO_FAULTS",
    "FaultPlan",
    "FederationFactory",
    "FaultyTransport",
    "LinkTransport",
    "close_federation",
    "faulty_client",
    "faulty_pull",
    "faulty_uplink",
    "new_federation",
]

FAULTS = (
    "drop",
    "lose_answer",
    "duplicate",
    "delay",
    "truncate",
    "unavailable",
    "reset",
)
_STATUSES = (500, 502, 503, 503, 504, 429)


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Probability of each fault per request (at most one fault per request)."""

    drop: float = 0.0
    lose_answer: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0
    truncate: float = 0.0
    unavailable: float = 0.0
    reset: float = 0.0

    def __post_init__(self) -> None:
        total = sum(self.weights())
        if any(p < 0 for p in self.weights()) or total > 1.0:
            raise ValueError(f"fault probabilities must be ≥ 0 and sum to ≤ 1, not {total}")

    def weights(self) -> list[float]:
        return [getattr(self, f.name) for f in fields(self)]

    @classmethod
    def uniform(cls, each: float) -> FaultPlan:
        """Every fault with the same probability ``each``."""
        return cls(**dict.fromkeys(FAULTS, each))

    def pick(self, rng: random.Random) -> str | None:
        roll = rng.random()
        for name, p in zip(FAULTS, self.weights(), strict=True):
            if roll < p:
                return name
            roll -= p
        return None


NO_FAULTS = FaultPlan()


class _Broken(httpx.AsyncByteStream):
    """A request body that breaks after ``keep`` bytes (the connection reset mid-upload)."""

    def __init__(self, data: bytes, keep: int, request: httpx.Request) -> None:
        self.data = data
        self.keep = keep
        self.request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.keep:
            yield self.data[: self.keep]
        raise httpx.WriteError("injected: connection reset while sending", request=self.request)


class FaultyTransport(httpx.AsyncBaseTransport):
    """Inject faults per :class:`FaultPlan` in front of ``inner``; count what was injected."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        rng: random.Random,
        plan: FaultPlan,
        counts: Counter[str] | None = None,
        resign: NodeAuth | None = None,
        retry_after: int | None = None,
    ) -> None:
        self.inner = inner
        self.retry_after = retry_after
        """The ``Retry-After`` of injected 5xx/429 answers (random 1–120 s when None)."""
        self.rng = rng
        self.plan = plan
        self.counts: Counter[str] = counts if counts is not None else Counter()
        self.resign = resign
        self.enabled = True
        """Set to False to let every request through untouched (and uncounted as a fault)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        fault = self.plan.pick(self.rng) if self.enabled else None
        body = request.content  # NodeAuth reads the body before signing: it is in memory
        if fault == "truncate" and not body:
            fault = None  # nothing to cut in a GET
        self.counts[fault or "clean"] += 1
        if fault == "drop":
            raise httpx.ConnectError("injected: connection refused", request=request)
        if fault == "unavailable":
            status = self.rng.choice(_STATUSES)
            return httpx.Response(
                status,
                headers={"Retry-After": str(self.retry_after or self.rng.randint(1, 120))},
                json={"error": {"code": "store_error", "message": "injected back-pressure"}},
                request=request,
            )
        if fault == "delay":
            await anyio.sleep(self.rng.choice((0.0, 0.0001, 0.0005)))
        if fault == "truncate":
            request = self._copy(request, body[: self.rng.randrange(len(body))], resign=True)
        if fault == "reset":
            if body and self.rng.random() < 0.5:
                broken = self._copy(request, body)
                broken.stream = _Broken(body, self.rng.randrange(len(body)), broken)
                try:
                    response = await self.inner.handle_async_request(broken)
                except httpx.WriteError as exc:
                    raise httpx.RemoteProtocolError(
                        "injected: connection reset mid-request", request=request
                    ) from exc
                await response.aclose()  # the hub answered a body it could not read whole
                raise httpx.RemoteProtocolError(
                    "injected: connection reset mid-request", request=request
                )
            response = await self._send(request)
            await response.aread()
            await response.aclose()
            raise httpx.RemoteProtocolError(
                "injected: peer closed connection without sending complete message body",
                request=request,
            )
        if fault == "lose_answer":
            response = await self._send(request)
            await response.aread()
            await response.aclose()
            raise httpx.ReadError("injected: answer lost", request=request)
        if fault == "duplicate":
            first = await self._send(self._copy(request, body))
            await first.aread()
            await first.aclose()
        return await self._send(request)

    async def _send(self, request: httpx.Request) -> httpx.Response:
        return await self.inner.handle_async_request(request)

    def _copy(self, request: httpx.Request, body: bytes, *, resign: bool = False) -> httpx.Request:
        headers = httpx.Headers(request.headers)
        if "content-length" in headers:
            headers["content-length"] = str(len(body))
        copy = httpx.Request(
            request.method,
            request.url,
            headers=headers,
            content=body,
            extensions=request.extensions,
        )
        if resign and self.resign is not None:
            next(self.resign.auth_flow(copy))  # the first step of the flow signs in place
        return copy

    async def aclose(self) -> None:
        await self.inner.aclose()


class LinkTransport(httpx.AsyncBaseTransport):
    """The wire to ``node_id``'s app in ``fed``: looked up per request (so it survives the
    node's restarts) and refusing connections while the node is in ``fed.down``."""

    def __init__(self, fed: Federation, node_id: str) -> None:
        self.fed = fed
        self.node_id = node_id

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.node_id in self.fed.down:
            raise httpx.ConnectError(f"{self.node_id} is down", request=request)
        inner = httpx.ASGITransport(app=self.fed.app(self.node_id))
        return await inner.handle_async_request(request)


def faulty_client(
    fed: Federation,
    node_id: str,
    *,
    caller: str,
    rng: random.Random,
    plan: FaultPlan,
    counts: Counter[str] | None = None,
    auth: NodeAuth | None = None,
    retry_after: int | None = None,
) -> tuple[httpx.AsyncClient, FaultyTransport]:
    """A client of ``node_id`` signing as ``caller`` through a :class:`FaultyTransport`.

    Pass ``auth`` to keep one signer across clients (as a running process does: its request
    times stay strictly increasing, so none is refused as a replay).
    """
    auth = auth or NodeAuth(caller, fed.nodes[caller].signer, fed.clock)
    transport = FaultyTransport(
        LinkTransport(fed, node_id),
        rng=rng,
        plan=plan,
        counts=counts,
        resign=auth,
        retry_after=retry_after,
    )
    client = httpx.AsyncClient(transport=transport, base_url=f"http://{node_id}", auth=auth)
    return client, transport


def faulty_uplink(
    fed: Federation,
    node_id: str,
    *,
    rng: random.Random,
    plan: FaultPlan,
    counts: Counter[str] | None = None,
    auth: NodeAuth | None = None,
    max_bytes: int = 4 << 20,
    retry_after: int | None = None,
) -> Uplink:
    """``node_id``'s uplink to its parent over a faulty wire (close ``uplink.client``)."""
    parent = parent_of(node_id)
    assert parent is not None, f"{node_id} has no parent"
    client, _ = faulty_client(
        fed,
        parent,
        caller=node_id,
        rng=rng,
        plan=plan,
        counts=counts,
        auth=auth,
        retry_after=retry_after,
    )
    return Uplink(
        fed.nodes[node_id].log,
        parent_url=f"http://{parent}",
        client=client,
        clock=fed.clock,
        max_bytes=max_bytes,
        rng=random.Random(rng.random()),
    )


async def faulty_pull(
    fed: Federation,
    node_id: str,
    *,
    rng: random.Random,
    plan: FaultPlan,
    counts: Counter[str] | None = None,
    auth: NodeAuth | None = None,
) -> PullReport:
    """Pull the tasks ``node_id``'s parent holds for it, over a faulty wire."""
    parent = parent_of(node_id)
    assert parent is not None, f"{node_id} has no parent"
    client, _ = faulty_client(
        fed, parent, caller=node_id, rng=rng, plan=plan, counts=counts, auth=auth
    )
    async with client:
        return await pull_tasks(fed.nodes[node_id], client)


def new_federation(
    root: Path, clock: FakeClock, *, hub_db: Callable[[], str] | None = None
) -> Federation:
    """A :class:`Federation` whose nodes live under ``root`` (one per hypothesis example:
    the ``make_node`` fixture is bound to one test's ``tmp_path``). Close it with
    :func:`close_federation`."""

    def factory(
        node_id: str,
        tier: str,
        *,
        parent: str | None = None,
        db_url: str | None = None,
        seed: bytes | None = None,
        bundle: Path | None = None,
        secret: str | None = None,
    ) -> Node:
        settings = NodeSettings(
            home=root / node_id,
            id=node_id,
            tier=tier,
            parent_url=parent,
            db_url=db_url,
            province_secret=secret,
        )
        assert bundle is None, "reliability federations run the shipped contract bundle"
        return Node.init(settings, seed=seed, clock=clock)

    return Federation(factory, clock, hub_db=hub_db)


def close_federation(fed: Federation) -> None:
    for node in fed.nodes.values():
        node.close()


class FederationFactory:
    """Fresh federations of the same enrolled nodes, one per hypothesis example.

    One federation is built and enrolled once and closed; each example gets a copy of it:
    the homes (keys, configs, SQLite stores) are copied and, with PostgreSQL hubs, each hub's
    schema is cloned into a fresh one. Opening a copy is ten times cheaper than ``init``
    plus enrollment, and every copy starts from the same keys and certificates.
    """

    def __init__(
        self,
        base: Path,
        node_ids: Sequence[str],
        *,
        hub_db: Callable[[], str] | None = None,
    ) -> None:
        self.base = base
        self.node_ids = tuple(node_ids)
        self.hub_db = hub_db
        self._template: Path | None = None
        self._schemas: dict[str, str] = {}
        """Hub id → database URL of the template's schema (PostgreSQL runs)."""
        self._made = 0

    def make(self, clock: FakeClock) -> tuple[Federation, Path]:
        """A federation under a new folder (returned, for removal after use)."""
        if self._template is None:
            template = self.base / "template"
            built = new_federation(template, FakeClock(clock.now), hub_db=self.hub_db)
            for node_id in self.node_ids:
                if node_id not in built.nodes:
                    built.add(node_id)
            self._schemas = {
                n.id: n.settings.db_url for n in built.nodes.values() if n.settings.db_url
            }
            close_federation(built)
            self._template = template
        self._made += 1
        root = self.base / f"federation-{self._made}"
        shutil.copytree(self._template, root)
        fed = new_federation(root, clock, hub_db=self.hub_db)
        for node_id in self.node_ids:
            overrides: dict[str, str] = {}
            if node_id in self._schemas:
                assert self.hub_db is not None
                overrides["db_url"] = self.hub_db()
                _clone_schema(self._schemas[node_id], overrides["db_url"])
            settings = load_settings(root / node_id, **overrides)
            fed.nodes[node_id] = Node.open(settings, clock=clock)
        return fed, root


def _clone_schema(source_url: str, target_url: str) -> None:
    """Copy every table of one PostgreSQL schema (rows, indexes, defaults) into another."""
    source, target = Store(source_url), Store(target_url)
    try:
        with source.read() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar_one()
            tables = conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}
            ).scalars()
            names = list(tables)
        with target.write() as conn:
            into = conn.execute(text("SELECT current_schema()")).scalar_one()
            for name in names:
                conn.execute(
                    text(f'CREATE TABLE "{into}"."{name}" (LIKE "{schema}"."{name}" INCLUDING ALL)')
                )
                conn.execute(
                    text(f'INSERT INTO "{into}"."{name}" SELECT * FROM "{schema}"."{name}"')
                )
    finally:
        source.dispose()
        target.dispose()
