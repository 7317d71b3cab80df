"""Approve with changes and the extension offer: the card's narrowing lines, the
requester's DM about what changed, and the offer made when a request duplicates a
live grant."""

from __future__ import annotations

from bot.audit import new_steps
from bot.durations import format_duration
from bot.lifecycle import State
from bot.models import Grant, Step
from bot.slack import ids
from bot.slack.blocks.grants import summary_md, what_it_is
from bot.slack.blocks.kit import Message, actions, button, context, section
from bot.slack.text import JSON, code, escape, md, mention, slack_date
from bot.usecases.offers import ExtensionOffer

NARROWED = "narrowed"  # the audited event of an approval with changes


def _narrowings(grant: Grant) -> list[Step]:
    return [s for s in grant.history if s.event == NARROWED]


def _change_text(step: Step) -> str:
    return escape(step.reason.removeprefix("approved with changes: "))


def narrowed_blocks(grant: Grant) -> list[JSON]:
    """The card's lines about approvals with changes (none when nobody narrowed)."""
    steps = _narrowings(grant)
    if not steps:
        return []
    lines = [f":scissors: Narrowed by {mention(s.actor)}: {_change_text(s)}" for s in steps]
    if grant.state == State.PENDING:
        lines.append("The values above are the narrowed ones: later approvals approve them.")
    return [context(md("\n".join(lines)))]


def narrowing_dm(before: Grant, after: Grant) -> Message | None:
    """The requester's DM when this change narrowed their request (None: it did not)."""
    steps = [s for s in new_steps(before, after) if s.event == NARROWED]
    if not steps:
        return None
    step = steps[-1]
    what = f"your {what_it_is(after)} {code(after.id)}"
    text = (
        f":scissors: {mention(step.actor)} approved {what} with changes: {_change_text(step)}. "
        f"It is now for {summary_md(after)}, {format_duration(after.duration)}."
    )
    if after.state == State.PENDING:
        text += (
            f" It still needs {after.tally.remaining} more approval(s), of the narrowed request."
        )
    elif after.state == State.APPROVED and after.kind == "access":
        text += " Preparing your kubeconfig…"
    return Message(text, [section(md(text))])


def offer_message(offer: ExtensionOffer) -> Message:
    """The answer to a request for access the requester already holds."""
    grant = offer.grant
    assert grant.expires_at is not None
    text = (
        f"You already hold {summary_md(grant)} (grant {code(grant.id)}, until "
        f"{slack_date(grant.expires_at)}): no second grant was made."
    )
    if offer.refusal is not None:
        text += f" It cannot be extended now: {escape(offer.refusal)}."
        return Message(text, [section(md(text))])
    by = format_duration(offer.by)
    text += f" Extend it by {by} instead?"
    if offer.by < offer.asked:
        text += (
            f" (You asked for {format_duration(offer.asked)}; the role's maximum leaves "
            f"room for {by} more now.)"
        )
    buttons = actions(
        button(f"Extend by {by}", ids.EXTEND_EXISTING, grant.id, "primary"),
        button("Cancel", ids.OFFER_CANCEL, grant.id),
    )
    return Message(text, [section(md(text)), buttons])


def offer_declined(grant: Grant) -> Message:
    text = f"Nothing changed: grant {code(grant.id)} stays as it is."
    return Message(text, [section(md(text))])
