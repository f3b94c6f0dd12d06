"""A local SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it receives, for the
tests and the demo. `refuse(code, times)` answers the next DATA commands with an error
(a 4xx or 5xx), so retries can be tested; `stop()` closes it (connection refused after).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class _Handler:
    received: list[Received] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refusals:
            return self.refusals.pop(0)
        parsed = message_from_bytes(envelope.original_content or envelope.content,
                                    policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"


class SandboxSmtp:
    """`with SandboxSmtp() as smtp:` or start()/stop(); `smtp.url` for SMTP_URL."""

    def __init__(self, port: int = 0) -> None:
        self.handler = _Handler()
        self.port = port or _free_port()
        self.controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def refuse(self, code: int = 451, times: int = 1, text: str = "Try again later") -> None:
        self.handler.refusals.extend([f"{code} {text}"] * times)

    def start(self) -> SandboxSmtp:
        """Listen (again, after `stop`: same port, same received list)."""
        if self.controller is None:
            self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
            self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def __enter__(self) -> SandboxSmtp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
