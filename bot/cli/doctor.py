"""`python -m bot doctor`: every setting checked and each service reached with the real
credentials, one line per check with what to fix; exit status 1 when any check fails.

The settings come from the environment and `.env`, as for `serve`. A missing or invalid one
is a `FAIL` line naming its environment variable; the checks that do not depend on it still
run (`skip` for those that do). Then, side by side: the policy file loads; the database is
readable and its schema not newer than this code; the schedules parse; Checkfront answers
`ping` with the token pair; Stripe accepts the key (`bot.cli.doctor_stripe`); Slack accepts
the bot token and the bot is in its channels (`bot.cli.doctor_slack`).

Nothing is changed anywhere: no refund, no post, no migration. Secrets are never printed
(`bot.cli.doctor_report.mask`). `ok` and `warn` lines do not fail the run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
from collections.abc import Awaitable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import SecretStr, TypeAdapter, ValidationError
from pydantic_settings import DotEnvSettingsSource, EnvSettingsSource

from bot.cli.doctor_report import Check, Status, fail, ok, skip, warn
from bot.cli.doctor_slack import check_slack
from bot.cli.doctor_stripe import check_stripe
from bot.schedules import parse_schedule
from bot.settings import Settings
from services.clients.checkfront import CheckfrontClient
from services.clients.checkfront_errors import CheckfrontAuthError, CheckfrontError
from services.quoting.policy import PolicyError, load_policies

TIMEOUT = 10.0  # seconds for each call to a service


def register(commands: argparse._SubParsersAction) -> None:
    doctor = commands.add_parser(
        "doctor", help="check the settings and reach Slack, Stripe and Checkfront with them")
    doctor.set_defaults(handler=lambda args: asyncio.run(cmd_doctor(args)))


async def cmd_doctor(args: argparse.Namespace) -> int:
    checks = await diagnose()
    for check in checks:
        print(check.line(), flush=True)
    failed = sum(c.status is Status.FAIL for c in checks)
    warned = sum(c.status is Status.WARN for c in checks)
    print(f"{len(checks)} checks: {failed} failed, {warned} warning(s)")
    return 1 if failed else 0


async def diagnose(**overrides: Any) -> list[Check]:
    """All checks, in a stable order. `overrides` stand for settings (as `load_settings`)."""
    settings, problems = read_settings(overrides)
    checks = list(problems)
    groups: list[Awaitable[list[Check]]] = [
        _local(settings), _checkfront(settings), _stripe(settings), _slack(settings),
        _teams(settings)]
    for found in await asyncio.gather(*groups):
        checks.extend(found)
    return checks


# ---- settings ----------------------------------------------------------------------------


class Partial:
    """The settings that validated, by field name; the others are absent."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = dict(values)

    def has(self, *names: str) -> bool:
        return all(n in self.values for n in names)

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def secret(self, name: str) -> str | None:
        value = self.values.get(name)
        return value.get_secret_value() if isinstance(value, SecretStr) else value

    def missing(self, *names: str) -> str:
        return ", ".join(n.upper() for n in names if n not in self.values)


def read_settings(overrides: Mapping[str, Any]) -> tuple[Partial, list[Check]]:
    """The settings, and a FAIL line for each one missing or invalid (naming its variable)."""
    try:
        full = Settings(**overrides)
    except ValidationError as exc:
        problems, bad = [], set()
        for error in exc.errors():
            if not error["loc"]:  # a rule across settings; its message names them
                message = str(error["msg"]).removeprefix("Value error, ")
                problems.append(fail("settings", message))
                continue
            name = str(error["loc"][0])
            bad.add(name)
            variable = name.upper()
            if error["type"] == "missing":
                problems.append(fail(f"setting {variable}", f"missing: set {variable}"))
            else:
                reason = str(error["msg"]).removeprefix("Value error, ")
                problems.append(fail(f"setting {variable}", f"invalid: {reason}"))
        return Partial(_field_by_field(overrides, bad)), problems
    return Partial({name: getattr(full, name) for name in Settings.model_fields}), []


