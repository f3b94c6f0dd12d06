"""The root of the domain's errors, so handlers and the command line catch one thing.

Every error a service raises on purpose derives from `DomainError`; its message is written for
the person who asked (no secrets, no customer details). Errors that also mean "bad value" keep
`ValueError` as a second base.
"""


class DomainError(Exception):
    """A request the domain cannot honour; the message is safe to show the person who asked."""
