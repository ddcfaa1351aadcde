"""The quiet uvicorn server of ``guantong serve``: it serves, and it stops when told."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import uvicorn

from node.cli.scenario import free_port
from node.server import TICK_S, QuietServer


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_it_serves_with_a_date_header_and_stops_within_a_tick() -> None:
    port = free_port()
    server = QuietServer(
        uvicorn.Config(_app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    response = httpx.get(f"http://127.0.0.1:{port}/")
    assert response.text == "ok" and "date" in response.headers
    server.should_exit = True
    thread.join(timeout=TICK_S + 10)
    assert not thread.is_alive()


def test_the_server_keeps_idle_connections_longer_than_its_clients_do() -> None:
    """Otherwise both ends drop an idle connection at the same moment, and a child that
    reuses it just then loses its push to a ReadError (and backs off)."""
    from node.cli.sync import KEEP_ALIVE_S

    client_expiry = httpx._config.DEFAULT_LIMITS.keepalive_expiry
    assert client_expiry is not None
    assert 2 * client_expiry <= KEEP_ALIVE_S
    assert uvicorn.Config(_app).timeout_keep_alive < KEEP_ALIVE_S
