"""Direct messages to the requester: the request's progress, access granted or
extended, the expiry reminder."""

from __future__ import annotations

from datetime import datetime

from bot.audit import new_steps
from bot.durations import format_duration
from bot.lifecycle import State
from bot.models import Grant, Step
from bot.policy import Policy
from bot.slack import ids
from bot.slack.blocks.breakglass import break_glass_dm
from bot.slack.blocks.grants import (
    approvers_md,
    cap_md,
    grant_buttons,
    insecure_md,
    last_move,
    reason_blocks,
    summary_md,
    what_it_is,
    where_plain,
)
from bot.slack.blocks.kit import Message, actions, button, context, header, section
from bot.slack.blocks.narrowing import narrowing_dm
from bot.slack.blocks.outcomes import (
    actor_md,
    approval_counted_text,
    approved_by_md,
    cancelled_text,
    extended_by_text,
    failure_advice,
    timed_out_advice,
)
from bot.slack.blocks.schedule import kubeconfig_when, start_note
from bot.slack.text import JSON, code, escape, md, slack_date, time_left


def _usage_lines(grant: Grant) -> str:
    first = "kubectl get pods" if grant.namespace else "kubectl auth can-i --list"
    return f"```\nexport KUBECONFIG=~/Downloads/{escape(grant.kubeconfig_filename)}\n{first}\n```"


def active_message(grant: Grant, now: datetime) -> Message:
    """Access is live: how to use the file, when it ends, Revoke now / Extend."""
    assert grant.expires_at is not None
    until = slack_date(grant.expires_at)
    blocks = [
        header(f"Access granted: {grant.role} on {where_plain(grant)}"),
        section(
            md(
                f"Your kubeconfig {code(grant.kubeconfig_filename)} is in this conversation. "
                "Download it, then:\n" + _usage_lines(grant)
            )
        ),
        section(
            md(
                f"Expires {until} (in {time_left(grant.expires_at, now)}). "
                f"Grant {code(grant.id)}. Keep the file private: it holds your token."
            )
        ),
    ]
    if grant.token_cap_s is not None:
        blocks.append(section(md(cap_md(grant))))
    if grant.tls_insecure:
        blocks.append(section(md(insecure_md(grant))))
    blocks.append(grant_buttons(grant))
    text = f"Access granted: {summary_md(grant)}, until {until}"
    return Message(text, blocks)


def extended_message(grant: Grant, now: datetime) -> Message:
    assert grant.expires_at is not None
    until = slack_date(grant.expires_at)
    text = (
        f"Your access {code(grant.id)} ({summary_md(grant)}) was extended; it now expires "
        f"{until} (in {time_left(grant.expires_at, now)}). A fresh kubeconfig follows: "
        "use it instead of the old one, which stops working at the old expiry."
    )
    blocks = [section(md(text))]
    if grant.token_cap_s is not None:
        blocks.append(section(md(cap_md(grant))))
    return Message(text, [*blocks, grant_buttons(grant)])


def reminder_message(grant: Grant, now: datetime) -> Message:
    assert grant.expires_at is not None
    text = (
        f":hourglass: Your access {code(grant.id)} ({summary_md(grant)}) expires "
        f"{slack_date(grant.expires_at)} (in {time_left(grant.expires_at, now)})."
    )
    return Message(text, [section(md(text)), grant_buttons(grant)])


def _waiting_dm(grant: Grant, policy: Policy) -> Message:
    what = what_it_is(grant).capitalize()
    text = (
        f"{what} {code(grant.id)} for {summary_md(grant)} "
        f"({format_duration(grant.duration)}{start_note(grant)}) is waiting for "
        f"{grant.approvals_required} approval(s). {approvers_md(policy, grant.role)}."
    )
    cancel = button("Cancel request", ids.REVOKE, grant.id)
    return Message(
        text, [section(md(text)), *reason_blocks("Reason", grant.reason), actions(cancel)]
    )


def _state_text(grant: Grant, step: Step | None) -> str | None:
    """One sentence per state a requester wants to hear about (None: stay quiet)."""
    by = actor_md(step.actor) if step else "AccessBot"
    what = f"Your {what_it_is(grant)} {code(grant.id)} for {summary_md(grant)}"
    approvers = approved_by_md(grant, step.actor if step else None)
    texts = {
        State.APPROVED: (
            f":white_check_mark: {what} was approved by {approvers}."
            + ("" if grant.kind == "extend" else f" {kubeconfig_when(grant)}")
        ),
        State.DENIED: f":no_entry: {what} was denied by {by}.",
        State.CANCELLED: cancelled_text(grant, what, step.actor if step else "accessbot"),
        State.TIMED_OUT: f":alarm_clock: {what} timed out: nobody decided in time.",
        State.REVOKED: f":lock: {what} was revoked by {by}.",
        State.EXPIRED: f":lock: {what} has expired. Request it again if you still need it.",
        State.FAILED: f":x: {what} failed.",
    }
    return texts.get(grant.state)


def requester_update(before: Grant, after: Grant, policy: Policy, now: datetime) -> Message | None:
    """The DM for one committed change, or None when the requester needs no message."""
    glass = break_glass_dm(before, after)
    if glass is not None:  # taken, or ratified: said the break-glass way
        return glass
    narrowed = narrowing_dm(before, after)  # approved with changes: what changed, by whom
    if narrowed is not None:
        return narrowed
    if after.is_new and after.state == State.PENDING:
        return _waiting_dm(after, policy)
    if after.kind == "access" and after.state == State.ACTIVE:
        if before.state != State.ACTIVE:
            return active_message(after, now)
        if before.expires_at != after.expires_at:
            return _extended(before, after, now)
        return None
    if not after.is_new and before.state == after.state:
        return _approval_counted(before, after)
    step = last_move(after)
    text = _state_text(after, step)
    if text is None:
        return None
    auto = after.is_new and after.state == State.APPROVED
    if auto:
        text = f"Your {what_it_is(after)} {code(after.id)} for {summary_md(after)} was approved "
        text += f"automatically by policy. {kubeconfig_when(after)}"
    why = after.failure or (step.reason if step else "")
    if after.state in (State.APPROVED, State.EXPIRED, State.TIMED_OUT):
        why = ""
    return Message(
        text, [section(md(text)), *reason_blocks("Why", why), *_next_step(after, policy)]
    )


def _next_step(grant: Grant, policy: Policy) -> list[JSON]:
    """What the requester can do after a failure or a timeout (see blocks.outcomes)."""
    if grant.state == State.FAILED:
        return [context(md(failure_advice(grant, policy)))]
    if grant.state == State.TIMED_OUT:
        return [context(md(timed_out_advice(grant)))]
    return []


def _extended(before: Grant, after: Grant, now: datetime) -> Message:
    """The extension DM, saying who extended the grant when it was not its owner."""
    message = extended_message(after, now)
    asked = [s.actor for s in new_steps(before, after) if s.event == "extended"]
    by = extended_by_text(after, asked[-1]) if asked else ""
    if not by:
        return message
    return Message(message.text, [section(md(by)), *message.blocks])


def _approval_counted(before: Grant, after: Grant) -> Message | None:
    """An approval counted while more are needed: the requester hears who gave it."""
    counted = [s for s in new_steps(before, after) if s.event == "approval"]
    if after.state != State.PENDING or not counted:
        return None
    text = approval_counted_text(after, counted[-1].actor)
    return Message(text, [section(md(text))])
