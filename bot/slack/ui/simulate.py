"""The policy simulator's modal (`/refund simulate`, finance leads only) and its answer.

The form: a proposed policy file pasted (Slack's text input holds at most 3,000 characters)
or uploaded as a .yml file (Block Kit's `file_input`, which needs the `files:read` scope), and
an optional range of cancellation days. The answer replaces the form (the modal's result view,
seen only by the person who asked): per currency the totals, then a few lines per product,
within Block Kit's limits; the CSV of every change follows in the channel when there are more
than the view shows. Every text from the file or the bookings is `esc`aped or `plain`.
"""

from __future__ import annotations

from typing import Any

from bot.slack.ui.kit import (
    context,
    divider,
    esc,
    header,
    line_sections,
    modal,
    plain_text,
    section,
)
from services.finance.simulate import Simulation, Tally, biggest_overall
from services.money import format_minor

SIMULATE_VIEW = "refund_simulate_view"
POLICY_BLOCK, POLICY_INPUT = "policy_text", "policy_text_input"
FILE_BLOCK, FILE_INPUT = "policy_file", "policy_file_input"
FROM_BLOCK, FROM_INPUT = "from_day", "from_day_input"
TO_BLOCK, TO_INPUT = "to_day", "to_day_input"
PASTE_MAX = 3000          # Slack's limit for a plain_text_input
PRODUCTS_SHOWN = 25       # product lines in the view; the rest are in the CSV
CHANGES_SHOWN = 10
ONLY_FINANCE_LEADS = "Only finance leads can run the policy simulator."


def simulate_modal(channel: str) -> dict[str, Any]:
    """The form; `channel` (where the command was typed) is where a CSV would follow."""
    blocks: list[dict[str, Any]] = [
        section("Past cases are re-quoted under the proposed policy file, at their own "
                "cancellation times, by the same engine and rules. Nothing is changed."),
        {"type": "input", "block_id": POLICY_BLOCK, "optional": True,
         "label": plain_text("Paste the policy file", 2000),
         "hint": plain_text("YAML, as the live policy file. Up to 3,000 characters; upload a "
                            "longer file below.", 2000),
         "element": {"type": "plain_text_input", "action_id": POLICY_INPUT,
                     "multiline": True, "max_length": PASTE_MAX}},
        {"type": "input", "block_id": FILE_BLOCK, "optional": True,
         "label": plain_text("Or upload it", 2000),
         "element": {"type": "file_input", "action_id": FILE_INPUT,
                     "filetypes": ["yml", "yaml"], "max_files": 1}},
        {"type": "input", "block_id": FROM_BLOCK, "optional": True,
         "label": plain_text("Cancelled from (business day)", 2000),
         "element": {"type": "datepicker", "action_id": FROM_INPUT}},
        {"type": "input", "block_id": TO_BLOCK, "optional": True,
         "label": plain_text("Cancelled to (included)", 2000),
         "element": {"type": "datepicker", "action_id": TO_INPUT}},
    ]
    return modal(SIMULATE_VIEW, "Simulate a policy", blocks, submit="Simulate",
                 close="Cancel", private_metadata=channel)


def working_view() -> dict[str, Any]:
    return {"type": "modal", "title": plain_text("Simulate a policy", 24),
            "close": plain_text("Close", 24),
            "blocks": [section("Replaying past cases under the proposed file…")]}


def _figures(t: Tally) -> str:
    def money(minor: int) -> str:
        return format_minor(minor, t.currency)
    return (f"{t.cases} case(s), *{t.changed}* refund(s) change · paid out "
            f"{money(t.refund_before)} → *{money(t.refund_after)}* {t.currency} "
            f"(refunded so far {money(t.refunded)}) · fees {money(t.fees_before)} → "
            f"{money(t.fees_after)} · auto-approve {t.rate(t.auto_before, t.cases)} → "
            f"{t.rate(t.auto_after, t.cases)} · need a person {t.person_before} → "
            f"{t.person_after}")


def result_view(result: Simulation, *, csv_follows: bool) -> dict[str, Any]:
    """The answer, replacing the form: totals per currency, a line per product (the first
    PRODUCTS_SHOWN), the biggest changes, what the file cannot quote."""
    blocks: list[dict[str, Any]] = [header("Policy simulation")]
    blocks.append(context(
        f"{esc(result.source, 200)} (digest `{esc(result.digest, 20)}`) · {result.cases} "
        "case(s). Before: each case's current quote; after: its re-quote under this file."))
    if not result.cases:
        blocks.append(section("No cases were cancelled in that range."))
    for currency in sorted(result.totals):
        blocks += [divider(), section(f"*{esc(currency, 10)}, all products*\n"
                                      f"{_figures(result.totals[currency])}")]
    lines = [f"*{esc(product, 80)}* ({esc(currency, 10)}): {_figures(t)}"
             for (currency, product), t in sorted(result.products.items())]
    if lines:
        blocks += [divider(), *line_sections(lines[:PRODUCTS_SHOWN], title="Per product",
                                             max_sections=8)]
        if len(lines) > PRODUCTS_SHOWN:
            blocks.append(context(f"…and {len(lines) - PRODUCTS_SHOWN} more product(s) in "
                                  "the CSV."))
    changes = [f"#{c.case_id} {esc(c.booking_code, 40)} ({esc(c.product, 60)}): "
               f"{format_minor(c.before, c.currency)} → {format_minor(c.after, c.currency)} "
               f"{esc(c.currency, 10)}" for c in biggest_overall(result, CHANGES_SHOWN)]
    if changes:
        blocks += line_sections(changes, title="Biggest changes")
    if result.unquotable:
        blocks += line_sections([f"{n} case(s): {esc(reason, 300)}" for reason, n
                                 in sorted(result.unquotable.items())],
                                title="This file cannot quote (a person would decide)")
    if csv_follows:
        blocks.append(context("The CSV of every case that changes follows in the channel."))
    return {"type": "modal", "title": plain_text("Simulate a policy", 24),
            "close": plain_text("Close", 24), "blocks": blocks[:100]}


def is_long(result: Simulation) -> bool:
    """Whether the detail needs the CSV: more changes or products than the view shows."""
    return len(result.rows) > CHANGES_SHOWN or len(result.products) > PRODUCTS_SHOWN
