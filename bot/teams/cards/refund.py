"""The refund cards on Teams: the approval card (Approve, Deny with a reason, Adjust with an
amount and a reason, links to Checkfront and Stripe), the view a refused clicker gets, the
outcome card, and one card of compact lines for automatic refunds.

Pure functions from cases and typed quotes (amounts in minor units) to Adaptive Card content
dicts, the same inputs as the Slack renderers (`bot.slack.ui.cards`). The contract with the
runtime that answers the `adaptiveCard/action` invokes:

- `Action.Execute` verbs `approve`, `deny`, `adjust`, `refresh` carry
  `data = {"case_id": <int>, "version": "<quote version>"}`; `resume` (the pause alert) none.
- Deny's input is `reason`; Adjust's are `amount` (a decimal string in the case's currency)
  and `adjust_reason` (input ids are unique on a card, and both forms sit on the same card).
  `decision_inputs` reads them back from an invoke's data.
- An Adjust or Deny the runtime refused (a bad amount, no reason) is drawn again with
  `approval_card(..., form="adjust"|"deny", values=…, errors=…)`: the form open in the card's
  body with each error under its field.

Contact details never reach a card: only the customer's first name is passed in, and every
free text goes through `text.md`.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from bot.card_links import NO_LINKS, CardLinks, card_urls
from bot.teams.cards import kit
from bot.teams.cards.text import MARKUP, amounts, first_name, md, money, utc, when, who
from bot.text import final_amount, moved, outcome_title
from bot.text import outcome_lines as shared_outcome_lines
from services.money import exponent, format_minor
from services.quoting.quote import Quote
from services.refunds.automation import Automation
from services.refunds.models import Case, Status

APPROVE, DENY, ADJUST, RESUME, REFRESH = "approve", "deny", "adjust", "resume", "refresh"
VERBS = frozenset({APPROVE, DENY, ADJUST, RESUME, REFRESH})
REASON, AMOUNT, ADJUST_REASON = "reason", "amount", "adjust_reason"
REASON_MAX = 1000
URL_MAX = 2048          # what the Teams clients open from an Action.OpenUrl
SOURCES = {"checkfront_webhook": "the cancellation in Checkfront",
           "slack": "a request in Slack", "teams": "a request in Teams",
           "cli": "the command line"}
RUNNING = Automation(paused=False)
LINK_TITLES = {"checkfront": "Open in Checkfront", "stripe": "View in Stripe"}


def case_data(case: Case) -> dict[str, Any]:
    """What every case action carries: the case and the quote version the card shows."""
    return {"case_id": case.id, "version": case.quote_version or ""}


def decision_inputs(verb: str, data: Mapping[str, Any]) -> tuple[str, str]:
    """(amount text, reason) a Deny or Adjust sent, from an invoke's `action.data` ("" when
    missing; the amount is "" for Deny)."""
    if verb == ADJUST:
        return str(data.get(AMOUNT) or "").strip(), str(data.get(ADJUST_REASON) or "").strip()
    return "", str(data.get(REASON) or "").strip()


def _notice(hours: str) -> str:
    try:
        value = Decimal(hours)
    except (InvalidOperation, TypeError):
        return "notice unknown"
    return "after the start" if value <= 0 else f"{int(value)}h notice"


def _why(case: Case, quote: Quote) -> list[str]:
    """The reasons a person is needed, each once: the case's, the quote's, then the flags."""
    said: list[str] = []
    for reason in [*(case.status_reason or "").split("; "), *quote.reasons,
                   *(f.reason for f in quote.risk_flags)]:
        reason = reason.strip().removeprefix("risk: ")
        if reason and reason not in said:
            said.append(reason)
    return said


def _facts(case: Case, quote: Quote, customer_first_name: str) -> list[tuple[str, str]]:
    """Customer, product and start, notice and tier, policy, waiver: four to six facts."""
    pairs = [("Customer", first_name(customer_first_name) or "—")]
    if quote.lines:
        first = min(quote.lines, key=lambda ln: ln.start)
        others = len({ln.name for ln in quote.lines} - {first.name})
        product = md(first.name, 80) + (f" +{others} more" if others else "")
        pairs.append(("Product", f"{product}, starts {utc(first.start)}"))
        nearest = min(quote.lines, key=lambda ln: Decimal(ln.notice_hours))
        pairs.append(("Notice", f"{_notice(nearest.notice_hours)} · {md(nearest.reason, 80)}"))
    policies = ", ".join(md(p, 40) for p in (quote.policy_ids or tuple(quote.clauses)))
    pairs.append(("Policy", policies or "—"))
    if case.waiver:
        pairs.append(("Waiver", md(case.waiver, 40)))
    pairs.append(("Case", f"#{case.id} · cancelled {utc(case.cancelled_at)}"))
    return pairs


def _badge(case: Case) -> list[dict[str, Any]]:
    if not case.involuntary:
        return []
    return [kit.text(f"🏷️ **Involuntary cancellation** · waiver {md(case.waiver or '-', 40)} "
                     f"from {md(case.waiver_source or 'Checkfront', 300)}", subtle=True,
                     spacing="Small")]


def _source(case: Case) -> str:
    said = SOURCES.get(case.source) or md(case.source.replace("_", " "), 40)
    by = f" · requested by {who(case.requested_by)}" if case.requested_by else ""
    return f"From {said}{by}"


def link_actions(links: CardLinks, booking_code: str, quote: Quote) -> list[dict[str, Any]]:
    """Open in Checkfront and View in Stripe, those that can be made."""
    return [kit.open_url(LINK_TITLES[which], url)
            for which, url in card_urls(links, booking_code, quote, URL_MAX)]


def _decimals(currency: str) -> str:
    places = exponent(currency)
    return "no decimals" if places == 0 else f"up to {places} decimals"


def amount_hint(currency: str) -> str:
    """The Adjust field's placeholder: an example in the currency's exponent and how many
    decimals it takes ("e.g. 120.50 (USD, up to 2 decimals)")."""
    places = exponent(currency)
    example = "12000" if places == 0 else "120." + "5" + "0" * (places - 1)
    return f"e.g. {example} ({currency}, {_decimals(currency)})"


def _amount_regex(currency: str) -> str:
    places = exponent(currency)
    if places == 0:
        return r"^\s*\d[\d,]*\s*$"
    return rf"^\s*(\d[\d,]*(\.\d{{0,{places}}})?|\.\d{{1,{places}}})\s*$"


def _error(message: str | None) -> list[dict[str, Any]]:
    return [kit.text(f"⚠️ {md(message, 300)}", color="Attention", spacing="Small")] \
        if message else []


def _deny_form(case: Case, values: Mapping[str, str],
               errors: Mapping[str, str]) -> list[dict[str, Any]]:
    return [kit.text_input(REASON, "Reason", placeholder="Why is this refund denied?",
                           value=values.get(REASON), multiline=True, max_length=REASON_MAX,
                           error="Say why the refund is denied."),
            *_error(errors.get(REASON))]


def _adjust_form(case: Case, quote: Quote, values: Mapping[str, str],
                 errors: Mapping[str, str]) -> list[dict[str, Any]]:
    c = case.currency
    return [kit.text(f"The policy quotes **{money(quote.total_refund, c)}**; at most "
                     f"{money(quote.net_paid, c)} (paid, less earlier refunds).", spacing="Small"),
            kit.text_input(AMOUNT, f"Refund amount ({c})", placeholder=amount_hint(c),
                           value=values.get(AMOUNT, format_minor(quote.total_refund, c)),
                           regex=_amount_regex(c),
                           error=f"Enter an amount in {c}, {_decimals(c)}."),
            *_error(errors.get(AMOUNT)),
            kit.text_input(ADJUST_REASON, "Reason for the change", placeholder="Why this amount?",
                           value=values.get(ADJUST_REASON), multiline=True,
                           max_length=REASON_MAX, error="Say why the amount changes."),
            *_error(errors.get(ADJUST_REASON))]


def _fallback(head: str, customer_first_name: str, why: str | None) -> str:
    first = first_name(customer_first_name)
    said = head + (f", customer {first}" if first else "")
    if why:
        said += f": {why}"
    return said


def approval_card(case: Case, quote: Quote, *, customer_first_name: str,
                  automation: Automation = RUNNING,
                  links: CardLinks = NO_LINKS, approver_ids: list[str] | None = None,
                  form: str | None = None, values: Mapping[str, str] | None = None,
                  errors: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Decision first: the amount and booking, why a person is needed, the key facts, then
    Approve, Deny (a reason), Adjust (an amount and a reason) and the links. `approver_ids`
    (Entra object ids): Teams refreshes the card for them when they view it. `form` ("deny" or
    "adjust") draws that form open in the body with `values` and `errors` (input id → text),
    for a submission the runtime refused."""
    values, errors = values or {}, errors or {}
    amount = money(case.refund_amount, case.currency)
    code = md(case.booking_code, 60)
    body = _card_head(case, quote, automation, customer_first_name,
                      f"Refund needs approval · {amount} · {code}")
    data = case_data(case)
    approve = kit.execute("Approve", APPROVE, data, style="positive", inputs="none")
    links_ = link_actions(links, case.booking_code, quote)
    if form == DENY:
        body += [kit.text("**Deny this refund**", spacing="Medium"),
                 *_deny_form(case, values, errors)]
        actions = [kit.execute("Deny refund", DENY, data, style="destructive"),
                   kit.execute("Back", REFRESH, data, inputs="none"), *links_]
    elif form == ADJUST:
        body += [kit.text("**Adjust the amount**", spacing="Medium"),
                 *_adjust_form(case, quote, values, errors)]
        actions = [kit.execute("Approve amount", ADJUST, data, style="positive"),
                   kit.execute("Back", REFRESH, data, inputs="none"), *links_]
    else:
        actions = [approve,
                   kit.show_card("Deny", _deny_form(case, values, errors),
                                 [kit.execute("Deny refund", DENY, data, style="destructive")]),
                   kit.show_card("Adjust", _adjust_form(case, quote, values, errors),
                                 [kit.execute("Approve amount", ADJUST, data,
                                              style="positive")]),
                   *links_]
    why = "; ".join(amounts(r, case.currency) for r in _why(case, quote))
    return kit.card(body, actions, fallback=_fallback(
        f"Refund needs approval: {amount} for booking {code}", customer_first_name,
        md(why, 150) if why else None),
        refreshed=kit.refresh(data, approver_ids) if approver_ids else None)


