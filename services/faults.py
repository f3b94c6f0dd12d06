"""Fault points for the fault suite: with `FAULT_POINT=<name>` set, the process ends itself
abruptly (as `kill -9` would) the first time the refund path reaches the step of that name.

Unset (always, outside the fault suite), `reached` does nothing. The variable is read once,
when this module is imported. The named steps, in the order a refund meets them:
`after_case_stored`, `after_approval`, `after_execution_row`, `after_stripe_answered`,
`before_writeback`, `before_slack_update`; and, on the way of any post, `after_slack_post`
(Slack has the message, the bot has not recorded it).
"""

from __future__ import annotations

import os
import sys

POINTS = ("after_case_stored", "after_approval", "after_execution_row",
          "after_stripe_answered", "before_writeback", "before_slack_update",
          "after_slack_post")
ARMED = os.environ.get("FAULT_POINT", "").strip()
EXIT_CODE = 137   # what a shell reports for a process ended by SIGKILL


def reached(point: str) -> None:
    """End the process at once, no clean-up, when `point` is the armed fault point."""
    if ARMED and point == ARMED:
        sys.stderr.write(f"fault point {point} reached: exiting\n")
        sys.stderr.flush()
        os._exit(EXIT_CODE)
