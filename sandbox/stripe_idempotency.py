"""The Stripe stand-in's idempotency memory: the first answer kept per (API key, idempotency
key), the keys executing right now, and Stripe's pruning of keys after 24 hours.

Stripe documents that keys are removed from its system automatically after they are at least
24 hours old, and that a request reusing a pruned key is treated as a new request. The
stand-in does the same when `ttl_seconds` is set (off by default, so a test asks for it), read
against the stand-in's own clock so a test can move time on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.stripe_params import ApiError

STRIPE_KEY_TTL_SECONDS = 24 * 3600   # Stripe's documented pruning age

Scope = tuple[str, str]              # (API key, idempotency key)


@dataclass(frozen=True)
class StoredAnswer:
    fingerprint: tuple[Any, ...]
    status: int
    body: bytes
    request_id: str
    stored_at: float = 0.0           # the stand-in's clock when the answer was kept


class IdempotencyMemory:
    """Answers by scope, pruned after `ttl_seconds` (None: kept for the stand-in's life)."""

    def __init__(self, clock: Callable[[], float], ttl_seconds: float | None = None) -> None:
        self.clock = clock
        self.ttl_seconds = ttl_seconds
        self._answers: dict[Scope, StoredAnswer] = {}
        self._executing: set[Scope] = set()

    def answer(self, scope: Scope) -> StoredAnswer | None:
        """The kept answer for a scope, unless Stripe would have pruned it by now."""
        stored = self._answers.get(scope)
        if stored is not None and self.ttl_seconds is not None \
                and self.clock() - stored.stored_at >= self.ttl_seconds:
            del self._answers[scope]
            return None
        return stored

    def keep(self, scope: Scope, fingerprint: tuple[Any, ...], status: int, body: bytes,
             request_id: str) -> None:
        self._answers[scope] = StoredAnswer(fingerprint, status, body, request_id,
                                            self.clock())

    def executing(self, scope: Scope) -> bool:
        return scope in self._executing

    def begin(self, scope: Scope) -> None:
        self._executing.add(scope)

    def end(self, scope: Scope) -> None:
        self._executing.discard(scope)


def idempotency_mismatch(key: str) -> ApiError:
    return ApiError(
        400,
        "Keys for idempotent requests can only be used with the same parameters they were "
        f"first used with. Try using a key other than '{key}' if you meant to execute a "
        "different request.",
        type="idempotency_error",
        stored=False,
    )


def in_progress(key: str) -> ApiError:
    return ApiError(
        409,
        "There is currently another in-progress request using this Idempotent Key (that "
        "probably means you submitted twice, and the other request is still going through): "
        f"{key}. Please try again later.",
        stored=False,
    )
