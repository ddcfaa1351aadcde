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


@pytest.mark.anyio
async def test_a_sender_gone_mid_upload_is_one_line_not_a_traceback(
    make_node: NodeFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A station's link dropping mid-push is routine: the hub logs it in one line, stores
    nothing, and the exception does not escape to the server (which would log a
    traceback as an error)."""
    import json

    from node.logs import configure_logging

    node = make_node("js")
    app = create_app(node.settings, node=node, scheduler=False)
    configure_logging(node_id="js", tier="province")
    capsys.readouterr()
    messages = iter(
        [
            {"type": "http.request", "body": b'{"origin":"js.wx"', "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return next(messages)

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/push",
        "raw_path": b"/v1/push",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-length", b"100000"), (b"guantong-node", b"js.wx")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8700),
        "state": {},
    }
    await app(scope, receive, send)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 499
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(x["event"], x["path"], x["caller"]) for x in lines] == [
        ("request.disconnected", "/v1/push", "js.wx")
    ]
    assert node.log.heads() == []


@pytest.mark.anyio
async def test_a_tick_that_finds_its_job_still_running_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One run at a time is the design (a busy relay is still relaying): the scheduler's
    warning for each tick that finds the run going would fill a busy hub's log. Its other
    warnings still pass."""
    import logging

    import anyio
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from node.app import _SCHEDULER_LOG

    runs: list[int] = []

    async def slow() -> None:
        runs.append(1)
        await anyio.sleep(0.6)

    with caplog.at_level(logging.INFO, logger="guantong.scheduler"):
        jobs = AsyncIOScheduler(logger=_SCHEDULER_LOG)
        jobs.add_job(slow, "interval", seconds=0.1, max_instances=1, coalesce=True)
        jobs.start()
        await anyio.sleep(0.5)
        jobs.shutdown(wait=False)
        _SCHEDULER_LOG.warning("Run time of job %s was missed", "x")
    messages = [r.getMessage() for r in caplog.records]
    assert runs and "Scheduler started" in messages
    assert not [m for m in messages if "maximum number of running instances" in m]
    assert "Run time of job x was missed" in messages


def test_the_node_scheduler_logs_through_the_filtered_logger(make_node: NodeFactory) -> None:
    from node.app import _SCHEDULER_LOG, _schedule

    node = make_node("js")
    app = create_app(node.settings, node=node, scheduler=False)
    jobs = _schedule(app, node, None)
    assert jobs._logger is _SCHEDULER_LOG
