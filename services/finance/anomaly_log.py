"""The anomalies seen, one `anomalies` row per episode: recording a check's findings and
listing those seen in a period (the digest lists the day's)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta

from services.finance.anomaly import Anomaly
from services.store.db import Store, dumps, iso_utc

EPISODE_GAP = timedelta(hours=1)


async def record(store: Store, anomalies: list[Anomaly], now: datetime) -> list[Anomaly]:
    """Keep what was seen, one row per episode, so the digest can list the day's anomalies.

    A key is `subject:label` (label: the hour or day it was seen). An anomaly whose subject was
    last seen within EPISODE_GAP continues that episode even when the label has moved on (a
    spike at 14:50 is still the same spike at 15:05). Returns the anomalies with their episode
    keys.
    """
    if not anomalies:
        return []
    at = iso_utc(now)
    recent = iso_utc(now - EPISODE_GAP)
    kept: list[Anomaly] = []
    async with store.transaction() as tx:
        for a in anomalies:
            prefix = a.key.rsplit(":", 1)[0] + ":"
            cursor = await tx.execute(
                "SELECT key FROM anomalies WHERE substr(key, 1, ?) = ? "
                "AND substr(key, ?) NOT LIKE '%:%' AND last_seen >= ? "
                "ORDER BY last_seen DESC LIMIT 1", (len(prefix), prefix, len(prefix) + 1, recent))
            row = await cursor.fetchone()
            episode = replace(a, key=row[0]) if row else a
            await tx.execute(
                "INSERT INTO anomalies (key, kind, blocking, reason, numbers, first_seen, "
                "last_seen) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                "reason = excluded.reason, numbers = excluded.numbers, "
                "blocking = excluded.blocking, last_seen = excluded.last_seen",
                (episode.key, a.kind, int(a.blocking), a.reason, dumps(a.numbers), at, at))
            kept.append(episode)
    return kept


async def seen_between(store: Store, start: datetime, end: datetime) -> list[Anomaly]:
    """Anomalies recorded as seen in [start, end), blocking ones first."""
    rows = await store.fetch_all(
        "SELECT * FROM anomalies WHERE last_seen >= ? AND first_seen < ? "
        "ORDER BY blocking DESC, first_seen", (iso_utc(start), iso_utc(end)))
    return [Anomaly(r["kind"], r["key"], bool(r["blocking"]), r["reason"],
                    json.loads(r["numbers"])) for r in rows]
