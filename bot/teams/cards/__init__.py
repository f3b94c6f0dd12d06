"""Adaptive Cards (schema 1.5, Universal Actions) for Teams, as content dicts: what the Slack
cards say, drawn for Teams. `refund` has the approval, refused, outcome and compact cards and
the action contract with the runtime (verbs, data, inputs); `issues` the dispute and
failed-payment cards; `digest` the pause alert, the daily digest and command answers; `text` the
one escaping rule (`md`); `kit` the elements. Everything is importable from here.
"""

from bot.teams.cards.digest import answer_card, automation_card, chart_image, digest_card
from bot.teams.cards.issues import dispute_card, failed_payment_card, issue_card
from bot.teams.cards.kit import SCHEMA, VERSION
from bot.teams.cards.refund import (
    ADJUST,
    ADJUST_REASON,
    AMOUNT,
    APPROVE,
    DENY,
    REASON,
    REFRESH,
    RESUME,
    VERBS,
    approval_card,
    case_data,
    compact_card,
    decision_inputs,
    outcome_card,
    refused_card,
)
from bot.teams.cards.text import md

__all__ = [
    "ADJUST", "ADJUST_REASON", "AMOUNT", "APPROVE", "DENY", "REASON", "REFRESH", "RESUME",
    "SCHEMA", "VERBS", "VERSION", "answer_card", "approval_card", "automation_card",
    "case_data", "chart_image", "compact_card", "decision_inputs", "digest_card",
    "dispute_card", "failed_payment_card", "issue_card", "md", "outcome_card", "refused_card",
]
