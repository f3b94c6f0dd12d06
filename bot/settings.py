"""Settings from the environment (and an optional `.env`), validated at start-up.

Secrets are `SecretStr`: they never print in logs, reprs or error messages.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from services.config import EventRetries, Mode, RefundConfig
from services.customers.sending import CustomerSettings
from services.finance.agreement import Rules as PromotionRules
from services.finance.journal import Accounts
from services.store.db import store_target

_S = TypeVar("_S", bound=BaseSettings)
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_SEMVER = re.compile(r"(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)")


class SettingsError(Exception):
    """A missing or invalid setting; the message names it (never its value)."""


class LogSettings(BaseSettings):
    """How the bot logs (`bot.logs`): from `LOG_LEVEL` up, as `LOG_FORMAT` (json: one JSON
    object a line; text: for a terminal). Unset, the format is json under `serve` and text
    for the other commands."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    log_level: str = "INFO"
    log_format: Literal["json", "text"] | None = None

    @field_validator("log_format", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value


class StoreSettings(LogSettings):
    """Enough to open the store (for read-only commands such as `audit verify`).
    `DATABASE_URL`: unset or `sqlite:///path`, the SQLite store (at `DATABASE_PATH` when
    unset); `postgresql://user:password@host:port/database`, the PostgreSQL store."""

    database_path: Path = Path("var/refunds.db")
    database_url: SecretStr | None = None   # may carry a password: never printed

    def store_target(self) -> str:
        """Where the store is: `DATABASE_URL`, else the SQLite file at `DATABASE_PATH`."""
        url = self.database_url.get_secret_value().strip() if self.database_url else ""
        return store_target(url or None, self.database_path)


class Settings(StoreSettings):
    policy_file: Path
    mode: Mode = Mode.ASSISTED
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 256 * 1024
    # on SIGTERM: how long calls in flight may finish; what is still queued stays stored
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    # webhook events applied at once (those of one booking always one after the other)
    worker_concurrency: int = Field(default=8, ge=1, le=256)
    # /metrics: when set, only for "Authorization: Bearer <token>"
    metrics_token: SecretStr | None = None
    # /readyz: the Slack outbox is stalled when a post is due this long with no call to Slack
    outbox_stall_seconds: float = Field(default=600, gt=0)

    checkfront_host: str  # acme.checkfront.com, or a full http(s):// base URL
    checkfront_api_key: SecretStr
    checkfront_api_secret: SecretStr
    checkfront_webhook_secret: SecretStr
    checkfront_webhook_auth: Literal["path", "basic"] = "path"
    cancelled_statuses: Annotated[list[str], NoDecode] = ["STOP", "VOID"]
    status_after_refund: str = "STOP"
    notify_customer: bool = False
    quote_max_age_hours: float = Field(default=24, gt=0)

    # a webhook event that met a Checkfront or Stripe outage: retried with doubling waits,
    # then shown to a person on a card with Retry
    event_retry_first_seconds: float = Field(default=60, gt=0)
    event_retry_max_seconds: float = Field(default=600, gt=0)

    # the customer's message when a case closes (services/customers): auto sends it, review
    # waits for Send on the card, off never; unset: auto in autonomous mode, else review
    customer_messages: Literal["auto", "review", "off"] | None = None
    smtp_url: str | None = None        # smtp://[user:password@]host[:port] or smtps://...
    mail_from: str = "refunds@example.com"
    rebooking_url: str | None = None
    customer_templates_dir: str | None = None   # default: the repository's templates/customer
    customer_mail_attempts: int = Field(default=5, ge=1)
    event_retry_give_up_minutes: float = Field(default=30, gt=0)

    stripe_secret_key: SecretStr
    stripe_webhook_secret: SecretStr
    stripe_api_base: str | None = None  # only for a local Stripe stand-in
    stripe_max_network_retries: int = 2
    stripe_timeout_seconds: float = Field(default=20.0, gt=0)
    # Stripe calls are paced client-side, shared by all cases: requests a second (unset:
    # Stripe's documented limit for the key, 25 in test mode, 100 live; 0: no pacing) and how
    # many may go at once (unset: a fifth of a second's worth)
    stripe_max_requests_per_second: float | None = Field(default=None, ge=0)
    stripe_request_burst: int | None = Field(default=None, ge=1)

    customer_hash_salt: SecretStr = SecretStr("refund-bot")
    raw_event_retention_days: float = Field(default=30, ge=0)  # processed webhook bodies

    # the daily reconciliation and digest, and the anomaly checks
    business_timezone: str = "UTC"
    scheduler_enabled: bool = True
    digest_at: str = "07:00"  # HH:MM in the business timezone, or a crontab line
    anomaly_check_at: str = "*/15 * * * *"
    scheduler_misfire_grace_seconds: int = Field(default=3600, gt=0)
    digest_chart: bool = True  # attach a PNG chart (needs the files:write scope)

    # Slack: on when SLACK_BOT_TOKEN is set; Socket Mode when SLACK_APP_TOKEN is set too
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_base: str | None = None  # only for a local Slack stand-in
    slack_approvals_channel: str = ""
    slack_digest_channel: str = ""
    slack_approvers: str = ""  # "U123:500.00,U456" (U456: no limit)
    slack_approver_group: str = ""  # a user group id whose members approve
    slack_approver_group_max: str = ""
    slack_finance_leads: str = ""  # may approve any amount
    slack_no_self_approval: bool = False
    slack_post_interval_seconds: float = Field(default=1.0, ge=0)
    # a card waiting this long gets one reminder in its thread (the approver group, else the
    # approvers), then one escalation to the finance leads; 0 turns either off
    reminder_after_hours: float = Field(default=4, ge=0)
    escalate_after_hours: float = Field(default=24, ge=0)

    # earned automation (issue 16): the weekly review and the mode changes it offers
    review_at: str = "mon 08:00"  # weekday and HH:MM in the business timezone, or a crontab
    promote_min_agreement: float = Field(default=0.98, ge=0, le=1)
    promote_min_cases: int = Field(default=50, ge=1)
    promote_window_days: int = Field(default=28, ge=1)
    demote_below_agreement: float = Field(default=0.90, ge=0, le=1)
    demote_min_cases: int = Field(default=10, ge=1)

    # the books: `python -m bot journal`, and the digest's attachment when DIGEST_JOURNAL is on
    digest_journal: bool = False  # attach the day's journal to the digest (files:write)
    journal_format: Literal["xero", "quickbooks", "csv"] = "csv"
    journal_stripe_account: str = Field(default="Stripe clearing", min_length=1)
    journal_by_hand_account: str = Field(default="Cash and bank", min_length=1)
    journal_tax_account: str = Field(default="Sales tax payable", min_length=1)
    journal_fees_account: str = Field(default="Cancellation fees", min_length=1)
    journal_no_tax_rate: str = Field(default="Tax Exempt", min_length=1)

    # several instances on one store (services/store/leases.py): this process's id (unset:
    # <hostname>-<pid>) and how long a lease it takes on a queued row, a job's slot or a Slack
    # channel lasts without being renewed (the work of an instance killed -9 is taken up by
    # another after at most this long)
    instance_id: str = ""
    lease_seconds: float = Field(default=30, gt=0)
    # Microsoft Teams (the Agents SDK at POST /api/messages): on when TEAMS_APP_ID is set
    teams_app_id: str = ""               # the Azure Bot / Entra app (client) id
    teams_app_password: SecretStr | None = None   # its client secret
    teams_tenant_id: str = ""            # the Entra tenant (empty: multi-tenant)
    teams_allow_anonymous: bool = False  # local development only: activities without a token
    teams_approvals_channel: str = ""    # Teams channel ids (19:...@thread.tacv2)
    teams_digest_channel: str = ""
    teams_approvers: str = ""            # Entra object ids "id1:500.00,id2" (id2: no limit)
    teams_finance_leads: str = ""
    teams_no_self_approval: bool = False

    @field_validator("business_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"not a timezone name: {value!r}") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.business_timezone)

    @model_validator(mode="after")
    def _slack_complete(self) -> Settings:
        if self.slack_bot_token is None:
            return self
        missing = []
        if self.slack_app_token is None and self.slack_signing_secret is None:
            missing.append("SLACK_SIGNING_SECRET")
        if not self.slack_approvals_channel:
            missing.append("SLACK_APPROVALS_CHANNEL")
        if missing:
            raise ValueError("Slack is on (SLACK_BOT_TOKEN) but missing setting "
                             + ", ".join(missing))
        return self

    @model_validator(mode="after")
    def _teams_complete(self) -> Settings:
        if not self.teams_app_id:
            return self
        missing = []
        if self.teams_app_password is None and not self.teams_allow_anonymous:
            missing.append("TEAMS_APP_PASSWORD")
        if not self.teams_approvals_channel:
            missing.append("TEAMS_APPROVALS_CHANNEL")
        if missing:
            raise ValueError("Teams is on (TEAMS_APP_ID) but missing setting "
                             + ", ".join(missing))
        return self

    @field_validator("cancelled_statuses", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def refund_config(self) -> RefundConfig:
        return RefundConfig(
            mode=self.mode,
            quote_max_age=timedelta(hours=self.quote_max_age_hours),
            cancelled_statuses=frozenset(s.strip().upper() for s in self.cancelled_statuses),
            status_after_refund=self.status_after_refund.upper(),
            notify_customer=self.notify_customer,
            customer_hash_salt=self.customer_hash_salt.get_secret_value(),
            raw_event_retention=timedelta(days=self.raw_event_retention_days),
            event_retries=EventRetries(
                first=timedelta(seconds=self.event_retry_first_seconds),
                longest=timedelta(seconds=self.event_retry_max_seconds),
                give_up_after=timedelta(minutes=self.event_retry_give_up_minutes)),
        )

    def customer_settings(self) -> CustomerSettings:
        mode = self.customer_messages or ("auto" if self.mode == Mode.AUTONOMOUS else "review")
        return CustomerSettings(mode=mode, mail_from=self.mail_from,
                                rebooking_url=self.rebooking_url or None,
                                max_attempts=self.customer_mail_attempts)

    def promotion_rules(self) -> PromotionRules:
        return PromotionRules(min_agreement=self.promote_min_agreement,
                              min_cases=self.promote_min_cases,
                              window_days=self.promote_window_days,
                              demote_below=self.demote_below_agreement,
                              demote_min_cases=self.demote_min_cases)

    def journal_accounts(self) -> Accounts:
        return Accounts(stripe=self.journal_stripe_account, by_hand=self.journal_by_hand_account,
                        tax=self.journal_tax_account, fees=self.journal_fees_account,
                        no_tax=self.journal_no_tax_rate)

    @property
    def checkfront_base_url(self) -> str:
        host = self.checkfront_host.strip().rstrip("/")
        return host if host.startswith(("http://", "https://")) else f"https://{host}"


class TeamsPackageSettings(LogSettings):
    """What `python -m bot teams-package` writes into the Teams app package: the bot's Microsoft
    Entra app (client) id (TEAMS_APP_ID, the manifest's bot id), the Teams app's own id
    (TEAMS_MANIFEST_ID; unset: the same id), the app's version and the domains its cards may
    link to (TEAMS_VALID_DOMAINS, comma-separated; the Checkfront host is added)."""

    teams_app_id: str
    teams_manifest_id: str | None = None
    teams_app_version: str = "1.0.0"
    teams_valid_domains: Annotated[list[str], NoDecode] = []
    checkfront_host: str | None = None

    @field_validator("teams_app_id", "teams_manifest_id")
    @classmethod
    def _guid(cls, value: str | None) -> str | None:
        if value is not None and not _GUID.fullmatch(value.strip()):
            raise ValueError("not a GUID (the app id Microsoft Entra shows)")
        return value.strip().lower() if value is not None else None

    @field_validator("teams_app_version")
    @classmethod
    def _semver(cls, value: str) -> str:
        if not _SEMVER.fullmatch(value):
            raise ValueError("not a version like 1.0.0")
        return value

    @field_validator("teams_valid_domains", mode="before")
    @classmethod
    def _domains(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


def load_settings(**overrides: object) -> Settings:
    """Read settings; a missing or bad one raises SettingsError naming the variable."""
    return _load(Settings, overrides)


def load_store_settings() -> StoreSettings:
    return _load(StoreSettings, {})


def load_log_settings() -> LogSettings:
    return _load(LogSettings, {})


def load_teams_package_settings(**overrides: object) -> TeamsPackageSettings:
    return _load(TeamsPackageSettings, overrides)


def _load(kind: type[_S], overrides: dict[str, object]) -> _S:
    try:
        return kind(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]).upper() if error["loc"] else "?"
            if error["type"] == "missing":
                problems.append(f"missing setting {name}")
            elif not error["loc"]:
                problems.append(str(error["msg"]).removeprefix("Value error, "))
            else:
                problems.append(f"invalid setting {name}: {error['msg']}")
        raise SettingsError("; ".join(problems)) from None
