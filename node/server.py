"""The HTTP server of ``guantong serve``: uvicorn, with a quieter housekeeping loop, and a
shutdown that answers waiting long polls at once."""

from __future__ import annotations

import asyncio
import socket

import uvicorn

from node.bell import close_all

__all__ = ["TICK_S", "QuietServer"]

TICK_S = 1.0


class QuietServer(uvicorn.Server):
    """uvicorn wakes ten times a second to refresh the ``Date`` header and look at its exit
    flag. An idle hub then spends about 0.2 CPU-seconds a minute on nothing: no matter on
    a hub's own machine, a third of a core for a simulated province of 118 hubs on one.
    Once a second is enough: the header has a resolution of a second, and a shutdown is
    noticed within one."""

    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 10) % 864_000  # on_tick counts tenths of a second
            await asyncio.sleep(TICK_S)
            should_exit = await self.on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's graceful shutdown waits for every request in progress, and a child's
        long poll of the task feed waits up to a minute for news: closing the process's
        bells first answers each at once (nothing new; the child asks again elsewhere or
        later), so a stop takes as long as the requests that do work."""
        close_all()
        await super().shutdown(sockets)
