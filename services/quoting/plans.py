"""A policy and a policy book read once for quoting: a policy's tiers by whole microseconds of
notice, its waivers and non-refundable skus, each percent an int where it is whole (integer
arithmetic in `money.percent_of`) beside its text as the quote writes it; a book's policy per
(sku, item id) met so far and its limits in minor units per currency.
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

from services.quoting.policy import Policy, PolicyBook


class Tier(NamedTuple):
    """A tier read for integer work: its threshold in whole microseconds of notice."""

    min_notice: int  # microseconds
    percent: Decimal | int  # an int when the percent is whole (money.percent_of's fast path)
    percent_text: str  # plain(refund_percent)
    reason: str


class Rule(NamedTuple):
    """A line's outcome that does not depend on notice: a waiver, non-refundable, started."""

    percent: Decimal | int
    percent_text: str
    reason: str


class Plan(NamedTuple):
    """What a quote reads of a policy, worked out once per policy."""

    tiers: tuple[Tier, ...] | None  # most notice first; None: a threshold is not whole µs
    waivers: dict[str, Rule]  # code: its rule ("waiver CODE")
    non_refundable: frozenset[str]
    refused: Rule  # "non-refundable"
    started: Rule  # "already started"
    fees: dict[str, int]  # currency: the cancellation fee in its minor units (as quoted)
    plain: bool  # id and text are plain `str` (canonical.plain_json may write them)


_PLANS: dict[int, tuple[Policy, Plan]] = {}
_MAX_PLANS = 4096  # policies seen by one process: a few per book; tests build many books


def plan_of(policy: Policy) -> Plan:
    """The policy's plan, kept by identity (a Policy is frozen: its plan never changes)."""
    kept = _PLANS.get(id(policy))
    if kept is not None and kept[0] is policy:
        return kept[1]
    pid = policy.id
    tiers: list[Tier] = []
    for tier in policy.tiers:
        numerator, denominator = tier.min_notice_hours.as_integer_ratio()  # exact
        threshold, rest = divmod(numerator * 3_600_000_000, denominator)
        if rest:  # not whole microseconds: such a policy's tiers are chosen by Decimal
            tiers = []
            break
        reason = f"{plain(tier.min_notice_hours)}h+ notice tier"
        text = plain(tier.refund_percent)
        tiers.append(Tier(threshold, whole_or_exact(tier.refund_percent), text, reason))
    plan = Plan(
        tiers=tuple(sorted(tiers, reverse=True)) if tiers else None,
        waivers={code: Rule(whole_or_exact(percent), plain(percent), f"waiver {code}")
                 for code, percent in policy.waivers.items()},
        non_refundable=frozenset(policy.non_refundable_skus),
        refused=Rule(0, "0", "non-refundable"),
        started=Rule(0, "0", "already started"),
        fees={},
        plain=type(pid) is str and type(policy.text) is str,
    )
    if len(_PLANS) >= _MAX_PLANS:
        _PLANS.clear()
    _PLANS[id(policy)] = (policy, plan)
    return plan


class BookPlan(NamedTuple):
    """What a quote reads of a book beyond its policies' plans, filled as quotes meet it."""

    routes: dict[tuple[str, str], tuple[Policy, Plan]]  # (sku, item id): book.policy_for's
    limits: dict[str, tuple[int, int, str]]  # currency: (escalate_over, auto_approve_max) in
    # minor units and the reason a refund within the auto-approve limit is given
    plain: bool  # the digest is a plain `str` (canonical.plain_json may write it)


_BOOKS: dict[int, tuple[PolicyBook, BookPlan]] = {}
_MAX_ROUTES = 4096  # (sku, item id) pairs kept per book, and books kept


def book_plan(book: PolicyBook) -> BookPlan:
    """The book's plan, kept by the book's identity (a book is frozen, so `policy_for`'s
    answers and its limits never change); fill its routes with `keep_route`."""
    kept = _BOOKS.get(id(book))
    if kept is not None and kept[0] is book:
        return kept[1]
    if len(_BOOKS) >= _MAX_ROUTES:
        _BOOKS.clear()
    plan = BookPlan(routes={}, limits={}, plain=type(book.digest) is str)
    _BOOKS[id(book)] = (book, plan)
    return plan


def keep_route(routes: dict[tuple[str, str], tuple[Policy, Plan]], route: tuple[str, str],
               policy: Policy) -> tuple[Policy, Plan]:
    """Keep `book.policy_for(*route)` and its plan in the book's routes, which stay bounded."""
    if len(routes) >= _MAX_ROUTES:
        routes.clear()
    kept = routes[route] = (policy, plan_of(policy))
    return kept


def whole_or_exact(percent: Decimal) -> Decimal | int:
    """A whole percent as an int (integer arithmetic in percent_of), any other as is."""
    whole = int(percent)
    return whole if whole == percent else percent


def plain(number: Decimal) -> str:
    """A percent or a number of hours as the quote writes it: "50", "0.5", "48"."""
    return format(number.normalize(), "f")
