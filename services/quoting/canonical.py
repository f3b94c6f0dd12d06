"""Canonical JSON for the short hashes that name what a quote said (its version) and what a
booking was (its fingerprint): `json.dumps(material, sort_keys=True, separators=(",", ":"))`
byte for byte. Written by orjson (`plain_json`, a seventh of the encoder's time) where every
text is a plain `str` and the result is ASCII without DEL, which is where the two write the
same bytes; else by templates where the material has its usual shape (a third of the
encoder's time), and by the encoder, built once, where it does not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring_ascii as esc
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from services.quoting.booking import BookingLine, Transaction

__all__ = ["CANONICAL_JSON", "esc", "fingerprint", "plain_json", "quote_text", "short_hash"]

CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), check_circular=False)


# Types orjson writes where the json module refuses them: refused here too (the caller then
# has the encoder refuse or write them).
_PLAIN = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
_PLAIN_SORTED = _PLAIN | orjson.OPT_SORT_KEYS


def plain_json(material: Any, sort_keys: bool) -> bytes | None:
    """`CANONICAL_JSON.encode(material).encode()` (keys sorted) or, without `sort_keys`, the
    same with the keys in their order, written by orjson; None where the two may differ.

    The caller's promise: `material` holds only plain `str` (not a subclass), int, None,
    lists, tuples and dicts keyed by `str` (no float, Enum, UUID, which orjson writes its own
    way or where the json module refuses). Then the bytes are the same but for text: the
    json module escapes everything outside printable ASCII (\\uXXXX for non-ASCII and DEL),
    orjson writes non-ASCII as UTF-8 and DEL as is, and both write the other control
    characters, quotes and backslashes alike. So an ASCII result without DEL is the json
    module's. None too where orjson refuses a value (a lone surrogate, an int beyond 64 bits).
    tests/test_quote_fast_paths.py compares the two over generated text."""
    try:
        blob = orjson.dumps(material, option=_PLAIN_SORTED if sort_keys else _PLAIN)
    except orjson.JSONEncodeError:
        return None
    if blob.isascii() and b"\x7f" not in blob:
        return blob
    return None


def line_text(amount: str, line_id: str, name: str, notice_hours: str, percent: str,
              policy_id: str, reason: str, refund: str, sku: str, start: str, tax: str,
              tax_refund: str) -> str:
    """One quote line's row as `quote_text` writes it (the amounts are digits, as they are)."""
    return (f'{{"amount":"{amount}","line_id":{esc(line_id)},"name":{esc(name)},'
            f'"notice_hours":{esc(notice_hours)},"percent":{esc(percent)},'
            f'"policy_id":{esc(policy_id)},"reason":{esc(reason)},"refund":"{refund}",'
            f'"sku":{esc(sku)},"start":{esc(start)},"tax":"{tax}","tax_refund":"{tax_refund}"}}')


