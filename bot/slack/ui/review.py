"""The weekly review, rendered: Block Kit for the digest channel and plain text for the command
line (`python -m bot review`) and the log.

Pure functions from a `services.finance.agreement.Review` and the week's answered offers to a
`Message` or a string; no store, no network. The week's decisions by product and mode, the
agreement, the adjustments and denials with their reasons, the slowest approvals, and the mode
changes on offer, each a button only finance leads may press (`handlers.slack.review`); an
answered offer shows who changed the mode and when. Every text from a person or a booking is
escaped (`kit.esc`), amounts are `kit.money`, within Block Kit's limits (`kit.fit`).
"""

from __future__ import annotations

from typing import Any

from bot.slack.ui import ids
from bot.slack.ui.kit import (
    Message,
    actions,
    button,
    confirm,
    context,
    date_token,
    divider,
    esc,
    fallback,
    fit,
    header,
    line_sections,
    money,
    plain,
    who,
)
from bot.slack.ui.payloads import ModeOffer
from services.finance.agreement import PROMOTE, Decided, Figures, Offer, Review
from services.money import display

MAX_OFFER_BUTTONS = 20   # one actions block each would leave room; 25 elements a block


def duration(seconds: int) -> str:
    """"3d 4h", "2h 05m", "12m", "40s"."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m" if minutes else f"{secs}s"


def _product(name: str) -> str:
    return name or "(opened before modes)"


def _signed(minor: int, currency: str) -> str:
    return ("+" if minor > 0 else "-" if minor < 0 else "") + display(abs(minor), currency)


def figures_line(f: Figures, *, slack: bool = True) -> str:
    name = f"`{esc(_product(f.product), 80)}`" if slack else _product(f.product)
    paid = money(f.paid, f.currency) if slack else display(f.paid, f.currency)
    modes = ", ".join(f"{mode} {count}" for mode, count in f.by_mode.items())
    adjusted = (f" (mean {_signed(f.mean_adjustment, f.currency)}, "
                f"{f.mean_adjustment_percent:+}%)" if f.adjusted else "")
    return (f"{name} {f.currency}: {f.cases} decided ({modes}) · {f.agreement_percent()}% "
            f"agreed · {f.adjusted} adjusted{adjusted} · {f.denied} denied · {paid} paid · "
            f"median {duration(f.median_seconds)}, p90 {duration(f.p90_seconds)}")


def _adjustment_line(d: Decided) -> str:
    return (f"#{d.case_id} `{esc(_product(d.product), 80)}` {money(d.quoted, d.currency)} → "
            f"{money(d.amount, d.currency)} by {who(d.decided_by)}: {esc(d.reason, 300)}")


def _denial_line(d: Decided) -> str:
    return (f"#{d.case_id} `{esc(_product(d.product), 80)}` quoted "
            f"{money(d.quoted, d.currency)}, denied by {who(d.decided_by)}: "
            f"{esc(d.reason, 300)}")


def _slow_line(d: Decided) -> str:
    return (f"#{d.case_id} `{esc(_product(d.product), 80)}` {duration(d.seconds)} to "
            f"approval by {who(d.decided_by)}")


def _offer_text(offer: Offer) -> str:
    verb = "Promote" if offer.kind == PROMOTE else "Step back"
    return (f"*{verb}* `{esc(offer.product, 80)}`: {offer.from_mode} → {offer.to_mode}. "
            f"{esc(offer.why, 500)}")


def offer_button(offer: Offer) -> dict[str, Any]:
    verb = "Promote" if offer.kind == PROMOTE else "Step back"
    value = ModeOffer(product=offer.product, from_mode=offer.from_mode, to_mode=offer.to_mode,
                      week=offer.week).dumps()
    return button(f"{verb} {plain(offer.product, 40)} to {offer.to_mode}", ids.MODE_OFFER, value,
                  style="primary" if offer.kind == PROMOTE else "danger",
                  confirm_dialog=confirm(
                      f"{verb} {plain(offer.product, 40)}?",
                      f"{plain(offer.product, 60)} moves from {offer.from_mode} to "
                      f"{offer.to_mode} mode. {plain(offer.why, 200)}",
                      "Change mode"))


def _answered_line(change: dict[str, str]) -> str:
    return (f":white_check_mark: `{esc(change['product'], 80)}` {esc(change['from_mode'], 20)} "
            f"→ {esc(change['to_mode'], 20)} by {who(change['changed_by'])} "
            f"{date_token(change['changed_at'])}")


def review_message(review: Review, answered: list[dict[str, str]] | None = None) -> Message:
    answered = answered or []
    done = {c["offer_key"] for c in answered}
    title = f"Weekly review {review.week}"
    blocks: list[dict[str, Any]] = [header(title), context(
        f"{date_token(review.start.isoformat())} to {date_token(review.end.isoformat())} · "
        f"{review.cases} cases decided by people · offers over {review.window_days} days, "
        f"{review.anomalies} anomal{'y' if review.anomalies == 1 else 'ies'} seen")]
    if review.figures:
        blocks += line_sections([figures_line(f) for f in review.figures],
                                title="Decisions by product and mode", max_sections=2)
    else:
        blocks += line_sections(["No case was decided by a person this week."])
    if review.adjustments:
        blocks += line_sections([_adjustment_line(d) for d in review.adjustments],
                                title="Adjustments", max_sections=1)
    if review.denials:
        blocks += line_sections([_denial_line(d) for d in review.denials],
                                title="Denials", max_sections=1)
    if review.slowest:
        blocks += line_sections([_slow_line(d) for d in review.slowest],
                                title="Slowest approvals", max_sections=1)
    tail: list[dict[str, Any]] = [divider()]
    open_offers = [o for o in review.offers if o.key not in done][:MAX_OFFER_BUTTONS]
    if answered:
        tail += line_sections([_answered_line(c) for c in answered], title="Mode changes",
                              max_sections=1)
    if open_offers:
        tail += line_sections([_offer_text(o) for o in open_offers],
                              title="On offer (finance leads)", max_sections=1)
        tail.append(actions(*(offer_button(o) for o in open_offers)))
    elif not answered:
        tail += line_sections(["No mode change on offer this week."])
    text = fallback(f"{title}: {review.cases} cases decided, {len(open_offers)} mode "
                    f"change(s) on offer")
    return Message(text, fit(blocks + tail, keep_last=len(tail)))


def review_text(review: Review, answered: list[dict[str, str]] | None = None) -> str:
    """The review as plain text, for the command line and the log."""
    lines = [f"Weekly review {review.week} ({review.start.date()} to {review.end.date()}): "
             f"{review.cases} cases decided by people"]
    lines += ["", "Decisions by product and mode:"]
    lines += [f"  {figures_line(f, slack=False)}" for f in review.figures] or ["  none"]
    lines += ["", "Adjustments:"]
    lines += [f"  #{d.case_id} {_product(d.product)} {display(d.quoted, d.currency)} -> "
              f"{display(d.amount, d.currency)} by {d.decided_by}: {d.reason}"
              for d in review.adjustments] or ["  none"]
    lines += ["", "Denials:"]
    lines += [f"  #{d.case_id} {_product(d.product)} quoted {display(d.quoted, d.currency)} "
              f"by {d.decided_by}: {d.reason}" for d in review.denials] or ["  none"]
    lines += ["", "Slowest approvals:"]
    lines += [f"  #{d.case_id} {_product(d.product)} {duration(d.seconds)} by {d.decided_by}"
              for d in review.slowest] or ["  none"]
    lines += ["", f"Mode changes on offer ({review.window_days} days, {review.anomalies} "
                  "anomalies):"]
    lines += [f"  {o.kind} {o.product}: {o.from_mode} -> {o.to_mode}. {o.why}"
              for o in review.offers] or ["  none"]
    if answered:
        lines += ["", "Mode changes made:"]
        lines += [f"  {c['product']}: {c['from_mode']} -> {c['to_mode']} by {c['changed_by']} "
                  f"at {c['changed_at']}" for c in answered]
    return "\n".join(lines)
