"""In-process federations: real nodes and apps, connected through httpx.ASGITransport."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from contracts.samples import sample_records
from node.app import create_app
from node.runtime import Node
from node.uplink import SyncReport, Uplink
from schemas.ids import is_in_subtree, parent_of
from schemas.times import format_time
from tests.conftest import FakeClock, NodeFactory

SECRET = "province-secret-for-tests"
TIERS = {1: "province", 2: "city", 3: "county", 4: "station"}


class Federation:
    """Nodes by id; each one's parent is found from its id; apps are built on demand."""

    def __init__(self, make_node: NodeFactory, clock: FakeClock, db_url: str | None = None) -> None:
        self.make_node = make_node
        self.clock = clock
        self.db_url = db_url
        self.nodes: dict[str, Node] = {}
        self.apps: dict[str, FastAPI] = {}
        self.down: set[str] = set()

    def add(self, node_id: str, tier: str | None = None, *, db_url: str | None = None) -> Node:
        depth = node_id.count(".") + 1
        parent = parent_of(node_id)
        node = self.make_node(
            node_id,
            tier or TIERS[depth],
            parent=f"http://{parent}" if parent else None,
            db_url=db_url or self.db_url,
            bundle=None,
            secret=SECRET,
        )
        self.nodes[node_id] = node
        self.trust()
        return node

    def trust(self) -> None:
        """Until certificates flow: every hub knows the keys of its whole subtree."""
        for hub in self.nodes.values():
            for other in self.nodes.values():
                if other is not hub and is_in_subtree(other.id, hub.id):
                    hub.keyring.add(
                        other.id, other.signer.public_raw, not_before="2000-01-01T00:00:00.000Z"
                    )

    def app(self, node_id: str) -> FastAPI:
        if node_id not in self.apps:
            node = self.nodes[node_id]
            self.apps[node_id] = create_app(
                node.settings, node=node, clock=self.clock, scheduler=False
            )
        return self.apps[node_id]

    def client(self, node_id: str, *, caller: str | None = None) -> httpx.AsyncClient:
        """A client of ``node_id``'s app (as ``caller``); refuses to connect while it is down."""
        federation = self

        class _Switch(httpx.AsyncBaseTransport):
            def __init__(self) -> None:
                self.inner = httpx.ASGITransport(app=federation.app(node_id))

            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                if node_id in federation.down:
                    raise httpx.ConnectError(f"{node_id} is down", request=request)
                return await self.inner.handle_async_request(request)

        headers = {"Guantong-Node": caller} if caller else {}
        return httpx.AsyncClient(transport=_Switch(), base_url=f"http://{node_id}", headers=headers)

    def uplink(self, node_id: str, **kwargs: Any) -> Uplink:
        node = self.nodes[node_id]
        parent = parent_of(node_id)
        assert parent is not None
        return Uplink(
            node.log,
            parent_url=f"http://{parent}",
            client=self.client(parent),
            clock=self.clock,
            **kwargs,
        )

    async def sync(self, node_id: str, **kwargs: Any) -> SyncReport:
        uplink = self.uplink(node_id, **kwargs)
        try:
            return await uplink.sync()
        finally:
            await uplink.client.aclose()

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
