"""`doctor`'s Slack checks: the bot token (`auth.test`), the bot in the approvals and digest
channels (`conversations.info`, `is_member`), the approver settings and group
(`usergroups.users.list`), and the Socket Mode app token (`apps.connections.open`).

Slack answers HTTP 200 with `ok: false` and an error code; the SDK raises `SlackApiError`
with it. `missing_scope` answers name the scope (`needed`): the channel checks need
`channels:read` (and `groups:read` for a private channel), the group `usergroups:read`.
"""

from __future__ import annotations

import re
from decimal import InvalidOperation
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.cli.doctor_report import Check, fail, mask, ok, skip, warn
from services.refunds.permissions import ApproverRules

NAME = "slack"
_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{2,}$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_BAD_TOKEN = {
    "not_authed": "no token was sent",
    "invalid_auth": "Slack does not know this token",
    "token_revoked": "the token was revoked (the app was uninstalled or reinstalled)",
    "token_expired": "the token expired (token rotation is on)",
    "account_inactive": "the bot's workspace account is deactivated",
}
UNREACHABLE = (aiohttp.ClientError, TimeoutError, OSError)


def client_for(token: str, base_url: str | None, timeout: float) -> AsyncWebClient:
    client = AsyncWebClient(token=token, base_url=base_url or AsyncWebClient.BASE_URL,
                            timeout=int(max(1, timeout)))
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    return client


async def check_slack(*, token: str, app_token: str | None, base_url: str | None,
                      approvals: str, digest: str, approvers: str, group: str, group_max: str,
                      finance_leads: str,
                      call_timeout: float) -> list[Check]:
    client = client_for(token, base_url, call_timeout)
    identity = await _auth_test(client, token)
    results = [identity[0]]
    if identity[1] is None:
        return results
    bot_name = identity[1]
    if approvals:
        results.append(await _channel(client, "approvals channel", "SLACK_APPROVALS_CHANNEL",
                                      approvals, bot_name))
    else:
        results.append(skip(f"{NAME} approvals channel", "needs SLACK_APPROVALS_CHANNEL "
                            "(see above)"))
    if not digest:
        results.append(ok(f"{NAME} digest channel", "SLACK_DIGEST_CHANNEL not set: the digest "
                          "goes to the approvals channel"))
    elif digest == approvals:
        results.append(ok(f"{NAME} digest channel", f"{digest}, the approvals channel"))
    else:
        results.append(await _channel(client, "digest channel", "SLACK_DIGEST_CHANNEL", digest,
                                      bot_name))
    results.extend(_approvers(approvers, group, group_max, finance_leads))
    if group.strip():
        results.append(await _group(client, group.strip()))
    if app_token is not None:
        results.append(await _app_token(base_url, app_token, call_timeout))
    return results


async def _auth_test(client: AsyncWebClient, token: str) -> tuple[Check, str | None]:
    name = f"{NAME} auth.test"
    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        code = str(exc.response.get("error", "unknown"))
        why = _BAD_TOKEN.get(code, "Slack refused it")
        return fail(name, f"SLACK_BOT_TOKEN {mask(token)} refused ({code}: {why}): copy the "
                    "Bot User OAuth Token (xoxb-…) from the app's OAuth & Permissions page"), None
    except UNREACHABLE as exc:
        return fail(name, f"could not reach Slack ({type(exc).__name__}): check the network "
                    "(or SLACK_API_BASE)"), None
    user = str(auth.get("user") or auth.get("user_id") or "the bot")
    detail = (f"bot @{user} ({auth.get('user_id')}) in workspace {auth.get('team')} "
              f"({auth.get('team_id')})")
    if not token.startswith("xoxb-"):
        return warn(name, f"{detail}, but SLACK_BOT_TOKEN is not a bot token (xoxb-…): "
                    "the bot would act as a person"), user
    return ok(name, detail), user


