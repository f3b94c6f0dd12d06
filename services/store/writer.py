"""The intake writer: a `sqlite3` connection of its own, and a thread, that commit webhook
inserts in groups, so intake never waits behind the worker's transactions on the store's
shared connection, and a webhook is answered once its rows are on disk.

Callers hand it a unit of work (`run(work)`), a plain function of the `Batch` (its `conn`,
inside the transaction). The units queued in one turn of the event loop are written together
after that turn, in one transaction: `BEGIN IMMEDIATE`, each unit in order, `COMMIT`. Only
then, and once the log is synced to disk (`sync_log`, what `synchronous` FULL does at a
commit), are the callers' futures resolved: whatever a caller is answered, its rows are
committed and durable. `BEGIN IMMEDIATE` serialises this connection with the store's (and
with other processes), so a unit that reads the audit chain's end sees the last row either of
them wrote and the chain stays linear.

Where a batch is written. When nothing is queued ahead of it, SQLite's write lock is free at
that moment and no checkpoint is due, the batch is committed right there on the event loop's
thread (tens of microseconds of CPU a webhook, no waiting: the connection's busy timeout is
0), and only the sync of the log, which waits for the disk, goes elsewhere: to the log syncer,
a small process of its own (`services.store.log_sync`, which says why), whose answer the loop
reads when it comes; to the thread when there is no syncer (it could not be started, or it
stopped: the syncs it had not answered go to the thread too). Running the statements in the
thread instead costs far more CPU than it saves: every `sqlite3` call gives the interpreter
lock back and takes it again, and with the loop's thread busy each retake is a hand-off
between the two threads (measured: a batch's statements cost 36 µs a webhook in a thread
alone, ten times that beside a busy thread). What arrives
while a sync is under way is held back and, once it is done, written in one transaction and
synced once: it could not have been answered before the next sync anyway, so the wait costs
nothing and the commits are shared (group commit). Otherwise (the lock taken, a checkpoint
due, a batch already waiting for the thread) the whole batch goes to the thread, which waits
for the lock, commits, syncs and checkpoints the log every `CHECKPOINT_EVERY` commits
(automatic checkpoints are off on this connection, so none runs on the loop). Batches are
written and answered in the order they were handed over; the connection is used by one
thread at a time.

A unit that raises fails alone: its batch is rolled back and its other units are run again,
each in a transaction of its own. A batch that cannot be written at all (disk error, the write
lock still held by another connection after `busy_timeout`, the store closed) fails every unit
in it with `StoreUnavailable`: the store's failure, not the caller's input, so a webhook answers
503 and is delivered again. Waiting for the write lock polls in short steps (0.1 ms doubling
to 1 ms) rather than SQLite's default busy handler (1, 2, 5, 10, 15, 20, 25 … ms), so a commit
the worker finishes is followed within a millisecond. `close()` refuses new work, commits (or
fails) everything already queued and stops the thread: nothing queued is dropped.
`lock_waits`, `lock_wait_seconds` and `lock_wait_longest` count the batches that found the
lock held and how long they waited: with the worker busy, most of a webhook's late answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from services.store import sqlite_lock
from services.store.log_sync import LogSyncer
from services.store.writer_jobs import (
    STOP,
    SYNC,
    WRITE,
    Batch,
    Failed,
    Job,
    Request,
    StoreUnavailable,
    answer,
    batches,
    call,
    resolve,
    settle,
    unavailable,
    units,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BATCH = 256              # units a transaction takes at most
CHECKPOINT_EVERY = 100       # commits between the WAL checkpoints the thread makes
SYNC_NORMAL = 1              # SQLite's `synchronous` NORMAL (FULL is 2)


class IntakeWriter:
    def __init__(self, path: str, *, synchronous: int, busy_timeout: float = 5.0,
                 max_batch: int = MAX_BATCH, checkpoint_every: int = CHECKPOINT_EVERY,
                 syncer: bool = True) -> None:
        self.path = path
        self.synchronous = int(synchronous)   # what an answer waits for (FULL: the log synced)
        self.busy_timeout = busy_timeout
        self.max_batch = max_batch
        self.checkpoint_every = checkpoint_every
        self.batches = 0            # transactions committed (tests and benchmarks read it)
        self.inline_batches = 0     # ... of them on the event loop's thread
        self.syncs = 0              # syncs of the log (one covers every commit before it)
        self.syncer_syncs = 0       # ... of them by the log syncer
        self.use_syncer = syncer    # at FULL, a log syncer process (else the thread syncs)
        self.syncer: LogSyncer | None = None   # asked with a `Job` for each sync
        self.lock_waits = 0         # BEGINs that found the write lock held by another connection
        self.lock_wait_seconds = 0.0    # ... and how long they waited for it, in all
        self.lock_wait_longest = 0.0    # ... and at most
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()   # Job, STOP
        self._pending: dict[asyncio.AbstractEventLoop, list[Request]] = {}
        self._guard = threading.Lock()
        self._connection = threading.Lock()   # held by whoever runs a transaction on `_conn`
        self._in_thread = 0         # write jobs handed to the thread and not finished
        self._syncing = 0           # syncs of commits made on the loop, not yet answered
        self._held: list[Request] = []   # held back while a sync is under way
        self._commits = 0           # commits since the last checkpoint
        self._conn: sqlite3.Connection | None = None
        self._dead: BaseException | None = None    # the thread stopped on an error
        self._closed = True
        self._thread: threading.Thread | None = None

    async def start(self) -> IntakeWriter:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._closed = False
        self._thread = threading.Thread(target=self._main, args=(loop, ready),
                                        name="intake-writer", daemon=True)
        self._thread.start()
        try:
            await ready
        except BaseException:
            self._closed = True
            await asyncio.to_thread(self._thread.join)
            raise
        if self.use_syncer and self.synchronous > SYNC_NORMAL:
            self._start_syncer(loop)
        return self

    def _start_syncer(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            self.syncer = LogSyncer.start(self.path, loop, self._synced)
        except (OSError, NotImplementedError) as exc:
            log.warning("no log syncer (%s): the intake writer's thread syncs the log", exc)

    async def run(self, work: Callable[[Batch], T]) -> T:
        """Run `work` in the next batch; its result once the batch is committed (and, at
        FULL, the log synced)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._guard:
            if self._closed:
                raise StoreUnavailable("the store is closed")
            pending = self._pending.get(loop)
            if pending is None:   # the first this turn of the loop: hand them over after it
                pending = self._pending[loop] = []
                loop.call_soon(self._hand_over, loop)
            pending.append(Request(work, loop, future))
        return await future

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        """What this loop's callers queued during one turn, written at once (`_dispatch`)."""
        with self._guard:
            pending = self._pending.pop(loop, None)
            if pending:
                self._dispatch(pending)

    def _flush_held(self) -> None:
        """The batches held back while the log was being synced, written now (`_dispatch`)."""
        with self._guard:
            if self._held:
                self._dispatch([])

    def _dispatch(self, pending: list[Request]) -> None:
        """Write what was held back and then `pending` (the caller holds `_guard`): behind a
        batch the thread has yet to write, in the thread too; while the log is being synced,
        held back (the sync's end flushes them, all in one transaction: they could not be
        answered before the next sync anyway, so holding them costs no time and spares a
        transaction each); else committed here on the loop's thread (`_inline`) when it can
        be, with only the sync going to the thread; failing that, in the thread. One wake-up
        of the thread per turn of the loop at most, not per webhook."""
        requests, self._held = self._held + pending, []
        if self._dead is not None:
            error = StoreUnavailable(f"intake writer stopped: {self._dead!r}")
            resolve([(r.loop, r.future, None, error) for r in requests])
            return
        if not self._in_thread:
            if self._syncing:
                self._held = requests
                return
            if self._inline(requests):
                return
        self._in_thread += 1
        self._queue.put(Job(WRITE, requests))

    def _inline(self, pending: list[Request]) -> bool:
        """Commit `pending` on this thread (the caller holds `_guard`, so no write job can be
        queued meanwhile): only when nothing is queued ahead of it (answers and ids stay in
        arrival order), SQLite's write lock is free now (no wait on the loop), the batch is
        small enough and no checkpoint is due (a checkpoint waits for the disk). Then the
        sync of the log goes to the thread, which answers. False, with nothing written,
        whenever any of that does not hold or anything fails: the thread writes it, with its
        waits, retries and errors."""
        conn = self._conn
        if (conn is None or len(pending) > self.max_batch
                or self._commits + 1 >= self.checkpoint_every
                or not self._connection.acquire(blocking=False)):
            return False
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")   # busy_timeout 0 on this connection
            except sqlite3.Error:
                return False
            try:
                # in an empty context, as in the thread: no caller's context (a correlation id)
                # is read by the units of the others it was batched with
                results = contextvars.Context().run(units, pending, Batch(conn))
                conn.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    sqlite_lock.rollback(conn)
                if isinstance(exc, Exception):
                    return False
                raise
            self._commits += 1
        finally:
            self._connection.release()
        self.batches += 1
        self.inline_batches += 1
        self._syncing += 1
        job = Job(SYNC, pending, results)
        if not self._ask_syncer(job):
            self._queue.put(job)   # the thread syncs and answers
        return True

    # --- the log syncer's answers, on its loop ---------------------------------------------

    def _ask_syncer(self, job: Job) -> bool:
        """Hand `job`'s sync to the log syncer (the caller holds `_guard`); False when there
        is none for this loop, or it is gone (then what it was asked goes to the thread)."""
        syncer = self.syncer
        if syncer is None or asyncio.get_running_loop() is not syncer.loop:
            return False
        if syncer.ask(job):
            return True
        self._drop_syncer()
        return False

    def _synced(self) -> None:
        """The syncer's answers, each for the oldest sync asked: its callers answered (with
        StoreUnavailable when the log could not be synced); then what was held back for it
        is written. The end of its output: it is gone, its unanswered syncs go to the thread."""
        syncer = self.syncer
        answers = syncer.answered() if syncer is not None else []
        if answers is None:
            with self._guard:
                self._drop_syncer()
            return
        if not answers:
            return
        outcomes = []
        for job, synced in answers:
            error = None if synced else StoreUnavailable(
                "the log could not be synced (the disk's error)")
            outcomes += [(r.loop, r.future, result, error)
                         for r, result in zip(job.requests, job.results, strict=True)]
        self.syncs += len(answers)
        self.syncer_syncs += len(answers)
        answer(outcomes)
        with self._guard:
            self._syncing -= len(answers)
            if self._held and not self._syncing:
                self._dispatch([])

    def _drop_syncer(self) -> None:
        """The syncer is gone (the caller holds `_guard`): the syncs it was asked and did not
        answer go to the thread, in order, and so do the syncs from now on."""
        syncer, self.syncer = self.syncer, None
        if syncer is None:
            return
        log.warning("the log syncer stopped: the intake writer's thread syncs the log")
        for job in syncer.drop():
            self._queue.put(job)

    async def close(self) -> None:
        """Take no more work; commit what is queued; wait for the syncs asked of the log
        syncer; stop the thread and the syncer."""
        with self._guard:
            if self._closed:
                return
            self._closed = True
            if self._held:   # held back for a sync: still written, first
                self._in_thread += 1
                self._queue.put(Job(WRITE, self._held))
                self._held = []
            for pending in self._pending.values():   # queued before the close: still written
                self._in_thread += 1
                self._queue.put(Job(WRITE, pending))
            self._pending.clear()
        if self.syncer is not None:   # answered on the loop meanwhile (or sent to the thread)
            await self.syncer.all_answered.wait()
        self._queue.put(STOP)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        syncer, self.syncer = self.syncer, None
        if syncer is not None:
            await syncer.close()

    # --- the thread ------------------------------------------------------------------------

    def _main(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=0,
                                   check_same_thread=False)
            # FULL is kept as a sync of the log after the commit (`sync_log`), made in this
            # thread, so a commit on the loop's thread never waits for the disk
            conn.execute(f"PRAGMA synchronous={min(self.synchronous, SYNC_NORMAL)}")
            conn.execute("PRAGMA wal_autocheckpoint=0")   # checkpoints are made here
            conn.execute("PRAGMA foreign_keys=ON")
        except BaseException as exc:
            call(loop, settle, [(ready, None, exc)])
            return
        self._conn = conn
        call(loop, settle, [(ready, None, None)])
        try:
            self._serve(conn)
        except BaseException as exc:  # a bug here must not leave callers waiting forever
            log.exception("intake writer stopped")
            with self._guard:
                self._closed = True
                self._dead = exc
                held, self._held = self._held, []
            error = StoreUnavailable(f"intake writer stopped: {exc!r}")
            resolve([(r.loop, r.future, None, error) for r in held])
            self._fail_queued(error)
        finally:
            with self._connection:
                self._conn = None
                conn.close()

    def _serve(self, conn: sqlite3.Connection) -> None:
        """Take the jobs in order: the syncs of the commits made on the loop (consecutive ones
        share one sync), and the batches to write here (consecutive ones, up to `max_batch`
        units, in one transaction)."""
        held: Any = None   # a job taken from the queue that is not of the kind at hand
        while True:
            job = held if held is not None else self._queue.get()
            held = None
            if job is STOP:
                return
            jobs = [job]
            size = len(job.requests)
            while True:
                try:
                    following = self._queue.get_nowait()
                except queue.Empty:
                    break
                if (following is STOP or following.kind != job.kind
                        or (job.kind == WRITE and size + len(following.requests)
                            > self.max_batch)):
                    held = following
                    break
                jobs.append(following)
                size += len(following.requests)
            if job.kind == SYNC:
                self._sync_and_answer(jobs)
            else:
                try:
                    for batch in batches([r for j in jobs for r in j.requests],
                                          self.max_batch):
                        self._write(conn, batch)
                finally:
                    with self._guard:
                        self._in_thread -= len(jobs)

    def _sync_and_answer(self, jobs: list[Job]) -> None:
        """One sync of the log for every commit these jobs made, then their answers."""
        error: BaseException | None = None
        try:
            self._sync()
        except OSError as exc:   # committed, but not known to be on disk: sent again
            error = StoreUnavailable(f"the log could not be synced: {exc}")
        resolve([(r.loop, r.future, result, error) for j in jobs
                       for r, result in zip(j.requests, j.results, strict=True)])
        with self._guard:
            self._syncing -= len(jobs)
            flush = self._held[0].loop if self._held and not self._syncing else None
        if flush is not None:   # what arrived during the sync: written now, together
            call(flush, self._flush_held)

    def _sync(self) -> None:
        if self.synchronous > SYNC_NORMAL:
            sqlite_lock.sync_log(self.path)
            self.syncs += 1

    def _write(self, conn: sqlite3.Connection, batch: list[Request]) -> None:
        try:
            with self._connection:
                results = self._transaction(conn, batch)
            self._sync()
        except OSError as exc:   # committed, but not known to be on disk: sent again
            error = StoreUnavailable(f"the log could not be synced: {exc}")
            resolve([(r.loop, r.future, None, error) for r in batch])
        except Failed as failed:
            if len(batch) > 1:   # one bad unit must not fail the others: each on its own
                for request in batch:
                    self._write(conn, [request])
                return
            cause = failed.__cause__ or failed
            resolve([(batch[0].loop, batch[0].future, None, unavailable(cause))])
        except Exception as exc:
            resolve([(r.loop, r.future, None, unavailable(exc)) for r in batch])
        else:
            self.batches += 1
            resolve([(r.loop, r.future, result, None)
                           for r, result in zip(batch, results, strict=True)])

    def _transaction(self, conn: sqlite3.Connection, batch: list[Request]) -> list[Any]:
        self._begin(conn)
        try:
            context = Batch(conn)
            results = []
            for request in batch:
                try:
                    results.append(request.work(context))
                except Exception as exc:
                    raise Failed() from exc
            conn.execute("COMMIT")
        except BaseException:
            sqlite_lock.rollback(conn)
            raise
        self._commits += 1
        if self._commits >= self.checkpoint_every:   # here, where waiting for the disk is fine
            self._commits = 0
            with contextlib.suppress(sqlite3.Error):   # busy readers: the next one will do
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        return results

    def _begin(self, conn: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE, trying again in short steps while another connection writes."""
        sqlite_lock.begin_immediate(conn, timeout=self.busy_timeout, waited=self._waited)

    def _waited(self, seconds: float) -> None:
        self.lock_waits += 1
        self.lock_wait_seconds += seconds
        self.lock_wait_longest = max(self.lock_wait_longest, seconds)

    def _fail_queued(self, error: BaseException) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not STOP:
                resolve([(r.loop, r.future, None, error) for r in job.requests])
