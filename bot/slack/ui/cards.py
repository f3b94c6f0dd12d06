"""Owns the refund cards: approval and outcome cards, compact lines, the pause and write-back
alerts (the answers to commands are in `answers`). The modals (`forms`) and the plain button-
value helpers (`payloads`) are re-exported, so callers find every card in one import. Pure
functions from cases and typed quotes (`Quote`, amounts in minor units) to `Message`s and modal
views; no network and no Slack client. The cards say what `bot.cli.render.quote_table` says on
the terminal. Contact details never reach a message: only the customer's first name is passed
in, and free text is scrubbed of anything shaped like an email, phone or card number. Every
string from a person, a booking, Stripe or Checkfront goes through `kit.esc` in mrkdwn (fallback
`text` included) and `kit.plain` in plain_text; times are `kit.date_token`s; amounts are
`kit.money`. A card's fallback text (what notifications and screen readers say) carries the
amount, the booking, the customer's first name and why, in about 200 characters; the quote
version and the case's source stay in the audit, the card says where the quote comes from in
words. A case opened involuntary (a waiver rule matched Checkfront's cancellation) carries a
badge under the header saying which waiver and where it came from (`involuntary_badge`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from bot.slack.ui import ids
from bot.slack.ui.claims import claim_button, claim_line
from bot.slack.ui.customer import CustomerNote, customer_buttons, customer_lines
from bot.slack.ui.forms import adjust_modal, check_amount, deny_modal, validate_adjustment
from bot.slack.ui.kit import (
    MARKUP,
    MESSAGE_BLOCKS,
    Message,
    actions,
    amounts_in,
    button,
    confirm,
    context,
    date_token,
    esc,
    fallback,
    fields,
    fit,
    header,
    line_sections,
    money,
    plain,
    section,
    who,
)
from bot.slack.ui.links import NO_LINKS, CardLinks, link_buttons
from bot.slack.ui.payloads import button_value, parse_button_value, parse_metadata
from bot.slack.ui.quote import (
    card_facts,
    notice_text,
    reason_lines,
)
from bot.text import final_amount, moved, outcome_lines, outcome_title
from services.quoting.quote import Quote
from services.refunds.automation import Automation
from services.refunds.manual import CLOSABLE, ManualRefund
from services.refunds.models import Case, Status
from services.refunds.modes import EffectiveMode
from services.refunds.ownership import Claim
from services.refunds.writeback import PendingWriteback

__all__ = [
    "Message", "adjust_modal", "approval_card", "automation_alert", "button_value",
    "check_amount", "compact_lines", "deny_modal", "outcome_card", "parse_button_value",
    "parse_metadata", "validate_adjustment", "writeback_alert",
]

CARD_FALLBACK = 220  # "about 200 characters": amount, booking, customer, why
SOURCES = {"checkfront_webhook": "the cancellation in Checkfront",
           "slack": "a request in Slack", "cli": "the command line"}


# --- cards ---------------------------------------------------------------------------------

def _first(first_name: str) -> str:
    words = first_name.split()
    return words[0] if words else ""


def card_text(head: str, first_name: str, why: str | None) -> str:
    """A card's fallback text: `head` (mrkdwn, its pieces escaped: amount and booking), the
    customer's first name and the reason, cut to about 200 characters (the reason gives way)."""
    first = _first(first_name)
    text = head + (f", customer {esc(first, 40)}" if first else "")
    if why:
        room = CARD_FALLBACK - len(text) - 2
        if room > 20:
            text += f": {esc(why, room)}"
    return fallback(text)


def source_text(source: str) -> str:
    """Where a case came from, in words (mrkdwn)."""
    return SOURCES.get(source) or esc(source.replace("_", " "), 40)


def _manual(quote: Quote) -> int:
    return sum(a.amount for a in quote.allocations if a.method == "manual")


def _facts(case: Case, quote: Quote, first_name: str) -> dict[str, Any]:
    """A card's 4–6 fields: customer, product and start, notice and tier, policy (waiver)."""
    pairs = [("Customer", esc(_first(first_name), 40) or "—"), *card_facts(quote)]
    if case.waiver:
        pairs.append(("Waiver", esc(case.waiver, 40)))
    return fields(pairs)