def _field_by_field(overrides: Mapping[str, Any], bad: set[str]) -> dict[str, Any]:
    """Each setting validated on its own (the sources `Settings` reads, in its order)."""
    raw: dict[str, Any] = {}
    env_file = overrides.get("_env_file", Settings.model_config.get("env_file"))
    if env_file is not None:
        raw.update(DotEnvSettingsSource(Settings, env_file=env_file)())
    raw.update(EnvSettingsSource(Settings)())
    raw.update({k: v for k, v in overrides.items() if not k.startswith("_")})
    values: dict[str, Any] = {}
    for name, info in Settings.model_fields.items():
        if name in bad:
            continue
        if name not in raw:
            if not info.is_required():
                values[name] = info.get_default(call_default_factory=True)
            continue
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(info.rebuild_annotation())
            values[name] = adapter.validate_python(raw[name])
        except ValidationError:
            continue
    return values


def _needs(s: Partial, name: str, *fields: str) -> list[Check] | None:
    if s.has(*fields):
        return None
    return [skip(name, f"needs {s.missing(*fields)} (see above)")]


# ---- the policy file, the database, the schedules -----------------------------------------


async def _local(s: Partial) -> list[Check]:
    return [*_policy(s), *(await asyncio.to_thread(_database, s)), *_schedules(s)]


def _policy(s: Partial) -> list[Check]:
    name = "policy file"
    if (skipped := _needs(s, name, "policy_file")) is not None:
        return skipped
    try:
        book = load_policies(s.get("policy_file"))
    except PolicyError as exc:
        return [fail(name, f"{exc}: fix the file or POLICY_FILE")]
    return [ok(name, f"{book.source}: {len(book.policies)} policies in {book.currency}, "
               f"digest {book.digest}")]


def _database(s: Partial) -> list[Check]:
    name = "database"
    if (skipped := _needs(s, name, "database_path")) is not None:
        return skipped
    path = Path(s.get("database_path"))
    latest = max((int(entry.name.split("_", 1)[0])
                  for entry in (resources.files("services.store") / "migrations").iterdir()
                  if entry.name.endswith(".sql")), default=0)
    if not path.exists():
        existing = next(p for p in path.absolute().parents if p.exists())  # the store makes
        if existing.is_dir() and os.access(existing, os.W_OK):          # the folders below
            return [ok(name, f"{path} does not exist yet: it is created at the first start")]
        return [fail(name, f"{path} cannot be created: {existing} is not a writable folder: "
                     "fix its permissions or set DATABASE_PATH")]
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            row = db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return [warn(name, f"{path} has no migrations table: it is set up at the next "
                         "start")]
        return [fail(name, f"{path} is not readable ({exc}): check DATABASE_PATH")]
    except sqlite3.DatabaseError:
        return [fail(name, f"{path} is not a SQLite database: check DATABASE_PATH")]
    version = int(row[0] or 0) if row else 0
    if version > latest:
        return [fail(name, f"{path} has schema {version}, newer than this code knows "
                     f"({latest}): run the version of the bot that wrote it")]
    if version < latest:
        return [ok(name, f"{path}: schema {version}; migrations up to {latest} run at the "
                   "next start")]
    return [ok(name, f"{path}: schema {version}, current")]


def _schedules(s: Partial) -> list[Check]:
    name = "schedules"
    if (skipped := _needs(s, name, "business_timezone", "digest_at",
                          "anomaly_check_at")) is not None:
        return skipped
    zone = s.get("business_timezone")
    problems = []
    for field in ("digest_at", "anomaly_check_at"):
        try:
            parse_schedule(s.get(field), ZoneInfo(zone))
        except ValueError as exc:
            problems.append(fail(f"setting {field.upper()}", str(exc)))
    if problems:
        return problems
    state = "" if s.get("scheduler_enabled", True) else " (SCHEDULER_ENABLED is off)"
    return [ok(name, f"digest at {s.get('digest_at')}, anomaly checks {s.get('anomaly_check_at')}"
               f", in {zone}{state}")]


# ---- Checkfront ----------------------------------------------------------------------------


