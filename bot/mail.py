"""Customer mail: the aiosmtplib sender built from `SMTP_URL` and `MAIL_FROM`, and the loop that
sends the customer messages (`services.customers.sending`) every few seconds.

`SMTP_URL`: `smtp://[user:password@]host[:port]` (STARTTLS when the server offers it),
`smtps://...` (TLS from the start, port 465 by default). The password never reaches a log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import aiosmtplib

from services.customers.drafts import Templates
from services.customers.sending import CustomerSettings, MailError, recover, send_due
from services.deps import Deps

log = logging.getLogger(__name__)


class SmtpMailer:
    """services.customers.sending.Mailer over SMTP."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("SMTP_URL must look like smtp://host:port or smtps://host:port")
        self.hostname = parts.hostname
        self.use_tls = parts.scheme == "smtps"
        self.port = parts.port or (465 if self.use_tls else 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout

    async def send(self, message: EmailMessage) -> None:
        try:
            await aiosmtplib.send(
                message, hostname=self.hostname, port=self.port, use_tls=self.use_tls,
                username=self.username, password=self.password, timeout=self.timeout)
        except aiosmtplib.SMTPResponseException as exc:   # 4xx / 5xx: the code, not the text
            raise MailError(f"SMTP {exc.code}") from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = sorted({r.code for r in exc.recipients})
            raise MailError(f"SMTP recipient refused ({', '.join(map(str, codes))})") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise MailError(f"SMTP unreachable: {exc.__class__.__name__}") from None


class CustomerMail:
    """Runs the sender's pass every `every` seconds while the bot runs."""

    def __init__(self, svc: Deps, mailer: SmtpMailer, settings: CustomerSettings,
                 templates: Templates | None = None, every: float = 5.0) -> None:
        self.svc = svc
        self.mailer = mailer
        self.settings = settings
        self.templates = templates or Templates()
        self.every = every
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await recover(self.svc)
        self._task = asyncio.create_task(self._run(), name="customer-mail")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_once(self) -> list[int]:
        return await send_due(self.svc, self.mailer, self.settings, self.templates)

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:   # a pass that failed is tried again; the loop never dies
                log.exception("customer mail pass failed")
            await asyncio.sleep(self.every)
