"""Whether what the bot posts to Slack is safe text: what Slack parses (mrkdwn objects, a
message's `text`, a file's comment) holds no mention, link or formatting a user string brought
in, and plain_text shows no entities. Shared by the text-safety tests."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

# Strings people, bookings, Stripe or Checkfront could send: mentions, a disguised link, forged
# formatting, a quote, an ampersand.
EVIL = ("<!channel> <!here> <@U123> <#C999|general> <https://evil.example|verify> "
        "*FORGED* _slanted_ ~struck~ `code` & > quoted")
FORGED = ("*FORGED*", "_slanted_", "~struck~", "`code`")

# What the bot itself puts in mrkdwn: Slack dates, mentions of the workspace's people (the
# stand-in's ids are letters only) and of its channels (an id, no label), links to its own
# cards and to Stripe's payment links, its approver group.
OWN_TOKENS = re.compile(
    r"<!date\^\d+\^\{date_short_pretty\} \{time\}\|[^<>|]+>"
    r"|<@U0[A-Z]+>"
    r"|<#C0[A-Z]+>"
    r"|<https://slack\.com/archives/[A-Z0-9]+/p\d+\|[^<>|]+>"
    r"|<https://buy\.stripe\.com/[\w%./-]+\|[^<>|]+>"
    r"|<!subteam\^S[A-Z0-9]+(?:\|[^<>|]+)?>")
ENTITY = re.compile(r"&(?!amp;|lt;|gt;)")


def texts(params: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(the mrkdwn texts, the plain_text texts) in one recorded Web API call's parameters."""
    parsed: list[str] = []
    plain: list[str] = []
    for key in ("text", "initial_comment"):
        if isinstance(params.get(key), str):
            parsed.append(params[key])
    for key in ("blocks", "view", "attachments"):
        value = params.get(key)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                continue
        for obj in _objects(value):
            if obj.get("type") == "mrkdwn":
                parsed.append(str(obj.get("text") or ""))
            elif obj.get("type") == "plain_text":
                plain.append(str(obj.get("text") or ""))
    return parsed, plain


def _objects(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from _objects(item)


def problems(text: str) -> list[str]:
    """What is live in one mrkdwn text that the bot did not put there itself."""
    found = []
    rest = OWN_TOKENS.sub("", text)
    rest = re.sub(r"(?m)^> ", "", rest)   # the policy clauses the bot quotes (operator text)
    for mark in ("<", ">"):
        if mark in rest:
            at = rest.index(mark)
            found.append(f"live {mark!r}: …{rest[max(at - 30, 0):at + 40]}…")
    if ENTITY.search(text):
        found.append("an unescaped '&'")
    found += [f"formatting {f!r}" for f in FORGED if f in text]
    return found


def plain_problems(text: str) -> list[str]:
    """plain_text is shown as typed: an entity there is shown literally."""
    return [f"entity in plain_text: {text!r}"] if re.search(r"&(amp|lt|gt);", text) else []


def unsafe(params: dict[str, Any]) -> list[str]:
    parsed, plain = texts(params)
    return [p for t in parsed for p in problems(t)] + [p for t in plain for p in plain_problems(t)]