async def _channel(client: AsyncWebClient, label: str, setting: str, channel: str,
                   bot: str) -> Check:
    name = f"{NAME} {label} {channel}"
    try:
        answer = await client.conversations_info(channel=channel)
    except SlackApiError as exc:
        code = str(exc.response.get("error", "unknown"))
        if code == "missing_scope":
            needed = exc.response.get("needed") or "channels:read"
            return warn(name, f"cannot see whether the bot is in it: the token lacks "
                        f"{needed} (add it under OAuth & Permissions and reinstall the app)")
        if code == "channel_not_found":
            hint = ("" if _CHANNEL_ID.match(channel) else
                    f"; {setting} must be the channel's ID (C…, at the bottom of the channel's "
                    "details), not its name")
            return fail(name, f"no such channel for the bot (a private channel it is not in "
                        f"looks the same): invite @{bot} to it{hint}")
        return fail(name, f"Slack refused conversations.info ({code})")
    except UNREACHABLE as exc:
        return fail(name, f"could not reach Slack ({type(exc).__name__})")
    info: dict[str, Any] = answer.get("channel") or {}
    shown = f"#{info.get('name')}" if info.get("name") else channel
    if info.get("is_archived"):
        return fail(name, f"{shown} is archived: unarchive it or set {setting} to another "
                    "channel")
    if not info.get("is_member"):
        return fail(name, f"the bot is not a member: invite it: /invite @{bot} in {shown}")
    return ok(name, f"{shown}, the bot is a member")


def _approvers(approvers: str, group: str, group_max: str, finance_leads: str) -> list[Check]:
    name = f"{NAME} approvers"
    try:
        rules = ApproverRules.parse(approvers=approvers, group_id=group, group_max=group_max,
                                    finance_leads=finance_leads)
    except (InvalidOperation, ValueError):
        return [fail(name, "SLACK_APPROVERS or SLACK_APPROVER_GROUP_MAX has a limit that is not "
                     "an amount: write \"U123:500.00,U456\" (U456: no limit)")]
    users = [*rules.approvers, *rules.finance_leads]
    odd = sorted(u for u in users if not _USER_ID.match(u))
    if odd:
        return [fail(name, f"not Slack user IDs: {', '.join(odd)}: use member IDs (U…, from a "
                     "profile's ⋮ menu: Copy member ID) in SLACK_APPROVERS and "
                     "SLACK_FINANCE_LEADS")]
    if not users and rules.group_id is None:
        return [fail(name, "nobody can approve a refund: set SLACK_APPROVERS, "
                     "SLACK_APPROVER_GROUP or SLACK_FINANCE_LEADS")]
    parts = [f"{len(rules.approvers)} approver(s)", f"{len(rules.finance_leads)} finance lead(s)"]
    if rules.group_id:
        parts.append(f"group {rules.group_id}")
    return [ok(name, ", ".join(parts))]


async def _group(client: AsyncWebClient, group: str) -> Check:
    name = f"{NAME} approver group {group}"
    try:
        answer = await client.usergroups_users_list(usergroup=group)
    except SlackApiError as exc:
        code = str(exc.response.get("error", "unknown"))
        if code == "no_such_subteam":
            return fail(name, "no such user group in this workspace: set SLACK_APPROVER_GROUP "
                        "to the group's ID (S…)")
        if code == "missing_scope":
            return fail(name, "the token lacks usergroups:read: add it under OAuth & "
                        "Permissions and reinstall the app")
        return fail(name, f"Slack refused usergroups.users.list ({code})")
    except UNREACHABLE as exc:
        return fail(name, f"could not reach Slack ({type(exc).__name__})")
    members = list(answer.get("users") or [])
    if not members:
        return warn(name, "the group has no members: nobody approves through it")
    return ok(name, f"{len(members)} member(s)")


async def _app_token(base_url: str | None, app_token: str,
                     call_timeout: float) -> Check:
    name = f"{NAME} app token"
    client = client_for(app_token, base_url, call_timeout)
    try:
        await client.apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        code = str(exc.response.get("error", "unknown"))
        return fail(name, f"SLACK_APP_TOKEN {mask(app_token)} refused ({code}): create an "
                    "app-level token with connections:write under Basic Information")
    except UNREACHABLE as exc:
        return fail(name, f"could not reach Slack ({type(exc).__name__})")
    return ok(name, f"{mask(app_token)} opens a Socket Mode connection")
