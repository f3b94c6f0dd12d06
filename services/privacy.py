"""Customer privacy at the point of storage: what of a Checkfront or Stripe body the bot keeps.

Whatever the bot stores from outside (webhook events, the snapshots its quotes were made from,
recorded payments, the audit trail) goes through `scrub` first. It keeps what quoting reads
(lines, totals, payments, dates, statuses, codes and ids) and, of the customer, the first name
(cards greet them by it) and a salted hash of the email (repeat refunders are matched on it).
Every other contact detail is dropped: emails, phones, addresses, full names, IP addresses,
Stripe's billing and shipping details and Checkfront's booking form fields (`fields`, where a
booking form keeps name, email, phone and address again).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

EMAIL_HASH = "email_hash"  # the customer's salted email hash, kept in place of the email

# dropped wherever they appear: whole contact records, names and form fields
_DROPPED_KEYS = frozenset({
    "fields", "customer_name", "payment_customer", "full_name", "last_name", "cardholder_name",
    "billing_details", "shipping", "customer_details", "owner", "source_ip", "client_ip", "ip",
    "customer_purchase_ip",
})
# dropped when the key contains one of these (email, receipt_email, customer_phone, address...)
_DROPPED_PARTS = ("email", "phone", "mobile", "address")
# Stripe objects whose `name` is a person's (the cardholder, the account holder, the customer)
_PERSON_OBJECTS = frozenset({"card", "source", "bank_account", "customer", "person"})


def customer_hash(email: str, salt: str) -> str | None:
    """A stable, non-reversible customer key; the email itself is never stored or logged."""
    normalized = email.strip().casefold()
    if not normalized:
        return None
    return hashlib.sha256(f"{salt}:{normalized}".encode()).hexdigest()[:24]


def first_name(name: Any) -> str:
    """The first word of a customer's name ("" for none)."""
    words = str(name or "").split()
    return words[0] if words else ""


def scrub(data: Mapping[str, Any], salt: str | None = None) -> dict[str, Any]:
    """A copy of `data` without the customer's contact details (the argument is not changed).

    A `customer` object keeps its first name as `name`, its ids, and, given the salt, the
    salted hash of its email as `email_hash` (a hash already there is kept). Scrubbing twice
    changes nothing.
    """
    return _mapping(data, salt)


def _mapping(data: Mapping[str, Any], salt: str | None) -> dict[str, Any]:
    # the same walk as `value_of`/`mapping` in its plainest form (tests/test_intake_cpu.py),
    # with the common types tested by identity first (most of a body is scalars and dicts)
    # and each key's verdict read from a plain dict (bodies repeat the same few dozen keys)
    found = data.get("object")
    person = (found if type(found) is str else str(found or "")) in _PERSON_OBJECTS
    verdicts = _VERDICTS
    kept: dict[str, Any] = {}
    for key, value in data.items():
        dropped = verdicts.get(key)
        if dropped is None:
            dropped = _dropped(key)
        if dropped or (person and key == "name"):
            continue
        kind = type(value)
        if kind in _SCALARS:   # no call, no ABC check
            kept[key] = value
        elif key == "customer" and (kind is dict or isinstance(value, Mapping)):
            kept[key] = _customer(value, salt)
        elif kind is dict:
            kept[key] = _mapping(value, salt)
        else:
            kept[key] = _value(value, salt)
    return kept


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _value(value: Any, salt: str | None) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:
        return _mapping(value, salt)
    if kind is list:
        return [_value(v, salt) for v in value]
    if isinstance(value, Mapping):
        return _mapping(value, salt)
    if isinstance(value, list | tuple):
        return [_value(v, salt) for v in value]
    return value


def _customer(customer: Mapping[str, Any], salt: str | None) -> dict[str, Any]:
    kept = {key: _value(value, salt) for key, value in customer.items()
            if key not in ("name", "first_name", EMAIL_HASH) and not _dropped(key)}
    kept["name"] = first_name(customer.get("name") or customer.get("first_name"))
    email = str(customer.get("email") or "")
    hashed = customer.get(EMAIL_HASH) or (customer_hash(email, salt) if salt is not None
                                          else None)
    if hashed:
        kept[EMAIL_HASH] = str(hashed)
    return kept


def _dropped(key: Any) -> bool:
    known = _VERDICTS.get(key)
    if known is not None:
        return known
    name = str(key).casefold()
    dropped = name in _DROPPED_KEYS or any(part in name for part in _DROPPED_PARTS)
    if len(_VERDICTS) < _KEPT_VERDICTS and type(key) is str:   # bounded: a body's keys are
        _VERDICTS[key] = dropped                                # the sender's to choose
    return dropped


_VERDICTS: dict[str, bool] = {}   # a key's verdict, as `_dropped` gave it
_KEPT_VERDICTS = 4096


def is_contact_key(key: Any) -> bool:
    """Whether a field of this name holds a customer's contact details (an email, a phone, an
    address, a full name, a booking form's fields): what `scrub` drops wherever it appears."""
    return _dropped(key)
