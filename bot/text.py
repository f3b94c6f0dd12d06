"""Plain-text renderings for the terminal (the CLI and the demo)."""

from __future__ import annotations

from services.money import display
from services.quote import Quote


def quote_table(quote: Quote) -> str:
    """An itemised quote, read like an airline refund quote."""
    c = quote.currency
    rows = [
        f"Refund quote  booking {quote.booking_code} ({quote.booking_id})  currency {c}",
        f"Cancelled at {quote.cancelled_at}" + (f"  waiver {quote.waiver}" if quote.waiver else ""),
        "",
        f"{'line':<5} {'item':<22} {'notice h':>9} {'%':>5} {'amount':>12} {'tax':>10} "
        f"{'refund':>12} {'tax refund':>11}  why",
    ]
    for line in quote.lines:
        rows.append(
            f"{line.line_id:<5} {line.name[:22]:<22} {line.notice_hours:>9} {line.percent:>5} "
            f"{quote.amount(line.amount):>12} {quote.amount(line.tax):>10} "
            f"{quote.amount(line.refund):>12} {quote.amount(line.tax_refund):>11}  "
            f"{line.reason} [{line.policy_id}]"
        )
    rows += [
        "",
        f"{'Order total':<24}{display(quote.order_total, c):>20}",
        f"{'Paid':<24}{display(quote.paid, c):>20}",
        f"{'Already refunded':<24}{display(quote.already_refunded, c):>20}",
        f"{'Cancellation fee':<24}{display(quote.fee, c):>20}",
        f"{'Entitlement':<24}{display(quote.entitlement, c):>20}",
        f"{'Retained':<24}{display(quote.retained, c):>20}",
        f"{'TOTAL REFUND':<24}{display(quote.total_refund, c):>20}",
        "",
        "Allocation:",
    ]
    rows += [f"  {a.method:<7} {a.payment:<28} {display(a.amount, c):>16}"
             for a in quote.allocations] or ["  (nothing to refund)"]
    rows += ["", f"Decision: {quote.decision.value}"]
    rows += [f"  - {reason}" for reason in quote.reasons]
    rows += ["", "Policy clauses:"]
    rows += [f"  [{pid}] {text}" for pid, text in quote.clauses.items()]
    return "\n".join(rows)
