"""The example alert rules (examples/prometheus-alerts.yml): well formed, and every metric an
expression names is one the bot exports (read from a real scrape). `promtool check rules`
runs as well when promtool is installed."""

from __future__ import annotations

import re
import shutil
import subprocess

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bot.cli.world import REPO, World

RULES = REPO / "examples" / "prometheus-alerts.yml"
OURS = re.compile(r"\brefund_bot_[a-z0-9_]+\b")
SUFFIXES = ("", "_total", "_count", "_sum", "_bucket", "_created")


def rules() -> list[dict[str, object]]:
    loaded = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def test_the_rules_are_well_formed() -> None:
    found = rules()
    assert len(found) >= 10
    names = [r["alert"] for r in found]
    assert len(set(names)) == len(names), "alert names repeat"
    for rule in found:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert isinstance(rule["expr"], str) and OURS.search(rule["expr"]), rule
        assert rule["labels"]["severity"] in {"page", "warning", "info"}, rule  # type: ignore[index]
        assert rule["annotations"]["summary"], rule  # type: ignore[index]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", str(rule["for"])), rule
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule  # type: ignore[union-attr]


async def test_every_metric_the_rules_name_is_exported(world: World) -> None:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{world.bot_url}/metrics")).text
    # a bot with a scheduler exports its job metrics too: families are listed (HELP/TYPE)
    # before any sample, so an idle bot's scrape names them all
    exported = {family.name + suffix for family in text_string_to_metric_families(text)
                for suffix in SUFFIXES}
    named = {name for rule in rules() for name in OURS.findall(str(rule["expr"]))}
    missing = named - exported
    assert not missing, f"the rules name metrics the bot does not export: {sorted(missing)}"
    for must in ("refund_bot_automation_paused", "refund_bot_outbox_oldest_unsent_age_seconds",
                 "refund_bot_events_total", "refund_bot_api_errors_total",
                 "refund_bot_reconciliation_discrepancies_open", "refund_bot_ready",
                 "refund_bot_scheduler_job_last_success_timestamp_seconds"):
        assert must in named, f"no rule watches {must}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
