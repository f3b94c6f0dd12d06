"""The demo's customer message: a decided card's Customer message button, the draft in its
modal, an approver's Send, and the message the local SMTP server received.

The demo world runs `sandbox/smtp.py` with `CUSTOMER_MESSAGES=review`, so each closed case's
message waits on its card for a person. `show` runs the sender's pass by hand (the bot's own
loop runs it every few seconds too; either way the message goes once).
"""

from __future__ import annotations

from bot.cli.render import buttons_of, say, slack_message_text, view_of
from bot.cli.world import APPROVALS, MARIA, World
from bot.slack.ui import ids


async def show(world: World) -> None:
    assert world.slack is not None and world.sender is not None and world.bot.mail is not None
    assert world.smtp is not None
    await world.bot.mail.run_once()   # review mode: the closed cases' messages become drafts
    await world.settle()
    card = next((m for m in world.slack.messages_in(APPROVALS)
                 if ids.CUSTOMER_MESSAGE in buttons_of(m)), None)
    say("The customer is told: a decided card offers its Customer message")
    if card is None:
        print("  (no card is waiting for a customer message)")
        return
    print(slack_message_text(card))
    say("Maria clicks Customer message: the draft opens in a modal")
    await world.sender.click(ids.CUSTOMER_MESSAGE, buttons_of(card)[ids.CUSTOMER_MESSAGE], MARIA,
                             message_ts=card["ts"])
    await world.settle()
    view = view_of(world.slack.calls_to("views.update")[-1].params)
    fields = {b["block_id"]: b["element"].get("initial_value", "") for b in view["blocks"]
              if b["type"] == "input"}
    subject, text = fields[ids.SUBJECT_BLOCK], fields.get(ids.BODY_BLOCK, "")
    print(f"  Subject: {subject}")
    for line in text.splitlines():
        print(f"  | {line}")
    say("She adds a line and clicks Send")
    edited = text.replace("\n", "\nThank you for letting us know in good time.\n", 1)
    answer = await world.sender.submit_view(ids.CUSTOMER_VIEW, {
        ids.SUBJECT_BLOCK: {ids.SUBJECT_INPUT: subject},
        ids.BODY_BLOCK: {ids.BODY_INPUT: edited}}, MARIA, view["private_metadata"])
    print(f"  the modal closes → {answer.status_code}")
    await world.settle()
    await world.bot.mail.run_once()   # the sending loop's pass: exactly once
    await world.settle()
    again = await world.sender.submit_view(ids.CUSTOMER_VIEW, {
        ids.SUBJECT_BLOCK: {ids.SUBJECT_INPUT: subject},
        ids.BODY_BLOCK: {ids.BODY_INPUT: edited}}, MARIA, view["private_metadata"])
    print(f"  Send again → {again.json().get('errors', {}).get(ids.SUBJECT_BLOCK)}")
    say(f"The local SMTP server received {len(world.smtp.received)} message(s)")
    for got in world.smtp.received:
        body = got.message.get_body(("plain",))
        lines = body.get_content().splitlines() if body is not None else []
        print(f"  To: {got.message['To']}  Subject: {got.message['Subject']}")
        for line in lines[:6]:
            print(f"  | {line}")
    print("  the card, updated in place:")
    print(slack_message_text(world.slack.message(APPROVALS, card["ts"])))
