"""Store sub-commands: `backup DEST`, an online copy of the SQLite file with its audit chain
checked (`services.store.backup`; it runs beside `serve`, nothing waits for it), and
`store copy --to URL`, the whole store copied into an empty one on either engine
(`services.store.copy`), e.g. from SQLite to PostgreSQL, with the copy's audit chain verified."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from bot.settings import load_store_settings
from services.store import audit
from services.store.backup import BackupError, copy_database
from services.store.copy import CopyError, copy_store
from services.store.db import Store, open_store


def register(commands: argparse._SubParsersAction) -> None:
    backup = commands.add_parser("backup", help="copy the database while the bot runs, and "
                                 "check the copy")
    backup.add_argument("destination", type=Path, help="the new file, e.g. "
                        "backups/refunds-2026-12-01.db")
    backup.add_argument("--force", action="store_true", help="replace an existing file")
    backup.set_defaults(handler=lambda args: asyncio.run(cmd_backup(args)))

    store = commands.add_parser("store", help="the store itself: copy it to another store")
    actions = store.add_subparsers(dest="store_command", required=True)
    copy = actions.add_parser("copy", help="copy every row (and the audit chain) into an "
                              "empty store, e.g. from SQLite to PostgreSQL")
    copy.add_argument("--to", required=True, dest="target",
                      help="the empty target: postgresql://user@host/db or sqlite:///path")
    copy.add_argument("--from", dest="source", default=None,
                      help="the source (default: DATABASE_URL, else DATABASE_PATH)")
    copy.set_defaults(handler=lambda args: asyncio.run(cmd_copy(args)))


async def cmd_copy(args: argparse.Namespace) -> int:
    source_at = args.source or load_store_settings().store_target()
    try:
        async with open_store(source_at) as source, open_store(args.target) as target:
            result = await copy_store(source, target)
    except CopyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = sum(result.tables.values())
    print(f"copied {rows} rows in {len(result.tables)} tables to the {target.dialect} store; "
          f"audit chain intact: {result.audit_rows} rows")
    return 0


async def cmd_backup(args: argparse.Namespace) -> int:
    source = load_store_settings().database_path
    try:
        copied = await asyncio.to_thread(copy_database, source, args.destination,
                                         replace=args.force)
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    async with Store(copied.path) as store:
        chain = await audit.verify(store)
    size = f"{copied.bytes / 1_048_576:,.1f} MiB"
    if not chain.ok:
        print(f"copied {source} to {copied.path} ({size}, schema {copied.schema_version}), "
              f"but its audit chain is BROKEN at row {chain.bad_row}: {chain.problem}")
        return 1
    print(f"copied {source} to {copied.path} ({size}, schema {copied.schema_version}); "
          f"audit chain intact: {chain.rows} rows")
    return 0
