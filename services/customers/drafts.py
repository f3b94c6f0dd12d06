"""Drafting a customer message: a closed case's outcome -> facts -> template -> subject, text, HTML.

The facts are what the customer is owed an explanation of: what was refunded and how it was
computed (each line's policy clause, notice hours and share, the fees retained), where the
money goes (the card's brand and last four from Stripe's payment method details, nothing
more), when to expect it (card refunds: 5-10 business days; a part refunded by hand: the team
sends it), and a rebooking link when one is set.

The templates are files the business edits (`templates/customer/<language>/<outcome>.txt` and
`.html`, Jinja2; the HTML is autoescaped). The booking's language is used when its template
exists (`es_MX`, then `es`), else English. A `.txt` template's first line is `Subject: ...`.
Amounts are formatted by `babel.numbers.format_currency` for the currency and that locale,
from integer minor units through `Decimal` (never float).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.numbers import format_currency
from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    select_autoescape,
)

from services.money import exponent
from services.quoting.quote import Quote
from services.refunds.models import Case

DEFAULT_LANGUAGE = "en"
TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "customer"
CARD_DAYS = "5-10"   # Stripe: a card refund reaches the statement in 5-10 business days


@dataclass(frozen=True)
class Line:
    name: str
    clause: str
    notice_hours: str
    percent: str
    refund: str


@dataclass(frozen=True)
class Facts:
    """Everything a template may say, already formatted for the customer's locale."""

    outcome: str
    booking_code: str
    first_name: str
    refunded: str          # what went back through Stripe
    by_hand: str | None    # what the team refunds by hand, if anything
    quoted: str            # what the policy gave (an adjusted refund says both)
    paid: str
    retained: str          # what the policy keeps (fees and the non-refundable share)
    fee: str | None        # the cancellation fee, when there is one
    waiver: str | None
    lines: tuple[Line, ...]
    cards: tuple[tuple[str, str], ...]   # (brand, last four) of each card refunded to
    card_days: str
    rebooking_url: str | None
    reason: str | None         # why (a denial's policy reason)

    def as_context(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class Draft:
    outcome: str
    language: str
    subject: str
    text: str
    html: str


class Templates:
    """The template folder: one Jinja2 environment, the languages it holds."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or TEMPLATES
        self.env = Environment(
            loader=FileSystemLoader(str(self.folder)), undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)

    def language_for(self, wanted: str, outcome: str) -> str:
        """The booking's language if a template of this outcome exists in it (`es_MX`, then
        `es`), else English."""
        for candidate in _candidates(wanted):
            if (self.folder / candidate / f"{outcome}.txt").is_file():
                return candidate
        return DEFAULT_LANGUAGE

    def render(self, facts: Facts, language: str) -> Draft:
        lang = self.language_for(language, facts.outcome)
        context = facts.as_context()
        try:
            text = self.env.get_template(f"{lang}/{facts.outcome}.txt").render(context)
            html = self.env.get_template(f"{lang}/{facts.outcome}.html").render(context)
        except TemplateNotFound as exc:
            raise FileNotFoundError(f"customer template missing: {exc.name}") from exc
        subject, text = split_subject(text)
        return Draft(facts.outcome, lang, subject, text, html)


def split_subject(text: str) -> tuple[str, str]:
    """A `.txt` template's `Subject:` first line, and the body after it."""
    head, _, body = text.partition("\n")
    if not head.lower().startswith("subject:"):
        raise ValueError("a customer .txt template starts with a 'Subject: ...' line")
    return head.split(":", 1)[1].strip(), body.lstrip("\n")


def amount(minor: int, currency: str, language: str) -> str:
    """Minor units as the customer reads them: `format_currency` on the exact Decimal."""
    major = Decimal(minor).scaleb(-exponent(currency))
    return format_currency(major, currency, locale=_locale(language))


def facts_for(case: Case, quote: Quote, outcome: str, *, refunded: int, by_hand: int,
              first_name: str, language: str, cards: list[tuple[str, str]],
              rebooking_url: str | None) -> Facts:
    """The facts of a closed case: `refunded` what Stripe refunded, `by_hand` what is left to
    the team; `cards` (brand, last four) of the payments refunded to."""
    c = case.currency

    def fmt(minor: int) -> str:
        return amount(minor, c, language)

    lines = tuple(
        Line(line.name, quote.clauses.get(line.policy_id, line.reason), line.notice_hours,
             line.percent, fmt(line.refund + line.tax_refund))
        for line in quote.lines)
    return Facts(
        outcome=outcome, booking_code=case.booking_code, first_name=first_name,
        refunded=fmt(refunded), by_hand=fmt(by_hand) if by_hand > 0 else None,
        quoted=fmt(quote.total_refund), paid=fmt(quote.net_paid), retained=fmt(quote.retained),
        fee=fmt(quote.fee) if quote.fee > 0 else None, waiver=quote.waiver, lines=lines,
        cards=tuple((_brand(brand), last4[-4:]) for brand, last4 in cards),
        card_days=CARD_DAYS, rebooking_url=rebooking_url or None,
        reason="; ".join(quote.reasons) or None)


def _brand(brand: str) -> str:
    names = {"amex": "American Express", "diners": "Diners Club", "mastercard": "Mastercard",
             "unionpay": "UnionPay", "jcb": "JCB"}
    return names.get(brand.lower(), brand.title())


def _candidates(wanted: str) -> list[str]:
    tag = (wanted or "").strip().replace("-", "_")
    if not tag:
        return []
    try:
        parsed = Locale.parse(tag)
    except (ValueError, UnknownLocaleError):
        return []
    full = f"{parsed.language}_{parsed.territory}" if parsed.territory else parsed.language
    return list(dict.fromkeys([full, parsed.language]))


def _locale(language: str) -> Locale:
    try:
        return Locale.parse((language or DEFAULT_LANGUAGE).replace("-", "_"))
    except (ValueError, UnknownLocaleError):
        return Locale.parse(DEFAULT_LANGUAGE)
