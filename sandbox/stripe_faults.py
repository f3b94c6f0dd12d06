"""Faults the Stripe stand-in can inject into its next matching requests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["500", "429", "timeout", "reset"]
KINDS: tuple[str, ...] = ("500", "429", "timeout", "reset")


@dataclass
class Fault:
    """One fault for the next `times` requests whose method matches and path starts with `path`.

    after_processing defaults to False for "500" and "429", True for "timeout" and "reset".
    kind:
      "500"      answer 500 api_error. Before processing nothing happens and nothing is stored;
                 with after_processing=True the request IS executed and the 500 is what the
                 idempotency cache keeps (Stripe replays the first answer, even a 500).
      "429"      answer 429 rate_limit with `Retry-After: retry_after`; never executed or stored.
      "timeout"  hold the answer for `delay` seconds (longer than the client's timeout).
                 after_processing=True (default for this kind): executed and stored first, so
                 a retry with the same key is replayed. False: the request holds its idempotency
                 key while it sleeps, so a concurrent retry gets 409, then executes.
      "reset"    close the connection without an answer. after_processing=True (default for
                 this kind): executed and stored first (a lost answer). False: nothing happens.
    should_retry: when not None, sent as `Stripe-Should-Retry: true|false` on 500/429 answers.
    """

    kind: FaultKind
    method: str = "POST"
    path: str = "/v1/refunds"
    times: int = 1
    after_processing: bool | None = None
    retry_after: float = 1.0
    delay: float | None = None
    should_retry: bool | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {KINDS}")
        if self.times < 1:
            raise ValueError("times must be at least 1")
        self.method = self.method.upper()
        if self.after_processing is None:
            self.after_processing = self.kind in ("timeout", "reset")

    def matches(self, method: str, path: str) -> bool:
        return self.method == method.upper() and path.startswith(self.path)


class FaultQueue:
    """Faults in injection order; each matching request consumes one use of the first match."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        self._faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.matches(method, path):
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def clear(self) -> None:
        self._faults.clear()

    def __len__(self) -> int:
        return len(self._faults)
