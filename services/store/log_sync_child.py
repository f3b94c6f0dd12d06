"""The log syncer's process (`services.store.log_sync` starts it): run as a script, it imports
nothing but the standard library.

The protocol, over its standard input and output: one byte written per commit to sync; it
reads what has arrived (any number of requests), syncs the log once (one sync covers every
commit made before it) and answers one byte per request read, in order: `SYNCED`, or `FAILED`
(the error is the disk's: the commits are made but not known to be on disk). An answer is
therefore for the oldest request not yet answered. It ends at the end of its input: when the
writer closes its pipe, or when the bot's process ends in any way (the kernel closes it), so it
never outlives the bot.
"""

from __future__ import annotations

import os
import signal
import sys

SYNCED, FAILED = 0, 1
MAX_READ = 65536


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
    """Sync `log` once for whatever requests have arrived, answer each, until the end of the
    input."""
    # a Ctrl-C or a service manager's SIGTERM reaches the whole process group: the bot's to
    # handle; this process ends with the bot's pipe, after the syncs the bot still asks for
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        try:
            asked = os.read(0, MAX_READ)
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
