"""The policy file contract: what loads, and how a bad file is refused."""

from __future__ import annotations

import copy
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.quoting.policy import PolicyError, load_policies, parse_policies
from tests.quote_fixtures import policies, policy

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "policies.yml"


def write(tmp_path: Path, data: Any, name: str = "policies.yml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False),
                    encoding="utf-8")
    return path


def valid() -> dict[str, Any]:
    return policies(
        policy("standard-48h", skus=["kayak-tour"], item_ids=[12], fee="10.00",
               non_refundable=["booking-fee"], waivers={"WEATHER": 100}),
        policy("default", default=True, tiers=[(24, 100), (0, 0)]),
    )


def refused(tmp_path: Path, change: Callable[[dict[str, Any]], Any]) -> str:
    data = copy.deepcopy(valid())
    change(data)
    path = write(tmp_path, data)
    with pytest.raises(PolicyError) as caught:
        load_policies(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    return message


def test_shipped_example_policy_file_loads() -> None:
    book = load_policies(EXAMPLE)
    assert book.currency == "USD"
    assert (book.auto_approve_max, book.escalate_over) == (Decimal("200.00"), Decimal("500.00"))
    assert [p.id for p in book.policies] == ["standard-48h", "private-charter-7d", "default"]
    standard = book.by_id("standard-48h")
    assert standard.match.item_ids == ("12",)
    assert standard.cancellation_fee == Decimal("10.00")
    assert standard.waivers == {"WEATHER": Decimal(100), "OPERATOR": Decimal(100)}
    assert book.policy_for("souvenir", "99").id == "default"
    assert book.source == str(EXAMPLE) and book.digest


def test_issue_example_with_inline_yaml_and_comments_loads(tmp_path: Path) -> None:
    text = """\
currency: usd
auto_approve_max: "200.00"
escalate_over: "500.00"
policies:
  - id: standard-48h
    text: "Full refund 48+ hours before the start."
    match: {skus: [kayak-tour, bike-tour], item_ids: [12]}
    tiers:                    # chosen by notice hours
      - {min_notice_hours: 48, refund_percent: 100}
      - {min_notice_hours: 24, refund_percent: 50}
      - {min_notice_hours: 0,  refund_percent: 0}
    non_refundable_skus: [booking-fee, photo-package]
    cancellation_fee: "10.00"
    refund_tax: true
    waivers: {weather: 100, OPERATOR: 100}
"""
    book = load_policies(write(tmp_path, text))
    assert book.currency == "USD"
    assert set(book.policies[0].waivers) == {"WEATHER", "OPERATOR"}
    assert book.policy_for("bike-tour", "").id == "standard-48h"
    assert book.policy_for("other", "12").id == "standard-48h"
    assert book.policy_for("other", "13") is None


@pytest.mark.parametrize(
    ("currency", "fee", "minor"),
    [("JPY", "1000", Decimal(1000)), ("USD", "10.5", Decimal("10.5")),
     ("KWD", "1.234", Decimal("1.234"))],
)
def test_amounts_are_checked_against_the_file_currency(
    tmp_path: Path, currency: str, fee: str, minor: Decimal
) -> None:
    data = policies(policy("p", default=True, fee=fee), currency=currency,
                    auto_approve_max="100", escalate_over="200")
    assert load_policies(write(tmp_path, data)).policies[0].cancellation_fee == minor


def test_fractional_percent_written_as_a_yaml_float_is_read_exactly(tmp_path: Path) -> None:
    text = yaml.safe_dump(policies(policy("p", default=True))).replace(
        "refund_percent: 50", "refund_percent: 33.3")
    book = load_policies(write(tmp_path, text))
    assert book.policies[0].tiers[1].refund_percent == Decimal("33.3")


def test_unknown_top_level_key_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, lambda d: d.update(auto_aprove_max="1.00"))
    assert message.endswith("auto_aprove_max: unknown key")


def test_unknown_key_in_a_policy_names_the_policy_and_the_key(tmp_path: Path) -> None:
    message = refused(tmp_path, lambda d: d["policies"][1].update(refund_taxes=True))
    assert "policy default:" in message and "refund_taxes: unknown key" in message


def test_unknown_key_in_a_tier_names_the_policy_and_the_tier(tmp_path: Path) -> None:
    message = refused(tmp_path, lambda d: d["policies"][0]["tiers"][0].update(hours=3))
    assert "policy standard-48h:" in message and "tiers.0.hours: unknown key" in message


def test_tiers_not_covering_zero_hours_are_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, lambda d: d["policies"][0]["tiers"].pop())
    assert "policy standard-48h: tiers:" in message and "min_notice_hours: 0" in message


