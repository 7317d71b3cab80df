"""The nudges about a pending request, posted in its card's thread: the approvers'
reminder and the escalation (see :mod:`bot.usecases.nudges`), and the card's line
saying how long the request has waited."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from bot.models import Grant
from bot.nudge_rules import Nudge, Targets, waited_text
from bot.slack.blocks.grants import summary_md, what_it_is
from bot.slack.blocks.kit import Message, section
from bot.slack.text import code, escape, md, mention, slack_date


def waiting_md(grant: Grant, now: datetime) -> str:
    """The card's line while pending: ``Waiting since <date> (25m)`` (no span in the
    first minute)."""
    span = now - grant.created_at
    since = f"Waiting since {slack_date(grant.created_at)}"
    return since if span < timedelta(minutes=1) else f"{since} ({waited_text(span)})"


def _names(who: Targets, group_ids: Mapping[str, str]) -> str:
    users = [mention(u) for u in who.users]
    groups = [
        f"<!subteam^{group_ids[h]}>" if h in group_ids else escape(f"@{h}") for h in who.groups
    ]
    return ", ".join(users + groups)


def nudge_message(grant: Grant, nudge: Nudge, group_ids: Mapping[str, str]) -> Message:
    """The reminder or escalation for the card's thread; ``group_ids``: handle -> ``S…``
    for the groups named as a whole (a group without an ID is named as text)."""
    # The requester is named, not mentioned: a mention would ping them about their own request.
    waiting = (
        f"{escape('@' + grant.handle)} has been waiting {waited_text(nudge.waited)} for a "
        f"decision on this {what_it_is(grant)} ({summary_md(grant)})"
    )
    names = _names(nudge.who, group_ids)
    if nudge.kind == "remind":
        if names:
            text = f":bell: Reminder for {names}: {waiting}."
        else:
            text = (
                f":bell: {waiting}, and nobody but the requester may approve it: an AccessBot "
                f"admin can, or add approvers to role {code(grant.role)}."
            )
    elif names:
        text = f":rotating_light: Escalation to {names}: {waiting}. Please decide, or find who can."
    else:
        text = f":rotating_light: {waiting}; nobody but the requester is left to escalate to."
    return Message(text, [section(md(text))])
