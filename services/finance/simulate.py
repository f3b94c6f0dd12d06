"""The policy simulator: past cases replayed under a proposed policy file, before anyone edits
the live one.

Each case in range is re-quoted from the booking snapshot its current quote was made from, at
the case's own cancellation time (so each line has the notice it had), with the case's waiver
and the risk flags its quote carried (risk is about the customer and the booking, not the
policy), by the same engine (`build_quote`) and decided by the same rules a new case meets
(`services.refunds.opening`), with automation taken as running, each in the mode its product
would be decided in (`services.refunds.modes`: a stored override a finance lead set holds
before and after; the policy file's `mode` and `product_modes` are the live file's before and
the proposed file's after). Nothing is written.

"Before" is the case's current stored quote: what the bot offered (`total_refund`), its
cancellation fee and what the business kept (`retained`), and how today's rules decide that
quote under the live policy file. "Refunded" is apart from both: the money that has actually
left for the case (its executions that are pending or succeeded). "After" is the re-quote under
the proposed file. Every figure is exact in minor units and kept per currency: a product or a
policy sold in two currencies has one row for each.

A case is counted under its main product (the sku, else the name, of its largest line, as the
value-outlier risk flag reads it) and under the policies its re-quote applied. A case the
proposed file cannot quote (no policy applies and none is the default) is counted as needing a
person, with the reason, and adds nothing to the after totals.

Cases are read in pages from the store's read-only connection; each snapshot is read by the
engine's one-pass reader (`parse_snapshot`).
"""

from __future__ import annotations

import asyncio
import csv
import heapq
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from services.config import Mode
from services.deps import Deps
from services.errors import DomainError
from services.finance.report import csv_cell
from services.money import format_minor
from services.quoting.booking import SnapshotError
from services.quoting.booking_read import parse_snapshot
from services.quoting.engine import build_quote
from services.quoting.policy import PolicyBook, PolicyError, parse_policies
from services.quoting.quote import Quote, QuoteError
from services.refunds import modes
from services.refunds.automation import Automation
from services.refunds.ledger import SETTLED
from services.refunds.models import Status
from services.refunds.opening import _initial_status

PAGE = 1000            # cases read per trip to the store
BIGGEST = 10           # the biggest changes kept per product (and overall)
MAX_POLICY_TEXT = 200_000   # characters of a proposed policy file
RUNNING = Automation(paused=False)
CSV_COLUMNS = ("case", "booking", "cancelled_at", "currency", "product", "policies_before",
               "policies_after", "refund_before", "refund_after", "change", "decision_before",
               "decision_after", "refunded")
_SETTLED = ", ".join(f"'{s}'" for s in SETTLED)
_PAGE_SQL = (
    "SELECT c.id, c.booking_code, c.currency, c.cancelled_at, c.waiver, q.snapshot, q.quote, "
    "(SELECT COALESCE(SUM(e.amount), 0) FROM executions e WHERE e.case_id = c.id "
    f"AND e.status IN ({_SETTLED})) AS refunded "
    "FROM cases c JOIN quotes q ON q.case_id = c.id AND q.version = c.quote_version "
    "WHERE c.id > ? AND c.cancelled_at >= ? AND c.cancelled_at < ? ORDER BY c.id LIMIT ?")


class SimulationError(DomainError, ValueError):
    """A simulation that cannot run (a bad range); the message is safe to show."""


# --- the proposed policy file ----------------------------------------------------------------

def read_policies(text: str, source: str = "proposed policies") -> PolicyBook:
    """A proposed policy file's text, read by the live file's loader (`parse_policies`). A bad
    file raises PolicyError saying what is wrong: the line and column of a YAML error; the
    policy, the field and its line for a file that does not validate."""
    if len(text) > MAX_POLICY_TEXT:
        raise PolicyError(f"{source}: longer than {MAX_POLICY_TEXT:,} characters")
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PolicyError(f"{source}: not valid YAML{where}: "
                          f"{exc.problem or exc.context or 'unreadable'}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML ({exc.__class__.__name__})") from None
    try:
        return parse_policies(data, source)
    except PolicyError as exc:
        line = _line_of(text, str(exc), source)
        raise PolicyError(f"{exc} (line {line})" if line else str(exc)) from None


