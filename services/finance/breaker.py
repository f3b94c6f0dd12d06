"""The circuit breaker: a blocking anomaly pauses automation, once.

Build one `Breaker` per store and share it among everything that checks for anomalies (the
scheduled jobs own theirs): its lock makes two checks that trip at the same moment pause
automation, and write the audit row, once.
"""

from __future__ import annotations

import asyncio

from services.deps import Deps
from services.finance.anomaly import DETECTOR, Anomaly
from services.refunds.automation import automation_state, set_automation


class Breaker:
    """Pauses automation for blocking anomalies, one trip at a time."""

    def __init__(self, svc: Deps) -> None:
        self.svc = svc
        self._lock = asyncio.Lock()

    async def trip_if_needed(self, anomalies: list[Anomaly]) -> bool:
        """Pause automation for the blocking anomalies; False when none, or already paused."""
        blocking = [a for a in anomalies if a.blocking]
        if not blocking:
            return False
        async with self._lock:
            if (await automation_state(self.svc.store)).paused:
                return False
            reason = "; ".join(a.reason for a in blocking)
            await set_automation(self.svc, paused=True, reason=reason, by=DETECTOR)
            return True