def test_two_tiers_with_the_same_notice_are_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, lambda d: d["policies"][0]["tiers"][1].update(
        min_notice_hours=48))
    assert "policy standard-48h: tiers:" in message


def test_empty_tiers_are_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, lambda d: d["policies"][1].update(tiers=[]))
    assert "policy default: tiers:" in message


@pytest.mark.parametrize("percent", [101, -1, "abc"])
def test_tier_percent_outside_0_to_100_is_refused(tmp_path: Path, percent: Any) -> None:
    message = refused(tmp_path, lambda d: d["policies"][0]["tiers"][0].update(
        refund_percent=percent))
    assert "policy standard-48h: tiers.0.refund_percent:" in message


def test_negative_notice_hours_are_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, lambda d: d["policies"][0]["tiers"][0].update(
        min_notice_hours=-1))
    assert "policy standard-48h: tiers.0.min_notice_hours:" in message


def test_waiver_percent_over_100_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, lambda d: d["policies"][0].update(waivers={"WEATHER": 101}))
    assert "policy standard-48h: waivers:" in message and "WEATHER" in message


def test_fee_with_more_decimals_than_the_currency_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, lambda d: d["policies"][0].update(cancellation_fee="10.001"))
    assert "policy standard-48h: cancellation_fee:" in message and "10.001" in message


def test_fee_in_jpy_with_decimals_is_refused(tmp_path: Path) -> None:
    def to_jpy(d: dict[str, Any]) -> None:
        d.update(currency="JPY", auto_approve_max="20000", escalate_over="50000")
        d["policies"][0]["cancellation_fee"] = "10.5"

    assert "policy standard-48h: cancellation_fee:" in refused(tmp_path, to_jpy)


def test_fee_written_as_a_yaml_float_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, lambda d: d["policies"][0].update(cancellation_fee=10.0))
    assert "policy standard-48h: cancellation_fee:" in message and "quoted" in message


@pytest.mark.parametrize("field", ["auto_approve_max", "escalate_over"])
def test_limits_must_be_exact_strings_in_the_currency(tmp_path: Path, field: str) -> None:
    assert f"{field}:" in refused(tmp_path, lambda d: d.update({field: "200.001"}))
    assert f"{field}:" in refused(tmp_path, lambda d: d.update({field: 200.5}))
    assert f"{field}:" in refused(tmp_path, lambda d: d.update({field: "-1.00"}))


def test_negative_fee_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, lambda d: d["policies"][0].update(cancellation_fee="-5.00"))
    assert "policy standard-48h: cancellation_fee:" in message


def test_auto_approve_limit_above_escalation_limit_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, lambda d: d.update(auto_approve_max="600.00"))
    assert "auto_approve_max:" in message and "escalate_over" in message


def test_duplicate_policy_id_is_refused_naming_the_id(tmp_path: Path) -> None:
    message = refused(tmp_path, lambda d: d["policies"].append(
        policy("standard-48h", skus=["bike-tour"])))
    assert "policy standard-48h: id:" in message


def test_two_default_policies_are_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, lambda d: d["policies"].append(
        policy("fallback", default=True)))
    assert "policy fallback: default:" in message


def test_policy_without_text_or_id_is_refused(tmp_path: Path) -> None:
    assert "policy default: text:" in refused(
        tmp_path, lambda d: d["policies"][1].pop("text"))
    assert "policy #2: id:" in refused(tmp_path, lambda d: d["policies"][1].pop("id"))


def test_bad_currency_code_is_refused(tmp_path: Path) -> None:
    assert "currency:" in refused(tmp_path, lambda d: d.update(currency="DOLLARS"))


def test_missing_policy_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yml"
    with pytest.raises(PolicyError, match=r"absent\.yml: cannot read"):
        load_policies(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"currency: [unclosed\n", "not valid YAML"),
        (b"- just\n- a list\n", "must be a mapping"),
        (b"", "must be a mapping"),
        (b"\xff\xfe\x00c", "not a UTF-8 text file"),
    ],
)
def test_unreadable_policy_file_is_a_policy_error(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "bad.yml"
    path.write_bytes(content)
    with pytest.raises(PolicyError) as caught:
        load_policies(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert expected in str(caught.value)


def test_parse_policies_names_its_source() -> None:
    data = valid()
    data["surprise"] = 1
    with pytest.raises(PolicyError, match=r"^settings\.yml: surprise: unknown key$"):
        parse_policies(data, "settings.yml")


def test_tiers_refunding_less_for_more_notice_are_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, lambda d: d["policies"][0]["tiers"][1].update(
        refund_percent=100) or d["policies"][0]["tiers"][0].update(refund_percent=50))
    assert "policy standard-48h: tiers:" in message
    assert "48h notice refunds 50% but 24h refunds 100%" in message
