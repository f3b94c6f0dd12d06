"""A policy read once for quoting: its tiers by whole microseconds of notice, its waivers and
non-refundable skus, each percent an int where it is whole (integer arithmetic in
`money.percent_of`) beside its text as the quote writes it.
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


class Plan(NamedTuple):
    """What `_quote_line` reads of a policy, worked out once per policy."""

    tiers: tuple[Tier, ...] | None  # most notice first; None: a threshold is not whole µs
    waivers: dict[str, tuple[Decimal | int, str]]  # code: (percent, its text)
    non_refundable: frozenset[str]


_PLANS: dict[int, tuple[Policy, Plan]] = {}
_MAX_PLANS = 4096  # policies seen by one process: a few per book; tests build many books


def plan_of(policy: Policy) -> Plan:
    """The policy's plan, kept by identity (a Policy is frozen: its plan never changes)."""
    kept = _PLANS.get(id(policy))
    if kept is not None and kept[0] is policy:
        return kept[1]
    tiers: list[Tier] = []
    for tier in policy.tiers:
        numerator, denominator = tier.min_notice_hours.as_integer_ratio()  # exact
        threshold, rest = divmod(numerator * 3_600_000_000, denominator)
        if rest:  # not whole microseconds: such a policy's tiers are chosen by Decimal
            tiers = []
            break
        reason = f"{plain(tier.min_notice_hours)}h+ notice tier"
        tiers.append(Tier(threshold, whole_or_exact(tier.refund_percent),
                           plain(tier.refund_percent), reason))
    plan = Plan(
        tiers=tuple(sorted(tiers, reverse=True)) if tiers else None,
        waivers={code: (whole_or_exact(percent), plain(percent))
                 for code, percent in policy.waivers.items()},
        non_refundable=frozenset(policy.non_refundable_skus),
    )
    if len(_PLANS) >= _MAX_PLANS:
        _PLANS.clear()
    _PLANS[id(policy)] = (policy, plan)
    return plan


_ROUTES: dict[int, tuple[PolicyBook, dict[tuple[str, str], Policy]]] = {}
_MAX_ROUTES = 4096  # (sku, item id) pairs kept per book, and books kept


def routes_of(book: PolicyBook) -> dict[tuple[str, str], Policy]:
    """The book's policy by (sku, item id) for the pairs met so far (`book.policy_for`'s
    answers: a book is frozen, so they never change), kept by the book's identity; fill it
    with `keep_route`."""
    kept = _ROUTES.get(id(book))
    if kept is not None and kept[0] is book:
        return kept[1]
    if len(_ROUTES) >= _MAX_ROUTES:
        _ROUTES.clear()
    routes: dict[tuple[str, str], Policy] = {}
    _ROUTES[id(book)] = (book, routes)
    return routes


def keep_route(routes: dict[tuple[str, str], Policy], route: tuple[str, str],
               policy: Policy) -> None:
    """Keep `book.policy_for(*route)` in the book's routes, which stay bounded."""
    if len(routes) >= _MAX_ROUTES:
        routes.clear()
    routes[route] = policy


def whole_or_exact(percent: Decimal) -> Decimal | int:
    """A whole percent as an int (integer arithmetic in percent_of), any other as is."""
    whole = int(percent)
    return whole if whole == percent else percent


def plain(number: Decimal) -> str:
    """A percent or a number of hours as the quote writes it: "50", "0.5", "48"."""
    return format(number.normalize(), "f")
