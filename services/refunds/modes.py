"""The mode per product: which of shadow, assisted and autonomous decides a case, and where
that came from.

Precedence, first found wins: the stored override a finance lead set for the product (the
weekly review's button, `change_mode`), the policy file's `product_modes` for it, the mode of
the policy that prices it, the deployment's `MODE`. A product is named by a line's sku, or its
item id when it has none; the override and the file's `product_modes` are looked up by either.
A booking of several products is decided in the most cautious of their modes (shadow before
assisted before autonomous; the main line's, the line of the largest total, on a tie): one
refund covers every line, so a product not yet trusted with automation keeps the whole case
for a person. The case is recorded under the product whose mode decided it.

Every change of a product's mode answers an offer (the review's, keyed on product, from, to and
week): read, checked and written in one transaction with its audit row, so two clicks make one
change and a stale offer (the mode moved meanwhile) changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import aiosqlite

from services.config import Mode
from services.quoting.booking import BookingLine, BookingSnapshot
from services.quoting.policy import PolicyBook
from services.refunds.automation import AUTOMATION_KEY, Automation
from services.store import audit
from services.store.db import Store, now_iso, one, reads, rows, write

ORDER = (Mode.SHADOW, Mode.ASSISTED, Mode.AUTONOMOUS)
OVERRIDE, PRODUCT, POLICY, GLOBAL = "override", "product", "policy", "global"


@dataclass(frozen=True)
class EffectiveMode:
    mode: Mode
    source: str            # override | product | policy | global
    product: str           # "" when the booking has no line
    policy_id: str | None = None
    by: str | None = None  # who set an override

    def text(self) -> str:
        """"assisted mode (policy standard-48h)": the mode and where it came from, in words."""
        where = {OVERRIDE: f"set for {self.product}" + (f" by {self.by}" if self.by else ""),
                 PRODUCT: f"policy {self.policy_id} for {self.product}",
                 POLICY: f"policy {self.policy_id}", GLOBAL: "MODE"}[self.source]
        return f"{self.mode} mode ({where})"

    def audit(self) -> dict[str, str | None]:
        return {"mode": str(self.mode), "mode_from": self.source, "product": self.product}


@dataclass(frozen=True)
class ModeChange:
    changed: bool
    product: str
    from_mode: str
    to_mode: str
    by: str
    at: str
    why: str
    message: str = ""   # why nothing changed, for the person who clicked


def next_mode(mode: Mode) -> Mode | None:
    at = ORDER.index(mode)
    return ORDER[at + 1] if at + 1 < len(ORDER) else None


def previous_mode(mode: Mode) -> Mode | None:
    at = ORDER.index(mode)
    return ORDER[at - 1] if at > 0 else None


def main_line(snapshot: BookingSnapshot) -> BookingLine | None:
    best: BookingLine | None = None
    for line in snapshot.lines:
        if best is None or line.total > best.total:
            best = line
    return best


def product_of(line: BookingLine | None) -> str:
    return "" if line is None else (line.sku or line.item_id)


def resolve(book: PolicyBook, global_mode: Mode, sku: str, item_id: str,
            overrides: dict[str, tuple[str, str]]) -> EffectiveMode:
    """The mode of a product named by sku and/or item id; `overrides`: product -> (mode, by)."""
    product = sku or item_id
    for key in (sku, item_id):
        if key and key in overrides:
            mode, by = overrides[key]
            return EffectiveMode(Mode(mode), OVERRIDE, product, by=by)
    policy = book.policy_for(sku, item_id) if product else None
    if policy is None:
        return EffectiveMode(global_mode, GLOBAL, product)
    for key in (sku, item_id):
        if key and key in policy.product_modes:
            return EffectiveMode(Mode(policy.product_modes[key]), PRODUCT, product, policy.id)
    if policy.mode is not None:
        return EffectiveMode(Mode(policy.mode), POLICY, product, policy.id)
    return EffectiveMode(global_mode, GLOBAL, product, policy.id)


def _lines_by_weight(snapshot: BookingSnapshot) -> list[BookingLine]:
    """The booking's lines, the main line (largest total, the first on a tie) first."""
    main = main_line(snapshot)
    return [] if main is None else [main, *(line for line in snapshot.lines if line is not main)]


