"""Agreement figures: how often people took the bot's quote as it was, and what the weekly
review offers because of it.

For every case a person decided (an approval or a denial not made by the policy), its last such
decision in the window is one of: *agreed* (approved at the quoted amount), *adjusted* (approved
at another amount: by how much, minor units and percent of the quote) or *denied*. Per product
(the case's product as it was opened, `case_modes`) and currency over a window: cases, agreement
rate, mean adjustment, refunds paid (Stripe refunds that succeeded), median and p90 time from
the case's opening to the decision. One index-backed query (decisions by `decided_at`, the
case and its mode by id, its executions by case).

Earned promotion, offered not imposed (`offers`): a product in shadow or assisted mode with at
least `min_cases` decided cases at `min_agreement` or better over the window ending with the
review's week, and no anomaly in that window, is offered the next mode; a product in assisted
or autonomous mode whose agreement fell below `demote_below` (over at least `demote_min_cases`),
or any product with cases in the window while an anomaly was seen, is offered the step back.
Nothing here changes a mode: a finance lead's click does (`services.refunds.modes.change_mode`).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

from services.config import Mode
from services.finance.anomaly import Anomaly
from services.finance.anomaly_log import seen_between
from services.quoting.policy import PolicyBook
from services.refunds import modes
from services.store.db import Store, iso_utc

AGREED, ADJUSTED, DENIED = "agreed", "adjusted", "denied"
PROMOTE, STEP_BACK = "promote", "step_back"

_DECIDED = (
    "SELECT d.id, d.case_id, d.decision, d.amount, d.reason, d.decided_by, d.decided_at, "
    "c.refund_amount, c.currency, c.created_at, COALESCE(m.product, '') AS product, "
    "COALESCE(m.mode, '') AS mode, "
    "(SELECT COALESCE(SUM(e.amount), 0) FROM executions e "
    " WHERE e.case_id = d.case_id AND e.status = 'succeeded') AS paid "
    "FROM decisions d JOIN cases c ON c.id = d.case_id "
    "LEFT JOIN case_modes m ON m.case_id = d.case_id "
    "WHERE d.decided_at >= ? AND d.decided_at < ? AND d.decision IN ('approve', 'deny') "
    "AND d.decided_by <> 'policy' ORDER BY d.decided_at, d.id")


@dataclass(frozen=True)
class Rules:
    """The thresholds of the offers (settings PROMOTE_* and DEMOTE_*)."""

    min_agreement: float = 0.98
    min_cases: int = 50
    window_days: int = 28
    demote_below: float = 0.90
    demote_min_cases: int = 10


@dataclass(frozen=True)
class Decided:
    """One case a person decided."""

    case_id: int
    product: str
    mode: str
    currency: str
    quoted: int        # the bot's quote, minor units
    amount: int        # what the person approved (0 for a denial)
    outcome: str       # agreed | adjusted | denied
    reason: str
    decided_by: str
    decided_at: str
    seconds: int       # from the case's opening to the decision
    paid: int          # refunded through Stripe, minor units

    @property
    def adjustment(self) -> int:
        return self.amount - self.quoted if self.outcome == ADJUSTED else 0


@dataclass(frozen=True)
class Figures:
    product: str
    currency: str
    cases: int
    agreed: int
    adjusted: int
    denied: int
    mean_adjustment: int           # minor units, over the adjusted cases (signed)
    mean_adjustment_percent: Decimal  # of the quote, one place, over the adjusted cases
    paid: int
    median_seconds: int
    p90_seconds: int
    by_mode: dict[str, int] = field(default_factory=dict)

    @property
    def agreement(self) -> Fraction:
        return Fraction(self.agreed, self.cases) if self.cases else Fraction(0)

    def agreement_percent(self) -> Decimal:
        return _one_place(self.agreement * 100)


@dataclass(frozen=True)
class Offer:
    kind: str          # promote | step_back
    product: str
    from_mode: str
    to_mode: str
    week: str          # the review's ISO week, "2025-W14"
    why: str           # the numbers, in words

    @property
    def key(self) -> str:
        return f"{self.product}|{self.from_mode}|{self.to_mode}|{self.week}"


def _one_place(value: Fraction) -> Decimal:
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(
        Decimal("0.1"), rounding=ROUND_HALF_EVEN)


def _seconds(start: str, end: str) -> int:
    return max(int((datetime.fromisoformat(end) - datetime.fromisoformat(start))
                   .total_seconds()), 0)


def p90(values: list[int]) -> int:
    """The nearest-rank 90th percentile (0 for none)."""
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


async def decided_between(store: Store, start: datetime, end: datetime) -> list[Decided]:
    """The cases people decided in [start, end), each once (its last decision in it)."""
    found = await store.read_all(_DECIDED, (iso_utc(start), iso_utc(end)))
    last = {}
    for row in found:
        last[row["case_id"]] = row   # ordered by time: the last one stays
    decided = []
    for row in last.values():
        quoted = int(row["refund_amount"] or 0)
        if row["decision"] == "deny":
            outcome, amount = DENIED, 0
        else:
            amount = int(row["amount"] if row["amount"] is not None else quoted)
            outcome = AGREED if amount == quoted else ADJUSTED
        decided.append(Decided(
            case_id=row["case_id"], product=row["product"], mode=row["mode"],
            currency=row["currency"], quoted=quoted, amount=amount, outcome=outcome,
            reason=row["reason"] or "", decided_by=row["decided_by"],
            decided_at=row["decided_at"], seconds=_seconds(row["created_at"], row["decided_at"]),
            paid=int(row["paid"] or 0)))
    return sorted(decided, key=lambda d: (d.decided_at, d.case_id))


def figures(decided: Iterable[Decided]) -> list[Figures]:
    """Per product and currency, the products in name order."""
    groups: dict[tuple[str, str], list[Decided]] = defaultdict(list)
    for d in decided:
        groups[(d.product, d.currency)].append(d)
    out = []
    for (product, currency), items in sorted(groups.items()):
        adjusted = [d for d in items if d.outcome == ADJUSTED]
        percents = [Fraction(d.adjustment * 100, d.quoted) for d in adjusted if d.quoted]
        mean_minor = Fraction(sum(d.adjustment for d in adjusted), len(adjusted)) \
            if adjusted else Fraction(0)
        by_mode: dict[str, int] = defaultdict(int)
        for d in items:
            by_mode[d.mode or "-"] += 1
        times = [d.seconds for d in items]
        out.append(Figures(
            product=product, currency=currency, cases=len(items),
            agreed=sum(d.outcome == AGREED for d in items), adjusted=len(adjusted),
            denied=sum(d.outcome == DENIED for d in items),
            mean_adjustment=round(mean_minor),
            mean_adjustment_percent=_one_place(sum(percents, Fraction(0)) / len(percents))
            if percents else Decimal("0.0"),
            paid=sum(d.paid for d in items),
            median_seconds=int(statistics.median_low(times)) if times else 0,
            p90_seconds=p90(times), by_mode=dict(sorted(by_mode.items()))))
    return out


# --- weeks ------------------------------------------------------------------------------------

def parse_week(text: str) -> tuple[int, int]:
    """"2025-W14" -> (2025, 14); raises ValueError for anything else."""
    year, sep, week = text.strip().upper().partition("-W")
    if not sep or not year.isdigit() or not week.isdigit():
        raise ValueError(f"not an ISO week (YYYY-Www): {text!r}")
    date.fromisocalendar(int(year), int(week), 1)   # raises for a week the year lacks
    return int(year), int(week)


def week_name(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def week_window(week: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The ISO week as [Monday 00:00, next Monday 00:00) in the business's timezone."""
    year, number = parse_week(week)
    monday = date.fromisocalendar(year, number, 1)
    start = datetime.combine(monday, time(0), tzinfo=tz)
    return start, datetime.combine(monday + timedelta(days=7), time(0), tzinfo=tz)


