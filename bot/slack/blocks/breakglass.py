"""Break-glass in Slack: the loud card in the approvals channel (with its Ratify button
while the grant awaits ratification), the requester's answer, and the ratifier's."""

from __future__ import annotations

from bot.agenda import ratify_deadline
from bot.durations import format_duration
from bot.lifecycle import State
from bot.models import Grant
from bot.policy import Policy
from bot.slack import ids
from bot.slack.blocks.grants import approvers_md, card_fields, last_move, reason_blocks, where_plain
from bot.slack.blocks.kit import Message, actions, button, context, header, info_message, section
from bot.slack.blocks.permissions import Permissions, what_is_asked
from bot.slack.text import JSON, code, escape, md, mention, slack_date
from bot.workflow import Ratification, Ratified

__all__ = ["break_glass_card", "break_glass_dm", "break_glass_taken", "ratify_note"]


def _fields(grant: Grant) -> list[JSON]:
    glass = grant.break_glass
    assert glass is not None
    ratified = f"{len(glass.ratified_by)} of {glass.approvals_required}"
    if glass.ratified_by:
        ratified += ": " + ", ".join(mention(u) for u in glass.ratified_by)
    return card_fields(
        grant, who="Taken by", duration="Duration", count=("Ratifications", ratified)
    )


def _status(grant: Grant) -> list[JSON]:
    glass = grant.break_glass
    assert glass is not None
    if glass.ratified_at is not None:
        who = ", ".join(mention(u) for u in glass.ratified_by)
        ends = "" if grant.ended else "; it lives on to its expiry"
        text = f":white_check_mark: Ratified by {who}{ends}"
        if grant.ended:
            text += f" (now {escape(str(grant.state))})"
        return [section(md(text))]
    if grant.live:
        left = glass.approvals_required - len(glass.ratified_by)
        deadline = ratify_deadline(grant)
        when = (
            slack_date(deadline)
            if deadline
            else f"{format_duration(glass.ratify_within)} after it becomes active"
        )
        return [section(md(f":rotating_light: Taken without approval. Revoked {when} unless "
                           f"{left} more approver(s) ratify it."))]  # fmt: skip
    step = last_move(grant)
    blocks = [section(md(f":lock: Not ratified; {escape(str(grant.state))}"))]
    if step is not None:
        blocks += reason_blocks("Why", grant.failure or step.reason)
    return blocks


def break_glass_card(grant: Grant, policy: Policy, permissions: Permissions) -> Message:
    """The break-glass card in the approvals channel, updated in place; Ratify while the
    grant is live and unratified."""
    blocks: list[JSON] = [
        header(f"🚨 BREAK-GLASS: {grant.role} on {where_plain(grant)}"),
        {"type": "section", "fields": _fields(grant)},
        *what_is_asked(grant, permissions),
    ]
    blocks.append(
        context(
            md(approvers_md(policy, grant.role).replace("Approvers", "Who may ratify", 1)),
            md(f"Request {code(grant.id)} · break-glass access, granted without approval"),
        )
    )
    blocks += _status(grant)
    glass = grant.break_glass
    if glass is not None and glass.ratified_at is None and grant.live:
        blocks.append(actions(button("Ratify", ids.RATIFY, grant.id, "primary")))
    text = (
        f":rotating_light: Break-glass access taken by {mention(grant.requester)}: "
        f"{escape(grant.role)} on {escape(where_plain(grant))} ({grant.state})"
    )
    return Message(text, blocks)


def break_glass_taken(grant: Grant, channel: str) -> Message:
    """``/access breakglass``: granted at once, and what happens unless it is ratified."""
    glass = grant.break_glass
    where = f"<#{channel}>" if channel[:1] in "CG" else escape(channel)
    window = format_duration(glass.ratify_within) if glass else "its window"
    need = glass.approvals_required if glass else 1
    text = (
        f":rotating_light: Break-glass grant {code(grant.id)} is being set up without approval; "
        f"your kubeconfig will arrive in a DM. It is revoked unless {need} approver(s) "
        f"ratify it in {where} within {window} of its start."
    )
    return Message(text, [section(md(text))])


def ratify_note(ratification: Ratification) -> Message | None:
    """What a ratifier hears after Ratify (None: the card says it all)."""
    grant, outcome = ratification.grant, ratification.outcome
    glass = grant.break_glass
    if outcome == Ratified.RECORDED and glass is not None:
        left = glass.approvals_required - len(glass.ratified_by)
        return info_message(f"Ratification recorded; {left} more needed.")
    if outcome == Ratified.ALREADY_COUNTED:
        return info_message("You had already ratified this break-glass grant.")
    if outcome == Ratified.ALREADY_RATIFIED:
        return info_message("This break-glass grant is already ratified; nothing changed.")
    if outcome == Ratified.TOO_LATE:
        state = "past its deadline" if grant.state == State.ACTIVE else str(grant.state)
        return info_message(f"Too late to ratify: this break-glass grant is {state}.")
    return None


def break_glass_dm(before: Grant, after: Grant) -> Message | None:
    """The requester's DM when their break-glass grant is taken or ratified (None: any
    other change, told as for every grant)."""
    glass = after.break_glass
    if glass is None:
        return None
    what = (
        f"Your break-glass grant {code(after.id)} ({escape(after.role)} on {code(after.cluster)})"
    )
    if after.is_new and after.state == State.APPROVED:
        text = (
            f":rotating_light: {what} was taken without approval; preparing your kubeconfig. "
            f"It is revoked unless {glass.approvals_required} approver(s) ratify it within "
            f"{format_duration(glass.ratify_within)} of its start."
        )
    elif glass.ratified_at is not None and (
        before.break_glass is None or before.break_glass.ratified_at is None
    ):
        who = ", ".join(mention(u) for u in glass.ratified_by)
        text = f":white_check_mark: {what} was ratified by {who}; it lasts until its expiry."
    else:
        return None
    return Message(text, [section(md(text))])
