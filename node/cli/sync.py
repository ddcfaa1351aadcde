"""Commands that connect nodes: serve, sync, export, import."""

from __future__ import annotations

from typing import Annotated

import typer

from node.cli.common import HomeOpt, app, command
from node.settings import NodeSettings, load_settings

__all__: list[str] = []


@app.command()
@command
def serve(
    host: Annotated[str | None, typer.Option("--host")] = None,
    port: Annotated[int | None, typer.Option("--port")] = None,
    home: HomeOpt = None,
) -> None:
    """Run the node's HTTP API (uvicorn)."""
    import uvicorn

    from node.app import create_app

    settings: NodeSettings = load_settings(home)
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        access_log=False,
    )
