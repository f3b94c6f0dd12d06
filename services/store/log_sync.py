"""The log syncer: a small process of its own that syncs the store's write-ahead log to disk
when the intake writer asks, so that a webhook committed on the event loop's thread is made
durable without the loop waiting for the disk and without a thread of this process waking up.

Why a process. A sync waits for the disk (a quarter of a millisecond to several under load).
Made by a thread of the bot, it is followed by that thread taking the interpreter lock back
from the busy event loop, then waking the loop: each a hand-off between threads that costs the
loop more CPU than the sync itself (measured on the intake benchmark, 16 concurrent: a sixth
of a webhook's CPU). This process shares no interpreter lock with the bot; asking it is one
`write` of a byte to a pipe, its answer one byte read by the loop when it comes.

The protocol, over the child's standard input and output: one byte written per commit to
sync; the child reads what has arrived (any number of requests), syncs the log once (one sync
covers every commit made before it) and answers one byte per request read, in order: 0 synced,
1 not (the error is the disk's: the commits are made but not known to be on disk). An answer
is therefore for the oldest request not yet answered. The child ends at the end of its input:
when the writer closes its pipe, or when the bot's process ends in any way (the kernel closes
it), so it never outlives the bot. This file is run by the child as a script and imports
nothing but the standard library.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

SYNCED, FAILED = 0, 1
_MAX_READ = 65536


class LogSyncer:
    """The parent's end: the child process and its two pipes (non-blocking answers)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.requests = process.stdin.fileno()
        self.answers = process.stdout.fileno()
        os.set_blocking(self.answers, False)

    @classmethod
    def start(cls, path: str) -> LogSyncer:
        """A child syncing `path`'s write-ahead log (OSError when it cannot be started)."""
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.abspath(__file__),
             os.path.abspath(f"{path}-wal")],   # the bot's working folder may change later
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, close_fds=True)
        return cls(process)

    def request(self) -> None:
        """Ask for one sync of every commit made so far (OSError when the child is gone)."""
        os.write(self.requests, b"s")

    def read(self) -> bytes:
        """The answers that have come (b"" when the child is gone, none yet: BlockingIOError)."""
        return os.read(self.answers, _MAX_READ)

    def kill(self) -> None:
        """End a child that is gone or no longer answers, at once."""
        with contextlib.suppress(OSError):
            self.process.kill()
        self.close()

    def close(self, timeout: float = 5.0) -> None:
        """End the child: its input closed, it stops; killed if it has not within `timeout`
        (a disk that hangs)."""
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _sync(log: str) -> int:
    try:
        fd = os.open(log, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        return FAILED
    return SYNCED


def serve(log: str) -> None:
    """The child: sync `log` once for whatever requests have arrived, answer each, until the
    end of the input."""
    # a Ctrl-C or a service manager's SIGTERM reaches the whole process group: the bot's to
    # handle; this process ends with the bot's pipe, after the syncs the bot still asks for
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        try:
            asked = os.read(0, _MAX_READ)
        except OSError:
            return
        if not asked:
            return
        try:
            os.write(1, bytes([_sync(log)]) * len(asked))
        except OSError:   # the bot is gone
            return


if __name__ == "__main__":
    serve(sys.argv[1])
