"""The operating examples README points to say what the code does."""

from __future__ import annotations

import shlex
from collections import defaultdict
from pathlib import Path

from bot.cli.main import build_parser
from bot.settings import Settings

REPO = Path(__file__).resolve().parent.parent


def _service() -> dict[str, list[str]]:
    """The [Service] section's keys, each with every value given (systemd repeats keys)."""
    section, keys = "", defaultdict(list)
    for line in (REPO / "examples" / "refund-bot.service").read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            keys[key].append(value)
    return keys


def test_the_systemd_unit_runs_serve_and_outwaits_the_shutdown_grace() -> None:
    service = _service()
    command = shlex.split(service["ExecStart"][0])
    assert command[1:] == ["-m", "bot", "serve"]
    assert build_parser().parse_args(command[3:]).command == "serve"
    assert service["KillSignal"] == ["SIGTERM"]
    grace = Settings.model_fields["shutdown_grace_seconds"].default
    assert int(service["TimeoutStopSec"][0]) > grace
    assert service["User"] != ["root"] and service["NoNewPrivileges"] == ["yes"]
    settings = dict(e.split("=", 1) for e in service["Environment"])
    assert settings["DATABASE_PATH"].startswith(f"/var/lib/{service['StateDirectory'][0]}/")


def test_the_unit_names_only_settings_the_bot_reads() -> None:
    known = {name.upper() for name in Settings.model_fields}
    names = {e.split("=", 1)[0] for e in _service()["Environment"]}
    assert names and names <= known, names - known
