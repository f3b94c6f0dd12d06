"""Drawing a case's Slack messages from the store's current state, and links to posted cards.

Its card, its thread reply and a batch of compact lines are read from the store at the moment
the outbox sends them, so a card always shows the case as it is now however many refreshes were
queued; that includes the customer message's state (sent, failed, waiting for Send), one read
of `customer_messages` by case id. Block Kit itself is bot.slack.ui's job. The link buttons'
targets (`CardLinks`: the Checkfront host, the Stripe key's mode) come from the settings,
through the outbox. A decided card's thread reply carries the quote (items, totals, allocation,
clauses) that the collapsed card leaves out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.slack.ui import cards
from bot.slack.ui.customer import CustomerNote
from bot.slack.ui.kit import archive_link
from bot.slack.ui.links import NO_LINKS, CardLinks
from bot.slack.ui.quote import detail_text
from bot.slack.ui.thread import thread_reply
from services import outbox
from services.customers import outbox as customer_outbox
from services.disputes.holds import flags_now
from services.refunds import cases, ledger, manual, modes, ownership, writeback
from services.refunds.automation import automation_state
from services.refunds.models import Case, Status
from services.store import audit
from services.store.db import Store


async def card_context(store: Store, case: Case) -> dict[str, Any]:
    """Everything a card needs from the store, besides the case itself."""
    stored = await cases.current_quote(store, case)
    customer = (stored.snapshot.get("booking") or {}).get("customer") or {}
    name = str(customer.get("name") or "").split()
    last = await cases.last_decision(store, case.id)
    refunds = await ledger.stripe_refunds(store, case.id)
    return {
        "quote": stored.quote,
        "customer_first_name": name[0] if name else "",
        "decided_by": last["decided_by"] if last else None,
        "decided_at": last["decided_at"] if last else None,
        "decision_reason": last["reason"] if last else None,
        "refunds": [dict(r) for r in refunds],
        "automation": await automation_state(store),
        "checkfront_pending": await writeback.pending(store, case.id),
        "by_hand": await manual.of_case(store, case.id)
        if case.status == Status.REFUNDED_BY_HAND else None,
        "customer": await customer_note(store, case.id),
        "mode": await modes.of_case(store, case.id),
    }


async def customer_note(store: Store, case_id: int) -> CustomerNote | None:
    """The case's latest customer message as its card shows it (one indexed, read-only
    query)."""
    row = await customer_outbox.for_card(store, case_id)
    return CustomerNote.from_row(row) if row is not None else None


async def render_card(store: Store, case: Case,
                      links: CardLinks = NO_LINKS) -> cards.Message:
    """The case's card as it stands: buttons while it waits for a person, else the outcome."""
    ctx = await card_context(store, case)
    if case.status == Status.PENDING_APPROVAL:
        return cards.approval_card(case, await flags_now(store, ctx["quote"]),
                                    customer_first_name=ctx["customer_first_name"],
                                    automation=ctx["automation"], links=links,
                                    claim=await ownership.holder(store, case.id),
                                    mode=ctx["mode"])
    return cards.outcome_card(case, ctx["quote"], customer_first_name=ctx["customer_first_name"],
                               decided_by=ctx["decided_by"], decided_at=ctx["decided_at"],
                               refunds=ctx["refunds"], automation=ctx["automation"],
                               decision_reason=ctx["decision_reason"],
                               checkfront_pending=ctx["checkfront_pending"],
                               by_hand=ctx["by_hand"], links=links, customer=ctx["customer"],
                               mode=ctx["mode"])


async def render_compact(store: Store, case_ids: Sequence[int]) -> cards.Message:
    """One message of compact lines, one per case (automatic decisions)."""
    items = []
    for case_id in case_ids:
        case = await cases.get(store, case_id)
        items.append((case, (await cases.current_quote(store, case)).quote))
    return cards.compact_lines(items)


async def thread_details(store: Store, case: Case) -> str:
    """The thread reply under a decided card: what happened, with the references, then the
    quote it was decided on."""
    steps = thread_reply(case, await audit.history(store, case.id))
    if case.status == Status.REFUNDED_BY_HAND:   # the quote is in the reply before this one
        return steps
    return steps + "\n\n" + detail_text((await cases.current_quote(store, case)).quote)


async def card_links(store: Store, case_ids: Sequence[int]) -> dict[int, str]:
    """Links to the messages that show these cases (those posted so far)."""
    return {case_id: archive_link(m.channel, m.ts)
            for case_id, m in (await outbox.messages_of(store, case_ids)).items()}
