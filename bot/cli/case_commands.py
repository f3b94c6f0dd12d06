"""Operator sub-commands: serve, cases, approve, deny, pause/resume, audit verify/show.

They call the same service functions as Slack does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from bot.cli.render import case_line
from bot.settings import load_settings, load_store_settings
from services.money import to_minor
from services.refunds import cases, decisions
from services.refunds.automation import set_automation
from services.refunds.history import case_history
from services.refunds.models import Status
from services.store import audit
from services.store.db import Store, open_store


def register(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="run webhooks, Slack and the workers")
    serve.set_defaults(handler=cmd_serve)

    listing = commands.add_parser("cases", help="list refund cases")
    listing.add_argument("--status", choices=[s.value for s in Status])
    listing.set_defaults(handler=_sync(cmd_cases))

    approve = commands.add_parser("approve", help="approve a pending case and refund it")
    approve.add_argument("case", type=int)
    approve.add_argument("--by", required=True, help="who approves (recorded in the audit)")
    approve.add_argument("--amount", help="adjusted amount in major units, e.g. 120.00")
    approve.add_argument("--reason", help="required with --amount")
    approve.set_defaults(handler=_sync(cmd_approve))

    deny = commands.add_parser("deny", help="deny a pending case")
    deny.add_argument("case", type=int)
    deny.add_argument("--by", required=True)
    deny.add_argument("--reason", required=True)
    deny.set_defaults(handler=_sync(cmd_deny))

    for name, paused in (("pause", True), ("resume", False)):
        toggle = commands.add_parser(name, help=f"{name} automatic approvals")
        toggle.add_argument("--by", required=True)
        toggle.add_argument("--reason", default="")
        toggle.set_defaults(handler=_sync(cmd_automation), paused=paused)

    audit_cmd = commands.add_parser("audit", help="the audit trail")
    audit_sub = audit_cmd.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check the hash chain")
    verify.set_defaults(handler=_sync(cmd_audit_verify))
    show = audit_sub.add_parser("show", help="a case's full, dispute-ready history")
    show.add_argument("case", type=int)
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_sync(cmd_audit_show))


def _sync(command: Callable[[argparse.Namespace], Awaitable[int]]) -> Callable[..., int]:
    def run(args: argparse.Namespace) -> int:
        return asyncio.run(command(args))
    return run


def cmd_serve(args: argparse.Namespace) -> int:
    from bot.app import serve

    serve(load_settings())
    return 0


async def _with_store(work: Callable[[Store], Awaitable[int]]) -> int:
    async with open_store(load_store_settings().store_target()) as store:
        return await work(store)


async def cmd_cases(args: argparse.Namespace) -> int:
    async def run(store: Store) -> int:
        status = Status(args.status) if args.status else None
        for case in await cases.list_cases(store, status):
            print(case_line(case))
        return 0
    return await _with_store(run)


async def _with_bot(work: Callable[[Any], Awaitable[int]]) -> int:
    from bot.app import Bot

    bot = await Bot.create(load_settings())
    try:
        return await work(bot)
    finally:
        await bot.close()


async def cmd_approve(args: argparse.Namespace) -> int:
    async def run(bot: Any) -> int:
        case = await cases.get(bot.svc.store, args.case)
        amount = to_minor(args.amount, case.currency) if args.amount else None
        case = await decisions.approve(bot.svc, args.case, by=args.by, amount=amount,
                                       reason=args.reason)
        print(f"approved and executed: {case_line(case)}")
        return 0 if case.status in (Status.REFUNDED, Status.PARTIALLY_REFUNDED) else 1
    return await _with_bot(run)


async def cmd_deny(args: argparse.Namespace) -> int:
    async def run(store: Store) -> int:
        case = await cases.deny(store, args.case, by=args.by, reason=args.reason)
        print(f"denied: {case_line(case)}")
        return 0
    return await _with_store(run)


async def cmd_automation(args: argparse.Namespace) -> int:
    async def run(bot: Any) -> int:
        state = await set_automation(bot.svc, paused=args.paused, reason=args.reason, by=args.by)
        print("automation paused" if state.paused else "automation resumed")
        return 0
    return await _with_bot(run)


async def cmd_audit_verify(args: argparse.Namespace) -> int:
    async def run(store: Store) -> int:
        result = await audit.verify(store)
        if result.ok:
            print(f"audit chain intact: {result.rows} rows")
            return 0
        print(f"audit chain BROKEN at row {result.bad_row}: {result.problem}")
        return 1
    return await _with_store(run)


async def cmd_audit_show(args: argparse.Namespace) -> int:
    async def run(store: Store) -> int:
        case = await cases.get(store, args.case)
        entries = await audit.history(store, case.id)
        if args.json:
            print(json.dumps([e.__dict__ for e in entries], indent=2, default=str))
        else:
            print(case_history(case, entries))
        return 0
    return await _with_store(run)
