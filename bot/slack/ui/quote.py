"""The itemised quote in Block Kit: products, lines, totals, allocation, reasons, clauses.

Shown whole by the `/refund quote` answer (`bot.slack.ui.cards`), behind a card's Details
button (`bot.slack.ui.details`) and in a decided card's thread (`detail_text`); the cards
themselves carry only the decision's facts (`card_facts`). Wherever room runs out the item list
is cut and says how many lines are hidden; the totals (fee, retained, total refund) are never
cut.
Product names, line reasons, policy ids and clauses are escaped (`kit.esc`); the quote's reasons
show their amounts as every other amount is shown (`kit.amounts_in`).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from bot.slack.ui.kit import amounts_in, date_token, esc, line_sections, money, number
from services.quoting.quote import Quote
from services.refunds.models import Case

DECISIONS = {
    "skip": "Nothing to refund",
    "deny": "No refund under the policy",
    "auto_approve": "Can be refunded automatically (within the limits)",
    "needs_approval": "Needs a person's approval",
}


def quote_money(quote: Quote, minor: int) -> str:
    return money(minor, quote.currency)


def quote_number(quote: Quote, minor: int) -> str:
    return number(minor, quote.currency)


def notice_text(hours: str) -> str:
    try:
        value = Decimal(hours)
    except (InvalidOperation, TypeError):
        return "notice unknown"
    return "after the start" if value <= 0 else f"{int(value)}h notice"


def _products(quote: Quote) -> list[str]:
    """One line per start time: the products starting then."""
    starts: dict[str, list[str]] = {}
    for line in quote.lines:
        names = starts.setdefault(line.start, [])
        if line.name not in names:
            names.append(line.name)
    return [f"• {esc(', '.join(names), 300)} — starts {date_token(start)}"
            for start, names in starts.items()]


def _items(quote: Quote) -> list[str]:
    rows = []
    for line in quote.lines:
        refundable = line.refund + line.tax_refund > 0
        mark = "• " if refundable else "• :no_entry_sign: "
        paid = f"{quote_number(quote, line.amount)} + {quote_number(quote, line.tax)} tax"
        rows.append(
            f"{mark}{esc(line.name, 100)} ({paid}) — {esc(line.percent, 10)}% "
            f"({esc(line.reason, 120)}) [{esc(line.policy_id, 60)}] → "
            f"{quote_number(quote, line.refund)} + {quote_number(quote, line.tax_refund)} tax"
            + ("" if refundable else " · *not refundable*")
        )
    return rows


def _totals(quote: Quote) -> list[str]:
    rows = [f"Order total {quote_money(quote, quote.order_total)} · "
            f"paid {quote_money(quote, quote.paid)}"]
    if quote.already_refunded:
        rows.append(f"Already refunded {quote_money(quote, quote.already_refunded)}")
    if quote.fee:
        rows.append(f"Cancellation fee −{quote_money(quote, quote.fee)}")
    rows.append(f"Retained {quote_money(quote, quote.retained)}")
    rows.append(f"*Total refund {quote_money(quote, quote.total_refund)}*")
    return rows


def _allocations(quote: Quote) -> list[str]:
    rows = []
    for item in quote.allocations:
        amount = money(item.amount, quote.currency)
        if item.method == "manual" or item.payment == "manual":
            rows.append(f"• :warning: *Refund by hand* — {amount} (not paid through Stripe)")
        else:
            rows.append(f"• {esc(item.method, 20).capitalize()} `{esc(item.payment, 80)}`"
                        f" — {amount}")
    return rows or ["• nothing to refund"]


def _clauses(quote: Quote) -> list[str]:
    rows = []
    for policy_id, text in quote.clauses.items():
        quoted = "\n".join(f"> {esc(part, 600)}" for part in str(text).splitlines()[:6]
                           if part.strip())
        rows.append(f"*{esc(policy_id, 60)}*\n{quoted or '> (no text)'}")
    return rows


def first_start(quote: Quote) -> tuple[str, str | None, int]:
    """(the first product's name, its start, how many other products) for a card's field."""
    if not quote.lines:
        return "", None, 0
    first = min(quote.lines, key=lambda ln: ln.start)
    others = len({ln.name for ln in quote.lines} - {first.name})
    return first.name, first.start, others


def card_facts(quote: Quote) -> list[tuple[str, str]]:
    """The quote's part of a card's fields: product and start, notice and tier, policy."""
    name, start, others = first_start(quote)
    product = esc(name, 80) or "—"
    if others:
        product += f" +{others} more"
    if start:
        product += f"\nstarts {date_token(start)}"
    facts = [("Product", product)]
    if quote.lines:
        nearest = min(quote.lines, key=lambda ln: Decimal(ln.notice_hours))
        facts.append(("Notice", f"{notice_text(nearest.notice_hours)} · "
                                f"{esc(nearest.reason, 80)}"))
    policies = ", ".join(esc(p, 40) for p in (quote.policy_ids or tuple(quote.clauses)))
    facts.append(("Policy", policies or "—"))
    return facts


def detail_blocks(quote: Quote, *, reasons: list[str],
                  item_sections: int = 3) -> list[dict[str, Any]]:
    """The whole quote for the Details modal: products, the items (cut first, saying how many
    are hidden), the totals in a section of their own, the allocation, reasons and clauses."""
    blocks = line_sections(_products(quote), title="Products", max_sections=3)
    blocks += line_sections(_items(quote), title="Quote", max_sections=item_sections)
    blocks += line_sections(_totals(quote), max_sections=1)
    blocks += line_sections(_allocations(quote), title="Refund to")
    if reasons:
        blocks += line_sections(reasons, title="Reasons")
    blocks += line_sections(_clauses(quote), title="Policy")
    return blocks


THREAD_ITEMS = 15   # item lines a thread reply lists before it says how many more


def detail_text(quote: Quote) -> str:
    """The quote as a thread reply's text: items (at most THREAD_ITEMS, then how many more),
    the totals, the allocation and the policy clauses."""
    items = _items(quote)
    shown = items[:THREAD_ITEMS]
    if len(items) > len(shown):
        shown.append(f"_…and {len(items) - len(shown)} more lines (Details on the card)_")
    parts = ["*Quote*", *shown, *_totals(quote), "*Refund to*", *_allocations(quote)]
    parts += _clauses(quote)[:3]
    return "\n".join(parts)


def reason_lines(case: Case | None, quote: Quote) -> list[str]:
    """The status reason, the quote's reasons and its risk flags, each said once."""
    flags = quote.risk_flags
    flagged = {f"risk: {f.reason}" for f in flags}
    said: list[str] = []
    parts = (case.status_reason or "").split("; ") if case is not None else []
    for reason in [*parts, *quote.reasons]:
        reason = reason.strip()
        if reason and reason not in said and reason not in flagged:
            said.append(reason)
    rows = [f"• {esc(amounts_in(r, quote.currency), 300)}" for r in said]
    rows += [f"• :triangular_flag_on_post: *{esc(f.code, 60)}* — "
             f"{esc(amounts_in(f.reason, quote.currency), 300)}" for f in flags]
    return rows


def quote_blocks(quote: Quote, *, reasons_title: str,
                  reasons: list[str]) -> list[dict[str, Any]]:
    blocks = line_sections(_products(quote), title="Products")
    blocks += line_sections([*_items(quote), "", *_totals(quote)], title="Quote",
                            max_sections=3)
    blocks += line_sections(_allocations(quote), title="Refund to")
    if reasons:
        blocks += line_sections(reasons, title=reasons_title)
    blocks += line_sections(_clauses(quote), title="Policy")
    return blocks
