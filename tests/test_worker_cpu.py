"""What the worker does for every new case, kept from growing with the store: the value-outlier
flag's look-back over the latest quotes parses each distinct skus text once (the quotes of one
product share it), not once a quote, and gives the same totals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.refunds import cases
from services.store.db import Store
from tests.test_scale_queries import open_case, reference_totals


async def test_the_look_back_parses_each_distinct_skus_text_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = await Store(tmp_path / "r.db").open()
    try:
        for n in range(40):   # two products, one of them with a second line
            skus = ["kayak"] if n % 2 else ["bike", "lunch"]
            await open_case(store, n, "USD", skus, 5_000 + 10 * n)
        parsed: list[Any] = []
        real = json.loads

        def counting(text: Any, *args: Any, **kwargs: Any) -> Any:
            parsed.append(text)
            return real(text, *args, **kwargs)

        for sku, expected_count in (("kayak", 20), ("lunch", 20), ("boat", 0)):
            args: dict[str, Any] = {"currency": "USD", "sku": sku,
                                    "other_than_booking": "none", "limit": 200}
            expected = await reference_totals(store, **args)
            parsed.clear()
            monkeypatch.setattr(cases.json, "loads", counting)
            try:
                found = await cases.recent_order_totals(store, **args)
            finally:
                monkeypatch.setattr(cases.json, "loads", real)
            assert found == expected and len(found) == expected_count, sku
            assert len(parsed) == 2, parsed   # 40 quotes, two distinct skus texts
    finally:
        await store.close()
