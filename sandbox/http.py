"""Start an aiohttp application on 127.0.0.1 with a free port, and stop it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web


@dataclass
class RunningServer:
    url: str
    runner: web.AppRunner

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """Serve `app` on loopback; port 0 picks a free port. Returns its base URL (no slash)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server  # aiohttp exposes the bound sockets only here
    assert server is not None
    bound_port = server.sockets[0].getsockname()[1]
    return RunningServer(url=f"http://{host}:{bound_port}", runner=runner)


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[RunningServer]:
    running = await start(app)
    try:
        yield running
    finally:
        await running.stop()