def involuntary_badge(case: Case) -> dict[str, Any] | None:
    """"Involuntary cancellation · waiver WEATHER from Checkfront status WTHR", or None."""
    if not case.involuntary:
        return None
    return context(f":label: *Involuntary cancellation* · waiver {esc(case.waiver or '-', 40)} "
                   f"from {esc(case.waiver_source or 'Checkfront', 300)}")


def mode_line(mode: EffectiveMode | None) -> str:
    """" · decided in assisted mode (policy standard-48h)", or nothing for a case recorded
    before modes per product."""
    return f" · decided in {esc(mode.text(), 120)}" if mode is not None else ""


def _about(case: Case, mode: EffectiveMode | None = None) -> dict[str, Any]:
    requested = f" · requested by {who(case.requested_by)}" if case.requested_by else ""
    return context(f"Case #{case.id} · from {source_text(case.source)} · cancelled "
                   f"{date_token(case.cancelled_at)}{requested}{mode_line(mode)}")


def approval_buttons(case: Case, quote: Quote, links: CardLinks = NO_LINKS,
                     claim: Claim | None = None) -> list[dict[str, Any]]:
    """The buttons of a card waiting for a person, in order: the decision (Approve, Deny,
    Adjust), I'll take it (or Release, once someone holds it), Details, then the links.
    Another button for a waiting card goes in here."""
    amount = money(case.refund_amount, case.currency)
    code = plain(case.booking_code, 60)  # for the confirm dialog (plain_text)
    value = button_value(case.id, case.quote_version)
    manual = _manual(quote)
    by_hand = f" {money(manual, case.currency)} of it must then be refunded by hand." \
        if manual else ""
    approve = button("Approve", ids.APPROVE, value, style="primary", confirm_dialog=confirm(
        "Approve this refund?",
        f"Refund {amount} for booking {code} back to the payments it was paid with.{by_hand}",
        "Approve", "Cancel"))
    return [approve, button("Deny", ids.DENY, value, style="danger"),
            button("Adjust", ids.ADJUST, value), claim_button(case, claim),
            button("Details", ids.DETAILS, value),
            *link_buttons(links, case.booking_code, quote)]


def approval_card(case: Case, quote: Quote, *, customer_first_name: str,
                  automation: Automation, links: CardLinks = NO_LINKS,
                  claim: Claim | None = None, mode: EffectiveMode | None = None) -> Message:
    """Decision first: the amount and booking, why a person is needed with the risk flags, a
    few facts, the buttons. The itemised quote is behind Details."""
    amount = money(case.refund_amount, case.currency)
    blocks = [header(f"Refund needs approval · {amount} · {plain(case.booking_code, 60)}")]
    if (badge := involuntary_badge(case)) is not None:
        blocks.append(badge)
    if automation.paused:
        blocks.append(context(f":double_vertical_bar: Automation paused by {who(automation.by)}: "
                              f"{esc(automation.reason or 'no reason given', 300)}"))
    blocks += line_sections(reason_lines(case, quote), title="Why a person is needed")
    blocks += [_facts(case, quote, customer_first_name), _about(case, mode)]
    if claim is not None:
        blocks.append(claim_line(claim))
    blocks.append(actions(*approval_buttons(case, quote, links, claim)))
    why = "; ".join(amounts_in(r, case.currency) for r in _why(case, quote))
    return Message(card_text(f"Refund needs approval: {amount} for booking "
                             f"{esc(case.booking_code, 60)}", customer_first_name, why),
                   fit(blocks, 2 if claim else 1))


def _why(case: Case, quote: Quote) -> list[str]:
    """The reasons a person is needed, each once: the case's, then the quote's, then the flags."""
    said: list[str] = []
    for reason in [*(case.status_reason or "").split("; "), *quote.reasons,
                   *(f.reason for f in quote.risk_flags)]:
        reason = reason.strip().removeprefix("risk: ")
        if reason and reason not in said:
            said.append(reason)
    return said


