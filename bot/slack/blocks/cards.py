"""The approval card in the approvals channel: the request, what its role allows,
the approvers, the status, and the buttons while it is pending."""

from __future__ import annotations

from bot.durations import format_duration
from bot.lifecycle import State
from bot.models import Grant
from bot.policy import Policy
from bot.slack.blocks.grants import (
    approvers_md,
    decision_buttons,
    insecure_md,
    last_move,
    reason_blocks,
    summary_md,
    where_plain,
)
from bot.slack.blocks.kit import Message, context, header, section
from bot.slack.blocks.permissions import PERMISSIONS_CHECKING, Permissions, allowance_blocks
from bot.slack.blocks.schedule import start_fields
from bot.slack.text import FIELD_TEXT_LIMIT, JSON, code, md, mention, slack_date


def _card_fields(grant: Grant) -> list[JSON]:
    scope = f"namespace {code(grant.namespace)}" if grant.namespace else "cluster-wide"
    duration = format_duration(grant.duration)
    return [
        md(f"*Requester*\n{mention(grant.requester)}", FIELD_TEXT_LIMIT),
        md(f"*Cluster*\n{code(grant.cluster)}", FIELD_TEXT_LIMIT),
        md(
            f"*Role*\n{code(grant.role)} (ClusterRole {code(grant.cluster_role)})", FIELD_TEXT_LIMIT
        ),
        md(f"*Scope*\n{scope}", FIELD_TEXT_LIMIT),
        md(
            f"*{'Extend by' if grant.kind == 'extend' else 'Duration'}*\n{duration}",
            FIELD_TEXT_LIMIT,
        ),
        md(f"*Approvals*\n{_tally_md(grant)}", FIELD_TEXT_LIMIT),
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
    by = mention(step.actor) if step else ""
    state = grant.state
    if state == State.PENDING:
        left = grant.tally.remaining
        return [section(md(f":hourglass_flowing_sand: Waiting for {left} more approval(s)"))]
    if state in (State.APPROVED, State.PROVISIONING, State.ACTIVE):
        approvers = ", ".join(mention(a) for a in grant.approvals) or by
        done = "extension applied" if grant.kind == "extend" else "access is being set up"
        if state == State.ACTIVE:
            done = "access is active"
        return [section(md(f":white_check_mark: Approved by {approvers}; {done}"))]
    texts = {
        State.DENIED: f":no_entry: Denied by {by}",
        State.CANCELLED: f":heavy_minus_sign: Cancelled by {by}",
        State.TIMED_OUT: ":alarm_clock: Timed out: nobody decided in time",
        State.REVOKED: f":lock: Approved, then revoked by {by}",
        State.EXPIRED: ":lock: Approved; the access has expired",
        State.FAILED: ":x: Failed",
        State.APPLIED: ":white_check_mark: Approved; extension applied",
    }
    blocks = [section(md(texts[state]))]
    if state in (State.DENIED, State.REVOKED, State.CANCELLED, State.FAILED) and step:
        blocks += reason_blocks("Why", grant.failure or step.reason)
    return blocks


def approval_card(
    grant: Grant, policy: Policy, permissions: Permissions = PERMISSIONS_CHECKING
) -> Message:
    """The card in the approvals channel; updated in place, buttons only while pending.

    ``permissions`` is what the grant's ClusterRole allows (see ``allowance_blocks``).
    """
    title = "Extension request" if grant.kind == "extend" else "Access request"
    blocks: list[JSON] = [header(f"{title}: {grant.role} on {where_plain(grant)}")]
    if grant.kind == "extend" and grant.extends:
        blocks.append(section(md(f"Extends grant {code(grant.extends)}")))
    blocks.append({"type": "section", "fields": _card_fields(grant)})
    blocks += reason_blocks("Reason", grant.reason)
    blocks += allowance_blocks(
        permissions,
        cluster_role=grant.cluster_role,
        cluster=grant.cluster,
        namespaced=grant.namespace is not None,
    )
    if grant.tls_insecure:
        blocks.append(section(md(insecure_md(grant))))
    blocks.append(
        context(
            md(approvers_md(policy, grant.role)),
            md(
                f"Request {code(grant.id)} · undecided requests close "
                f"{slack_date(grant.pending_until)}"
            ),
        )
    )
    blocks += _card_status(grant)
    if grant.state == State.PENDING:
        blocks.append(decision_buttons(grant))
    text = f"{title} from {mention(grant.requester)}: {summary_md(grant)} ({grant.state})"
    return Message(text, blocks)