def _line_of(text: str, message: str, source: str) -> int | None:
    """The line the refusal `message` is about: the field's key inside the named policy (or
    rule), else that policy, else a top-level field; None when it cannot be told."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return None
    if not isinstance(root, yaml.MappingNode):
        return None
    rest = message.removeprefix(f"{source}:").strip()
    top = {key.value: (key, value) for key, value in root.value
           if isinstance(key, yaml.ScalarNode)}
    node: yaml.Node | None = None
    if rest.startswith("policy ") and "policies" in top:
        policy_id, _, rest = rest[len("policy "):].partition(":")
        items = top["policies"][1]
        for n, item in enumerate(items.value if isinstance(items, yaml.SequenceNode) else []):
            fields = _keys(item)
            named = fields.get("id")
            if (named is not None and isinstance(named[1], yaml.ScalarNode)
                    and named[1].value == policy_id) or policy_id == f"#{n + 1}":
                node = item
                field_name = rest.strip().split(":", 1)[0].split(".", 1)[0]
                if field_name in fields:
                    node = fields[field_name][0]
                break
    elif rest.startswith("waiver_rules: rule ") and "waiver_rules" in top:
        number = rest[len("waiver_rules: rule "):].split(":", 1)[0]
        rules = top["waiver_rules"][1]
        if number.isdigit() and isinstance(rules, yaml.SequenceNode) \
                and 0 < int(number) <= len(rules.value):
            node = rules.value[int(number) - 1]
    else:
        field_name = rest.split(":", 1)[0].split(".", 1)[0]
        if field_name in top:
            node = top[field_name][0]
    return node.start_mark.line + 1 if node is not None else None


def _keys(node: yaml.Node) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {key.value: (key, value) for key, value in node.value
            if isinstance(key, yaml.ScalarNode)}


# --- what a simulation reports ---------------------------------------------------------------

@dataclass(frozen=True)
class Change:
    """One case whose refund the proposed file changes."""

    case_id: int
    booking_code: str
    currency: str
    product: str
    before: int
    after: int

    @property
    def delta(self) -> int:
        return self.after - self.before


@dataclass
class Tally:
    """The figures of one currency's cases, of one product or one policy (or all of them)."""

    currency: str
    cases: int = 0
    changed: int = 0                 # cases whose refund differs
    refund_before: int = 0           # what the current quotes offered
    refund_after: int = 0            # what the proposed file would offer
    refunded: int = 0                # what has actually left (executions pending/succeeded)
    fees_before: int = 0             # cancellation fees the quotes charged
    fees_after: int = 0
    retained_before: int = 0         # what the business keeps of the order (order - entitled)
    retained_after: int = 0
    auto_before: int = 0             # the bot would approve on its own
    auto_after: int = 0
    person_before: int = 0           # a person must decide
    person_after: int = 0
    unquotable: int = 0              # the proposed file cannot quote it (needs a person)
    biggest: list[tuple[int, int, Change]] = field(default_factory=list)  # a min-heap

    def add(self, before: Quote, after: Quote | None, outcome_before: str,
            outcome_after: str, refunded: int, change: Change | None) -> None:
        self.cases += 1
        self.refund_before += before.total_refund
        self.fees_before += before.fee
        self.retained_before += before.retained
        self.refunded += refunded
        if outcome_before == AUTO:
            self.auto_before += 1
        elif outcome_before == PERSON:
            self.person_before += 1
        if after is not None:
            self.refund_after += after.total_refund
            self.fees_after += after.fee
            self.retained_after += after.retained
        else:
            self.unquotable += 1
        if outcome_after == AUTO:
            self.auto_after += 1
        elif outcome_after == PERSON:
            self.person_after += 1
        if change is not None:
            self.changed += 1
            entry = (abs(change.delta), -change.case_id, change)
            if len(self.biggest) < BIGGEST:
                heapq.heappush(self.biggest, entry)
            elif entry[:2] > self.biggest[0][:2]:
                heapq.heapreplace(self.biggest, entry)

    def biggest_changes(self) -> list[Change]:
        """The biggest changes, largest first (ties: the older case first)."""
        return [c for _, _, c in sorted(self.biggest, key=lambda e: e[:2], reverse=True)]

    @staticmethod
    def rate(count: int, of: int) -> str:
        return f"{100 * count / of:.1f}%" if of else "-"

    def to_dict(self) -> dict[str, Any]:
        money = lambda minor: format_minor(minor, self.currency)  # noqa: E731
        return {
            "currency": self.currency, "cases": self.cases, "changed": self.changed,
            "refund_before": money(self.refund_before), "refund_after": money(self.refund_after),
            "refund_change": money(self.refund_after - self.refund_before),
            "refunded": money(self.refunded),
            "fees_before": money(self.fees_before), "fees_after": money(self.fees_after),
            "retained_before": money(self.retained_before),
            "retained_after": money(self.retained_after),
            "auto_approve_before": self.auto_before, "auto_approve_after": self.auto_after,
            "auto_approve_rate_before": self.rate(self.auto_before, self.cases),
            "auto_approve_rate_after": self.rate(self.auto_after, self.cases),
            "needs_person_before": self.person_before, "needs_person_after": self.person_after,
            "unquotable": self.unquotable,
            "biggest_changes": [{"case": c.case_id, "booking": c.booking_code,
                                 "before": money(c.before), "after": money(c.after),
                                 "change": money(c.delta)} for c in self.biggest_changes()],
        }


