"""Who may approve what."""

from __future__ import annotations

import pytest

from services.refunds.permissions import ApproverRules, NotAllowed

RULES = ApproverRules.parse(approvers="U1:500.00,U2", group_id="S9", group_max="150.00",
                            finance_leads="UF", no_self_approval=True)


def test_listed_approvers_group_members_and_finance_leads_are_approvers() -> None:
    assert RULES.is_approver("U1") and RULES.is_approver("U2") and RULES.is_approver("UF")
    assert RULES.is_approver("U7", group_members={"U7"})
    assert not RULES.is_approver("U7") and not RULES.is_approver("U8", group_members={"U7"})


@pytest.mark.parametrize(("user", "members", "amount", "allowed"), [
    ("U1", (), 50000, True), ("U1", (), 50001, False),      # up to their own limit
    ("U2", (), 10**9, True),                                 # listed without a limit
    ("U7", ("U7",), 15000, True), ("U7", ("U7",), 15001, False),  # the group's limit
    ("U1", ("U1",), 50000, True),                            # the larger of two limits
    ("UF", (), 10**12, True),                                # finance leads: any amount
    ("U8", (), 1, False),                                    # not an approver at all
])
def test_limits(user: str, members: tuple[str, ...], amount: int, allowed: bool) -> None:
    if allowed:
        RULES.check_approve(user, amount, "USD", group_members=members)
    else:
        with pytest.raises(NotAllowed):
            RULES.check_approve(user, amount, "USD", group_members=members)


def test_the_refusal_names_the_limit_in_the_cases_currency() -> None:
    with pytest.raises(NotAllowed, match="can't approve refunds over 500 JPY"):
        RULES.check_approve("U1", 501, "JPY")


def test_nobody_approves_their_own_request_when_the_setting_is_on() -> None:
    with pytest.raises(NotAllowed, match="someone else"):
        RULES.check_approve("U2", 100, "USD", requested_by="U2")
    RULES.check_approve("U2", 100, "USD", requested_by="U1")
    ApproverRules.parse(approvers="U2").check_approve("U2", 100, "USD", requested_by="U2")
