"""Owns `/refund simulate` and its modal: finance leads only (anyone else is refused privately,
the refusal audited). The command opens the form (`bot.slack.ui.simulate`); a pasted file is
read on the submission's ack path, so what is wrong with it (line, policy, field) shows on the
field; an uploaded one (Block Kit's `file_input`) is read after the ack through `files.info`
and its private download URL, the bot's token as bearer, and a refusal replaces the form. The
simulation runs after the ack and its answer replaces the form; a long detail follows as a CSV
in the channel the command was typed in, through the outbox, as `/refund report`'s does.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

import httpx

from bot.slack.ui.kit import esc, plain_text, section
from bot.slack.ui.simulate import (
    FILE_BLOCK,
    FILE_INPUT,
    FROM_BLOCK,
    FROM_INPUT,
    ONLY_FINANCE_LEADS,
    POLICY_BLOCK,
    POLICY_INPUT,
    SIMULATE_VIEW,
    TO_BLOCK,
    TO_INPUT,
    is_long,
    result_view,
    simulate_modal,
    working_view,
)
from handlers.slack.deps import SlackDeps
from handlers.slack.listeners import Body, refuse, user_of
from services.finance.days import day_window
from services.finance.simulate import MAX_POLICY_TEXT, read_policies, simulate
from services.quoting.policy import PolicyBook, PolicyError
from services.store import audit

log = logging.getLogger(__name__)
ACTION = "command:simulate"


def register(app: Any, deps: SlackDeps) -> None:
    app.view(SIMULATE_VIEW)(_listener(deps))


def is_finance_lead(deps: SlackDeps, user: str) -> bool:
    return user in deps.rules.finance_leads


async def command(deps: SlackDeps, body: Body, respond: Any) -> None:
    """`/refund simulate`: the form for a finance lead; anyone else is refused privately."""
    user, channel = body["user_id"], str(body.get("channel_id") or "")
    await audit.record(deps.svc.store, actor=user, action="slack.command",
                       detail={"command": "simulate", "args": []})
    if not is_finance_lead(deps, user):
        async def tell(text: str) -> None:
            await respond(text=text, response_type="ephemeral")
        await refuse(deps, user, ACTION, None, "not a finance lead", tell=tell,
                     note=ONLY_FINANCE_LEADS)
        return
    await deps.client.views_open(trigger_id=body["trigger_id"], view=simulate_modal(channel))


def _state(view: Body, block: str, action: str) -> dict[str, Any]:
    found = view.get("state", {}).get("values", {}).get(block, {}).get(action)
    return found if isinstance(found, dict) else {}


def _day(view: Body, block: str, action: str) -> date | None:
    text = _state(view, block, action).get("selected_date")
    return date.fromisoformat(text) if isinstance(text, str) and text else None


def _listener(deps: SlackDeps) -> Any:
    async def listener(ack: Any, body: Body, view: Body) -> None:
        user = user_of(body)
        if not is_finance_lead(deps, user):
            await ack(response_action="errors", errors={POLICY_BLOCK: ONLY_FINANCE_LEADS})
            deps.later("refuse:simulate", lambda: refuse(deps, user, SIMULATE_VIEW, None,
                                                         "not a finance lead"))
            return
        pasted = str(_state(view, POLICY_BLOCK, POLICY_INPUT).get("value") or "")
        files = _state(view, FILE_BLOCK, FILE_INPUT).get("files") or []
        try:
            first, last = _day(view, FROM_BLOCK, FROM_INPUT), _day(view, TO_BLOCK, TO_INPUT)
        except ValueError:
            await ack(response_action="errors", errors={FROM_BLOCK: "Not a date."})
            return
        if first is not None and last is not None and last < first:
            await ack(response_action="errors", errors={TO_BLOCK: "This is before the start."})
            return
        book: PolicyBook | None = None
        if pasted.strip():
            try:
                book = read_policies(pasted, "pasted policy file")
            except PolicyError as exc:
                await ack(response_action="errors", errors={POLICY_BLOCK: str(exc)[:2000]})
                return
        elif not files:
            await ack(response_action="errors",
                      errors={POLICY_BLOCK: "Paste a policy file or upload one."})
            return
        await ack(response_action="update", view=working_view())
        view_id = str(view.get("id") or "")
        channel = str(view.get("private_metadata") or "")
        deps.later(f"simulate:{user}", lambda: _run(deps, user, channel, view_id, book,
                                                    files, first, last))
    return listener


async def _run(deps: SlackDeps, user: str, channel: str, view_id: str, book: PolicyBook | None,
               files: list[Any], first: date | None, last: date | None) -> None:
    try:
        if book is None:
            book = read_policies(*await _uploaded(deps, files))
    except PolicyError as exc:
        await _show(deps, view_id, f"I can't use this policy file: {esc(exc, 2500)}")
        return
    start = day_window(first, deps.zone)[0] if first is not None else None
    end = day_window(last, deps.zone)[1] if last is not None else None
    result = await simulate(deps.svc, book, start=start, end=end)
    await audit.record(deps.svc.store, actor=user, action="policy.simulated", detail={
        "policy_digest": result.digest, "cases": result.cases,
        "from": str(first) if first else None, "to": str(last) if last else None})
    long = is_long(result) and bool(channel) and channel[:1] != "D"
    await deps.client.views_update(view_id=view_id, view=result_view(result, csv_follows=long))
    if long:
        await deps.outbox.add_file(
            channel, filename=f"simulation-{result.digest}.csv", content=result.csv().encode(),
            title="Policy simulation: the cases that change", comment=f"<@{user}> asked for this")


async def _uploaded(deps: SlackDeps, files: list[Any]) -> tuple[str, str]:
    """The uploaded file's text and name, read through files.info and its download URL."""
    entry = files[0] if files and isinstance(files[0], dict) else {}
    file_id = str(entry.get("id") or "")
    if not file_id:
        raise PolicyError("uploaded file: Slack sent no file")
    info = (await deps.client.files_info(file=file_id)).get("file") or {}
    name = str(info.get("name") or "uploaded file")
    url = info.get("url_private_download") or info.get("url_private")
    if not isinstance(url, str) or int(info.get("size") or 0) > 4 * MAX_POLICY_TEXT:
        raise PolicyError(f"{name}: not a file I can read (too big, or no download)")
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(url, headers={"Authorization": f"Bearer {deps.client.token}"})
    if answer.status_code != 200:
        raise PolicyError(f"{name}: Slack would not give me the file ({answer.status_code})")
    try:
        return answer.content.decode("utf-8"), name
    except UnicodeDecodeError:
        raise PolicyError(f"{name}: not a UTF-8 text file") from None


async def _show(deps: SlackDeps, view_id: str, text: str) -> None:
    await deps.client.views_update(view_id=view_id, view={
        "type": "modal", "title": plain_text("Simulate a policy", 24),
        "close": plain_text("Close", 24), "blocks": [section(text)]})
