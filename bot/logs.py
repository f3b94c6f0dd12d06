"""Logging: one line per event, JSON (under `serve`, by default) or text (a terminal, the CLI),
each carrying the correlation id, case id and booking code bound at the time, and never a
customer's contact details or a secret.

`setup(level, fmt)` puts one handler on the root logger whose formatter is structlog's
`ProcessorFormatter`: every record goes through the same processors, the bot's own
`logging.getLogger(__name__)` calls and the libraries' alike (aiohttp's access log, slack_bolt,
stripe, httpx, apscheduler), as do structlog loggers, should any code use one. The processors:

1. `add_correlation`: `correlation_id`, `case_id`, `booking_code` from `services.correlation`;
2. the logger's name, the level, a UTC ISO-8601 `timestamp`; a traceback as `exception` text;
3. `scrub`: the one place PII and secrets are taken out of a line (below);
4. the renderer: `JSONRenderer` (one object a line) or `ConsoleRenderer` (no colours unless the
   stream is a terminal).

`scrub` drops every field whose name says contact details (`services.privacy.is_contact_key`:
email, phone, address, full names, form fields; also `name`, `first_name`), redacts fields
named like secrets (token, secret, password, authorization, api key, signature, cookie) and,
inside every string left (the message and the traceback included), replaces email addresses,
phone numbers, card numbers (13 to 19 digits passing the Luhn check), Stripe keys and webhook
secrets, Slack tokens and HTTP Bearer/Basic credentials with a bracketed label. Names in free
text cannot be recognised: the bot never logs one (its messages name cases and bookings by id).

Nothing is formatted below the level: the standard library checks the logger's level before a
record is made, and structlog loggers are filtered the same way (`filter_by_level`).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import IO, Any, Literal

import structlog
from structlog.stdlib import ProcessorFormatter
from structlog.types import EventDict, Processor, WrappedLogger

from services import correlation
from services.privacy import is_contact_key
from services.privacy import scrub as scrub_contact

LogFormat = Literal["json", "text"]
FORMATS: tuple[LogFormat, ...] = ("json", "text")

# the fields every line may carry, written by the processors themselves: never scrubbed away
_OWN_KEYS = frozenset({"timestamp", "level", "logger", "event", "correlation_id", "case_id",
                       "booking_code", "exception", "stack"})
_FREE_TEXT = frozenset({"event", "exception", "stack"})   # of those, what may hold any text
_NAME_KEYS = frozenset({"name", "first_name", "customer"})
_SECRET_PARTS = ("token", "secret", "password", "passwd", "authorization", "api_key",
                 "apikey", "signature", "cookie", "credential")

# each pattern runs only on text holding what it must contain (a plain line costs a few `in`s)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_KEY = re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]+|\bwhsec_[0-9A-Za-z_]+")
_SLACK = re.compile(r"\bxox[abposre]-[0-9A-Za-z-]+|\bxapp-[0-9A-Za-z-]+")
_AUTH = re.compile(r"\b(?:[Bb]earer|[Bb]asic)\s+[A-Za-z0-9._~+/=-]{8,}")
_PHONE = re.compile(r"(?<![\w+])\+\d[\d ().-]{6,18}\d(?!\w)|\(\d{3}\)\s?\d{3}[-.\s]\d{4}\b"
                    r"|(?<![\w.-])\d{3}[-.]\d{3}[-.]\d{4}(?![\w.-])")
_CARD = re.compile(r"(?<![\w.])(?:\d[ -]?){12,18}\d(?![\w.])")
_DIGIT_RUN = re.compile(r"\d[\d ().-]{8,}\d")   # what a phone or a card number needs


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "[card]" if 13 <= len(digits) <= 19 and _luhn(digits) else match.group()


def _luhn(digits: str) -> bool:
    total = 0
    for n, char in enumerate(reversed(digits)):
        value = int(char)
        if n % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def redact_text(text: str) -> str:
    """`text` with emails, phones, card numbers, API keys and tokens replaced by labels."""
    if "@" in text:
        text = _EMAIL.sub("[email]", text)
    if "_live_" in text or "_test_" in text or "whsec_" in text:
        text = _KEY.sub("[secret]", text)
    if "xox" in text or "xapp-" in text:
        text = _SLACK.sub("[secret]", text)
    if "earer" in text or "asic" in text:
        text = _AUTH.sub("[secret]", text)
    if _DIGIT_RUN.search(text):
        text = _CARD.sub(_card, _PHONE.sub("[phone]", text))
    return text


def _secret_key(key: str) -> bool:
    name = key.casefold()
    return any(part in name for part in _SECRET_PARTS)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: ("[redacted]" if _secret_key(str(k)) else _clean(v))
                for k, v in scrub_contact(value).items()
                if str(k).casefold() not in _NAME_KEYS}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact_text(str(value))


def scrub(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """The one processor that takes PII and secrets out of a log event (see the module)."""
    for key in list(event_dict):
        if key.startswith("_"):   # structlog's own (the stdlib record): never rendered
            continue
        if key in _OWN_KEYS:
            if key in _FREE_TEXT:   # the others the processors wrote themselves
                event_dict[key] = _clean(event_dict[key])
            continue
        if is_contact_key(key) or key.casefold() in _NAME_KEYS:
            del event_dict[key]
        elif _secret_key(key):
            event_dict[key] = "[redacted]"
        else:
            event_dict[key] = _clean(event_dict[key])
    return event_dict


def add_correlation(_logger: WrappedLogger, _method: str,
                    event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The correlation id, case id and booking code bound in this context, when known."""
    bound = correlation.current()
    if bound is not None:
        event_dict.setdefault("correlation_id", bound.correlation_id)
        if bound.case_id is not None:
            event_dict.setdefault("case_id", bound.case_id)
        if bound.booking_code:
            event_dict.setdefault("booking_code", bound.booking_code)
    return event_dict


_FIRST = ("timestamp", "level", "logger", "event", "correlation_id", "case_id", "booking_code")


def _ordered(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """The usual fields first, in a fixed order (a person reads the JSON lines too)."""
    first = {key: event_dict.pop(key) for key in _FIRST if key in event_dict}
    return {**first, **event_dict}


def _shared() -> list[Processor]:
    return [
        add_correlation,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]


def formatter(fmt: LogFormat = "json", *, colors: bool = False) -> ProcessorFormatter:
    """The formatter every record goes through: shared processors, `scrub`, the renderer."""
    if fmt not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r}")
    renderer: Processor = (structlog.processors.JSONRenderer() if fmt == "json" else
                           structlog.dev.ConsoleRenderer(colors=colors,
                                                         exception_formatter=structlog.dev.plain_traceback))
    return ProcessorFormatter(
        foreign_pre_chain=_shared(),
        processors=[ProcessorFormatter.remove_processors_meta, scrub, _ordered, renderer],
    )


class _BotHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `setup` installs (so that a second `setup` replaces it)."""


def setup(*, level: str | int = "INFO", fmt: LogFormat = "json",
          stream: IO[str] | None = None) -> logging.Handler:
    """Send every log record to `stream` (stderr) in `fmt` from `level` up; replaces what an
    earlier `setup` installed. The handler is returned (tests remove it)."""
    out = stream if stream is not None else sys.stderr
    handler = _BotHandler(out)
    handler.setFormatter(formatter(fmt, colors=fmt == "text" and _isatty(out)))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _BotHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *_shared(),
                    ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return handler


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
