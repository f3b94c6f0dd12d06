"""The log syncer: a small process of its own that syncs the store's write-ahead log to disk
when the intake writer asks, so that a webhook committed on the event loop's thread is made
durable without the loop waiting for the disk and without a thread of this process waking up.

Why a process. A sync waits for the disk (a quarter of a millisecond to several under load).
Made by a thread of the bot, it is followed by that thread taking the interpreter lock back
from the busy event loop, then waking the loop: each a hand-off between threads that costs the
loop more CPU than the sync itself (measured on the intake benchmark, 16 concurrent: a sixth
of a webhook's CPU). The process shares no interpreter lock with the bot; asking it is one
`write` of a byte to a pipe, its answer one byte read by the loop when it comes. The process
and its protocol: `services.store.log_sync_child`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from services.store import log_sync_child
from services.store.log_sync_child import MAX_READ, SYNCED


class LogSyncer:
    """The bot's end: the child, its two pipes (answers read without blocking, on `loop`), and
    what was asked and not answered yet (each request's token and when it was asked, oldest
    first). `took` holds how long the last syncs took, asked to answered (seconds, the latest
    4,096), and `longest` the longest since the start: what a webhook waits for the disk."""

    def __init__(self, process: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.loop = loop
        self.requests = process.stdin.fileno()
        self.answers = process.stdout.fileno()
        os.set_blocking(self.answers, False)
        self.asked: deque[tuple[Any, float]] = deque()   # (token, when asked)
        self.took: deque[float] = deque(maxlen=4096)
        self.longest = 0.0
        self.all_answered = asyncio.Event()   # set and cleared on `loop`
        self.all_answered.set()

    @classmethod
    def start(cls, path: str, loop: asyncio.AbstractEventLoop,
              on_answers: Callable[[], None]) -> LogSyncer:
        """A child syncing `path`'s write-ahead log, `on_answers` called on `loop` when it
        answers (OSError when it cannot be started; NotImplementedError from a loop that
        cannot watch a pipe)."""
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.abspath(log_sync_child.__file__),
             os.path.abspath(f"{path}-wal")],   # the bot's working folder may change later
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, close_fds=True)
        syncer = cls(process, loop)
        try:
            loop.add_reader(syncer.answers, on_answers)
        except BaseException:
            syncer._end()
            raise
        return syncer

    def ask(self, token: Any) -> bool:
        """Ask for one sync of every commit made so far, answered for `token`; False when the
        child is gone."""
        try:
            os.write(self.requests, b"s")
        except OSError:
            return False
        self.asked.append((token, time.monotonic()))
        self.all_answered.clear()
        return True

    def answered(self) -> list[tuple[Any, bool]] | None:
        """The answers that have come, each (its token, whether the log was synced), oldest
        first; [] for none yet; None when the child is gone."""
        try:
            answers = os.read(self.answers, MAX_READ)
        except BlockingIOError:
            return []
        except OSError:
            answers = b""
        if not answers:
            return None
        now, done = time.monotonic(), []
        for answer in answers:
            token, asked_at = self.asked.popleft()
            done.append((token, answer == SYNCED))
            self.took.append(now - asked_at)
            self.longest = max(self.longest, now - asked_at)
        if not self.asked:
            self.all_answered.set()
        return done

    def drop(self) -> list[Any]:
        """Give the child up (it is gone, or no longer takes requests): killed at once; the
        tokens it had not answered, oldest first."""
        unanswered = [token for token, _ in self.asked]
        self.asked.clear()
        self.all_answered.set()
        self._unwatch()
        with contextlib.suppress(OSError):
            self.process.kill()
        self._end()
        return unanswered

    async def close(self) -> None:
        """End the child: its input closed, it stops (killed if it has not within 5 s, a disk
        that hangs)."""
        self._unwatch()
        await asyncio.to_thread(self._end)

    def _unwatch(self) -> None:   # on `loop`
        with contextlib.suppress(Exception):   # a closed loop watches nothing any more
            self.loop.remove_reader(self.answers)

    def _end(self, timeout: float = 5.0) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
