"""Who moved a request and what its requester can do next: the phrases the requester's
DMs and the approval card share for every state change (issue 15.7).

Actors are Slack user IDs (mentioned) or the bot's own names for changes nobody
clicked (``accessbot``, ``slack``, ``hr-webhook``, ``cli:<login>``), which read as
words, never as a broken mention.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.lifecycle import State
from bot.models import Grant
from bot.policy import Policy
from bot.slack.text import code, escape, mention

# The bot's own actors (bot.usecases.deps.SYSTEM, bot.slack.events.OFFBOARD_ACTOR, the
# offboarding webhook) as a reader should see them.
_SYSTEM_ACTORS = {
    "accessbot": "AccessBot",
    "slack": "Slack (the account was deactivated)",
    "hr-webhook": "the HR offboarding webhook",
    "reconciler": "AccessBot's reconciler",
}


def actor_md(actor: str) -> str:
    """Who made a change, in mrkdwn: a mention, or the system's name in words."""
    if actor in _SYSTEM_ACTORS:
        return _SYSTEM_ACTORS[actor]
    if actor.startswith("cli:"):
        return f"an operator ({code(actor.removeprefix('cli:'))}) on the command line"
    return mention(actor)


def people_md(actors: Sequence[str]) -> str:
    """``<@A>``, ``<@A> and <@B>``, ``<@A>, <@B> and <@C>``."""
    names = [actor_md(a) for a in actors]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def approved_by_md(grant: Grant, last_actor: str | None) -> str:
    """Everyone whose approval counted (the last move's actor when none are recorded)."""
    if grant.approvals:
        return people_md(grant.approvals)
    return actor_md(last_actor) if last_actor else "AccessBot"


def cancelled_text(grant: Grant, what: str, actor: str) -> str:
    """The requester's own cancellation, or who else cancelled it."""
    if actor == grant.requester:
        return f"You cancelled {what[0].lower()}{what[1:]}."
    return f"{what} was cancelled by {actor_md(actor)}."


def _admins_md(policy: Policy) -> str:
    names = [escape(a) if a.startswith("@") else mention(a) for a in sorted(policy.admins, key=str)]
    return ", ".join(names) if names else "an AccessBot admin"


def failure_advice(grant: Grant, policy: Policy) -> str:
    """What a requester can do about a failed request: never a stack trace, always a next step."""
    admins = _admins_md(policy)
    if grant.kind == "extend":
        parent = code(grant.extends or "?")
        return (
            f"Your grant {parent} is unchanged and still ends when it did. Try "
            f"`/access extend {escape(grant.extends or 'GRANT_ID')} -d DURATION` again; if it "
            f"fails the same way, ask {admins} and quote {code(grant.id)}."
        )
    return (
        "You hold no access from this request: anything AccessBot had made on "
        f"{code(grant.cluster)} is being removed. If the reason above is yours to fix "
        "(a namespace that does not exist, a role or namespace the policy no longer allows), "
        "fix it and ask again with `/access`. Otherwise ask again in a few minutes; if it "
        f"fails the same way, ask {admins} and quote {code(grant.id)}."
    )


def timed_out_advice(grant: Grant) -> str:
    """Why a request timed out, and what to do."""
    got = len(grant.approvals)
    so_far = f" (it had {got} of {grant.approvals_required})" if got else ""
    again = "`/access`"
    if grant.kind == "extend":
        again = f"`/access extend {escape(grant.extends or 'GRANT_ID')} -d DURATION`"
    return (
        f"It did not get its approvals before the deadline{so_far}. Ask again with "
        f"{again} if you still need it, and perhaps tell an approver."
    )


def card_outcome(grant: Grant, actor: str | None) -> str:
    """The card's status line once a request is decided or ended, naming everyone involved."""
    by = actor_md(actor) if actor else "AccessBot"
    approved = (
        f"Approved by {people_md(grant.approvals)}" if grant.approvals else "Approved by policy"
    )
    so_far = f" (approved so far by {people_md(grant.approvals)})" if grant.approvals else ""
    texts = {
        State.DENIED: f":no_entry: Denied by {by}{so_far}",
        State.CANCELLED: f":heavy_minus_sign: Cancelled by {by}{so_far}",
        State.TIMED_OUT: f":alarm_clock: Timed out: nobody decided in time{so_far}",
        State.REVOKED: f":lock: {approved}, then revoked by {by}",
        State.EXPIRED: f":lock: {approved}; the access has expired",
        State.FAILED: f":x: {approved}; then it failed" if grant.approvals else ":x: Failed",
        State.APPLIED: f":white_check_mark: {approved}; extension applied",
    }
    return texts[grant.state]


def approval_counted_text(grant: Grant, approver: str) -> str:
    """One more approval counted, more needed (not a state change, but news to the asker)."""
    left = grant.tally.remaining
    return (
        f":ballot_box_with_check: {actor_md(approver)} approved your request "
        f"{code(grant.id)} ({len(grant.approvals)} of {grant.approvals_required}); "
        f"waiting for {left} more approval(s)."
    )


def extended_by_text(grant: Grant, asked_by: str) -> str:
    """Who extended a grant, when it was not its owner (an admin, say)."""
    if asked_by == grant.requester:
        return ""
    return f"Extended by {actor_md(asked_by)}."
