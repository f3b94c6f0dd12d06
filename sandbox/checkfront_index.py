"""The filters of the Checkfront stand-in's `GET booking/index`, from Checkfront API 3.0's
published reference ("booking/index"): `status_id`, `customer_email`, `start_date` and
`end_date` (the day the booking starts or ends on), and `item_id` (only bookings containing
that item, in the later reference), with `limit` (default 100) and `page` applied by the
server after these.

A date is `YYYY-MM-DD`, `YYYYMMDD` or a unix timestamp (that moment's day, UTC: the stand-in's
account time zone); with `<` or `>` in front it means before or after that day. An unreadable
date is a 400, as Checkfront refuses it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Protocol


class _Item(Protocol):
    item_id: str
    start_date: int
    end_date: int


class _Booking(Protocol):
    status: str
    customer_email: str
    created_date: int

    @property
    def items(self) -> list[_Item]: ...   # list[SandboxItem]


class IndexQueryError(ValueError):
    """A filter value Checkfront would refuse; the message is the 400's description."""


def parse_day(value: str) -> tuple[str, date]:
    """(`<`, `>` or `=`, the day) of a date filter."""
    text = value.strip()
    op = "="
    if text[:1] in "<>":
        op, text = text[0], text[1:].strip()
    try:
        if text.isdigit() and len(text) != 8:
            return op, datetime.fromtimestamp(int(text), UTC).date()
        if text.isdigit():
            return op, datetime.strptime(text, "%Y%m%d").date()
        return op, date.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        raise IndexQueryError(f"Invalid date: {value[:30]}.") from None


def _day_test(value: str) -> Callable[[int], bool]:
    op, wanted = parse_day(value)

    def test(stamp: int) -> bool:
        day = datetime.fromtimestamp(stamp, UTC).date()
        return day < wanted if op == "<" else day > wanted if op == ">" else day == wanted
    return test


def select(bookings: Iterable[_Booking], query: Mapping[str, str]) -> list[_Booking]:
    """The bookings `query`'s filters keep, in the order given."""
    rows = list(bookings)
    if query.get("status_id"):
        rows = [b for b in rows if b.status == query["status_id"].upper()]
    if query.get("customer_email"):
        rows = [b for b in rows if b.customer_email.lower() == query["customer_email"].lower()]
    if query.get("item_id"):
        wanted = {part.strip() for part in query["item_id"].split(",") if part.strip()}
        rows = [b for b in rows if any(i.item_id in wanted for i in b.items)]
    if query.get("start_date"):
        starts = _day_test(query["start_date"])
        rows = [b for b in rows
                if starts(min((i.start_date for i in b.items), default=b.created_date))]
    if query.get("end_date"):
        ends = _day_test(query["end_date"])
        rows = [b for b in rows
                if ends(max((i.end_date for i in b.items), default=b.created_date))]
    return rows
