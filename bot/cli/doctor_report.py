"""What `doctor` reports: one `Check` per line (`ok`, `warn`, `FAIL`, `skip`), and masked secrets.

A line is `status  name: detail`, the detail saying what was found or what to fix. Secrets
never appear: `mask` keeps a key's kind and its last four characters (`sk_test_…abcd`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"   # works, but something is worth a look; does not fail the run
    FAIL = "FAIL"   # the bot will not work as configured; exit status 1
    SKIP = "skip"   # cannot run: a setting it needs failed above


@dataclass(frozen=True)
class Check:
    status: Status
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.status.value:<6}{self.name}: {self.detail}"


def ok(name: str, detail: str) -> Check:
    return Check(Status.OK, name, detail)


def warn(name: str, detail: str) -> Check:
    return Check(Status.WARN, name, detail)


def fail(name: str, detail: str) -> Check:
    return Check(Status.FAIL, name, detail)


def skip(name: str, detail: str) -> Check:
    return Check(Status.SKIP, name, detail)


_KIND = re.compile(r"^(?:(?:sk|rk|pk)_(?:test|live)_|whsec_|xox[a-z]-|xapp-)")


def mask(secret: str) -> str:
    """The key's kind and at most its last four characters: `rk_live_…9f3a`, `xoxb-…`."""
    match = _KIND.match(secret)
    head = match.group(0) if match else ""
    rest = secret[len(head):]
    return f"{head}…{rest[-4:]}" if len(rest) >= 12 else f"{head}…"
