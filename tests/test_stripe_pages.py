"""The Stripe stand-in's list pages (binary searches over a cached order) against the plain
definition: filter by `created`, order newest first, cut at the cursor, take `limit`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.stripe_params import Ordered, list_page


@dataclass
class Item:
    id: str
    created: int
    seq: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id}


def plain_page(items: list[Item], params: dict[str, Any]) -> tuple[list[str], bool]:
    limit = int(params.get("limit", "10"))
    bounds = params.get("created", {})
    ops = {"gt": lambda c, v: c > v, "gte": lambda c, v: c >= v, "lt": lambda c, v: c < v,
           "lte": lambda c, v: c <= v, "eq": lambda c, v: c == v}
    rows = sorted((i for i in items if all(ops[op](i.created, int(v))
                                           for op, v in bounds.items())),
                  key=lambda i: (i.created, i.seq), reverse=True)
    by_id = {i.id: i for i in items}
    if "starting_after" in params:
        mark = by_id[params["starting_after"]]
        rows = [r for r in rows if (r.created, r.seq) < (mark.created, mark.seq)]
        return [r.id for r in rows[:limit]], len(rows) > limit
    if "ending_before" in params:
        mark = by_id[params["ending_before"]]
        rows = [r for r in rows if (r.created, r.seq) > (mark.created, mark.seq)]
        return [r.id for r in rows[-limit:]], len(rows) > limit
    return [r.id for r in rows[:limit]], len(rows) > limit


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[Item], dict[str, Any]]:
    createds = draw(st.lists(st.integers(0, 12), min_size=1, max_size=40))
    items = [Item(f"re_{n}", created, n) for n, created in enumerate(createds)]
    params: dict[str, Any] = {"limit": str(draw(st.integers(1, 8)))}
    bounds = draw(st.dictionaries(st.sampled_from(["gt", "gte", "lt", "lte", "eq"]),
                                  st.integers(-1, 13).map(str), max_size=2))
    if bounds:
        params["created"] = bounds
    cursor = draw(st.sampled_from([None, "starting_after", "ending_before"]))
    if cursor:
        params[cursor] = draw(st.sampled_from(items)).id
    return items, params


@settings(max_examples=400, deadline=None)
@given(cases())
def test_a_page_is_what_the_plain_definition_gives(case: tuple[list[Item], dict[str, Any]]) -> None:
    items, params = case
    everything = {i.id: i for i in items}

    page = list_page(Ordered.fresh(items), everything, params, "/v1/refunds", "refund")

    assert ([d["id"] for d in page["data"]], page["has_more"]) == plain_page(items, params)


def test_the_order_is_kept_until_the_set_changes_or_an_item_moves() -> None:
    items = [Item("re_a", 5, 1), Item("re_b", 7, 2)]
    order = Ordered()
    assert [i.id for i in order.of(items).rows] == ["re_a", "re_b"]
    items[0].created = 9
    assert [i.id for i in order.of(items).rows] == ["re_a", "re_b"]       # nobody said so
    assert [i.id for i in order.of(items, generation=1).rows] == ["re_b", "re_a"]
    items.append(Item("re_c", 1, 3))
    assert [i.id for i in order.of(items, generation=1).rows] == ["re_c", "re_b", "re_a"]
