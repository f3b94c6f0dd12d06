"""Store sub-commands: `backup DEST`, an online copy of the SQLite file with its audit chain
checked (`services.store.backup`). It runs beside `serve`; nothing waits for it."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from bot.settings import load_store_settings
from services.store import audit
from services.store.backup import BackupError, copy_database
from services.store.db import Store


def register(commands: argparse._SubParsersAction) -> None:
    backup = commands.add_parser("backup", help="copy the database while the bot runs, and "
                                 "check the copy")
    backup.add_argument("destination", type=Path, help="the new file, e.g. "
                        "backups/refunds-2026-12-01.db")
    backup.add_argument("--force", action="store_true", help="replace an existing file")
    backup.set_defaults(handler=lambda args: asyncio.run(cmd_backup(args)))


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
