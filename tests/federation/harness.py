"""In-process federations: real nodes and apps, connected through httpx.ASGITransport.

Nodes are enrolled with their parents for real (token, request, answer: the offline path
run in-process), and every node-to-node request is signed, so these tests exercise the
same trust checks as a deployment.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from contracts.samples import sample_records
from hub.enrollment import answer_enrollment, create_token
from node.app import create_app
from node.auth import NodeAuth
from node.downlink import PullReport, pull_tasks
from node.enrollment import enrollment_request, install_enrollment, rotate_online
from node.keys import create_key
from node.runtime import Node
from node.uplink import SyncReport, Uplink
from schemas.certs import Certificate
from schemas.ids import parent_of
from schemas.times import format_time
from tests.conftest import FakeClock, NodeFactory

SECRET = "province-secret-for-tests"
TIERS = {1: "province", 2: "city", 3: "county", 4: "station"}


class Federation:
    """Nodes by id; each one's parent is found from its id; apps are built on demand."""

    def __init__(
        self,
        make_node: NodeFactory,
        clock: FakeClock,
        *,
        hub_db: Callable[[], str] | None = None,
    ) -> None:
        self.make_node = make_node
        self.clock = clock
        self.hub_db = hub_db
        """Makes a database URL for each hub (PostgreSQL runs); stations stay on SQLite."""
        self.nodes: dict[str, Node] = {}
        self.apps: dict[str, FastAPI] = {}
        self.down: set[str] = set()

    def add(
        self,
        node_id: str,
        tier: str | None = None,
        *,
        enroll: bool = True,
    ) -> Node:
        """Initialise a node and enroll it with its parent (created first if missing: trust
        always runs from the province root)."""
        parent = parent_of(node_id)
        if parent is not None and parent not in self.nodes:
            self.add(parent)
        tier = tier or TIERS[node_id.count(".") + 1]
        hub = tier in ("province", "city", "county", "township")
        node = self.make_node(
            node_id,
            tier,
            parent=f"http://{parent}" if parent else None,
            db_url=self.hub_db() if hub and self.hub_db else None,
            bundle=None,
            secret=SECRET if parent is None else None,
        )
        self.nodes[node_id] = node
        if parent is not None and enroll:
            self.enroll(node)
        return node

    def enroll(self, node: Node) -> None:
        parent = self.nodes[parent_of(node.id) or ""]
        token = create_token(parent, node.id, node.settings.tier)
        answer = answer_enrollment(parent, enrollment_request(node, token))
        install_enrollment(node, token, answer)

    def app(self, node_id: str) -> FastAPI:
        if node_id not in self.apps:
            node = self.nodes[node_id]
            self.apps[node_id] = create_app(
                node.settings, node=node, clock=self.clock, scheduler=False
            )
        return self.apps[node_id]

    def client(self, node_id: str, *, caller: str | None = None) -> httpx.AsyncClient:
        """A client of ``node_id``'s app, signing as ``caller``; it cannot connect while
        ``node_id`` is down."""
        federation = self

        class _Switch(httpx.AsyncBaseTransport):
            def __init__(self) -> None:
                self.inner = httpx.ASGITransport(app=federation.app(node_id))

            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                if node_id in federation.down:
                    raise httpx.ConnectError(f"{node_id} is down", request=request)
                return await self.inner.handle_async_request(request)

        auth = NodeAuth(caller, self.nodes[caller].signer, self.clock) if caller else None
        return httpx.AsyncClient(transport=_Switch(), base_url=f"http://{node_id}", auth=auth)

    def uplink(self, node_id: str, **kwargs: Any) -> Uplink:
        node = self.nodes[node_id]
        parent = parent_of(node_id)
        assert parent is not None
        return Uplink(
            node.log,
            parent_url=f"http://{parent}",
            client=self.client(parent, caller=node_id),
            clock=self.clock,
            **kwargs,
        )

    async def sync(self, node_id: str, **kwargs: Any) -> SyncReport:
        uplink = self.uplink(node_id, **kwargs)
        try:
            return await uplink.sync()
        finally:
            await uplink.client.aclose()

    async def pull(self, node_id: str) -> PullReport:
        """Take the tasks the parent holds for ``node_id``'s subtree."""
        parent = parent_of(node_id)
        assert parent is not None
        async with self.client(parent, caller=node_id) as client:
            return await pull_tasks(self.nodes[node_id], client)

    async def rotate(self, node_id: str, keys: Path) -> Certificate:
        """Rotate ``node_id``'s key online with its parent (the new key made in the folder
        ``keys``) and adopt it; then a second passes, so that what follows is signed
        after the new certificate's start."""
        node = self.nodes[node_id]
        parent = parent_of(node_id)
        assert parent is not None
        pending = keys / f"{node_id}.key"
        fresh = create_key(pending)
        async with self.client(parent, caller=node_id) as client:
            cert = await rotate_online(node, fresh, client)
        node.adopt_key(fresh, pending)
        self.clock.advance(seconds=1)
        return cert

    async def cascade_down(self, *node_ids: str) -> None:
        """Pull tasks tier by tier, top first, as each node's scheduler would."""
        for node_id in node_ids:
            report = await self.pull(node_id)
            assert report.rejected == [], report.rejected

    async def cascade_up(self, *node_ids: str) -> None:
        """Push tier by tier, bottom first."""
        for node_id in node_ids:
            report = await self.sync(node_id)
            assert report.rejected == {}, report.rejected

    def write(
        self, node_id: str, count: int, *, seed: int = 0, contract: str = "opinion"
    ) -> list[str]:
        node = self.nodes[node_id]
        records = [(None, r) for r in sample_records(contract, count, seed=seed, origin=node_id)]
        return list(node.put(contract, records).record_ids)

    def now(self) -> str:
        return format_time(self.clock())


def reopen(fed: Federation, node_id: str) -> Node:
    """Close and open a node again (a restart), replacing it in the federation."""
    old = fed.nodes[node_id]
    old.close()
    node = Node.open(old.settings, clock=fed.clock)
    fed.nodes[node_id] = node
    fed.apps.pop(node_id, None)
    return node