def _outcome(case: Case, decided_by: str | None, decided_at: str | None,
             refunds: list[dict[str, Any]], decision_reason: str | None,
             by_hand: ManualRefund | None = None) -> list[str]:
    """The outcome lines under the header (`bot.text.outcome_lines`: who decided, what moved,
    each amount once), then what is left by hand and how it was done."""
    c, status = case.currency, case.status
    final, went = final_amount(case), moved(refunds)
    rows = outcome_lines(case, decided_by, decided_at, refunds, decision_reason, MARKUP)
    if status == Status.PARTIALLY_REFUNDED:
        if went:
            rows.append(f":warning: *Approved — refund {money(max(final - went, 0), c)} by "
                        "hand* (not paid through Stripe). Mark refunded once it is done.")
        else:
            rows.append(":warning: *Nothing of it was paid through Stripe:* refund it by hand, "
                        "then Mark refunded.")
    if status == Status.REFUNDED_BY_HAND and by_hand is not None:
        amount = f"{money(by_hand.amount, c)} " if went else ""
        ref = f", reference `{esc(by_hand.reference, 100)}`" if by_hand.reference else ""
        rows.append(f":raised_hand: By hand: {amount}by {esc(by_hand.method_text, 40)}{ref} · "
                    f"recorded by {who(by_hand.recorded_by)} at "
                    f"{date_token(by_hand.recorded_at)}")
    return rows


def outcome_buttons(case: Case, quote: Quote, refunds: list[dict[str, Any]],
                    links: CardLinks = NO_LINKS,
                    customer: CustomerNote | None = None) -> list[dict[str, Any]]:
    """A decided card's buttons: Retry (failed), Mark refunded (money left to refund by
    hand), Retry customer message / Customer message (one waiting or failed), Details, the
    links."""
    value = button_value(case.id, case.quote_version)
    made = []
    if case.status == Status.FAILED:
        made.append(button(
            "Retry refund", ids.RETRY, value, style="primary", confirm_dialog=confirm(
                "Retry this refund?",
                f"Try again to refund {money(final_amount(case), case.currency)} for booking "
                f"{plain(case.booking_code, 60)}. Refunds Stripe already made are not repeated.",
                "Retry", "Cancel")))
    if case.status in CLOSABLE and final_amount(case) > moved(refunds):
        made.append(button("Mark refunded", ids.MARK_REFUNDED, value))
    made += customer_buttons(case, customer)
    made.append(button("Details", ids.DETAILS, value))
    return made + link_buttons(links, case.booking_code, quote)


def outcome_card(case: Case, quote: Quote, *, customer_first_name: str,
                 decided_by: str | None, decided_at: str | None, refunds: list[dict[str, Any]],
                 automation: Automation, decision_reason: str | None = None,
                 checkfront_pending: PendingWriteback | None = None,
                 by_hand: ManualRefund | None = None, links: CardLinks = NO_LINKS,
                 customer: CustomerNote | None = None,
                 mode: EffectiveMode | None = None) -> Message:
    """The card after a decision, collapsed: the outcome with the one amount that moved, who
    decided, what is left by hand, whether the customer was told; the quote is behind Details
    and in the thread."""
    title = outcome_title(case, refunds, by_hand.amount if by_hand else 0)
    blocks = [header(f"{title} · {plain(case.booking_code, 60)}")]
    if (badge := involuntary_badge(case)) is not None:
        blocks.append(badge)
    lines = _outcome(case, decided_by, decided_at, refunds, decision_reason, by_hand)
    if checkfront_pending is not None:
        lines.append(_checkfront_pending_line(checkfront_pending))
    told, told_context = customer_lines(customer)
    blocks += line_sections(lines + told, max_sections=1)
    first = esc(_first(customer_first_name), 40)
    blocks.append(context(f"Case #{case.id} · `{esc(case.booking_code, 60)}`"
                          + (f" · customer {first}" if first else "")
                          + f" · updated {date_token(case.updated_at)}" + mode_line(mode)))
    if told_context:
        blocks.append(context(*told_context))
    blocks.append(actions(*outcome_buttons(case, quote, refunds, links, customer)))
    why = decision_reason or case.status_reason
    return Message(card_text(f"{esc(title, 120)} for booking {esc(case.booking_code, 60)}",
                             customer_first_name, amounts_in(why, case.currency) if why else None),
                   fit(blocks, 1))


# --- digests, quotes, status --------------------------------------------------------------

