"""Owns every Slack action, callback and block id, so the builders and the listeners agree.

Refund cards and forms first, then the dispute and failed-payment cards, then the card of a
webhook event an outage kept from being processed. An id here is part of
the wire format of cards already posted: renaming one strands the buttons on those cards.
"""

from __future__ import annotations

# refund buttons
APPROVE = "refund_approve"
DENY = "refund_deny"
ADJUST = "refund_adjust"
RETRY = "refund_retry"
REQUEST = "refund_request"          # on an ephemeral quote: open a case
RESUME = "automation_resume"        # on a pause alert
HOME_RESUME = "home_resume"         # on the Home tab: resume, then draw the tab again
DETAILS = "refund_details"          # on a card: the itemised quote in a modal
MARK_REFUNDED = "refund_mark_refunded"  # on a card with money left to refund by hand
OPEN_CHECKFRONT = "link_checkfront"  # url buttons: Slack opens the page, the bot only acks
VIEW_STRIPE = "link_stripe"

# dispute and failed-payment buttons (ACTIONS: all of them)
SUBMIT_EVIDENCE = "dispute_submit_evidence"
ACCEPT_DISPUTE = "dispute_accept"
RETRY_PAYMENT = "payment_retry"
PAYMENT_LINK = "payment_link"
CANCEL_BOOKING = "payment_cancel_booking"
ACTIONS = (SUBMIT_EVIDENCE, ACCEPT_DISPUTE, RETRY_PAYMENT, PAYMENT_LINK, CANCEL_BOOKING)

# a webhook event Checkfront or Stripe kept failing: process it again now
EVENT_RETRY = "event_retry"

# modals
DENY_VIEW = "refund_deny_view"
ADJUST_VIEW = "refund_adjust_view"
DETAILS_VIEW = "refund_details_view"
MANUAL_VIEW = "refund_manual_view"

# input blocks and their elements inside the modals
REASON_BLOCK = "reason"
REASON_INPUT = "reason_input"
AMOUNT_BLOCK = "amount"
AMOUNT_INPUT = "amount_input"
METHOD_BLOCK = "method"
METHOD_INPUT = "method_input"
REFERENCE_BLOCK = "reference"
REFERENCE_INPUT = "reference_input"

# ownership, the Home tab and the message shortcut (issue 12)
CLAIM = "refund_claim"              # "I'll take it" on a waiting card
RELEASE = "refund_release"          # its holder gives the card back
HOME_FILTER = "home_filter"         # static select: mine / within my limit / all
HOME_PAGE = "home_page"             # Previous / Next under the waiting list; value: "filter:page"
HOME_SEARCH = "home_search"         # opens the search-by-booking modal
SEARCH_VIEW = "home_search_view"
SEARCH_BLOCK = "booking"
SEARCH_INPUT = "booking_input"
QUOTE_SHORTCUT = "quote_refund_for_booking"   # message shortcut (callback id in the manifests)
# the customer message (issue 13): on a closed case's card, and its modal
CUSTOMER_MESSAGE = "customer_message"        # open the draft in a modal
CUSTOMER_RETRY = "customer_message_retry"    # queue a failed message again
CUSTOMER_VIEW = "customer_message_view"
SUBJECT_BLOCK = "subject"
SUBJECT_INPUT = "subject_input"
BODY_BLOCK = "body"
BODY_INPUT = "body_input"

# the weekly review (issue 16): a finance lead answers an offered change of a product's mode
MODE_OFFER = "mode_offer"
