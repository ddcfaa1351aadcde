"""The OpenAPI document describes every machine endpoint: who must sign, what goes in,
and every answer with the one error body, which the framework's own refusals carry too."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis

from node.app import create_app
from tests.conftest import NodeFactory
from tests.federation.harness import Federation

HUB_PATHS = {
    "/healthz",
    "/metrics",
    "/v1/status",
    "/v1/push",
    "/v1/enroll",
    "/v1/rotate",
    "/v1/entries",
    "/v1/tasks",
    "/v1/root",
    "/v1/stats",
    "/v1/chain",
    "/v1/heads",
}
UNSIGNED = {"/healthz", "/metrics", "/v1/status", "/v1/enroll"}
ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}


def _document(make_node: NodeFactory, node_id: str, tier: str) -> dict[str, Any]:
    node = make_node(node_id, tier)
    document: dict[str, Any] = create_app(node.settings, node=node).openapi()
    schemathesis.openapi.from_dict(document).validate()  # a valid OpenAPI 3.1 document
    return document


def _operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {path: next(iter(ops.values())) for path, ops in document["paths"].items()}


def test_a_hub_documents_every_machine_endpoint(make_node: NodeFactory) -> None:
    document = _document(make_node, "js", "province")
    operations = _operations(document)
    assert set(operations) == HUB_PATHS  # web pages are for people: not in the document
    schemes = document["components"]["securitySchemes"]
    assert {s["name"] for s in schemes.values()} == {
        "Guantong-Node",
        "Guantong-Time",
        "Guantong-Signature",
    }
    for path, operation in operations.items():
        signed = path not in UNSIGNED
        assert bool(operation.get("security")) == signed, path
        if signed:
            assert set(operation["security"][0]) == set(schemes)
            assert "401" in operation["responses"], path
        for status, response in operation["responses"].items():
            if status[0] in "45":
                assert response["content"] == {"application/json": {"schema": ERROR_BODY}}
    push = operations["/v1/push"]["requestBody"]["content"]
    assert set(push) == {"application/x-ndjson"}
    for path, model in (("/v1/enroll", "EnrollRequest"), ("/v1/rotate", "RotateRequest")):
        body = operations[path]["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{model}"}
        assert model in document["components"]["schemas"]
    entries = operations["/v1/entries"]["responses"]["200"]["content"]
    assert set(entries) == {"application/x-ndjson"}


def test_a_station_documents_status_health_and_metrics(make_node: NodeFactory) -> None:
    operations = _operations(_document(make_node, "js.wx.jy.s1", "station"))
    assert set(operations) == {"/healthz", "/metrics", "/v1/status"}


@pytest.mark.parametrize(
    ("method", "target", "status", "code"),
    [
        ("GET", "/v1/heads?limit=0", 422, "malformed"),
        ("GET", "/v1/entries", 422, "malformed"),
        ("GET", "/v1/nothing", 404, "not_found"),
        ("DELETE", "/v1/push", 405, "malformed"),
    ],
)
@pytest.mark.anyio
async def test_framework_refusals_carry_the_error_body(
    fed: Federation, method: str, target: str, status: int, code: str
) -> None:
    """What the framework refuses before a handler runs answered ``{"detail": …}``; every
    error body is ``{"error":{"code","message",…}}`` (PROTOCOL §4)."""
    fed.add("js.wx.jy")
    async with fed.client("js.wx", caller="js.wx.jy") as client:
        response = await client.request(method, target)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
