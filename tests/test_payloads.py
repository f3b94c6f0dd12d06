"""The payloads Slack hands back (button values, modal metadata): wire format and parsing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from bot.slack.ui import payloads
from bot.slack.ui.payloads import AdjustForm, CaseRef, IssueRef, QuoteRequest, parse
from services.money import format_minor


def compact(data: Any) -> str:
    """How the cards wrote their values before the models: what cards in Slack still carry."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


versions = st.none() | st.text(min_size=1, max_size=64)
ids = st.integers(min_value=1, max_value=10**15)


@given(ids, versions)
def test_case_ref_is_byte_identical_to_the_old_value_and_round_trips(case_id: int,
                                                                     version: str | None) -> None:
    ref = CaseRef(case_id=case_id, version=version)
    assert ref.dumps() == compact({"case": case_id, "v": version})
    assert parse(CaseRef, ref.dumps()) == ref


@given(ids, versions, st.integers(min_value=0, max_value=10**12),
       st.sampled_from(["USD", "JPY", "KWD", "EUR"]))
def test_adjust_form_keeps_the_decimal_ceiling_on_the_wire(case_id: int, version: str | None,
                                                           ceiling: int, currency: str) -> None:
    form = AdjustForm(case_id=case_id, version=version, ceiling=ceiling, currency=currency)
    decimal = format_minor(ceiling, currency)
    assert form.dumps() == compact({"case": case_id, "v": version, "max": decimal,
                                    "cur": currency})
    back = parse(AdjustForm, form.dumps())
    assert back == form and back.ceiling == ceiling


def test_adjust_form_reads_the_ceiling_in_minor_units() -> None:
    form = parse(AdjustForm, '{"case":12,"v":"abc","max":"252.00","cur":"USD"}')
    assert (form.case_id, form.version, form.ceiling, form.currency) == (12, "abc", 25200, "USD")
    assert parse(AdjustForm, '{"case":1,"v":null,"max":"5000","cur":"JPY"}').ceiling == 5000
    assert parse(AdjustForm, '{"case":1,"v":null,"max":"1.5","cur":"usd"}').currency == "USD"


@pytest.mark.parametrize("text", [
    '{"case":1,"v":"a","max":252,"cur":"USD"}',          # the ceiling travels as a string
    '{"case":1,"v":"a","max":"-1.00","cur":"USD"}',
    '{"case":1,"v":"a","max":"1.5","cur":"JPY"}',
    '{"case":1,"v":"a","max":"10.00"}',
    '{"case":1,"v":"a","cur":"USD"}',
    '{"case":1,"v":"a","max":"10.00","cur":7}',
    '{"case":1,"v":"a","max":"10.00","cur":"USD","x":1}',
    '{"case":1,"v":"a"}',
    '{"case_id":1,"version":"a","ceiling":1000,"currency":"USD"}',  # names are not wire keys
])
def test_adjust_form_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse(AdjustForm, text)


@given(st.text(max_size=200), st.none() | st.text(max_size=40))
def test_quote_request_is_byte_identical_to_the_old_value(booking: str,
                                                          waiver: str | None) -> None:
    request = QuoteRequest(booking=booking, waiver=waiver)
    assert request.dumps() == compact({"b": booking, "w": waiver})
    assert parse(QuoteRequest, request.dumps()) == request


@pytest.mark.parametrize("text", ['{"b":157,"w":null}', '{"w":"X"}', '{"b":"1","w":3}',
                                  '{"b":"1","w":null,"x":0}', '["1",null]', "1", ""])
def test_quote_request_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse(QuoteRequest, text)


def test_quote_request_without_a_waiver_means_none() -> None:
    assert parse(QuoteRequest, '{"b":"KMVQ-1"}') == QuoteRequest(booking="KMVQ-1", waiver=None)


@given(ids)
def test_issue_ref_is_the_bare_id(issue_id: int) -> None:
    assert IssueRef(issue_id).dumps() == str(issue_id)
    assert parse(IssueRef, str(issue_id)).issue_id == issue_id


@pytest.mark.parametrize("text", ["", "x", "0", "-3", "7.0", '"7"', "true", "null",
                                  '{"issue":7}', "[7]"])
def test_issue_ref_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse(IssueRef, text)


@pytest.mark.parametrize("kind", [CaseRef, AdjustForm, QuoteRequest, IssueRef])
@pytest.mark.parametrize("value", [None, 7, b'{"case":1,"v":null}', {"case": 1, "v": None}])
def test_only_strings_are_parsed(kind: type[Any], value: object) -> None:
    with pytest.raises(ValueError):
        parse(kind, value)


def test_payloads_are_frozen_and_strict() -> None:
    ref = CaseRef(case_id=3, version="a")
    with pytest.raises(ValidationError):
        ref.case_id = 4  # type: ignore[misc]
    with pytest.raises(ValidationError):
        CaseRef(case_id="3", version="a")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        CaseRef(case_id=3, version="a", extra=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        IssueRef(0)


def test_validation_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="validation error"):
        parse(CaseRef, '{"case":0,"v":null}')


def test_plain_views() -> None:
    value = payloads.button_value(12, "abc")
    assert value == '{"case":12,"v":"abc"}'
    assert payloads.parse_button_value(value) == (12, "abc")
    assert payloads.parse_metadata(value) == {"case": 12, "v": "abc"}
    adjust = '{"case":12,"v":"abc","max":"252.00","cur":"USD"}'
    assert payloads.parse_metadata(adjust) == {"case": 12, "v": "abc", "max": "252.00",
                                               "cur": "USD"}
    with pytest.raises(ValueError):
        payloads.parse_button_value(adjust)  # a button carries the case alone