async def _checkfront(s: Partial) -> list[Check]:
    name = "checkfront ping"
    fields = ("checkfront_host", "checkfront_api_key", "checkfront_api_secret")
    if (skipped := _needs(s, name, *fields)) is not None:
        return skipped
    host = str(s.get("checkfront_host")).strip().rstrip("/")
    base = host if host.startswith(("http://", "https://")) else f"https://{host}"
    try:
        client = CheckfrontClient(base, s.secret("checkfront_api_key") or "",
                                  s.secret("checkfront_api_secret") or "", timeout=TIMEOUT,
                                  retries=0)
    except ValueError as exc:
        return [fail("setting CHECKFRONT_HOST", str(exc))]
    async with client:
        try:
            body = await client.ping()
        except CheckfrontAuthError as exc:
            return [fail(name, f"{base}: the token pair was refused (HTTP {exc.status}): set "
                         "CHECKFRONT_API_KEY and CHECKFRONT_API_SECRET from Manage > Developer "
                         "> your application (token authentication)")]
        except CheckfrontError as exc:
            return [fail(name, f"{base}: {exc} Check CHECKFRONT_HOST and the network")]
        moved = client.base_url != base
    account = f"{body.get('name') or 'unnamed account'} ({body.get('host_id') or base})"
    currency = str((body.get("locale") or {}).get("currency") or "").upper()
    results = [ok(name, f"{account}, API {body.get('version')}, currency {currency or '?'}")]
    if moved:
        results.append(warn("checkfront host", f"moved permanently to {client.base_url}: "
                            f"set CHECKFRONT_HOST={client.base_url}"))
    policy_currency = _policy_currency(s)
    if currency and policy_currency and currency != policy_currency:
        results.append(warn("checkfront currency", f"the account is in {currency}, the policy "
                            f"file in {policy_currency}: check the policy file's currency"))
    return results


def _policy_currency(s: Partial) -> str | None:
    try:
        return load_policies(s.get("policy_file")).currency if s.has("policy_file") else None
    except PolicyError:
        return None


# ---- Stripe and Slack ----------------------------------------------------------------------


async def _stripe(s: Partial) -> list[Check]:
    if (skipped := _needs(s, "stripe", "stripe_secret_key")) is not None:
        return skipped
    return await check_stripe(s.secret("stripe_secret_key") or "",
                              api_base=s.get("stripe_api_base"),
                              webhook_secret=s.secret("stripe_webhook_secret"),
                              call_timeout=min(TIMEOUT,
                                               s.get("stripe_timeout_seconds", TIMEOUT)))


async def _slack(s: Partial) -> list[Check]:
    token = s.secret("slack_bot_token")
    if token is None:
        if "slack_bot_token" not in s.values:
            return [skip("slack", "needs SLACK_BOT_TOKEN (see above)")]
        return [ok("slack", "off: SLACK_BOT_TOKEN is not set")]
    base = s.get("slack_api_base")
    return await check_slack(
        token=token, app_token=s.secret("slack_app_token"),
        base_url=base.rstrip("/") + "/" if base else None,
        approvals=s.get("slack_approvals_channel", ""), digest=s.get("slack_digest_channel", ""),
        approvers=s.get("slack_approvers", ""), group=s.get("slack_approver_group", ""),
        group_max=s.get("slack_approver_group_max", ""),
        finance_leads=s.get("slack_finance_leads", ""), call_timeout=TIMEOUT)


async def _teams(s: Partial) -> list[Check]:
    """Teams' settings: off, on, and loudly when activities without a token are let in."""
    app_id = s.get("teams_app_id", "")
    if not app_id:
        return [ok("teams", "off: TEAMS_APP_ID is not set")]
    checks = [ok("teams", f"on: app {app_id}, approvals in "
                          f"{s.get('teams_approvals_channel', '') or '(unset)'}")]
    if s.get("teams_allow_anonymous", False):
        checks.append(warn("teams anonymous", "TEAMS_ALLOW_ANONYMOUS is on: activities "
                           "without a Bot Connector token are accepted (local development "
                           "only; never in production)"))
    return checks
