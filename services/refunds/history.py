"""A case's dispute-ready history as plain text: its quote, clauses, decisions and every
external call, in the order the audit trail holds them. The CLI prints it; Slack shows it in a
code block.
"""

from __future__ import annotations

from services.refunds.models import Case
from services.store.audit import AuditEntry


def case_history(case: Case, entries: list[AuditEntry]) -> str:
    """The dispute-ready report: quote, clauses, decisions and every external call, in order."""
    rows = [
        f"Refund case #{case.id}  booking {case.booking_code} ({case.booking_id})",
        f"Status: {case.status.value}" + (f" — {case.status_reason}" if case.status_reason else ""),
        f"Cancelled at {case.cancelled_at}; opened from {case.source}"
        + (f" by {case.requested_by}" if case.requested_by else ""),
        "",
    ]
    for entry in entries:
        rows.append(f"{entry.at[:19]}Z  #{entry.id:<6} {entry.actor:<14} {entry.action}")
        rows += [f"    {line}" for line in _entry_lines(entry)]
    return "\n".join(rows)


def _entry_lines(entry: AuditEntry) -> list[str]:
    detail = entry.detail
    if entry.action in ("quote.made", "quote.remade"):
        q = detail.get("quote", {})
        lines = [f"refund {q.get('total_refund')} {q.get('currency')} — decision "
                 f"{q.get('decision')} ({'; '.join(q.get('reasons', []))})"]
        lines += [f"line {ln['line_id']} {ln['name']}: {ln['percent']}% ({ln['reason']}, "
                  f"policy {ln['policy_id']}) → {ln['refund']} + tax {ln['tax_refund']}"
                  for ln in q.get("lines", [])]
        lines.append(f"fee {q.get('fee')}, paid {q.get('paid')}, already refunded "
                     f"{q.get('already_refunded')}, retained {q.get('retained')}")
        lines += [f"clause [{pid}]: {text}" for pid, text in q.get("clauses", {}).items()]
        if detail.get("why"):
            lines.insert(0, f"re-quoted: {detail['why']}")
        return lines
    if entry.action == "case.opened":
        return [f"source {detail.get('source')}, waiver {detail.get('waiver') or '-'}"]
    shown = {k: v for k, v in detail.items() if k not in ("snapshot",) and v not in (None, "")}
    return [", ".join(f"{k}={v}" for k, v in shown.items())] if shown else []