def _card_head(case: Case, quote: Quote, automation: Automation, customer_first_name: str,
               title: str) -> list[dict[str, Any]]:
    body = [kit.heading(title), *_badge(case)]
    if automation.paused:
        body.append(kit.text(f"⏸️ Automation paused by {who(automation.by)}: "
                             f"{md(automation.reason or 'no reason given', 300)}", subtle=True))
    why = [md(amounts(r, case.currency), 300) for r in _why(case, quote)]
    body += kit.section("Why a person is needed", why)
    body.append(kit.facts(_facts(case, quote, customer_first_name)))
    body.append(kit.text(_source(case), subtle=True, spacing="Small"))
    return body


def refused_card(case: Case, quote: Quote, *, customer_first_name: str, user_id: str,
                 why: str, automation: Automation = RUNNING,
                 links: CardLinks = NO_LINKS) -> dict[str, Any]:
    """The approval card as one clicker sees it after being refused: why they cannot act
    (not an approver, over their limit, their own request), no decision buttons, the links;
    it refreshes for that user only, so it follows the case for them."""
    amount = money(case.refund_amount, case.currency)
    code = md(case.booking_code, 60)
    body = _card_head(case, quote, automation, customer_first_name,
                      f"Refund needs approval · {amount} · {code}")
    body.append(kit.text(f"🚫 **You cannot decide this refund:** {md(why, 300)}",
                         color="Attention", spacing="Medium"))
    return kit.card(body, link_actions(links, case.booking_code, quote),
                    fallback=f"You cannot decide the {amount} refund for booking {code}",
                    refreshed=kit.refresh(case_data(case), [user_id]))


