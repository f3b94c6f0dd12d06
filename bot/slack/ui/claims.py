"""Who is on a waiting card, in Block Kit: the "is on it" line and the claim button.

A card nobody holds carries **I'll take it**; a held one says who is on it since when, and
carries **Release** (only its holder may use it; anyone else is told who has it).
"""

from __future__ import annotations

from typing import Any

from bot.slack.ui import ids
from bot.slack.ui.kit import button, context, date_token, who
from bot.slack.ui.payloads import button_value
from services.refunds.models import Case
from services.refunds.ownership import Claim


def claim_button(case: Case, claim: Claim | None) -> dict[str, Any]:
    value = button_value(case.id, case.quote_version)
    if claim is None:
        return button("I'll take it", ids.CLAIM, value)
    return button("Release", ids.RELEASE, value)


def claim_line(claim: Claim) -> dict[str, Any]:
    return context(f":raising_hand: {who(claim.user)} is on it since "
                   f"{date_token(claim.claimed_at)}")


def taken_text(claim: Claim) -> str:
    return f"{who(claim.user)} is already on it (since {date_token(claim.claimed_at)})."