def last_week(now: datetime, tz: ZoneInfo) -> str:
    """The last whole ISO week before `now` (local)."""
    return week_name(now.astimezone(tz).date() - timedelta(days=7))


# --- offers -----------------------------------------------------------------------------------

def _why(f: Figures, days: int, anomalies: list[Anomaly]) -> str:
    seen = f"{len(anomalies)} anomal{'y' if len(anomalies) == 1 else 'ies'}" if anomalies \
        else "no anomaly"
    return (f"{f.agreement_percent()}% agreement over {f.cases} cases in {days} days "
            f"({f.agreed} agreed, {f.adjusted} adjusted, {f.denied} denied); {seen}")


async def offers(store: Store, book: PolicyBook, global_mode: Mode, rules: Rules, week: str,
                 tz: ZoneInfo) -> list[Offer]:
    """The mode changes the review of `week` offers, products in name order."""
    _, end = week_window(week, tz)
    start = end - timedelta(days=rules.window_days)
    anomalies = await seen_between(store, start, end)
    per_product: dict[str, Figures] = {}
    for f in figures(await decided_between(store, start, end)):
        if not f.product:
            continue
        seen = per_product.get(f.product)
        if seen is None or f.cases > seen.cases:   # a product's main currency
            per_product[f.product] = f
    made = []
    for product, f in sorted(per_product.items()):
        mode = (await modes.product_mode(store, book, global_mode, product)).mode
        why = _why(f, rules.window_days, anomalies)
        up, down = modes.next_mode(mode), modes.previous_mode(mode)
        if up is not None and mode != Mode.AUTONOMOUS and not anomalies \
                and f.cases >= rules.min_cases and f.agreement >= Fraction(
                    str(rules.min_agreement)):
            made.append(Offer(PROMOTE, product, str(mode), str(up), week, why))
        elif down is not None and (anomalies or (
                f.cases >= rules.demote_min_cases
                and f.agreement < Fraction(str(rules.demote_below)))):
            made.append(Offer(STEP_BACK, product, str(mode), str(down), week, why))
    return made


