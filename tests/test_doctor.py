"""`python -m bot doctor` against the stand-ins: it passes on a good setup and names each
broken setting it is given (bad tokens, the bot not in a channel, an unknown approver group,
a restricted Stripe key without a permission, a broken policy file, a missing setting)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import stripe

from bot.cli.doctor import diagnose
from bot.cli.doctor_report import Check, Status, mask
from bot.cli.doctor_stripe import PERMISSIONS
from bot.settings import Settings
from sandbox.checkfront_server import CheckfrontSandbox
from sandbox.http import RunningServer, start
from sandbox.slack_server import SlackSandbox
from sandbox.stripe_server import StripeSandbox
from services.intake.routing import ROUTES

REPO = Path(__file__).resolve().parent.parent
POLICIES = REPO / "examples" / "policies.yml"
BOT_TOKEN = "xoxb-doctor-0123456789-abcdefghijkl"
APP_TOKEN = "xapp-doctor-0123456789-abcdefghijkl"
STRIPE_KEY = "sk_test_doctor0123456789abcdef"
RESTRICTED = "rk_test_doctor0123456789abcdef"
WEBHOOK_SECRET = "whsec_doctor0123456789abcdef"
APPROVALS, DIGEST, GROUP = "C0APPROVE", "C0DIGEST", "S0APPROVERS"
ALL_PERMISSIONS = [p.name for p in PERMISSIONS] + ["rak_webhook_read"]


@dataclass
class Stage:
    """The three stand-ins and the environment `doctor` reads, as an installer would set it."""

    slack: SlackSandbox
    stripe: StripeSandbox
    checkfront: CheckfrontSandbox
    env: dict[str, str]
    monkeypatch: pytest.MonkeyPatch

    def set(self, **values: str | None) -> None:
        for name, value in values.items():
            if value is None:
                self.monkeypatch.delenv(name, raising=False)
                self.env.pop(name, None)
            else:
                self.monkeypatch.setenv(name, value)
                self.env[name] = value

    async def run(self) -> list[Check]:
        checks = await diagnose()
        text = "\n".join(c.line() for c in checks)
        for secret in (BOT_TOKEN, APP_TOKEN, STRIPE_KEY, RESTRICTED, WEBHOOK_SECRET,
                       self.checkfront.api_key, self.checkfront.api_secret):
            assert secret not in text
        return checks


@pytest.fixture
async def stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stage]:
    slack = SlackSandbox(token=BOT_TOKEN)
    slack.add_user("U0MARIA", "maria")
    slack.add_channel(APPROVALS, "refund-approvals")
    slack.add_channel(DIGEST, "refund-digest")
    slack.usergroups[GROUP] = ["U0MARIA"]
    stripe_sandbox = StripeSandbox()
    checkfront = CheckfrontSandbox(api_key="cf-doctor-key-0123", api_secret="cf-doctor-secret-456")
    servers: list[RunningServer] = [await slack.serve(), await start(stripe_sandbox.app()),
                                    await start(checkfront.app())]
    stripe_sandbox.configure_webhook("https://refunds.example.test/webhooks/stripe",
                                     WEBHOOK_SECRET, events=sorted(ROUTES["stripe"]))
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    env = {
        "POLICY_FILE": str(POLICIES), "DATABASE_PATH": str(tmp_path / "refunds.db"),
        "CHECKFRONT_HOST": servers[2].url, "CHECKFRONT_API_KEY": checkfront.api_key,
        "CHECKFRONT_API_SECRET": checkfront.api_secret, "CHECKFRONT_WEBHOOK_SECRET": "cf-hook",
        "STRIPE_SECRET_KEY": STRIPE_KEY, "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": servers[1].url,
        "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": "slack-signing-doctor",
        "SLACK_API_BASE": slack.api_url, "SLACK_APPROVALS_CHANNEL": APPROVALS,
        "SLACK_DIGEST_CHANNEL": DIGEST, "SLACK_APPROVERS": "U0MARIA:500.00",
        "SLACK_APPROVER_GROUP": GROUP,
    }
    staged = Stage(slack, stripe_sandbox, checkfront, {}, monkeypatch)
    staged.set(**env)
    try:
        yield staged
    finally:
        for server in servers:
            await server.stop()


def by_status(checks: list[Check], status: Status) -> list[Check]:
    return [c for c in checks if c.status is status]


def named(checks: list[Check], prefix: str) -> Check:
    [found] = [c for c in checks if c.name.startswith(prefix)]
    return found


def only_failure(checks: list[Check]) -> Check:
    failures = by_status(checks, Status.FAIL)
    assert len(failures) == 1, [c.line() for c in failures]
    return failures[0]


async def test_passes_against_the_stand_ins(stage: Stage) -> None:
    checks = await stage.run()
    assert by_status(checks, Status.FAIL) == []
    assert by_status(checks, Status.WARN) == []
    names = [c.name for c in checks]
    for expected in ("policy file", "database", "schedules", "checkfront ping", "stripe account",
                     "stripe permissions", "stripe webhook endpoints", "slack auth.test",
                     f"slack approvals channel {APPROVALS}", f"slack digest channel {DIGEST}",
                     "slack approvers", f"slack approver group {GROUP}"):
        assert expected in names
    assert "bot @refund-bot (U0SANDBOXBOT) in workspace Sandbox Tours" in \
        named(checks, "slack auth.test").detail
    assert named(checks, "slack approvals channel").detail == \
        "#refund-approvals, the bot is a member"
    assert "secret key sk_test_…cdef, test mode" in named(checks, "stripe account").detail
    assert "Sandbox Tours" in named(checks, "checkfront ping").detail
    assert "8 event types" in named(checks, "stripe webhook endpoints").detail


async def test_a_bad_slack_token_is_named(stage: Stage) -> None:
    stage.set(SLACK_BOT_TOKEN="xoxb-doctor-revoked-token-000000")
    failure = only_failure(await stage.run())
    assert failure.name == "slack auth.test"
    assert "invalid_auth" in failure.detail and "xoxb-…0000" in failure.detail
    assert "OAuth & Permissions" in failure.detail


async def test_the_bot_not_in_a_channel_is_named(stage: Stage) -> None:
    stage.slack.add_channel(DIGEST, "refund-digest", is_member=False)
    failure = only_failure(await stage.run())
    assert failure.name == f"slack digest channel {DIGEST}"
    assert "/invite @refund-bot in #refund-digest" in failure.detail


async def test_a_channel_name_instead_of_an_id_is_named(stage: Stage) -> None:
    stage.set(SLACK_APPROVALS_CHANNEL="#refund-approvals")
    failure = only_failure(await stage.run())
    assert failure.name == "slack approvals channel #refund-approvals"
    assert "must be the channel's ID" in failure.detail


async def test_a_token_without_the_channel_scope_warns(stage: Stage) -> None:
    """Installed from an older manifest: membership cannot be seen, which is not a failure."""
    stage.slack.inject("conversations.info", status=200, error="missing_scope", times=2)
    checks = await stage.run()
    assert by_status(checks, Status.FAIL) == []
    warned = [c for c in by_status(checks, Status.WARN)]
    assert [c.name for c in warned] == [f"slack approvals channel {APPROVALS}",
                                        f"slack digest channel {DIGEST}"]
    assert "lacks channels:read" in warned[0].detail


async def test_an_unknown_approver_group_is_named(stage: Stage) -> None:
    stage.set(SLACK_APPROVER_GROUP="S0NOSUCH")
    failure = only_failure(await stage.run())
    assert failure.name == "slack approver group S0NOSUCH"
    assert "no such user group" in failure.detail and "SLACK_APPROVER_GROUP" in failure.detail


async def test_a_bad_app_token_is_named(stage: Stage) -> None:
    stage.set(SLACK_APP_TOKEN="xoxb-not-an-app-token-000000000")
    failure = only_failure(await stage.run())
    assert failure.name == "slack app token"
    assert "SLACK_APP_TOKEN" in failure.detail
    stage.set(SLACK_APP_TOKEN=APP_TOKEN)
    assert by_status(await stage.run(), Status.FAIL) == []


async def test_a_bad_stripe_key_is_named(stage: Stage) -> None:
    stage.set(STRIPE_SECRET_KEY="sk_live_doctor_wrong_key_000000")
    checks = await stage.run()
    failure = only_failure(checks)
    assert failure.name == "stripe key"
    assert "secret key sk_live_…0000, live mode: refused by Stripe (401)" in failure.detail
    assert not [c for c in checks if c.name.startswith("stripe permission")]


async def test_a_publishable_key_is_named(stage: Stage) -> None:
    stage.set(STRIPE_SECRET_KEY="pk_test_doctor0123456789abcdef")
    failure = only_failure(await stage.run())
    assert failure.name == "stripe key pk_test_…cdef"
    assert "publishable key cannot refund" in failure.detail


async def test_a_restricted_key_with_what_the_bot_needs_passes(stage: Stage) -> None:
    stage.stripe.account.restrict(RESTRICTED, ALL_PERMISSIONS)
    stage.set(STRIPE_SECRET_KEY=RESTRICTED)
    checks = await stage.run()
    assert by_status(checks, Status.FAIL) == [] and by_status(checks, Status.WARN) == []
    assert "restricted key rk_test_…cdef, test mode: accepted" in \
        named(checks, "stripe account").detail
    granted = [c.name for c in checks if c.name.startswith("stripe permission ")]
    assert granted == [f"stripe permission {p.name}" for p in PERMISSIONS]
    assert stage.stripe.refunds == []  # the probes changed nothing


async def test_a_restricted_key_without_refund_write_fails(stage: Stage) -> None:
    stage.stripe.account.restrict(
        RESTRICTED, [p for p in ALL_PERMISSIONS if p != "rak_refund_write"])
    stage.set(STRIPE_SECRET_KEY=RESTRICTED)
    failure = only_failure(await stage.run())
    assert failure.name == "stripe permission rak_refund_write"
    assert "set Refunds: Write" in failure.detail


async def test_optional_permissions_and_webhooks_only_warn(stage: Stage) -> None:
    stage.stripe.account.restrict(RESTRICTED, ["rak_refund_write", "rak_payment_intent_read",
                                               "rak_charge_read"])
    stage.set(STRIPE_SECRET_KEY=RESTRICTED)
    checks = await stage.run()
    assert by_status(checks, Status.FAIL) == []
    warned = {c.name: c.detail for c in by_status(checks, Status.WARN)}
    assert set(warned) == {"stripe permission rak_dispute_write",
                           "stripe permission rak_payment_intent_write",
                           "stripe permission rak_payment_link_write",
                           "stripe permission rak_balance_read",
                           "stripe permission rak_payout_read",
                           "stripe webhook endpoints"}
    assert "not readable with this restricted key" in warned["stripe webhook endpoints"]


async def test_missing_webhook_event_types_are_named(stage: Stage) -> None:
    stage.stripe.configure_webhook("https://refunds.example.test/webhooks/stripe",
                                   WEBHOOK_SECRET, events=["refund.created", "refund.updated"])
    checks = await stage.run()
    assert by_status(checks, Status.FAIL) == []
    [warning] = by_status(checks, Status.WARN)
    assert warning.name == "stripe webhook endpoints"
    assert "does not send charge.dispute.closed" in warning.detail
    assert "refund.failed" in warning.detail and "refund.created" not in warning.detail


async def test_a_bad_checkfront_token_pair_is_named(stage: Stage) -> None:
    stage.set(CHECKFRONT_API_SECRET="not-the-secret")
    failure = only_failure(await stage.run())
    assert failure.name == "checkfront ping"
    assert "token pair was refused (HTTP 401)" in failure.detail
    assert "CHECKFRONT_API_KEY and CHECKFRONT_API_SECRET" in failure.detail


async def test_a_broken_policy_file_is_named(stage: Stage, tmp_path: Path) -> None:
    broken = tmp_path / "policies.yml"
    broken.write_text("currency: USD\npolicies: [\n", encoding="utf-8")
    stage.set(POLICY_FILE=str(broken))
    failure = only_failure(await stage.run())
    assert failure.name == "policy file"
    assert "not valid YAML" in failure.detail


async def test_a_missing_setting_is_named_and_the_rest_still_runs(stage: Stage) -> None:
    stage.set(STRIPE_SECRET_KEY=None, STRIPE_API_BASE=None)
    checks = await stage.run()
    failure = only_failure(checks)
    assert failure.line() == "FAIL  setting STRIPE_SECRET_KEY: missing: set STRIPE_SECRET_KEY"
    assert named(checks, "stripe").status is Status.SKIP
    assert named(checks, "checkfront ping").status is Status.OK
    assert named(checks, "slack auth.test").status is Status.OK
    assert named(checks, "policy file").status is Status.OK


async def test_a_rule_across_settings_is_named(stage: Stage) -> None:
    stage.set(SLACK_APPROVALS_CHANNEL=None)
    checks = await stage.run()
    failure = only_failure(checks)
    assert failure.line() == ("FAIL  settings: Slack is on (SLACK_BOT_TOKEN) but missing "
                              "setting SLACK_APPROVALS_CHANNEL")
    assert named(checks, "slack approvals channel").status is Status.SKIP
    assert named(checks, "slack auth.test").status is Status.OK


async def test_an_invalid_setting_is_named(stage: Stage) -> None:
    stage.set(PORT="eighty", DIGEST_AT="25:99")
    checks = await stage.run()
    lines = [c.line() for c in by_status(checks, Status.FAIL)]
    assert len(lines) == 2
    assert lines[0].startswith("FAIL  setting PORT: invalid:")
    assert lines[1].startswith("FAIL  setting DIGEST_AT: not a schedule")


async def test_a_database_newer_than_the_code_is_named(stage: Stage, tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "refunds.db") as db:
        db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT, "
                   "applied_at TEXT)")
        db.execute("INSERT INTO schema_migrations VALUES (999, 'later', 'now')")
    failure = only_failure(await stage.run())
    assert failure.name == "database" and "schema 999, newer than this code" in failure.detail


async def test_a_database_that_cannot_be_created_is_named(stage: Stage, tmp_path: Path) -> None:
    stage.set(DATABASE_PATH=str(tmp_path / "var" / "db" / "refunds.db"))
    assert named(await stage.run(), "database").status is Status.OK  # folders made at start
    (tmp_path / "blocker").write_text("a file, not a folder", encoding="utf-8")
    stage.set(DATABASE_PATH=str(tmp_path / "blocker" / "refunds.db"))
    failure = only_failure(await stage.run())
    assert failure.name == "database" and "is not a writable folder" in failure.detail


def test_mask_keeps_the_kind_and_four_characters() -> None:
    assert mask("sk_live_51HxAbCdEfGhIjKlMnOp1234") == "sk_live_…1234"
    assert mask("rk_test_0123456789abcdef") == "rk_test_…cdef"
    assert mask("xoxb-123") == "xoxb-…"
    assert mask("short") == "…"


async def test_stand_in_refuses_as_stripe_does(stage: Stage) -> None:
    """A restricted key without the permission: 403 naming it; the account: never for rk_."""
    stage.stripe.account.restrict(RESTRICTED, ["rak_charge_read"])
    client = stripe.StripeClient(RESTRICTED, http_client=stripe.HTTPXClient(),
                                 base_addresses={"api": stage.env["STRIPE_API_BASE"]})
    with pytest.raises(stripe.PermissionError) as refused:
        await client.v1.refunds.create_async({"payment_intent": "pi_x", "amount": 100})
    assert refused.value.http_status == 403
    assert "Having the 'rak_refund_write' permission" in str(refused.value)
    with pytest.raises(stripe.PermissionError, match="not available for use by restricted"):
        await client.v1.accounts.retrieve_current_async()
    with pytest.raises(stripe.InvalidRequestError):  # permitted, so: no such charge
        await client.v1.charges.retrieve_async("ch_missing")
    unknown = stripe.StripeClient("rk_test_unregistered_key", http_client=stripe.HTTPXClient(),
                                  base_addresses={"api": stage.env["STRIPE_API_BASE"]})
    with pytest.raises(stripe.AuthenticationError):
        await unknown.v1.charges.retrieve_async("ch_missing")


async def test_the_command_exits_0_then_1(stage: Stage) -> None:
    """`python -m bot doctor` as an installer runs it: lines, a summary, the exit status."""

    async def doctor() -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "doctor", cwd=os.getcwd(),
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
        return process.returncode or 0, out.decode()

    code, out = await doctor()
    assert code == 0, out
    assert out.splitlines()[-1].endswith("0 failed, 0 warning(s)")
    assert "ok    slack auth.test: bot @refund-bot" in out
    stage.set(SLACK_BOT_TOKEN="xoxb-doctor-revoked-token-000000")
    code, out = await doctor()
    assert code == 1
    assert "FAIL  slack auth.test: SLACK_BOT_TOKEN xoxb-…0000 refused (invalid_auth" in out
