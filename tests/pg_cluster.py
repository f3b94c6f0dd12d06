"""A throwaway PostgreSQL cluster for the tests that run on both store engines.

`TEST_DATABASE_URL` (a server the tests may create and drop databases on) is used as given.
Otherwise, when PostgreSQL's server programs are installed (`initdb` and `pg_ctl` on PATH or
under /usr/lib/postgresql/*/bin), a cluster is made in a temporary directory, listening on
127.0.0.1 at a free port with its unix socket in that directory, and removed at the end. The
server refuses to run as root: run as root, the cluster is run as an unprivileged system user
(`postgres` when the distribution's package made it, else one created here) through `runuser`.
`fsync=off` (and `synchronous_commit=off`): the tests kill bot processes, never this server,
so nothing they check rests on its own flushes (and each database is thrown away).

Each test gets a database of its own, made from a migrated template (`CREATE DATABASE ...
TEMPLATE`, a file copy: a few milliseconds).
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
from dataclasses import dataclass, field
from pathlib import Path

TEMPLATE = "refund_bot_template"
_UNPRIVILEGED = ("postgres", "refundbot-test")


class Unavailable(Exception):
    """No PostgreSQL for the tests; the message says why."""


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
    folder: Path | None = None     # None: a server given by TEST_DATABASE_URL
    bin_dir: Path | None = None
    prefix: list[str] = field(default_factory=list)
    _names: itertools.count = field(default_factory=lambda: itertools.count(1))

    def url_of(self, database: str) -> str:
        base = self.url.rsplit("/", 1)[0]
        return f"{base}/{database}"

    def fresh(self) -> str:
        """A new database made from the migrated template; its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.sql(f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE}')
        return self.url_of(name)

    def empty(self) -> str:
        """A new database with nothing in it (no migrations); its URL."""
        name = f"e{os.getpid()}_{next(self._names)}"
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url_of(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[-1]
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def sql(self, statement: str) -> None:
        """Run `statement` on the maintenance database (in a thread of its own, so that a test
        already inside an event loop may call it)."""
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, _execute(self.url, statement)).result()

    def stop(self) -> None:
        if self.folder is None or self.bin_dir is None:
            return
        subprocess.run([*self.prefix, str(self.bin_dir / "pg_ctl"), "-D",
                        str(self.folder / "data"), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)


async def _execute(url: str, statement: str) -> None:
    import asyncpg
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _migrate(url: str) -> None:
    from services.store.postgres import PgStore
    async with PgStore(url):
        pass


def start() -> Cluster:
    """The tests' PostgreSQL, with its migrated template database; Unavailable if none."""
    try:
        import asyncpg  # noqa: F401
    except ImportError as exc:
        raise Unavailable("asyncpg is not installed") from exc
    given = os.environ.get("TEST_DATABASE_URL")
    cluster = Cluster(given) if given else _start_local()
    try:
        cluster.sql(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        cluster.sql(f"CREATE DATABASE {TEMPLATE}")
        asyncio.run(_migrate(cluster.url_of(TEMPLATE)))
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _start_local() -> Cluster:
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
    options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off "
               f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
    started = subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
                              "-l", str(folder / "server.log"), "-w", "-t", "30", "start"],
                             capture_output=True, text=True)
    if started.returncode != 0:
        log = (folder / "server.log").read_text() if (folder / "server.log").exists() else ""
        shutil.rmtree(folder, ignore_errors=True)
        raise Unavailable(f"PostgreSQL did not start: {started.stderr.strip()} {log[-500:]}")
    return Cluster(f"postgresql://postgres@127.0.0.1:{port}/postgres", folder, bin_dir, prefix)