AUTO, PERSON, DENY, SKIP = "auto_approve", "needs_person", "deny", "skip"
_OUTCOME = {Status.AUTO_APPROVED: AUTO, Status.PENDING_APPROVAL: PERSON,
            Status.DENIED: DENY, Status.SKIPPED: SKIP}


@dataclass
class Simulation:
    """A simulation's figures: per (currency, product), per (currency, policies) and per
    currency; the reasons the proposed file could not quote some cases; a CSV line per case
    whose refund or decision changes."""

    source: str
    digest: str
    first: datetime | None
    end: datetime | None
    products: dict[tuple[str, str], Tally] = field(default_factory=dict)
    policies: dict[tuple[str, str], Tally] = field(default_factory=dict)
    totals: dict[str, Tally] = field(default_factory=dict)
    unquotable: dict[str, int] = field(default_factory=dict)   # reason -> cases
    unreadable: int = 0     # cases whose stored quote or snapshot no longer reads
    rows: list[tuple[str, ...]] = field(default_factory=list)

    @property
    def cases(self) -> int:
        return sum(t.cases for t in self.totals.values())

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows([csv_cell(value) for value in row] for row in self.rows)
        return out.getvalue()

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy_file": self.source, "policy_digest": self.digest,
            "from": self.first.isoformat() if self.first else None,
            "to": self.end.isoformat() if self.end else None,
            "cases": self.cases, "unreadable": self.unreadable,
            "totals": {cur: t.to_dict() for cur, t in sorted(self.totals.items())},
            "products": [{"product": product, **t.to_dict()}
                         for (_, product), t in sorted(self.products.items())],
            "policies": [{"policies": policies, **t.to_dict()}
                         for (_, policies), t in sorted(self.policies.items())],
            "unquotable": dict(sorted(self.unquotable.items())),
        }


# --- running one ------------------------------------------------------------------------------

async def simulate(svc: Deps, proposed: PolicyBook, *, start: datetime | None = None,
                   end: datetime | None = None, page: int = PAGE) -> Simulation:
    """Every case cancelled in [start, end) (all of them when unset) re-quoted under
    `proposed`; see the module's docstring for what each figure is."""
    if start is not None and end is not None and end <= start:
        raise SimulationError("the end of the range is not after its start")
    result = Simulation(proposed.source, proposed.digest, start, end)
    trial = replace(svc, book=proposed)      # the rules' view of the proposed file
    overrides = await modes.all_overrides(svc.store)   # a finance lead's moves hold under both
    low = _bound(start, -1) if start is not None else ""
    high = _bound(end, 1) if end is not None else "\uffff"
    moments: dict[str, datetime] = {}
    last = 0
    while True:
        found = await svc.store.read_all(_PAGE_SQL, (last, low, high, page))
        if not found:
            break
        last = int(found[-1]["id"])
        for row in found:
            at_text = row["cancelled_at"]
            moment = moments.get(at_text)
            if moment is None:
                moment = moments[at_text] = _moment(at_text)
            if (start is not None and moment < start) or (end is not None and moment >= end):
                continue
            _one(result, row, moment, proposed, svc, trial, overrides)
        await asyncio.sleep(0)   # a long simulation lets intake and the worker run between pages
        if len(found) < page:
            break
    return result


