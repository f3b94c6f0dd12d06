"""Stripe's list pages, read one page ahead: while the caller works through one page the next
is already being fetched, never more than one; a caller that stops early cancels it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from services.clients.stripe_records import StripeRefund

PAGE_TURNS_EVERY = 5  # refunds handed over per turn of the event loop while a page is awaited

PageFetch = Callable[[dict[str, Any]], Awaitable[tuple[list[StripeRefund], bool]]]


async def one_page_ahead(fetch: PageFetch, params: Mapping[str, Any]
                         ) -> AsyncIterator[StripeRefund]:
    """Every refund `fetch` gives for `params`, page by page: each next page starts after the
    last refund of the one before, until Stripe says there is no more.

    A caller that works without awaiting anything would keep the next page's fetch from
    running (sending the request, reading and parsing the answer each take turns of the event
    loop), so until the next page has arrived the listing gives the loop one turn every
    `PAGE_TURNS_EVERY` refunds it hands over."""
    query = dict(params)
    ahead: asyncio.Task[tuple[list[StripeRefund], bool]] | None = \
        asyncio.ensure_future(fetch(dict(query)))
    try:
        while ahead is not None:
            refunds, has_more = await ahead
            ahead = None
            if has_more and refunds:
                query["starting_after"] = refunds[-1].id
                ahead = asyncio.ensure_future(fetch(dict(query)))
            for n, refund in enumerate(refunds):
                if n % PAGE_TURNS_EVERY == 0 and ahead is not None and not ahead.done():
                    await asyncio.sleep(0)   # one turn of the loop for the next page
                yield refund
    finally:
        if ahead is not None:
            ahead.cancel()
