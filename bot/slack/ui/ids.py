"""Slack action, callback and block ids: one place, so handlers and builders agree."""

from __future__ import annotations

# buttons
APPROVE = "refund_approve"
DENY = "refund_deny"
ADJUST = "refund_adjust"
RETRY = "refund_retry"
REQUEST = "refund_request"          # on an ephemeral quote: open a case
RESUME = "automation_resume"        # on a pause alert
HOME_RESUME = "home_resume"         # on the Home tab: resume, then draw the tab again

# modals
DENY_VIEW = "refund_deny_view"
ADJUST_VIEW = "refund_adjust_view"

# input blocks and their elements inside the modals
REASON_BLOCK = "reason"
REASON_INPUT = "reason_input"
AMOUNT_BLOCK = "amount"
AMOUNT_INPUT = "amount_input"
