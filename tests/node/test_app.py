"""The node's HTTP surface in-process (httpx.ASGITransport)."""

from __future__ import annotations

import httpx
import pytest

from node.app import create_app
from tests.conftest import NodeFactory


@pytest.mark.anyio
async def test_status_healthz_and_metrics(make_node: NodeFactory) -> None:
    node = make_node("js")
    node.put("note", [(1, {"a": 1})])
    app = create_app(node.settings, node=node)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            status = (await client.get("/v1/status")).json()
            assert status["id"] == "js" and status["head"]["seq"] == 1
            metrics = (await client.get("/metrics")).text
            assert "guantong_own_seq 1.0" in metrics
            assert (await client.get("/openapi.json")).status_code == 200