# --- after a decision ----------------------------------------------------------------------

def outcome_lines(case: Case, decided_by: str | None, decided_at: str | None,
                  refunds: list[dict[str, Any]], decision_reason: str | None) -> list[str]:
    """Who decided and what moved, each amount once (`bot.text.outcome_lines`), then what is
    left to refund by hand."""
    c, final, went = case.currency, final_amount(case), moved(refunds)
    rows = shared_outcome_lines(case, decided_by, decided_at, refunds, decision_reason, MARKUP)
    if case.status == Status.PARTIALLY_REFUNDED:
        rows.append(f"⚠️ **Refund {money(max(final - went, 0), c)} by hand** (not paid "
                    "through Stripe), then mark it refunded." if went else
                    "⚠️ **Nothing of it was paid through Stripe:** refund it by hand, then "
                    "mark it refunded.")
    return rows


def outcome_card(case: Case, quote: Quote, *, customer_first_name: str,
                 decided_by: str | None, decided_at: str | None, refunds: list[dict[str, Any]],
                 decision_reason: str | None = None, by_hand: int = 0,
                 links: CardLinks = NO_LINKS) -> dict[str, Any]:
    """The card after a decision (approved, executing, refunded, failed, denied, skipped): the
    outcome with the one amount that moved, who decided, what is left by hand; the links. It
    has no decision buttons and no refresh: every viewer sees the same card. `by_hand`: the
    amount recorded as refunded by hand (minor units)."""
    title = outcome_title(case, refunds, by_hand)
    code = md(case.booking_code, 60)
    body = [kit.heading(f"{title} · {code}"), *_badge(case)]
    lines = outcome_lines(case, decided_by, decided_at, refunds, decision_reason)
    body += [kit.text(line, spacing="Small") for line in lines]
    first = first_name(customer_first_name)
    body.append(kit.text(f"Case #{case.id} · {code}" + (f" · customer {first}" if first else "")
                         + f" · updated {when(case.updated_at)}", subtle=True))
    why = decision_reason or case.status_reason
    return kit.card(body, link_actions(links, case.booking_code, quote), fallback=_fallback(
        f"{title} for booking {code}", customer_first_name,
        md(amounts(why, case.currency), 150) if why else None))


