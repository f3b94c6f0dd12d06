"""Slack's Web API rate limits, for the Slack stand-in (`SlackSandbox.rate_limits`).

chat.postMessage about one message a second per channel with short bursts; every other method
its tier's requests a minute (Tier 1: 1+, 2: 20+, 3: 50+, 4: 100+), per method, with a small
burst. (Slack's workspace-wide posting limit has no published number and is not modelled.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.rate_limit import Buckets, Limit

# The tier of each method served here, as Slack's method reference lists them (chat.postMessage
# has its own per-channel limit; chat.getPermalink and auth.test are "special", kept at Tier 4).
METHOD_TIERS = {
    "auth.test": 4, "chat.update": 3, "chat.delete": 3, "chat.postEphemeral": 4,
    "chat.getPermalink": 4, "views.open": 4, "views.push": 4, "views.update": 4,
    "views.publish": 4, "usergroups.users.list": 2, "users.info": 4, "conversations.info": 3,
    "files.getUploadURLExternal": 4, "files.completeUploadExternal": 4,
    "conversations.open": 3,
}

POST_MESSAGE_LIMIT = Limit(1.0, burst=3)   # per channel: one a second, short bursts


def _default_tiers() -> dict[int, Limit]:
    return {1: Limit.per_minute(1), 2: Limit.per_minute(20), 3: Limit.per_minute(50),
            4: Limit.per_minute(100)}


@dataclass(frozen=True)
class SlackLimits:
    """Slack's Web API limits: chat.postMessage per channel, the others per method by tier."""

    post_message: Limit = POST_MESSAGE_LIMIT
    tiers: dict[int, Limit] = field(default_factory=_default_tiers)

    def of(self, method: str, params: dict[str, Any]) -> tuple[tuple[str, str], Limit] | None:
        """The bucket a call takes from (its key and limit); None for a method not limited."""
        if method == "chat.postMessage":
            return (method, str(params.get("channel", ""))), self.post_message
        tier = METHOD_TIERS.get(method)
        if tier is None or tier not in self.tiers:
            return None
        return (method, ""), self.tiers[tier]


class Limiter:
    """The buckets of one `SlackLimits`, made as calls need them."""

    def __init__(self, limits: SlackLimits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self._clock = clock
        self._buckets: dict[tuple[str, str], Buckets] = {}

    def wait(self, method: str, params: dict[str, Any]) -> float:
        found = self.limits.of(method, params)
        if found is None:
            return 0.0
        key, limit = found
        buckets = self._buckets.get(key)
        if buckets is None:
            buckets = self._buckets[key] = Buckets(limit, self._clock)
        return buckets.take()
