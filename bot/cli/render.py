"""Plain-text renderings for the terminal (the CLI and the demo)."""

from __future__ import annotations

import json
import re
from typing import Any

from services.money import display, format_minor
from services.quoting.quote import Quote
from services.refunds.models import Case


def quote_table(quote: Quote) -> str:
    """An itemised quote, read like an airline refund quote."""
    c = quote.currency

    def money(minor: int) -> str:
        return display(minor, c)

    def plain(minor: int) -> str:
        return format_minor(minor, c)

    rows = [
        f"Refund quote  booking {quote.booking_code} ({quote.booking_id})  currency {c}",
        f"Cancelled at {quote.cancelled_at}" + (f"  waiver {quote.waiver}" if quote.waiver else ""),
        "",
        f"{'line':<5} {'item':<22} {'notice h':>9} {'%':>5} {'amount':>12} {'tax':>10} "
        f"{'refund':>12} {'tax refund':>11}  why",
    ]
    for line in quote.lines:
        rows.append(
            f"{line.line_id:<5} {line.name[:22]:<22} {line.notice_hours:>9} "
            f"{line.percent:>5} {plain(line.amount):>12} {plain(line.tax):>10} "
            f"{plain(line.refund):>12} {plain(line.tax_refund):>11}  {line.reason} "
            f"[{line.policy_id}]"
        )
    rows.append("")
    for label, minor in (("Order total", quote.order_total), ("Paid", quote.paid),
                         ("Already refunded", quote.already_refunded),
                         ("Cancellation fee", quote.fee), ("Entitlement", quote.entitlement),
                         ("Retained", quote.retained), ("TOTAL REFUND", quote.total_refund)):
        rows.append(f"{label:<24}{money(minor):>20}")
    rows += ["", "Allocation:"]
    rows += [f"  {a.method:<7} {a.payment:<28} {money(a.amount):>16}"
             for a in quote.allocations] or ["  (nothing to refund)"]
    rows += ["", f"Decision: {quote.decision.value}"]
    rows += [f"  - {reason}" for reason in quote.reasons]
    rows += ["", "Policy clauses:"]
    rows += [f"  [{pid}] {text}" for pid, text in quote.clauses.items()]
    return "\n".join(rows)


def case_line(case: Case) -> str:
    amount = case.approved_amount if case.approved_amount is not None else case.refund_amount
    return (f"#{case.id:<5} {case.booking_code:<16} {case.status.value:<19} "
            f"{display(amount, case.currency):>16}  {case.status_reason or ''}")


_SLACK_DATE = re.compile(r"<!date\^\d+\^[^|>]*\|([^>]*)>")


def slack_message_text(message: dict[str, Any]) -> str:
    """A Slack message's blocks as plain lines, for the terminal (the demo shows cards so)."""
    lines: list[str] = []
    for block in message.get("blocks") or []:
        kind = block.get("type")
        if kind == "header":
            lines.append(f"┃ {block['text']['text']}")
        elif kind == "section":
            if block.get("text"):
                lines += [f"┃ {row}" for row in block["text"]["text"].splitlines()]
            for item in block.get("fields") or []:
                lines += [f"┃   {row}" for row in item["text"].splitlines()]
        elif kind == "context":
            lines += [f"┃ · {e.get('text', '')}" for e in block.get("elements", [])]
        elif kind == "actions":
            labels = [f"[{e['text']['text']}]" for e in block.get("elements", [])
                      if e.get("type") == "button"]
            lines.append("┃ " + "  ".join(labels))
        elif kind == "divider":
            lines.append("┃ " + "─" * 40)
    text = "\n".join(lines) if lines else f"┃ {message.get('text', '')}"
    return _SLACK_DATE.sub(r"\1", text)


# ---- the demo's story (`bot.cli.demo` and its parts) -------------------------------------

def buttons_of(message: dict[str, Any]) -> dict[str, str]:
    """A Slack message's buttons: action id → its value (or, for a link button, its url)."""
    return {e["action_id"]: e.get("value") or e.get("url") or ""
            for b in message.get("blocks") or []
            if b.get("type") == "actions" for e in b.get("elements", [])}


def say(title: str) -> None:
    """A chapter of the demo's story, as a rule across the terminal."""
    print(f"\n== {title} " + "=" * max(0, 76 - len(title)))


def view_of(params: dict[str, Any]) -> dict[str, Any]:
    """The view of a recorded `views.open`/`views.update` call (its params may hold it as JSON)."""
    view = params["view"]
    return json.loads(view) if isinstance(view, str) else view
