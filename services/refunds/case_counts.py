"""What the finance side counts of refund cases and decisions: the daily stats' denials and
waits, and what the anomaly checks count (cases by source, repeat customers, cases per sku in
their booking's items, the departure most of one sku's cases share). Each is a read on the
store's read-only connection (`Store.read_one`/`read_all`).
"""

from __future__ import annotations

import json
from typing import Any

from services.store.db import Store


async def denials_between(store: Store, start: str, end: str) -> int:
    """Denials decided in [start, end) (stored ISO times)."""
    row = await store.read_one(
        "SELECT COUNT(*) AS n FROM decisions WHERE decision = 'deny' AND decided_at >= ? "
        "AND decided_at < ?", (start, end))
    return int(row["n"]) if row else 0


async def waiting_since_before(store: Store, cutoff: str,
                               limit: int = 100) -> list[tuple[int, str, str]]:
    """(case id, booking code, since) of cases waiting for a person since before `cutoff`,
    longest waiting first."""
    rows = await store.read_all(
        "SELECT id, booking_code, updated_at FROM cases WHERE status = 'pending_approval' "
        "AND updated_at < ? ORDER BY updated_at LIMIT ?", (cutoff, limit))
    return [(int(r["id"]), r["booking_code"], r["updated_at"]) for r in rows]


async def opened_by_source(store: Store, start: str, end: str) -> dict[str, int]:
    """Cases opened in [start, end), counted by where they came from."""
    rows = await store.read_all(
        "SELECT source, COUNT(*) AS n FROM cases WHERE created_at >= ? AND created_at < ? "
        "GROUP BY source", (start, end))
    return {r["source"]: int(r["n"]) for r in rows}


async def repeat_customers(store: Store, since: str, statuses: tuple[str, ...],
                           at_least: int, limit: int = 50) -> list[tuple[str, int]]:
    """(customer hash, cases) for customers with at least `at_least` cases in `statuses`
    opened since `since`, most first."""
    marks = ",".join("?" for _ in statuses)
    rows = await store.read_all(
        "SELECT customer_hash, COUNT(*) AS n FROM cases WHERE customer_hash IS NOT NULL "
        f"AND created_at >= ? AND status IN ({marks}) GROUP BY customer_hash "
        "HAVING COUNT(*) >= ? ORDER BY n DESC LIMIT ?",
        (since, *statuses, at_least, limit))
    return [(str(r["customer_hash"]), int(r["n"])) for r in rows]


async def cancelled_skus(store: Store, start: str, end: str) -> dict[str, int]:
    """Cases opened in [start, end) per sku in their booking's items (a case counts once per
    sku)."""
    counts: dict[str, int] = {}
    for _, snapshot in await current_snapshots(store, start, end):
        for sku in {str(value) for value, _ in item_skus(snapshot) if value}:
            counts[sku] = counts.get(sku, 0) + 1
    return counts


async def current_snapshots(store: Store, start: str, end: str) -> list[tuple[int, str]]:
    """(case id, its current quote's booking snapshot as stored JSON text) of the cases opened
    in [start, end)."""
    rows = await store.read_all(
        "SELECT c.id, q.snapshot FROM cases c "
        "JOIN quotes q ON q.case_id = c.id AND q.version = c.quote_version "
        "WHERE c.created_at >= ? AND c.created_at < ?", (start, end))
    return [(int(r["id"]), r["snapshot"]) for r in rows]


def item_skus(snapshot: str) -> list[tuple[Any, Any]]:
    """Every `sku` member of any object under the snapshot's booking.order.items, at any depth,
    with that object's `start_date` (None when it has none): (sku, start_date). Containers are
    given as compact JSON text, as SQLite's json_tree gives them."""
    try:
        items = json.loads(snapshot)["booking"]["order"]["items"]
    except (TypeError, KeyError, ValueError):
        return []
    found: list[tuple[Any, Any]] = []

    def scalar(value: Any) -> Any:
        if isinstance(value, dict | list):
            return json.dumps(value, separators=(",", ":"))
        return value

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "sku" in node:
                found.append((scalar(node["sku"]), scalar(node.get("start_date"))))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(items)
    return found


async def busiest_departure(store: Store, sku: str, start: str, end: str
                            ) -> tuple[str, int] | None:
    """Of the cases opened in [start, end) with a line of `sku`, the line start most of them
    share, and how many: (start as the quote's snapshot has it, count), or None. The anomaly
    check's sku spike names it so its alert can offer the departure's card (read from the
    cases' quotes, as `cancelled_skus` counts them)."""
    counts: dict[Any, int] = {}
    for _, snapshot in await current_snapshots(store, start, end):
        for starts in {starts for value, starts in item_skus(snapshot) if value == sku}:
            counts[starts] = counts.get(starts, 0) + 1
    if not counts:
        return None
    # most cases first; a tie goes to the earliest start (no start first, numbers before text)
    starts, n = min(counts.items(), key=lambda kv: (-kv[1], *_sql_order(kv[0])))
    if starts is None:
        return None
    return str(starts), n


def _sql_order(value: Any) -> tuple[int, Any]:
    """Where `value` sorts among mixed values as SQL's ORDER BY puts them (SQLite's order:
    null, then numbers, then text)."""
    if value is None:
        return 0, 0
    if isinstance(value, bool | int | float):
        return 1, value
    return 2, str(value)
