"""The refund quote as data: a quote, its itemised lines, its allocations to payments, its
risk flags and decision, and the quote's JSON form both ways (`Quote.to_dict`, `from_dict`).

`services.quoting.engine.build_quote` makes quotes (with `services.quoting.rules`); this module
only holds what a quote is, so everything that stores, shows or reads a quote imports it alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from services.errors import DomainError
from services.money import exponent, format_minor, to_minor
from services.money import format_places as _format
from services.quoting.frozen import computed_once


class QuoteError(DomainError, ValueError):
    """A booking the rules cannot quote (no policy for a line, amount not expressible...)."""


class Decision(StrEnum):
    SKIP = "skip"
    DENY = "deny"
    AUTO_APPROVE = "auto_approve"
    NEEDS_APPROVAL = "needs_approval"


@dataclass(frozen=True)
class RiskFlag:
    code: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "reason": self.reason}


@dataclass(frozen=True)
class QuoteLine:
    line_id: str
    sku: str
    name: str
    start: str  # ISO-8601 UTC
    notice_hours: str  # decimal string, two places
    policy_id: str
    percent: str
    amount: int  # excluding tax, minor units
    tax: int
    refund: int
    tax_refund: int
    reason: str  # which tier, "non-refundable", "already started", "waiver WEATHER"

    def to_dict(self, currency: str) -> dict[str, Any]:
        """JSON-ready, amounts as decimal strings in `currency` (see `Quote.to_dict`)."""
        return self.to_row(exponent(currency))

    def to_row(self, places: int) -> dict[str, Any]:
        """`to_dict` for a currency of `places` minor digits."""
        amount, tax = _format(self.amount, places), _format(self.tax, places)
        refund, tax_refund = _format(self.refund, places), _format(self.tax_refund, places)
        return {
            "line_id": self.line_id,
            "sku": self.sku,
            "name": self.name,
            "start": self.start,
            "notice_hours": self.notice_hours,
            "policy_id": self.policy_id,
            "percent": self.percent,
            "amount": amount,
            "tax": tax,
            "refund": refund,
            "tax_refund": tax_refund,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Allocation:
    payment: str  # Stripe pi_/ch_ id, or "manual"
    amount: int
    method: str  # "stripe" | "manual"

    def to_dict(self, currency: str) -> dict[str, Any]:
        return {"payment": self.payment, "amount": _format(self.amount, exponent(currency)),
                "method": self.method}


@dataclass(frozen=True)
class Quote:
    booking_id: str
    booking_code: str
    currency: str
    cancelled_at: str
    waiver: str | None
    policy_ids: tuple[str, ...]
    clauses: dict[str, str]
    lines: tuple[QuoteLine, ...]
    fee: int
    entitlement: int
    order_total: int
    paid: int
    already_refunded: int
    net_paid: int
    retained: int
    total_refund: int
    allocations: tuple[Allocation, ...]
    decision: Decision
    reasons: tuple[str, ...]
    risk_flags: tuple[RiskFlag, ...] = ()
    booking_fingerprint: str = ""
    policy_digest: str = ""
    version: str = field(default="")

    def amount(self, minor: int) -> str:
        return format_minor(minor, self.currency)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: amounts as decimal strings in major units with the currency's exponent.

        A fresh dict each call (callers may change it). It equals what `dataclasses.asdict`
        gives with those conversions, which tests/test_quote_serialise.py checks, so a field
        added here must be added there too. The first call hands out the form `build_quote`
        wrote (nothing else holds it, and it is not kept); later calls copy `_serialised`,
        written again from the fields.
        """
        written = self.__dict__.pop("_written", None)
        if written is not None:
            written["version"] = self.version
            return written
        body = self._serialised
        return {
            **body,
            "policy_ids": list(body["policy_ids"]),
            "clauses": dict(body["clauses"]),
            "lines": tuple([dict(line) for line in body["lines"]]),
            "allocations": tuple([dict(a) for a in body["allocations"]]),
            "reasons": list(body["reasons"]),
            "risk_flags": tuple([dict(flag) for flag in body["risk_flags"]]),
            "version": self.version,
        }

    @computed_once
    def _serialised(self) -> dict[str, Any]:
        """Everything `to_dict` says but the version, written out field by field; built once
        (the quote is frozen) and never handed out: `to_dict` gives copies. `build_quote`
        writes the same form from its own values (as `_written`, hashed for the version);
        tests/test_quote_serialise.py compares the two. Not a dataclass field: `fields`,
        `asdict`, `replace` and equality do not see it."""
        currency = self.currency
        places = exponent(currency)
        return {
            "booking_id": self.booking_id,
            "booking_code": self.booking_code,
            "currency": currency,
            "cancelled_at": self.cancelled_at,
            "waiver": self.waiver,
            "policy_ids": list(self.policy_ids),
            "clauses": dict(self.clauses),
            "lines": tuple([line.to_dict(currency) for line in self.lines]),
            "fee": _format(self.fee, places),
            "entitlement": _format(self.entitlement, places),
            "order_total": _format(self.order_total, places),
            "paid": _format(self.paid, places),
            "already_refunded": _format(self.already_refunded, places),
            "net_paid": _format(self.net_paid, places),
            "retained": _format(self.retained, places),
            "total_refund": _format(self.total_refund, places),
            "allocations": tuple([a.to_dict(currency) for a in self.allocations]),
            "decision": self.decision.value,
            "reasons": list(self.reasons),
            "risk_flags": tuple([flag.to_dict() for flag in self.risk_flags]),
            "booking_fingerprint": self.booking_fingerprint,
            "policy_digest": self.policy_digest,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Quote:
        """The inverse of `to_dict`: a stored quote read back, amounts in minor units again.

        Keys a quote stored by an older version lacks take their defaults."""
        currency = str(data["currency"])

        def known(kind: type, row: Mapping[str, Any]) -> dict[str, Any]:
            names = {f.name for f in fields(kind)}
            return {k: v for k, v in row.items() if k in names}

        def minor(row: dict[str, Any], *names: str) -> dict[str, Any]:
            return {**row, **{n: to_minor(str(row[n]), currency) for n in names}}

        body = minor(known(cls, data), *_MONEY_FIELDS)
        body["lines"] = tuple(QuoteLine(**minor(known(QuoteLine, ln), *_LINE_MONEY))
                              for ln in data.get("lines") or ())
        body["allocations"] = tuple(Allocation(**minor(known(Allocation, a), "amount"))
                                    for a in data.get("allocations") or ())
        body["risk_flags"] = tuple(RiskFlag(**known(RiskFlag, f))
                                   for f in data.get("risk_flags") or ())
        body["decision"] = Decision(data["decision"])
        body["policy_ids"] = tuple(data.get("policy_ids") or ())
        body["reasons"] = tuple(data.get("reasons") or ())
        body["clauses"] = dict(data.get("clauses") or {})
        return cls(**body)


_MONEY_FIELDS = ("fee", "entitlement", "order_total", "paid", "already_refunded", "net_paid",
                 "retained", "total_refund")
_LINE_MONEY = ("amount", "tax", "refund", "tax_refund")