def _compact(case: Case, quote: Quote) -> str:
    c = case.currency
    amount = money(final_amount(case), c)
    policies = "+".join(esc(p, 40) for p in quote.policy_ids or quote.clauses)
    notices = [Decimal(ln.notice_hours) for ln in quote.lines]
    notice = notice_text(str(min(notices))) if notices else "notice unknown"
    tail = f"{esc(case.booking_code, 60)} · {policies or 'policy'} · {notice}"
    if case.status == Status.REFUNDED:
        return f"✓ Auto-refunded {amount} · {tail}"
    if case.status == Status.PARTIALLY_REFUNDED:
        return f"◐ Auto-refunded part of {amount} · {tail} · rest by hand"
    if case.status == Status.DENIED:
        return f"✗ No refund · {tail} · {esc(amounts_in(case.status_reason or 'policy', c), 200)}"
    if case.status == Status.SKIPPED:
        why = amounts_in(case.status_reason or "nothing paid", c)
        return f"– Skipped · {tail} · {esc(why, 200)}"
    return f"… {esc(case.status.value.replace('_', ' '), 40).capitalize()} {amount} · {tail}"


def compact_lines(items: list[tuple[Case, Quote]]) -> Message:
    """Automatic decisions, one line each, in one message."""
    lines = [_compact(case, quote) for case, quote in items]
    if not lines:
        return Message("No automatic refunds", [section("No automatic refunds.")])
    if len(lines) == 1:
        return Message(fallback(lines[0]), line_sections(lines, max_sections=1))
    refunds = all(c.status in (Status.REFUNDED, Status.PARTIALLY_REFUNDED) for c, _ in items)
    title = f"{len(lines)} automatic {'refunds' if refunds else 'decisions'}"
    return Message(title, line_sections(lines, title=title, max_sections=MESSAGE_BLOCKS - 1))


# --- alerts -------------------------------------------------------------------------------

def automation_alert(paused: bool, reason: str, by: str, details: list[str], *,
                     resumed_by: str | None = None, resumed_at: str | None = None) -> Message:
    """The pause alert (with Resume), or the resumed line. Given `resumed_by`, the pause alert
    as it reads once automation resumed: the same words, who resumed it and when, no button."""
    if not paused:
        line = f":arrow_forward: Automation resumed by {who(by)}" + \
            (f": {esc(reason, 500)}" if reason.strip() else "")
        return Message(fallback(f"Automation resumed: {esc(reason, 200)}"), [section(line)])
    resume = button("Resume automation", ids.RESUME, "resume", style="primary",
                    confirm_dialog=confirm(
                        "Resume automation?",
                        "Refunds within the policy limits will again be paid without a person. "
                        "Cases already waiting stay with the approvers.", "Resume", "Cancel"))
    paused_by = (f":double_vertical_bar: Automatic refunds were paused by {who(by)}: "
                 f"*{esc(reason or 'no reason given', 1000)}*")
    if resumed_by is not None:
        blocks = [header("Automation paused, then resumed"), section(paused_by),
                  context(f":arrow_forward: Resumed by {who(resumed_by)} at "
                          f"{date_token(resumed_at)}")]
        return Message(fallback(f"Automation resumed (it was paused: "
                                f"{esc(reason or 'no reason given', 150)})"), blocks)
    blocks = [header("Automation paused"),
              section(f"{paused_by}\nEvery new case waits for a person until automation "
                      "resumes."),
              *line_sections([f"• {esc(d, 400)}" for d in details], max_sections=3),
              actions(resume)]
    return Message(fallback(f"Automation paused: {esc(reason or 'no reason given', 200)}"),
                   blocks)


def _checkfront_pending_line(kept: PendingWriteback) -> str:
    return (f":warning: *Checkfront not updated yet:* the booking may still show as paid. "
            f"Attempt {kept.attempts} failed ({esc(kept.last_error, 200)}); retrying "
            f"{date_token(kept.next_at)}.")


def writeback_alert(case: Case, kept: PendingWriteback) -> Message:
    """For a refund shown only as a compact line: Checkfront was not told yet."""
    return Message(
        fallback(f"Checkfront not updated for booking {esc(case.booking_code, 60)}"),
        [section(f"Case #{case.id} · `{esc(case.booking_code, 60)}` · refunded through Stripe "
                 f"{money(final_amount(case), case.currency)}\n{_checkfront_pending_line(kept)}")])
