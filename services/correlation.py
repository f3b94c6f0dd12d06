"""The correlation id: what ties together everything done for one webhook or one Slack request.

One context variable holds a small immutable `Bound`: the correlation id, and, once known, the
case id and the booking code. Setting it is one `ContextVar.set`; asyncio copies the context
into every task created under it, so work handed on (the worker's tracked tasks, a Slack
click's follow-up) carries it without being told, and one task's binding never leaks into
another's.

Where it is set:

- a webhook, when stored: `for_event(row_id)` (`ev-<row>`), from the stored event's row id; the
  worker restores the same id for each event it applies (also on a retry, after a restart),
  so the intake's lines, the worker's, and those of the Stripe, Checkfront and Slack calls
  made for the event carry one id;
- a Slack click, command or modal: an id of its own (`new_id("sl")`), with the case bound when
  the request names one;
- the case id and booking code are bound (`bind`) where the domain learns them.

The log formatter (bot/logs.py) and the audit trail (services/store/audit.py) read it. This
module knows no framework.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class Bound:
    correlation_id: str
    case_id: int | None = None
    booking_code: str | None = None


_current: ContextVar[Bound | None] = ContextVar("refund_bot_correlation", default=None)


def current() -> Bound | None:
    """What is bound in this context (None outside any webhook or request)."""
    return _current.get()


def correlation_id() -> str | None:
    bound = _current.get()
    return bound.correlation_id if bound is not None else None


def for_event(row_id: int) -> str:
    """The correlation id of a stored webhook event: stable, so a retry or a restart that
    applies the event again logs under the id its intake did."""
    return f"ev-{row_id}"


def new_id(prefix: str = "rq") -> str:
    """A fresh id for work that starts without a stored event (a Slack request, a command)."""
    return f"{prefix}-{secrets.token_hex(6)}"


def begin(correlation: str, *, case_id: int | None = None,
          booking_code: str | None = None) -> Token[Bound | None]:
    """Start a correlation in this context (what was bound before is replaced)."""
    return _current.set(Bound(correlation, case_id, booking_code or None))


def bind(*, case_id: int | None = None, booking_code: str | None = None) -> None:
    """Add the case or the booking to what is bound (nothing when no correlation is under way:
    a scheduler job, a listing, a test calling the domain directly)."""
    bound = _current.get()
    if bound is None:
        return
    changes: dict[str, object] = {}
    if case_id is not None and case_id != bound.case_id:
        changes["case_id"] = case_id
    if booking_code and booking_code != bound.booking_code:
        changes["booking_code"] = booking_code
    if changes:
        _current.set(replace(bound, **changes))  # type: ignore[arg-type]


def reset(token: Token[Bound | None]) -> None:
    _current.reset(token)


@contextmanager
def scope(correlation: str, *, case_id: int | None = None,
          booking_code: str | None = None) -> Iterator[Bound]:
    """A correlation for the length of a block; what was bound before comes back after."""
    token = begin(correlation, case_id=case_id, booking_code=booking_code)
    try:
        bound = _current.get()
        assert bound is not None
        yield bound
    finally:
        _current.reset(token)


def stamp(detail: dict[str, object] | None) -> dict[str, object] | None:
    """`detail` with the correlation id added (an audit row's context), when one is bound and
    the detail does not name one already; `detail` itself otherwise."""
    bound = _current.get()
    if bound is None:
        return detail
    if detail is None:
        return {"correlation_id": bound.correlation_id}
    if "correlation_id" in detail:
        return detail
    return {**detail, "correlation_id": bound.correlation_id}
