"""`make demo` is the main job: its story runs end to end and ends with an intact audit chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli.demo import run


async def test_the_demo_runs_to_an_intact_audit_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert await run(str(tmp_path)) == 0

    out = capsys.readouterr().out
    for section in ("Customers cancel", "clicks Approve on HBR-1002", "/refund quote HBR-1005",
                    "Home tab", "Waiting for approval (1)", "disputes the charge",
                    "Evidence submitted", "Outcome", "is on it since", "Reminder for",
                    "taken by you (1)", "The local SMTP server received 1 message(s)",
                    "Customer told at", "clicks Details on a waiting card", "*Total refund",
                    "clicks Mark refunded", "refunded_by_hand", "/refund departure bike-tour",
                    "*Finished*", "done 3", "Stripe refunds: 3"):
        assert section in out, section
    assert "intact:" in out and "BROKEN" not in out
