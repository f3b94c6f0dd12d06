"""Cancellation policies, read from a YAML file the business edits.

Validation happens at load: a bad file is refused with a message naming the file, the
policy id and the field, never half-applied.

A policy may name the mode its cases are decided in (`mode: shadow|assisted|autonomous`) and a
mode per product of its `match` (`product_modes: {kayak-tour: shadow, "12": autonomous}`, a
product being a sku or an item id the policy matches); both override the deployment's `MODE`
(`services.refunds.modes` resolves them). Modes do not price a quote, so they are left out of
the file's digest: adding or changing one changes no quote's version.
"""

from __future__ import annotations

import hashlib
import itertools
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from services.errors import DomainError
from services.money import MoneyError, normalize_currency, to_minor
from services.quoting.waiver_rules import WaiverRule, check_offered


class PolicyError(DomainError, ValueError):
    """A policy file that cannot be used."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


MODES = ("shadow", "assisted", "autonomous")   # in order of autonomy (services.config.Mode)
MODE_KEYS = ("mode", "product_modes")           # not part of the digest: they price nothing


def _mode_text(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in MODES:
        return value.strip().lower()
    raise ValueError(f"must be one of {', '.join(MODES)}")


class Tier(_Strict):
    min_notice_hours: Decimal = Field(ge=0)
    refund_percent: Decimal = Field(ge=0, le=100)


class Match(_Strict):
    skus: tuple[str, ...] = ()
    item_ids: tuple[str, ...] = ()

    @field_validator("item_ids", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return tuple(str(v) for v in value)
        return value


class Policy(_Strict):
    id: str = Field(min_length=1)
    text: str = Field(min_length=1)
    default: bool = False
    match: Match = Match()
    tiers: tuple[Tier, ...] = Field(min_length=1)
    non_refundable_skus: tuple[str, ...] = ()
    cancellation_fee: Decimal = Decimal(0)
    refund_tax: bool = True
    waivers: dict[str, Decimal] = {}
    # the books (`services.finance.journal`): unset, the book's defaults below
    gl_account: str | None = Field(default=None, min_length=1)
    tax_code: str | None = Field(default=None, min_length=1)
    # the mode this policy's cases are decided in, and per product of its match (unset: MODE)
    mode: str | None = None
    product_modes: dict[str, str] = {}

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> Any:
        return None if value is None else _mode_text(value)

    @field_validator("product_modes", mode="before")
    @classmethod
    def _product_modes(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("must map a sku or item id to a mode")
        return {str(product).strip(): _mode_text(mode) for product, mode in value.items()}

    @model_validator(mode="after")
    def _modes_name_matched_products(self) -> Policy:
        known = set(self.match.skus) | set(self.match.item_ids)
        for product in self.product_modes:
            if product not in known:
                raise ValueError(f"product_modes: {product} is not in this policy's match")
        return self

    @field_validator("cancellation_fee", mode="before")
    @classmethod
    def _fee_is_text(cls, value: Any) -> Any:
        return _amount_text(value)

    @field_validator("waivers")
    @classmethod
    def _waivers(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for code, percent in value.items():
            if not 0 <= percent <= 100:
                raise ValueError(f"waiver {code}: percent must be between 0 and 100")
        return {code.strip().upper(): percent for code, percent in value.items()}

    @field_validator("tiers")
    @classmethod
    def _tiers_cover_zero(cls, value: tuple[Tier, ...]) -> tuple[Tier, ...]:
        if not any(t.min_notice_hours == 0 for t in value):
            raise ValueError("must include one with min_notice_hours: 0")
        if len({t.min_notice_hours for t in value}) != len(value):
            raise ValueError("two tiers share the same min_notice_hours")
        by_notice = sorted(value, key=lambda t: t.min_notice_hours)
        for shorter, longer in itertools.pairwise(by_notice):
            if longer.refund_percent < shorter.refund_percent:  # almost surely a typo
                raise ValueError(
                    f"{longer.min_notice_hours}h notice refunds {longer.refund_percent}% but "
                    f"{shorter.min_notice_hours}h refunds {shorter.refund_percent}%: more notice "
                    "must not refund less")
        return value

    def tier_for(self, notice_hours: Decimal) -> Tier:
        """The tier with the largest min_notice_hours not above the notice."""
        best: Tier | None = None
        for tier in self.tiers:  # min_notice_hours are unique (checked at load)
            hours = tier.min_notice_hours
            if hours <= notice_hours and (best is None or hours > best.min_notice_hours):
                best = tier
        if best is None:
            raise ValueError(f"no tier covers {notice_hours} hours of notice")
        return best

    def applies_to(self, sku: str, item_id: str) -> bool:
        return (bool(sku) and sku in self.match.skus) or (
            bool(item_id) and item_id in self.match.item_ids
        )


class PolicyBook(_Strict):
    currency: str
    auto_approve_max: Decimal
    escalate_over: Decimal
    policies: tuple[Policy, ...] = Field(min_length=1)
    # the books: revenue account and tax code of a policy that names none
    gl_account: str = Field(default="Sales", min_length=1)
    tax_code: str = Field(default="Tax Exempt", min_length=1)
    waiver_rules: tuple[WaiverRule, ...] = ()   # Checkfront's cancellations -> waivers
    source: str = ""
    digest: str = ""

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return normalize_currency(value)

    @field_validator("auto_approve_max", "escalate_over", mode="before")
    @classmethod
    def _limits_are_text(cls, value: Any) -> Any:
        return _amount_text(value)

    @model_validator(mode="after")
    def _consistent(self) -> PolicyBook:
        """Book-level checks; each message starts with "policy <id>: <field>:" or "<field>:"."""
        ids = [p.id for p in self.policies]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"policy {duplicates[0]}: id: used by more than one policy")
        defaults = [p.id for p in self.policies if p.default]
        if len(defaults) > 1:
            raise ValueError(f"policy {defaults[1]}: default: more than one policy has "
                             "default: true")
        for field in ("auto_approve_max", "escalate_over"):
            _check_amount(getattr(self, field), self.currency, field)
        for policy in self.policies:
            _check_amount(policy.cancellation_fee, self.currency,
                          f"policy {policy.id}: cancellation_fee")
        if self.auto_approve_max > self.escalate_over:
            raise ValueError("auto_approve_max: must not exceed escalate_over")
        check_offered(self.waiver_rules, (code for p in self.policies for code in p.waivers))
        return self

    def policy_for(self, sku: str, item_id: str) -> Policy | None:
        for policy in self.policies:
            if policy.applies_to(sku, item_id):
                return policy
        return next((p for p in self.policies if p.default), None)

    def by_id(self, policy_id: str) -> Policy:
        return next(p for p in self.policies if p.id == policy_id)


def _amount_text(value: Any) -> Any:
    """Amounts are written as strings; a YAML float would have lost its exactness already."""
    if isinstance(value, float):
        raise ValueError("write amounts as quoted strings, e.g. \"10.00\"")
    return value


def _check_amount(value: Decimal, currency: str, field: str) -> None:
    if value < 0:
        raise ValueError(f"{field}: must not be negative")
    try:
        to_minor(value, currency)
    except MoneyError as exc:
        raise ValueError(f"{field}: {exc}") from exc


def parse_policies(data: Any, source: str = "<policies>") -> PolicyBook:
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: the policy file must be a mapping")
    try:
        book = PolicyBook.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(_describe(exc, data, source)) from None
    except MoneyError as exc:
        raise PolicyError(f"{source}: {exc}") from None
    # the policies a quote is priced by; the waiver rules pick a waiver, which the quote names
    priced = {key: value for key, value in data.items() if key != "waiver_rules"}
    if isinstance(priced.get("policies"), list):   # nor do modes (they decide, not price)
        priced["policies"] = [
            {k: v for k, v in p.items() if k not in MODE_KEYS} if isinstance(p, dict) else p
            for p in priced["policies"]]
    digest = hashlib.sha256(yaml.safe_dump(priced, sort_keys=True).encode()).hexdigest()[:12]
    return book.model_copy(update={"source": source, "digest": digest})


def load_policies(path: str | Path) -> PolicyBook:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{source}: cannot read policy file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise PolicyError(f"{source}: not a UTF-8 text file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML ({exc.__class__.__name__})") from None
    return parse_policies(data, source)


def _describe(exc: ValidationError, data: dict[str, Any], source: str) -> str:
    """One line: file, policy id (when the error is inside a policy), field, reason."""
    error = exc.errors()[0]
    loc = list(error["loc"])
    where = ""
    if len(loc) >= 2 and loc[0] == "policies" and isinstance(loc[1], int):
        policies = data.get("policies") or []
        raw = policies[loc[1]] if loc[1] < len(policies) else {}
        policy_id = raw.get("id", f"#{loc[1] + 1}") if isinstance(raw, dict) else f"#{loc[1] + 1}"
        where = f" policy {policy_id}:"
        loc = loc[2:]
    elif len(loc) >= 2 and loc[0] == "waiver_rules" and isinstance(loc[1], int):
        where = f" waiver_rules: rule {loc[1] + 1}:"
        loc = loc[2:]
        if not loc:   # the rule as a whole
            return f"{source}:{where} {str(error['msg']).removeprefix('Value error, ')}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    if not loc and not where:  # a book-level check: its message names policy and field
        return f"{source}: {message}"
    field = ".".join(str(part) for part in loc) or "(policy)"
    return f"{source}:{where} {field}: {message}"
