"""`python -m bot serve` in a child process, for the tests that run the bot as it is deployed:
the environment it needs, its log, a SIGTERM stop and a SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from bot.cli.world import EXAMPLE_POLICIES, REPO

TOKEN = "cf-path-token-never-logged"
STARTS_WITHIN = 30.0   # seconds for a child to answer /healthz (a loaded CI machine)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Served:
    process: asyncio.subprocess.Process
    url: str
    database: Path
    lines: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    @property
    def log(self) -> str:
        return "".join(self.lines)

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    async def terminate(self, within: float) -> float:
        """SIGTERM; how long the process took to exit (killed, and the test failed, after
        `within` seconds)."""
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), within)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            pytest.fail(f"still running {within} s after SIGTERM")
        await self._read_to_end()
        return time.monotonic() - began

    async def kill(self) -> None:
        """SIGKILL (no clean-up of any kind), and wait for the process to be gone."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        await asyncio.wait_for(self.process.wait(), 10)
        await self._read_to_end()

    async def exited(self, within: float) -> int:
        """Wait for the process to end on its own; its exit code (the test fails after
        `within` seconds, the process killed)."""
        try:
            code = await asyncio.wait_for(self.process.wait(), within)
        except TimeoutError:
            await self.kill()
            pytest.fail(f"still running after {within} s:\n{self.log[-3000:]}")
        await self._read_to_end()
        return code

    async def _read_to_end(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reader, 5)


def bot_env(folder: Path, port: int, **settings: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO),
        "POLICY_FILE": str(EXAMPLE_POLICIES), "DATABASE_PATH": str(folder / "refunds.db"),
        "PORT": str(port), "LOG_LEVEL": "INFO", "SCHEDULER_ENABLED": "false",
        "CHECKFRONT_HOST": "http://127.0.0.1:9", "CHECKFRONT_API_KEY": "k",
        "CHECKFRONT_API_SECRET": "s", "CHECKFRONT_WEBHOOK_SECRET": TOKEN,
        "STRIPE_SECRET_KEY": "sk_test_x", "STRIPE_WEBHOOK_SECRET": "whsec_x",
        "STRIPE_API_BASE": "http://127.0.0.1:9",
        "LOG_FORMAT": "text",   # these tests read the log as text; test_logs reads the JSON
        **settings,
    }


async def serve(folder: Path, *, port: int | None = None, wait: bool = True,
                **settings: str) -> Served:
    """Start the bot; with `wait`, return once it answers /healthz."""
    port = port or free_port()
    env = bot_env(folder, port, **settings)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", cwd=folder, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    served = Served(process, f"http://127.0.0.1:{port}", Path(env["DATABASE_PATH"]))

    async def read() -> None:
        assert process.stderr is not None
        async for line in process.stderr:
            served.lines.append(line.decode("utf-8", "replace"))

    served._reader = asyncio.create_task(read())
    if wait:
        await started(served)
    return served


async def started(served: Served, within: float = STARTS_WITHIN) -> None:
    """Wait for /healthz to answer 200; the process is killed and the test fails when it
    exits first or does not answer within `within` seconds."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline and served.running:
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"{served.url}/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    await served.kill()
    raise AssertionError("the bot did not start:\n" + served.log[-5000:])