def compact_line(case: Case, quote: Quote) -> str:
    c = case.currency
    amount = money(final_amount(case), c)
    policies = "+".join(md(p, 40) for p in quote.policy_ids or quote.clauses)
    notices = [Decimal(ln.notice_hours) for ln in quote.lines]
    notice = _notice(str(min(notices))) if notices else "notice unknown"
    tail = f"{md(case.booking_code, 60)} · {policies or 'policy'} · {notice}"
    if case.status == Status.REFUNDED:
        return f"✓ Auto-refunded {amount} · {tail}"
    if case.status == Status.PARTIALLY_REFUNDED:
        return f"◐ Auto-refunded part of {amount} · {tail} · rest by hand"
    if case.status == Status.DENIED:
        return f"✗ No refund · {tail} · {md(amounts(case.status_reason or 'policy', c), 200)}"
    if case.status == Status.SKIPPED:
        return f"– Skipped · {tail} · {md(amounts(case.status_reason or 'nothing paid', c), 200)}"
    return f"… {md(case.status.value.replace('_', ' '), 40).capitalize()} {amount} · {tail}"


def compact_card(items: list[tuple[Case, Quote]]) -> dict[str, Any]:
    """Automatic decisions, one line each, on one card."""
    lines = [compact_line(case, quote) for case, quote in items]
    if not lines:
        return kit.card([kit.text("No automatic refunds.")], fallback="No automatic refunds")
    refunds = all(c.status in (Status.REFUNDED, Status.PARTIALLY_REFUNDED) for c, _ in items)
    title = f"{len(lines)} automatic {'refund' if refunds else 'decision'}" \
        + ("" if len(lines) == 1 else "s")
    return kit.card([kit.heading(title), *kit.section("Cases", lines, limit=40)[1:]],
                    fallback=lines[0] if len(lines) == 1 else title)
