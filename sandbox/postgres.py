"""A throwaway PostgreSQL cluster on 127.0.0.1, for the tests, the benchmarks and the demo.

`start(given)` uses a server named by URL as given (one the caller may create and drop
databases on). Otherwise, when PostgreSQL's server programs are installed (`initdb` and
`pg_ctl` on PATH or under /usr/lib/postgresql/*/bin), a cluster is made in a temporary
directory, listening on 127.0.0.1 at a free port with its unix socket in that directory, and
removed by `stop()`. The server refuses to run as root: run as root, the cluster is run as an
unprivileged system user (`postgres` when the distribution's package made it, else one created
here) through `runuser`.

Durability is the caller's choice. `durable=False` (the tests): `fsync=off`,
`synchronous_commit=off`, `full_page_writes=off`; the tests kill bot processes, never this
server, so nothing they check rests on its flushes. `durable=True` (the benchmarks): the
server's defaults (`fsync=on`, `synchronous_commit=on`), so a COMMIT waits for its WAL flush as
it does in production.

`Cluster.template(name, prepare)` makes a database that `fresh()` copies (`CREATE DATABASE ...
TEMPLATE`, a file copy: a few milliseconds); `prepare(url)` fills it (the tests migrate it).
This module knows nothing of the bot: the stand-ins import none of it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

_UNPRIVILEGED = ("postgres", "refundbot-test")


class Unavailable(Exception):
    """No PostgreSQL to start; the message says why."""


def _bin_dir() -> Path | None:
    found = shutil.which("initdb"), shutil.which("pg_ctl")
    if all(found):
        return Path(found[0]).parent  # type: ignore[arg-type]
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parent.parent.name)
                        if Path(p).parent.parent.name.isdigit() else 0)
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> list[str]:
    """The command prefix that runs the server's programs as an unprivileged user."""
    if os.geteuid() != 0:
        return []
    if shutil.which("runuser") is None:
        raise Unavailable("running as root and no runuser to run PostgreSQL unprivileged")
    for name in _UNPRIVILEGED:
        try:
            pwd.getpwnam(name)
            return ["runuser", "-u", name, "--"]
        except KeyError:
            continue
    name = _UNPRIVILEGED[-1]
    made = subprocess.run(["useradd", "--system", "--no-create-home", name],
                          capture_output=True, text=True)
    if made.returncode != 0:
        raise Unavailable(f"could not create a user to run PostgreSQL: {made.stderr.strip()}")
    return ["runuser", "-u", name, "--"]


@dataclass
class Cluster:
    url: str                       # the server's maintenance database (postgres)
    folder: Path | None = None     # None: a server given by URL, not ours to stop
    bin_dir: Path | None = None
    prefix: list[str] = field(default_factory=list)
    template_name: str | None = None
    _names: itertools.count = field(default_factory=lambda: itertools.count(1))

    def url_of(self, database: str) -> str:
        base = self.url.rsplit("/", 1)[0]
        return f"{base}/{database}"

    def template(self, name: str, prepare: Callable[[str], Awaitable[None]]) -> None:
        """(Re)make the database `fresh()` copies, filled by `prepare(its url)`."""
        self.sql(f'DROP DATABASE IF EXISTS "{name}"')
        self.sql(f'CREATE DATABASE "{name}"')
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, prepare(self.url_of(name))).result()
        self.template_name = name

    def fresh(self) -> str:
        """A new database made from the template (empty without one); its URL."""
        if self.template_name is None:
            return self.empty()
        name = f"t{os.getpid()}_{next(self._names)}"
        self.sql(f'CREATE DATABASE "{name}" TEMPLATE "{self.template_name}"')
        return self.url_of(name)

    def empty(self) -> str:
        """A new database with nothing in it; its URL."""
        name = f"e{os.getpid()}_{next(self._names)}"
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url_of(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[-1]
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def sql(self, statement: str) -> None:
        """Run `statement` on the maintenance database (in a thread of its own, so that a
        caller already inside an event loop may call it)."""
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, _execute(self.url, statement)).result()

    def stop(self) -> None:
        if self.folder is None or self.bin_dir is None:
            return
        subprocess.run([*self.prefix, str(self.bin_dir / "pg_ctl"), "-D",
                        str(self.folder / "data"), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _execute(url: str, statement: str) -> None:
    import asyncpg
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def start(given: str | None = None, *, durable: bool = False) -> Cluster:
    """A PostgreSQL server: the one `given` names, else a local throwaway cluster;
    Unavailable if neither."""
    try:
        import asyncpg  # noqa: F401
    except ImportError as exc:
        raise Unavailable("asyncpg is not installed") from exc
    return Cluster(given) if given else _start_local(durable=durable)


def _start_local(*, durable: bool) -> Cluster:
    bin_dir = _bin_dir()
    if bin_dir is None:
        raise Unavailable("PostgreSQL's server programs (initdb, pg_ctl) are not installed")
    prefix = _run_as()
    folder = Path(tempfile.mkdtemp(prefix="refund-bot-pg-"))
    data = folder / "data"
    if prefix:
        user = prefix[2]
        os.chown(folder, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
    port = _free_port()
    init = subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust",
                           "-U", "postgres", "-E", "UTF8", "--no-sync", "--locale=C"],
                          capture_output=True, text=True)
    if init.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise Unavailable(f"initdb failed: {init.stderr.strip()[-500:]}")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c max_connections=200"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    started = subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
                              "-l", str(folder / "server.log"), "-w", "-t", "30", "start"],
                             capture_output=True, text=True)
    if started.returncode != 0:
        log = (folder / "server.log").read_text() if (folder / "server.log").exists() else ""
        shutil.rmtree(folder, ignore_errors=True)
        raise Unavailable(f"PostgreSQL did not start: {started.stderr.strip()} {log[-500:]}")
    return Cluster(f"postgresql://postgres@127.0.0.1:{port}/postgres", folder, bin_dir, prefix)