def _one(result: Simulation, row: Any, moment: datetime, proposed: PolicyBook, live: Deps,
         trial: Deps, overrides: dict[str, tuple[str, str]]) -> None:
    currency = row["currency"]
    try:
        before = Quote.from_dict(json.loads(row["quote"]))
        snapshot = parse_snapshot(json.loads(row["snapshot"]), default_currency=currency)
    except (ValueError, KeyError, TypeError, SnapshotError):
        result.unreadable += 1
        return
    main = max(snapshot.lines, key=lambda line: line.total) if snapshot.lines else None
    product = (main.sku or main.name or "-") if main is not None else "-"
    after: Quote | None
    try:
        after = build_quote(snapshot, proposed, moment, waiver=row["waiver"],
                            risk_flags=before.risk_flags)
    except QuoteError as exc:
        after = None
        reason = str(exc)
        result.unquotable[reason] = result.unquotable.get(reason, 0) + 1
    mode_before = modes.mode_of(live.book, live.config.mode, snapshot, overrides).mode
    mode_after = modes.mode_of(proposed, live.config.mode, snapshot, overrides).mode
    outcome_before = decide(live, before, mode_before)
    outcome_after = decide(trial, after, mode_after) if after is not None else PERSON
    refunded = int(row["refunded"] or 0)
    changed = after is None or after.total_refund != before.total_refund
    change = Change(int(row["id"]), row["booking_code"], currency, product,
                    before.total_refund, after.total_refund) \
        if after is not None and changed else None
    policies = " + ".join(after.policy_ids) if after is not None else "(none applies)"
    for tally in (_tally(result.products, (currency, product)),
                  _tally(result.policies, (currency, policies)),
                  result.totals.setdefault(currency, Tally(currency))):
        tally.add(before, after, outcome_before, outcome_after, refunded, change)
    if changed or outcome_before != outcome_after:
        money = lambda minor: format_minor(minor, currency)  # noqa: E731
        result.rows.append((
            str(row["id"]), row["booking_code"], row["cancelled_at"], currency, product,
            " ".join(before.policy_ids), " ".join(after.policy_ids) if after else "",
            money(before.total_refund), money(after.total_refund) if after else "",
            money(after.total_refund - before.total_refund) if after else "",
            outcome_before, outcome_after, money(refunded)))


def decide(svc: Deps, quote: Quote, mode: Mode | None = None) -> str:
    """What the rules a new case meets (`opening`) would make of `quote` under `svc.book` and
    the case's mode (default: the configured one), automation running: auto_approve,
    needs_person, deny or skip."""
    status, _, _ = _initial_status(svc, quote, RUNNING, mode)
    return _OUTCOME.get(status, PERSON)


def _tally(tallies: dict[tuple[str, str], Tally], key: tuple[str, str]) -> Tally:
    tally = tallies.get(key)
    if tally is None:
        tally = tallies[key] = Tally(key[0])
    return tally


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _bound(moment: datetime, seconds: int) -> str:
    """A stored-time bound a little wider than `moment`: stored cancellation times are ISO
    text with or without microseconds, so the exact test is made on the parsed time."""
    return (moment.astimezone(UTC) + timedelta(seconds=seconds)).isoformat()


def biggest_overall(result: Simulation, limit: int = BIGGEST) -> Iterator[Change]:
    """The biggest changes of every currency, largest first (amounts of different currencies
    are compared by their minor units only to choose which to show)."""
    everyone = [c for t in result.totals.values() for c in t.biggest_changes()]
    everyone.sort(key=lambda c: (abs(c.delta), -c.case_id), reverse=True)
    yield from everyone[:limit]
