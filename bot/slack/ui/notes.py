"""Private answers about an interaction that could not do what was asked, and the fix.

- `decided_error`: the plain text shown on a modal's field when the case was decided meanwhile
  (a modal's errors are plain text: no mentions, no date tokens, so the decider is named by
  the name Slack last sent for them, and the time is written in the business's zone).
- `decided_note`: the same in mrkdwn, for an ephemeral answer.
- `already_resumed`: a Resume click once automation runs again.
- `upload_refused`: a `/refund report` upload Slack refused, with what to do about it.
"""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

from bot.slack.ui.kit import date_token, esc, parse_time, plain, who

ERROR_TEXT = 150  # a modal field's error: short enough to read under the field
_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,}")


def decided_error(outcome: str | None, decided_by: str | None, decided_at: str | None,
                  name: str | None, zone: ZoneInfo) -> str:
    """"Already approved by Maria at 14:05 on 24 Nov (Europe/Lisbon); the card shows it." """
    whom = "the refund policy" if decided_by == "policy" else name or "another approver"
    moment = parse_time(decided_at)
    when = f" at {moment.astimezone(zone):%H:%M on %d %b} ({zone.key})" if moment else ""
    text = f"Already {outcome or 'decided'} by {whom}{when}; the card shows the decision."
    return plain(text, ERROR_TEXT)


def decided_note(case_id: int, outcome: str | None, decided_by: str | None,
                 decided_at: str | None) -> str:
    """The same for an ephemeral message (mrkdwn: a mention and a date token)."""
    return (f"Case #{case_id} was already {esc(outcome or 'decided', 40)} by {who(decided_by)} "
            f"at {date_token(decided_at)}; nothing was changed.")


def already_resumed(by: str | None, at: str | None) -> str:
    if not by:
        return "Automation is already running. Nothing was changed."
    return (f"Automation is already running: {who(by)} resumed it at {date_token(at)}. "
            "Nothing was changed.")


def upload_refused(channel: str, error: str) -> str:
    """What to do when Slack refused to post the report's CSV in `channel`."""
    place = f"<#{channel}>" if _CHANNEL_ID.fullmatch(channel) else "this conversation"
    if error == "not_in_channel":
        fix = (f"the bot is not a member of {place}. Invite it (`/invite @Refund bot` in "
               f"{place}) and run the report again.")
    elif error == "channel_not_found":
        fix = (f"the bot cannot see {place} (a private channel it was not added to). Add "
               "it from the channel's settings (Integrations → Add apps) and run the report "
               "again.")
    elif error in ("messages_tab_disabled", "cannot_dm_bot"):
        fix = ("the bot cannot post files in a direct message. Run the report in a channel "
               "the bot is in, such as the approvals channel.")
    elif error == "is_archived":
        fix = f"{place} is archived. Run the report in a channel the bot is in."
    else:
        fix = f"Slack refused it ({esc(error, 60)}). Run the report in a channel the bot is in."
    return f":warning: I could not post the CSV of refunds: {fix}"
