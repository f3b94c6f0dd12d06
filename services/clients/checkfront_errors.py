"""Checkfront failures: `CheckfrontError` and the kinds a caller tells apart (credentials
refused, no such booking, Checkfront unavailable). Messages are safe to show a user."""

from __future__ import annotations

from services.errors import DomainError


class CheckfrontError(DomainError):
    """Base error; the message is safe to show a user (no secrets, no customer data)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CheckfrontAuthError(CheckfrontError):
    """Checkfront rejected the API key/secret (HTTP 401/403)."""


class BookingNotFound(CheckfrontError):
    """No such booking (HTTP 404, or a reference that cannot name a booking)."""


class CheckfrontUnavailable(CheckfrontError):
    """Checkfront could not be reached or kept failing (5xx/429 after retries, timeouts)."""
