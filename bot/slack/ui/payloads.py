"""Owns what Slack hands back to the bot: the values of buttons and the metadata of modals.

Each payload is a frozen pydantic model with strict types. Builders write one with `dumps()`;
listeners read one with `parse(Model, text)`, the only reader, which raises ValueError
(pydantic's ValidationError is one) on anything malformed. On the wire a payload is compact
JSON with short keys, byte for byte what the cards already in Slack carry, so changing a key
strands the buttons on every card posted before:

    CaseRef       {"case":12,"v":"996a74698e0b"}    Approve, Deny, Adjust, Retry; the Deny modal
    AdjustForm    {"case":12,"v":"996a74698e0b","max":"252.00","cur":"USD"}    the Adjust modal
    QuoteRequest  {"b":"157","w":"WEATHER"}         Request refund, under a `/refund quote`
    IssueRef      7                                  dispute and failed-payment buttons
    EventRef      12                                 Retry on a stuck webhook event's card
    ModeOffer     {"p":"kayak-tour","f":"assisted","t":"autonomous","w":"2025-W14"}
                                                     the weekly review's mode change

`v` is the quote version the card showed (null when it showed none), `max` the most the
adjusted amount may be (paid, less earlier refunds) as a decimal string in `cur`; inside the
model it is an int in minor units.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    TypeAdapter,
    field_serializer,
    model_validator,
)

from services.money import format_minor, normalize_currency, to_minor

Id = Annotated[int, Field(gt=0)]
Version = Annotated[str, Field(min_length=1)]
Currency = Annotated[str, AfterValidator(normalize_currency)]

P = TypeVar("P")


class Payload(BaseModel):
    """A JSON object on the wire; fields are read by their short wire keys (the aliases)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True,
                              validate_by_name=True, validate_by_alias=True)

    def wire(self) -> dict[str, Any]:
        """The object as it travels, short keys and all."""
        return self.model_dump(mode="json", by_alias=True)

    def dumps(self) -> str:
        return json.dumps(self.wire(), separators=(",", ":"), ensure_ascii=False)


def minor_from_wire(data: Any, key: str) -> Any:
    """For a payload's `mode="before"` validator: the amount under `key`, a decimal string
    ("252.00") on the wire in the currency under "cur" beside it, as minor units."""
    if isinstance(data, dict) and key in data:
        text, code = data[key], data.get("cur")
        if not isinstance(text, str) or not isinstance(code, str):
            raise ValueError(f'"{key}" must be a decimal string and "cur" a currency code')
        data = {**data, key: to_minor(text, code)}  # MoneyError is a ValueError
    return data


class CaseRef(Payload):
    """A refund case and the quote version its card showed."""

    case_id: Id = Field(alias="case")
    version: Version | None = Field(alias="v")


class AdjustForm(CaseRef):
    """The Adjust modal's metadata: the case, and the ceiling for the adjusted amount."""

    ceiling: int = Field(alias="max", ge=0)  # minor units of `currency`
    currency: Currency = Field(alias="cur")

    @model_validator(mode="before")
    @classmethod
    def _ceiling_from_wire(cls, data: Any) -> Any:
        return minor_from_wire(data, "max")

    @field_serializer("ceiling")
    def _ceiling_to_wire(self, ceiling: int) -> str:
        return format_minor(ceiling, self.currency)


class QuoteRequest(Payload):
    """A booking (id or code, as quoted) and the waiver the quote was made with."""

    booking: str = Field(alias="b")
    waiver: str | None = Field(alias="w", default=None)


class IssueRef(RootModel[Id]):
    """A dispute or failed payment: on the wire its id alone, as digits."""

    model_config = ConfigDict(frozen=True, strict=True)

    @property
    def issue_id(self) -> int:
        return self.root

    def dumps(self) -> str:
        return str(self.root)


class EventRef(RootModel[Id]):
    """A stored webhook event: on the wire its row id alone, as digits."""

    model_config = ConfigDict(frozen=True, strict=True)

    @property
    def event_id(self) -> int:
        return self.root

    def dumps(self) -> str:
        return str(self.root)


class ModeOffer(Payload):
    """A mode change the weekly review offers: product, from and to mode, the review's week."""

    product: str = Field(alias="p", min_length=1, max_length=200)
    from_mode: str = Field(alias="f", pattern="^(shadow|assisted|autonomous)$")
    to_mode: str = Field(alias="t", pattern="^(shadow|assisted|autonomous)$")
    week: str = Field(alias="w", pattern=r"^\d{4}-W\d{2}$")

    @property
    def key(self) -> str:   # services.finance.agreement.Offer.key
        return f"{self.product}|{self.from_mode}|{self.to_mode}|{self.week}"


@cache
def _adapter(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def parse(kind: type[P], text: object) -> P:
    """The payload `kind` (a model, or a union of them) read from a button value or a modal's
    private_metadata; ValueError on anything that is not exactly one."""
    if not isinstance(text, str):
        raise ValueError(f"a payload is a string, not {type(text).__name__}")
    payload: P = _adapter(kind).validate_json(text, by_alias=True, by_name=False)
    return payload


# --- plain views, for callers that want values rather than models -------------------------

def button_value(case_id: int, version: str | None) -> str:
    """The value of a refund case's buttons: `CaseRef` on the wire."""
    return CaseRef(case_id=case_id, version=version).dumps()


def parse_button_value(value: object) -> tuple[int, str | None]:
    """(case id, quote version) from a refund case's button; ValueError on anything else."""
    ref = parse(CaseRef, value)
    return ref.case_id, ref.version


def parse_metadata(value: object) -> dict[str, Any]:
    """A refund modal's private_metadata (Deny's `CaseRef` or Adjust's `AdjustForm`) as the
    dict it is on the wire; ValueError on anything else."""
    form: CaseRef = parse(CaseRef | AdjustForm, value)  # type: ignore[arg-type]
    return form.wire()
