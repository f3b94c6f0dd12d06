"""The reconciliation's Checkfront side: whether each refunded booking shows as cancelled.

Bookings are collected as their refunds are matched (one entry per booking, amounts of the same
currency added up) and looked up a batch at a time, a few at once. Each booking is checked once
per run. Bookings Checkfront does not know, or could not be read for, are not problems of the
run; they are counted for its notes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from dataclasses import dataclass

from services.clients.checkfront import CheckfrontClient
from services.clients.checkfront_errors import BookingNotFound, CheckfrontError
from services.clients.stripe_records import StripeRefund
from services.money import display

CONCURRENCY = 8   # Checkfront look-ups at once


@dataclass(slots=True)
class RefundedBooking:
    """A refunded booking waiting for its Checkfront check."""

    ref: str
    code: str
    amount: int
    currency: str
    refund_id: str
    case_id: int | None


class BookingCheck:
    """The bookings one run has to check, and what it could not check."""

    def __init__(self, checkfront: CheckfrontClient | None,
                 cancelled_statuses: Collection[str]) -> None:
        self.checkfront = checkfront
        self.enabled = checkfront is not None
        self.cancelled_statuses = cancelled_statuses
        self.waiting: dict[str, RefundedBooking] = {}
        self.checked: set[str] = set()
        self.missing: list[str] = []     # references Checkfront does not know
        self.unreadable = 0              # look-ups Checkfront failed to answer

    def add(self, ref: str, code: str, refund: StripeRefund, case_id: int | None) -> None:
        """A refund that moved money on booking `ref`; nothing when checks are off or the
        booking was already checked in this run."""
        if not self.enabled or ref in self.checked:
            return
        held = self.waiting.get(ref)
        if held is not None and held.currency == refund.currency:
            held.amount += refund.amount
        elif held is None:
            self.waiting[ref] = RefundedBooking(ref, code, refund.amount, refund.currency,
                                                refund.id, case_id)

    async def check_waiting(self, report: Callable[[RefundedBooking, str], None]) -> None:
        """Look up every booking waiting; `report` each one Checkfront still shows wrong, with
        what it shows."""
        if not self.waiting:
            return
        waiting, self.waiting = list(self.waiting.values()), {}
        self.checked.update(b.ref for b in waiting)
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(booked: RefundedBooking) -> None:
            async with gate:
                problem = await self.problem(booked.ref, booked.amount, booked.currency)
            if isinstance(problem, str):
                report(booked, problem)

        await asyncio.gather(*(one(b) for b in waiting))

    async def problem(self, ref: str, amount: int, currency: str) -> str | bool | None:
        """What Checkfront still shows wrong about a refunded booking; None when it is up to
        date; True when Checkfront could not tell."""
        assert self.checkfront is not None
        try:
            booking = (await self.checkfront.get_booking_snapshot(ref))["booking"]
        except BookingNotFound:
            self.missing.append(ref)
            return True
        except CheckfrontError:
            self.unreadable += 1
            return True
        status = str(booking.get("status") or "").upper()
        if status in self.cancelled_statuses:
            return None
        paid = str((booking.get("order") or {}).get("paid_total") or "0")
        return (f"Checkfront still shows booking {booking.get('code') or ref} as {status or '?'} "
                f"with {paid} paid after a refund of {display(amount, currency)}")

    def notes(self) -> list[str]:
        """What the run's notes say about bookings it could not check."""
        notes = []
        if self.unreadable:
            notes.append(f"Checkfront could not be read for {self.unreadable} "
                         "booking(s); they are checked again next run")
        if self.missing:
            shown = ", ".join(sorted(self.missing)[:10])
            more = f" and {len(self.missing) - 10} more" if len(self.missing) > 10 else ""
            notes.append(f"{len(self.missing)} refunded booking(s) not found in "
                         f"Checkfront: {shown}{more}")
        return notes