def short_hash(text: Callable[[], str], material: Callable[[], Any], length: int) -> str:
    """The first `length` hex digits of the SHA-256 of the material's canonical JSON: `text()`
    (a template), or, when a value is not of a type the template writes (the json module's
    escaping refuses it), the encoder over `material()`."""
    try:
        blob = text()
    except TypeError:
        blob = CANONICAL_JSON.encode(material())
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def quote_text(m: dict[str, Any], lines: list[str] | None = None) -> str:
    """`CANONICAL_JSON.encode(m)` for the quote's own `_serialised` shape, written as one
    template: keys in sorted order, every string through the json module's own escaping
    (`encode_basestring_ascii`, what the encoder calls), amounts and the decision, which are
    digits and a fixed word, as they are. A third of the encoder's time; the tests compare the
    two over generated quotes. `lines`: the lines' `line_text`, when the caller has them.
    `build_quote` hashes `plain_json`'s bytes where they are these, and this text where a
    quote's text is not plain ASCII (the tests compare its version with this text's hash)."""
    if lines is None:
        lines = [line_text(ln["amount"], ln["line_id"], ln["name"], ln["notice_hours"],
                           ln["percent"], ln["policy_id"], ln["reason"], ln["refund"],
                           ln["sku"], ln["start"], ln["tax"], ln["tax_refund"])
                 for ln in m["lines"]]
    lines_text = ",".join(lines)
    allocations = ",".join([
        f'{{"amount":"{a["amount"]}","method":{esc(a["method"])},"payment":{esc(a["payment"])}}}'
        for a in m["allocations"]])
    clauses = ",".join([f"{esc(k)}:{esc(v)}" for k, v in sorted(m["clauses"].items())])
    flags = ",".join([f'{{"code":{esc(f["code"])},"reason":{esc(f["reason"])}}}'
                      for f in m["risk_flags"]])
    waiver = m["waiver"]
    return (
        f'{{"allocations":[{allocations}],"already_refunded":"{m["already_refunded"]}",'
        f'"booking_code":{esc(m["booking_code"])},'
        f'"booking_fingerprint":{esc(m["booking_fingerprint"])},'
        f'"booking_id":{esc(m["booking_id"])},"cancelled_at":{esc(m["cancelled_at"])},'
        f'"clauses":{{{clauses}}},"currency":{esc(m["currency"])},'
        f'"decision":"{m["decision"]}","entitlement":"{m["entitlement"]}",'
        f'"fee":"{m["fee"]}","lines":[{lines_text}],"net_paid":"{m["net_paid"]}",'
        f'"order_total":"{m["order_total"]}","paid":"{m["paid"]}",'
        f'"policy_digest":{esc(m["policy_digest"])},'
        f'"policy_ids":[{",".join(map(esc, m["policy_ids"]))}],'
        f'"reasons":[{",".join(map(esc, m["reasons"]))}],"retained":"{m["retained"]}",'
        f'"risk_flags":[{flags}],"total_refund":"{m["total_refund"]}",'
        f'"waiver":{"null" if waiver is None else esc(waiver)}}}'
    )


def fingerprint(
    booking: Mapping[str, Any],
    order: Mapping[str, Any],
    lines: tuple[BookingLine, ...],
    transactions: tuple[Transaction, ...] | None,
) -> str:
    """What a quote depends on; a different fingerprint means the booking changed."""
    status = str(booking.get("status") or "")
    total, paid_total = str(order.get("total")), str(order.get("paid_total"))
    paid = None if transactions is None else sorted(
        [(t.id, t.status, t.amount, t.original_id or "") for t in transactions])
    return short_hash(lambda: _canonical_fingerprint(status, total, paid_total, lines, paid),
                      lambda: {"status": status, "total": total, "paid_total": paid_total,
                               "lines": [(ln.line_id, ln.sku, ln.item_id, ln.start_iso,
                                          ln.total, ln.tax) for ln in lines],
                               "transactions": paid}, 16)


def _canonical_fingerprint(status: str, total: str, paid_total: str,
                           lines: tuple[BookingLine, ...],
                           transactions: list[tuple[str, str, int, str]] | None) -> str:
    """`CANONICAL_JSON.encode` of the fingerprint's material (the fallback in `_fingerprint`
    spells it out), written as one template: keys in sorted order, strings through the json
    module's own escaping (what the encoder calls), ints as `int.__repr__` writes them, as
    the encoder does. tests/test_quote_serialise.py compares it with `json.dumps`."""
    rows = ",".join([
        f"[{esc(ln.line_id)},{esc(ln.sku)},{esc(ln.item_id)},{esc(ln.start_iso)},"
        f"{_int(ln.total)},{_int(ln.tax)}]" for ln in lines])
    paid = "null" if transactions is None else "[" + ",".join([
        f"[{esc(a)},{esc(b)},{_int(c)},{esc(d)}]" for a, b, c, d in transactions]) + "]"
    return (f'{{"lines":[{rows}],"paid_total":{esc(paid_total)},"status":{esc(status)},'
            f'"total":{esc(total)},"transactions":{paid}}}')


def _int(value: int) -> str:
    """An int as the json encoder writes it; anything else is refused (TypeError), and the
    encoder writes it instead."""
    if type(value) is not int:
        raise TypeError(f"not an int: {type(value).__name__}")
    return int.__repr__(value)