def cautious(book: PolicyBook, global_mode: Mode, snapshot: BookingSnapshot,
             overrides: dict[str, tuple[str, str]]) -> EffectiveMode:
    """The mode a case of this booking is decided in: the most cautious of its lines' modes
    (the main line's on a tie); the global mode for a booking without lines."""
    chosen: EffectiveMode | None = None
    for line in _lines_by_weight(snapshot):
        mode = resolve(book, global_mode, line.sku, line.item_id, overrides)
        if chosen is None or ORDER.index(mode.mode) < ORDER.index(chosen.mode):
            chosen = mode
    return chosen if chosen is not None else EffectiveMode(global_mode, GLOBAL, "")


def _products(snapshot: BookingSnapshot) -> list[str]:
    return sorted({key for line in snapshot.lines for key in (line.sku, line.item_id) if key})


def _product_policy(book: PolicyBook, product: str) -> tuple[str, str]:
    """(sku, item id) naming `product` as the policy file does: an item id when a policy
    matches it by item id, else a sku."""
    if any(product in p.match.item_ids for p in book.policies) and not any(
            product in p.match.skus for p in book.policies):
        return "", product
    return product, ""


async def overrides_for(conn: aiosqlite.Connection | Store, products: Iterable[str]
                        ) -> dict[str, tuple[str, str]]:
    wanted = sorted({p for p in products if p})
    if not wanted:
        return {}
    db = conn.db if isinstance(conn, Store) else conn
    marks = ", ".join("?" for _ in wanted)
    found = await rows(db, f"SELECT product, mode, changed_by FROM product_modes "
                           f"WHERE product IN ({marks})", wanted)
    return {r["product"]: (r["mode"], r["changed_by"]) for r in found}


async def all_overrides(store: Store) -> dict[str, tuple[str, str]]:
    """Every stored product override, product -> (mode, by), read on the read connection (a
    handful of rows: one per product a finance lead moved)."""
    found = await store.read_all("SELECT product, mode, changed_by FROM product_modes")
    return {r["product"]: (r["mode"], r["changed_by"]) for r in found}


def mode_of(book: PolicyBook, global_mode: Mode, snapshot: BookingSnapshot,
            overrides: dict[str, tuple[str, str]]) -> EffectiveMode:
    """`case_mode` with the overrides already read: the mode a case of this booking would be
    decided in under `book`."""
    return cautious(book, global_mode, snapshot, overrides)


async def of_case(store: Store, case_id: int) -> EffectiveMode | None:
    """The mode the case was opened and decided in, as recorded then (None for a case older
    than modes per product); read on the read connection."""
    row = await store.read_one("SELECT product, mode, source, policy_id FROM case_modes "
                               "WHERE case_id = ?", (case_id,))
    if row is None:
        return None
    return EffectiveMode(Mode(row["mode"]), row["source"], row["product"], row["policy_id"])


async def case_mode(store: Store, book: PolicyBook, global_mode: Mode,
                    snapshot: BookingSnapshot) -> EffectiveMode:
    """The mode a case of this booking is decided in."""
    overrides = await overrides_for(store, _products(snapshot))
    return cautious(book, global_mode, snapshot, overrides)


