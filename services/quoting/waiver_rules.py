"""Waiver rules: what Checkfront sends about a cancellation, mapped to a waiver code.

The policy file's `waiver_rules` list them, each naming the waiver it gives and one thing to
look for in the booking of Checkfront's booking webhook:

- `status: WTHR`: the booking's status code (a custom status the business cancels with);
- `field: cancelled_by` with `value: operator` (or a list of values): a booking form field
  (Checkfront's `fields`) holding one of these values, compared without case or outer blanks;
- `field: cancel_reason` with `reason: "storm|high wind"`: a cancellation reason, a regular
  expression searched (case-insensitively) in that form field's text.

The first rule that matches, in file order, gives the waiver. A rule naming a waiver that no
policy offers is refused when the file loads (`check_offered`, from the book's checks).

A status a rule names is a cancellation: it opens a case like `CANCELLED_STATUSES` do, and
the bot treats it as cancelled everywhere else (`statuses`; `services.deps` widens the
deployment's cancelled statuses with them).

Form fields hold contact details and are never stored (`services.privacy` drops `fields`), so
the rules are evaluated on the webhook as it arrives, before it is stored: `mark` puts what
matched on the payload under `waiver_match` (the waiver, the rule's number and where the waiver
came from in words, written from the rule, never from the customer's text), and the worker
reads it back with `recorded`, on the first run as after a restart. A `waiver_match` a sender
put in the body is never trusted: `mark` replaces or removes it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

MARK = "waiver_match"          # the payload key `mark` writes and `recorded` reads
REASON_CHARS = 4000            # of a reason field's text searched (a form field is short)
_STATUS = re.compile(r"^[A-Z0-9_-]{1,32}$")
_CODE = re.compile(r"^[A-Z0-9_-]{1,40}$")


class WaiverRule(BaseModel):
    """One mapping from what Checkfront sends to a waiver code."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    waiver: str
    status: str | None = None
    field: str | None = None
    value: tuple[str, ...] = ()
    reason: str | None = None

    @field_validator("waiver", "status")
    @classmethod
    def _code(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = value.strip().upper()
        if not _CODE.match(code):
            raise ValueError("must be a code of letters, digits, '_' or '-'")
        return code

    @field_validator("field")
    @classmethod
    def _field(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must name a booking form field")
        return value.strip() if value is not None else None

    @field_validator("value", mode="before")
    @classmethod
    def _values(cls, value: Any) -> Any:
        values = value if isinstance(value, list | tuple) else [value]
        for one in values:
            if isinstance(one, bool | float) or not isinstance(one, str | int):
                raise ValueError("write each value as a quoted string, e.g. \"yes\"")
        return tuple(str(v).strip() for v in values)

    @field_validator("reason")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip():
            raise ValueError("must be a regular expression")
        try:
            re.compile(value, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression ({exc})") from None
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> WaiverRule:
        kinds = [k for k, given in (("status", self.status is not None),
                                    ("value", bool(self.value)),
                                    ("reason", self.reason is not None)) if given]
        if len(kinds) != 1:
            raise ValueError("give exactly one of status, value (with field) or reason "
                             "(with field)")
        if self.status is not None:
            if self.field is not None:
                raise ValueError("a status rule takes no field")
            if not _STATUS.match(self.status):
                raise ValueError("status: must be a Checkfront status code such as WTHR")
        elif self.field is None:
            raise ValueError(f"a {kinds[0]} rule needs the booking form field it reads")
        return self

    @cached_property
    def _wanted(self) -> dict[str, str]:
        return {v.casefold(): v for v in self.value}

    @cached_property
    def _compiled(self) -> re.Pattern[str]:
        return re.compile(self.reason or "", re.IGNORECASE)

    def describe(self) -> str:
        """What the rule looks for, in words (the rule's own text only)."""
        if self.status is not None:
            return f"status {self.status}"
        if self.value:
            return f"field {self.field} = {' or '.join(self.value)}"
        return f"field {self.field} matching /{self.reason}/"

    def matches(self, status: str, fields: Mapping[str, Any]) -> str | None:
        """Where the waiver comes from, in words, when the booking matches; else None."""
        if self.status is not None:
            return f"Checkfront status {self.status}" if status == self.status else None
        found = fields.get(self.field or "")
        if found is None:
            return None
        texts = _texts(found)
        if self.value:
            for text in texts:
                hit = self._wanted.get(text.strip().casefold())
                if hit is not None:
                    return f"Checkfront field {self.field} = {hit}"
            return None
        if any(self._compiled.search(text[:REASON_CHARS]) for text in texts):
            return f"Checkfront cancellation reason in field {self.field} matching " \
                   f"/{self.reason}/"
        return None


@dataclass(frozen=True)
class WaiverMatch:
    """The waiver a rule gave a cancellation, and where it came from."""

    waiver: str
    rule: int      # its position in `waiver_rules`, from 1
    source: str    # "Checkfront status WTHR"

    def to_dict(self) -> dict[str, Any]:
        return {"waiver": self.waiver, "rule": self.rule, "source": self.source}

    def text(self) -> str:
        """"waiver WEATHER from Checkfront status WTHR"."""
        return f"waiver {self.waiver} from {self.source}"


def check_offered(rules: Iterable[WaiverRule], offered: Iterable[str]) -> None:
    """Refuse a rule that names a waiver no policy offers (ValueError naming the rule)."""
    codes = sorted(set(offered))
    for n, rule in enumerate(rules, start=1):
        if rule.waiver not in codes:
            raise ValueError(
                f"waiver_rules: rule {n} ({rule.describe()}): waiver {rule.waiver} is not "
                f"offered by any policy (offered: {', '.join(codes) or 'none'})")


def statuses(rules: Iterable[WaiverRule]) -> frozenset[str]:
    """The statuses rules name: cancellations too."""
    return frozenset(rule.status for rule in rules if rule.status is not None)


def match(rules: Iterable[WaiverRule], booking: Mapping[str, Any]) -> WaiverMatch | None:
    """The first rule the booking (a webhook's, form fields included) matches."""
    code = booking.get("status") or booking.get("status_id")
    status = (code if type(code) is str else _text(code)).strip().upper()
    found = booking.get("fields")
    fields: Mapping[str, Any] = found if type(found) is dict or isinstance(found, Mapping) \
        else {}
    for n, rule in enumerate(rules, start=1):
        source = rule.matches(status, fields)
        if source is not None:
            return WaiverMatch(rule.waiver, n, source)
    return None


def mark(rules: tuple[WaiverRule, ...], payload: dict[str, Any]) -> WaiverMatch | None:
    """Before a Checkfront webhook is stored: put what the rules match in its booking on the
    payload (`MARK`), or take away a mark the body brought. Returns the match."""
    payload.pop(MARK, None)
    booking = payload.get("booking")
    if not rules or not (type(booking) is dict or isinstance(booking, Mapping)):
        return None
    found = match(rules, booking)
    if found is not None:
        payload[MARK] = found.to_dict()
    return found


def recorded(payload: Mapping[str, Any]) -> WaiverMatch | None:
    """The match `mark` put on a stored payload, if any."""
    found = payload.get(MARK)
    if not isinstance(found, Mapping):
        return None
    waiver, rule, source = found.get("waiver"), found.get("rule"), found.get("source")
    if not (isinstance(waiver, str) and _CODE.match(waiver) and isinstance(source, str)
            and source and isinstance(rule, int) and not isinstance(rule, bool)):
        return None
    return WaiverMatch(waiver, rule, source)


def _texts(value: Any) -> list[str]:
    """A form field's value as texts: one for a scalar, each of a list (checkboxes)."""
    if type(value) is str:
        return [value]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _texts(v)]
    if isinstance(value, str | int) and not isinstance(value, bool):
        return [str(value)]
    return []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))
