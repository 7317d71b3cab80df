"""The audit channel: one line per state change, and the revocation receipts (the
channel's record, the requester's copy, the "access granted" DM marked ended).

Receipts give plain UTC times, not Slack's localised dates: a receipt is
evidence, quoted as written."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.audit import CACHE_CAVEAT
from bot.models import Grant, Receipt, Step
from bot.slack.blocks.grants import summary_md, what_it_is
from bot.slack.blocks.kit import Message, context, header, section
from bot.slack.blocks.schedule import start_note
from bot.slack.text import (
    HEADER_TEXT_LIMIT,
    SECTION_TEXT_LIMIT,
    clip_raw,
    code,
    escape,
    md,
    mention,
    plain,
)


def audit_message(grant: Grant, step: Step | None) -> Message:
    """One state change for the audit channel; ``step`` None records a new request."""
    if step is None:
        change = f"requested by {mention(grant.requester)}{start_note(grant)}"
        if grant.break_glass is not None:
            who = mention(grant.requester)
            change = f":rotating_light: *BREAK-GLASS*, taken without approval by {who}"
    else:
        change = f"{step.from_state} → *{step.to_state}* by {mention(step.actor)}"
    text = (
        f"{code(grant.id)} {what_it_is(grant)} {summary_md(grant)} "
        f"for {mention(grant.requester)}: {change}"
    )
    blocks = [section(md(text))]
    reason = grant.reason if step is None else step.reason
    if reason.strip():
        blocks.append(context(plain(reason, SECTION_TEXT_LIMIT)))
    return Message(text, blocks)


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%H:%M:%S UTC on %Y-%m-%d")


def ended_at(grant: Grant) -> datetime | None:
    """When the grant's record moved to its end state (revoked, expired, failed)."""
    for step in reversed(grant.history):
        if step.event is None and step.to_state == grant.state:
            return step.at
    return None


def _check_lines(receipt: Receipt) -> str:
    lines = [("✅ " if _check_passed(c) else "❌ ") + escape(c) for c in receipt.checks]
    return "\n".join(lines) or "no checks"


def _check_passed(check: str) -> bool:
    answer = check.rsplit(": ", 1)[-1]
    return answer in ("404", "not allowed", "none") or answer.startswith("404 ")


def receipt_message(grant: Grant, receipt: Receipt) -> Message:
    """The revocation receipt for the audit channel: grant, cluster, checks, result, time."""
    ended = ended_at(grant)
    result = "verified" if receipt.verified else "FAILED: access may remain"
    title = (
        f"Revocation receipt: {grant.id} verified"
        if receipt.verified
        else f"🚨 Revocation NOT verified: {grant.id}"
    )
    summary = (
        f"{code(grant.id)} {summary_md(grant)} for {mention(grant.requester)} "
        f"ended ({escape(str(grant.state))})"
        + (f" at {_utc(ended)}" if ended else "")
        + f". Checked on cluster {code(grant.cluster)} at {_utc(receipt.at)}: *{result}*."
    )
    blocks = [
        header(clip_raw(title, HEADER_TEXT_LIMIT)),
        section(md(summary)),
        section(md(f"*What was checked*\n{_check_lines(receipt)}")),
    ]
    if not receipt.verified:
        blocks.append(
            section(md("AccessBot runs the cleanup again until this verifies; a receipt follows."))
        )
    blocks.append(context(plain(CACHE_CAVEAT)))
    text = f"Revocation receipt for {code(grant.id)} on {code(grant.cluster)}: {result}"
    return Message(text, blocks)


def receipt_dm(grant: Grant, receipt: Receipt) -> Message:
    """The requester's copy: "your access to prod ended at 12:03:41 UTC, verified"."""
    ended = ended_at(grant) or receipt.at
    text = (
        f"Your access to {code(grant.cluster)} ({summary_md(grant)}, grant {code(grant.id)}) "
        f"ended at {_utc(ended)}, verified at {_utc(receipt.at)}."
    )
    return Message(text, [section(md(text)), context(plain(CACHE_CAVEAT))])


def ended_dm(grant: Grant) -> Message:
    """What the "access granted" DM becomes once the grant ended (its buttons go)."""
    ended = ended_at(grant)
    when = f" at {_utc(ended)}" if ended else ""
    text = (
        f"Access ended{when}: {summary_md(grant)}, grant {code(grant.id)} "
        f"({escape(str(grant.state))}). The kubeconfig file was deleted from Slack."
    )
    return Message(text, [section(md(text))])