async def with_automation(store: Store, book: PolicyBook, global_mode: Mode,
                          snapshot: BookingSnapshot) -> tuple[Automation, EffectiveMode]:
    """The automation switch and the case's mode, read in one trip to the store's thread (the
    opening of a case needs both)."""
    wanted = _products(snapshot)
    marks = ", ".join("?" for _ in wanted) or "NULL"
    state, found = await reads(store.db, [
        ("SELECT value FROM state WHERE key = ?", (AUTOMATION_KEY,)),
        (f"SELECT product, mode, changed_by FROM product_modes WHERE product IN ({marks})",
         wanted)])
    automation = Automation(**json.loads(state[0]["value"])) if state else Automation(False)
    overrides = {r["product"]: (r["mode"], r["changed_by"]) for r in found}
    return automation, cautious(book, global_mode, snapshot, overrides)


async def product_mode(conn: aiosqlite.Connection | Store, book: PolicyBook,
                       global_mode: Mode, product: str) -> EffectiveMode:
    """The mode a product's next case would be decided in."""
    sku, item_id = _product_policy(book, product)
    return resolve(book, global_mode, sku, item_id, await overrides_for(conn, [product]))


async def record_case_mode(tx: aiosqlite.Connection, case_id: int, mode: EffectiveMode) -> None:
    """Which mode opened (and decided) the case, in the opening transaction."""
    await write(tx, "INSERT INTO case_modes (case_id, product, mode, source, policy_id, "
                    "opened_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (case_id) DO NOTHING",
                (case_id, mode.product, str(mode.mode), mode.source, mode.policy_id, now_iso()))


async def change_mode(store: Store, book: PolicyBook, global_mode: Mode, *, offer_key: str,
                      product: str, from_mode: str, to_mode: str, by: str,
                      why: str) -> ModeChange:
    """Answer an offer: set `product`'s mode to `to_mode` if it is still `from_mode` and the
    offer was not answered already; audited with who and why."""
    async with store.transaction(durable=True) as tx:   # a person's decision
        done = await one(tx, "SELECT changed_by, changed_at, why FROM mode_changes "
                             "WHERE offer_key = ?", (offer_key,))
        if done is not None:
            return ModeChange(False, product, from_mode, to_mode, done["changed_by"],
                              done["changed_at"], done["why"],
                              message=f"already changed by {done['changed_by']}")
        current = await product_mode(tx, book, global_mode, product)
        if str(current.mode) != from_mode:
            return ModeChange(False, product, from_mode, to_mode, by, "", why,
                              message=f"{product} is in {current.mode} mode now, not "
                                      f"{from_mode}: this offer is out of date")
        at = now_iso()
        await write(tx, "INSERT INTO mode_changes (offer_key, product, from_mode, to_mode, "
                        "changed_by, why, changed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (offer_key, product, from_mode, to_mode, by, why, at))
        await write(tx, "INSERT INTO product_modes (product, mode, changed_by, why, changed_at) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (product) DO UPDATE SET "
                        "mode = excluded.mode, changed_by = excluded.changed_by, "
                        "why = excluded.why, changed_at = excluded.changed_at",
                    (product, to_mode, by, why, at))
        await audit.append(tx, actor=by, action="mode.changed",
                           detail={"product": product, "from": from_mode, "to": to_mode,
                                   "why": why, "offer": offer_key,
                                   "was_from": current.source})
    return ModeChange(True, product, from_mode, to_mode, by, at, why)


async def changes(store: Store, product: str | None = None) -> list[dict[str, str]]:
    """The mode changes, oldest first (of one product, or all)."""
    where, params = ("WHERE product = ?", (product,)) if product else ("", ())
    found = await store.read_all(
        f"SELECT offer_key, product, from_mode, to_mode, changed_by, why, changed_at "
        f"FROM mode_changes {where} ORDER BY changed_at, offer_key", params)
    return [dict(r) for r in found]


async def answered(store: Store, week: str) -> list[dict[str, str]]:
    """The changes made from the offers of one weekly review (its ISO week ends their key)."""
    found = await store.read_all(
        "SELECT offer_key, product, from_mode, to_mode, changed_by, why, changed_at "
        "FROM mode_changes WHERE offer_key LIKE ? ORDER BY product, changed_at",
        (f"%|{week}",))
    return [dict(r) for r in found]