async def find_offer(store: Store, book: PolicyBook, global_mode: Mode, rules: Rules,
                     week: str, tz: ZoneInfo, key: str) -> Offer | None:
    """The review's offer of that key, if the figures still make it."""
    return next((o for o in await offers(store, book, global_mode, rules, week, tz)
                 if o.key == key), None)


# --- the weekly review ------------------------------------------------------------------------

@dataclass(frozen=True)
class Review:
    week: str
    start: datetime
    end: datetime
    figures: list[Figures]          # the week's, per product and currency
    adjustments: list[Decided]
    denials: list[Decided]
    slowest: list[Decided]          # the slowest approvals, slowest first
    offers: list[Offer]
    anomalies: int                  # seen in the offers' window
    window_days: int

    @property
    def cases(self) -> int:
        return sum(f.cases for f in self.figures)


async def build_review(store: Store, book: PolicyBook, global_mode: Mode, rules: Rules,
                       week: str, tz: ZoneInfo, *, slowest: int = 5) -> Review:
    start, end = week_window(week, tz)
    decided = await decided_between(store, start, end)
    approvals = sorted((d for d in decided if d.outcome != DENIED),
                       key=lambda d: (-d.seconds, d.case_id))
    window_start = end - timedelta(days=rules.window_days)
    return Review(
        week=week, start=start, end=end, figures=figures(decided),
        adjustments=[d for d in decided if d.outcome == ADJUSTED],
        denials=[d for d in decided if d.outcome == DENIED],
        slowest=approvals[:slowest],
        offers=await offers(store, book, global_mode, rules, week, tz),
        anomalies=len(await seen_between(store, window_start, end)),
        window_days=rules.window_days)
