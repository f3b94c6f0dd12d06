"""Where a refund card's links point, for every chat platform: a booking's page in Checkfront
and its payment in the Stripe Dashboard. Pure URL logic; each platform draws its own buttons
(Slack: `bot.slack.ui.links`, Teams: `bot.teams.cards`).

- Checkfront: a booking's own page on the business's Checkfront host is `/booking/<code>`.
  Checkfront names a booking by its code everywhere (its API's `booking/{booking_id}` takes
  "the unique booking code identifying a booking in the system", api.checkfront.com, Booking
  reference), and the staff side serves the booking's invoice under the same path (its PDF
  export is `https://<host>/booking/<CODE>/pdf?admin=1`); a signed-in staff member lands on
  the booking with its status, payments and notes.
- Stripe: the Dashboard shows a payment at `https://dashboard.stripe.com/payments/<id>` (a
  PaymentIntent `pi_…` or a Charge `ch_…`), and the same under `/test/` for test mode, which is
  the mode of the secret key the bot runs with (`sk_test_…`/`rk_test_…` are test keys).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from services.quoting.quote import Quote

STRIPE_DASHBOARD = "https://dashboard.stripe.com"
_TEST_KEYS = ("sk_test_", "rk_test_")


@dataclass(frozen=True)
class CardLinks:
    """Where the card's link buttons point: the business's Checkfront base URL (None: no
    Checkfront button) and whether Stripe runs in test mode (None: no Stripe button)."""

    checkfront_base: str | None = None
    stripe_test: bool | None = None

    @classmethod
    def of(cls, checkfront_base: str | None, stripe_key: str | None) -> CardLinks:
        test = None if not stripe_key else stripe_key.startswith(_TEST_KEYS)
        return cls(checkfront_base.rstrip("/") if checkfront_base else None, test)


NO_LINKS = CardLinks()


def checkfront_booking_url(base: str, booking_code: str) -> str:
    return f"{base.rstrip('/')}/booking/{quote(booking_code.strip(), safe='')}"


def stripe_payment_url(payment: str, *, test: bool) -> str:
    return f"{STRIPE_DASHBOARD}/{'test/' if test else ''}payments/{quote(payment, safe='')}"


def stripe_payment(quote_: Quote) -> str | None:
    """The payment a Stripe link shows: the one most of the refund goes back to."""
    paid = [a for a in quote_.allocations if a.method != "manual" and a.payment != "manual"
            and a.payment.startswith(("pi_", "ch_"))]
    return max(paid, key=lambda a: a.amount).payment if paid else None


def card_urls(links: CardLinks, booking_code: str, quote_: Quote,
              limit: int) -> list[tuple[str, str]]:
    """(which, url) for the links that can be made within a platform's URL `limit`, in order:
    ("checkfront", …), then ("stripe", …)."""
    made = []
    if links.checkfront_base and booking_code.strip():
        url = checkfront_booking_url(links.checkfront_base, booking_code)
        if len(url) <= limit:
            made.append(("checkfront", url))
    payment = stripe_payment(quote_)
    if links.stripe_test is not None and payment:
        url = stripe_payment_url(payment, test=links.stripe_test)
        if len(url) <= limit:
            made.append(("stripe", url))
    return made
