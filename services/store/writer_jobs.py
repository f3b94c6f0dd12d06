"""What the intake writer (`services.store.writer`) hands between the loop's thread and its
own: the units of work callers queue, the jobs its thread takes, and how their callers are
answered (on their own loop, once)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class StoreUnavailable(Exception):
    """The store could not take the write (closed, disk error, locked past the timeout)."""


@dataclass
class Batch:
    """What a unit of work sees: the writer's connection inside the batch's transaction, and
    `memo`, kept for the length of that one transaction (the audit chain's end lives there)."""

    conn: sqlite3.Connection
    memo: dict[Any, Any] = field(default_factory=dict)


@dataclass
class Request:
    work: Callable[[Batch], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


class Failed(Exception):
    """A unit of work raised (as opposed to BEGIN or COMMIT failing): split the batch."""


WRITE, SYNC = "write", "sync"


@dataclass
class Job:
    """For the thread: a batch to write (`WRITE`), or the answers to a batch committed on the
    loop's thread once the log is synced (`SYNC`, with its units' results)."""

    kind: str
    requests: list[Request]
    results: list[Any] = field(default_factory=list)


STOP = object()


def units(requests: list[Request], batch: Batch) -> list[Any]:
    return [request.work(batch) for request in requests]


def batches(requests: list[Request], size: int) -> list[list[Request]]:
    return [requests[n:n + size] for n in range(0, len(requests), size)]


def unavailable(exc: BaseException) -> BaseException:
    """A store failure as `StoreUnavailable`; a unit's own error (not SQLite's) as raised."""
    if isinstance(exc, sqlite3.Error):
        wrapped = StoreUnavailable(f"{type(exc).__name__}: {exc}")
        wrapped.__cause__ = exc
        return wrapped
    return exc


def call(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):   # a closed loop: nobody is waiting any more
        loop.call_soon_threadsafe(callback, *args)


Outcome = tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Any, BaseException | None]


def resolve(outcomes: list[Outcome]) -> None:
    """Each caller answered on its own loop (from any thread): one hop back per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
    for loop, future, result, error in outcomes:
        by_loop.setdefault(loop, []).append((future, result, error))
    for loop, settled in by_loop.items():
        call(loop, settle, settled)


def answer(outcomes: list[Outcome]) -> None:
    """`resolve`, from a loop's thread: that loop's callers answered at once."""
    here = asyncio.get_running_loop()
    settle([(future, result, error) for loop, future, result, error in outcomes
            if loop is here])
    resolve([outcome for outcome in outcomes if outcome[0] is not here])


def settle(settled: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in settled:
        if future.done():   # its caller was cancelled; the rows are committed all the same
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
