"""The approval card in the approvals channel: the request, what its role allows,
the approvers, the status, and the buttons while it is pending."""

from __future__ import annotations

from datetime import datetime

from bot.lifecycle import State
from bot.models import Grant
from bot.policy import Policy
from bot.slack.blocks.breakglass import break_glass_card
from bot.slack.blocks.grants import (
    approvers_md,
    card_fields,
    decision_buttons,
    last_move,
    reason_blocks,
    summary_md,
    where_plain,
)
from bot.slack.blocks.kit import Message, context, header, section
from bot.slack.blocks.narrowing import narrowed_blocks
from bot.slack.blocks.nudges import waiting_md
from bot.slack.blocks.outcomes import actor_md, card_outcome, people_md
from bot.slack.blocks.permissions import PERMISSIONS_CHECKING, Permissions, what_is_asked
from bot.slack.blocks.schedule import start_fields
from bot.slack.text import JSON, code, md, mention, slack_date


def _card_fields(grant: Grant) -> list[JSON]:
    duration = "Extend by" if grant.kind == "extend" else "Duration"
    count = ("Approvals", _tally_md(grant))
    return [
        *card_fields(grant, who="Requester", duration=duration, count=count),
        *start_fields(grant),
    ]


def _tally_md(grant: Grant) -> str:
    given = len(grant.approvals)
    text = f"{given} of {grant.approvals_required}"
    if grant.approvals:
        text += ": " + ", ".join(mention(a) for a in grant.approvals)
    return text


def _card_status(grant: Grant) -> list[JSON]:
    step = last_move(grant)
    by = actor_md(step.actor) if step else ""
    state = grant.state
    if state == State.PENDING:
        left = grant.tally.remaining
        return [section(md(f":hourglass_flowing_sand: Waiting for {left} more approval(s)"))]
    if state in (State.APPROVED, State.PROVISIONING, State.ACTIVE):
        approvers = people_md(grant.approvals) or by
        done = "extension being applied" if grant.kind == "extend" else "access is being set up"
        if state == State.ACTIVE:
            done = "access is active"
        return [section(md(f":white_check_mark: Approved by {approvers}; {done}"))]
    blocks = [section(md(card_outcome(grant, step.actor if step else None)))]
    if state in (State.DENIED, State.REVOKED, State.CANCELLED, State.FAILED) and step:
        blocks += reason_blocks("Why", grant.failure or step.reason)
    return blocks


def approval_card(
    grant: Grant,
    policy: Policy,
    permissions: Permissions = PERMISSIONS_CHECKING,
    now: datetime | None = None,
) -> Message:
    """The card in the approvals channel; updated in place, buttons only while pending.

    ``permissions`` is what the grant's ClusterRole allows (see ``allowance_blocks``);
    ``now``, when given, adds how long a pending request has waited.
    """
    if grant.break_glass is not None:  # taken without approval: the Ratify card
        return break_glass_card(grant, policy, permissions)
    title = "Extension request" if grant.kind == "extend" else "Access request"
    blocks: list[JSON] = [header(f"{title}: {grant.role} on {where_plain(grant)}")]
    if grant.kind == "extend" and grant.extends:
        blocks.append(section(md(f"Extends grant {code(grant.extends)}")))
    blocks.append({"type": "section", "fields": _card_fields(grant)})
    blocks += narrowed_blocks(grant)
    blocks += what_is_asked(grant, permissions)
    blocks.append(
        context(
            md(approvers_md(policy, grant.role)),
            md(
                f"Request {code(grant.id)} · undecided requests close "
                f"{slack_date(grant.pending_until)}"
            ),
        )
    )
    if now is not None and grant.state == State.PENDING:
        blocks.append(context(md(waiting_md(grant, now))))
    blocks += _card_status(grant)
    if grant.state == State.PENDING:
        blocks.append(decision_buttons(grant))
    text = f"{title} from {mention(grant.requester)}: {summary_md(grant)} ({grant.state})"
    return Message(text, blocks)
