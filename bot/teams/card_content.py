"""The Teams runtime's one door to the Adaptive Cards (schema 1.5, Universal Actions).

The cards themselves belong to `bot.teams.cards` (built beside this runtime); until that
module is in this branch, this one draws the same contract, plainly: every Action.Execute
carries `{"case_id": <int>, "version": "<quote version>"}` and the verbs `approve`, `deny`
(input `reason`), `adjust` (inputs `amount`, a decimal string, and `reason`), `resume` and
`refresh`; an error for a field is shown under it. When `bot.teams.cards` lands only the
imports below change to it.
"""

from __future__ import annotations

from typing import Any

from services.refunds.models import Case, Status

SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
FINAL = (Status.REFUNDED, Status.PARTIALLY_REFUNDED, Status.DENIED, Status.SKIPPED,
         Status.FAILED, Status.REFUNDED_BY_HAND)


def _card(body: list[dict[str, Any]], actions: list[dict[str, Any]] | None = None,
          refresh: dict[str, Any] | None = None) -> dict[str, Any]:
    card: dict[str, Any] = {"type": "AdaptiveCard", "$schema": SCHEMA, "version": "1.5",
                            "body": body}
    if actions:
        card["actions"] = actions
    if refresh:
        card["refresh"] = refresh
    return card


def _text(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def _data(case: Case) -> dict[str, Any]:
    return {"case_id": case.id, "version": case.quote_version or ""}


def _execute(verb: str, title: str, case: Case, **extra: Any) -> dict[str, Any]:
    return {"type": "Action.Execute", "verb": verb, "title": title, "data": _data(case),
            **extra}


def approval_card(case: Case, *, errors: dict[str, str] | None = None,
                  note: str | None = None) -> dict[str, Any]:
    """A case waiting for a person: Approve, Deny with a reason, Adjust with amount and reason."""
    errors = errors or {}
    body = [_text(f"Refund {case.money(case.refund_amount)} for booking {case.booking_code}",
                  weight="Bolder", size="Medium"),
            _text(f"Case #{case.id} · {case.status.value.replace('_', ' ')}",
                  isSubtle=True)]
    if case.status_reason:
        body.append(_text(f"Why a person is needed: {case.status_reason}"))
    if note:
        body.append(_text(note, color="Attention"))
    if case.status != Status.PENDING_APPROVAL:
        return _card(body, refresh={"action": _execute("refresh", "Refresh", case)})
    amount_input = {"type": "Input.Text", "id": "amount", "label": "Amount",
                    "placeholder": case.money(case.refund_amount)}
    reason_input = {"type": "Input.Text", "id": "reason", "label": "Reason",
                    "isMultiline": True}
    deny_reason = {"type": "Input.Text", "id": "reason", "label": "Reason",
                   "isRequired": True, "errorMessage": "Say why the refund is denied."}
    adjust_body: list[dict[str, Any]] = [amount_input]
    if "amount" in errors:
        adjust_body.append(_text(errors["amount"], color="Attention"))
    adjust_body.append(reason_input)
    if "reason" in errors:
        adjust_body.append(_text(errors["reason"], color="Attention"))
    actions = [
        _execute("approve", "Approve", case, style="positive"),
        {"type": "Action.ShowCard", "title": "Deny",
         "card": _card([deny_reason], [_execute("deny", "Deny refund", case,
                                                style="destructive")])},
        {"type": "Action.ShowCard", "title": "Adjust",
         "card": _card(adjust_body, [_execute("adjust", "Approve adjusted", case)])},
    ]
    return _card(body, actions, refresh={"action": _execute("refresh", "Refresh", case)})


def outcome_card(case: Case, *, decided_by: str | None = None) -> dict[str, Any]:
    amount = case.approved_amount if case.approved_amount is not None else case.refund_amount
    line = f"Case #{case.id} {case.status.value.replace('_', ' ')}"
    if decided_by:
        line += f" by {decided_by}"
    return _card([_text(f"Booking {case.booking_code}: {case.money(amount)}", weight="Bolder"),
                  _text(line)])


def compact_card(case: Case) -> dict[str, Any]:
    amount = case.approved_amount if case.approved_amount is not None else case.refund_amount
    return _card([_text(f"#{case.id} {case.booking_code} {case.money(amount)} · "
                        f"{case.status.value.replace('_', ' ')} (automatic)", size="Small")])


def automation_card(paused: bool, reason: str, by: str) -> dict[str, Any]:
    if not paused:
        return _card([_text(f"Automation resumed by {by}.")])
    return _card([_text("Automation paused", weight="Bolder", color="Attention"),
                  _text(f"{reason} (by {by})")],
                 [{"type": "Action.Execute", "verb": "resume", "title": "Resume",
                   "data": {"case_id": 0, "version": ""}}])


def digest_card(text: str, chart_url: str | None = None) -> dict[str, Any]:
    body = [_text("Daily refunds digest", weight="Bolder", size="Medium"), _text(text)]
    if chart_url:
        body.append({"type": "Image", "url": chart_url, "altText": "Refunds chart"})
    return _card(body)


def answer_card(text: str) -> dict[str, Any]:
    return _card([_text(text)])


def attachment(card: dict[str, Any]) -> dict[str, Any]:
    return {"contentType": CONTENT_TYPE, "content": card}
