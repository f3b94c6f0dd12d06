"""Owns the Home tab's lists of cases: the waiting ones by filter and page, a booking's cases.

Filters: `all` waiting cases; `mine`, those the person took (**I'll take it**); `limit`, those
whose amount is within the person's approval limit (per currency; None: no limit). Oldest
first, `per_page` at a time from `page` (0-based), with the total the filter matches.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from services.money import exponent
from services.refunds.models import Case, booking_key
from services.store.db import Store

ALL, MINE, LIMIT = "all", "mine", "limit"
FILTERS = (MINE, LIMIT, ALL)

_WAITING = "c.status = 'pending_approval'"


async def waiting(store: Store, view: str, *, user: str, limit: Decimal | None = None,
                  approver: bool = True, page: int = 0,
                  per_page: int = 10) -> tuple[list[Case], int]:
    """The page of waiting cases the filter `view` shows `user`, and how many it matches."""
    where, params = _filter(view, user)
    if view == LIMIT:
        if not approver:
            return [], 0
        if limit is not None:
            currencies = [r["currency"] for r in await store.read_all(
                f"SELECT DISTINCT currency FROM cases c WHERE {_WAITING}")]
            if not currencies:
                return [], 0
            where = "(" + " OR ".join("(c.currency = ? AND c.refund_amount <= ?)"
                                      for _ in currencies) + ")"
            params = [v for cur in currencies for v in (cur, limit_minor(limit, cur))]
    total_row = await store.read_one(
        f"SELECT COUNT(*) AS n FROM cases c WHERE {_WAITING} AND {where}", params)
    total = int(total_row["n"]) if total_row else 0
    found = await store.read_all(
        f"SELECT c.* FROM cases c WHERE {_WAITING} AND {where} "
        "ORDER BY c.created_at, c.id LIMIT ? OFFSET ?",
        [*params, per_page, max(page, 0) * per_page])
    return [Case.from_row(r) for r in found], total


def _filter(view: str, user: str) -> tuple[str, list[object]]:
    if view == MINE:
        return ("EXISTS (SELECT 1 FROM case_claims k WHERE k.case_id = c.id AND k.user = ?)",
                [user])
    return "1 = 1", []


async def for_booking(store: Store, booking: str, limit: int = 10) -> list[Case]:
    """A booking's cases (by its code or Checkfront id), newest first."""
    text = booking.strip()
    found = await store.read_all(
        "SELECT * FROM cases WHERE booking_key = ? OR booking_code = ? OR booking_id = ? "
        "ORDER BY id DESC LIMIT ?", (booking_key(text), text, text, limit))
    return [Case.from_row(r) for r in found]



def limit_minor(limit: Decimal, currency: str) -> int:
    """An approval limit (major units) in minor units of `currency`, never rounded up."""
    return int((limit * 10 ** exponent(currency)).to_integral_value(ROUND_FLOOR))
