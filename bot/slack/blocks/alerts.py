"""What AccessBot tells its admins when Slack or a cluster needs them, and the line
that comes with a kubeconfig file. Plain text: admins read these in a DM."""

from __future__ import annotations

from bot.models import Grant
from bot.slack.text import escape

# What to do about the Slack errors that no retry fixes.
_HINTS = {
    "channel_not_found": "Check the channel ID in the policy file; the channel may be gone.",
    "not_in_channel": "Invite the app to that channel (/invite @AccessBot).",
    "is_archived": "The channel is archived: unarchive it or change the policy file.",
    "missing_scope": "Add the missing OAuth scope to the app and reinstall it.",
}


def slack_refused(doing: str, where: str, code: str, needed: str) -> str:
    """Slack refused a call for a set-up reason (``code``); ``needed``: the missing scope."""
    text = f"AccessBot could not {doing} ({where}): Slack answered {code}."
    if needed:
        text += f" Scope needed: {needed}."
    hint = _HINTS.get(code)
    return f"{text} {hint}" if hint else text


def receipt_unverified(grant: Grant) -> str:
    """A revocation that could not be verified (the cleanup keeps trying)."""
    return (
        f"AccessBot could not verify that grant {grant.id}'s access on cluster "
        f"{grant.cluster} is gone; it keeps cleaning up. See the audit channel."
    )


def kubeconfig_comment(grant: Grant) -> str:
    """The line posted with the kubeconfig file."""
    return f"Your kubeconfig for grant `{escape(grant.id)}`."


def undeliverable(code: str) -> str:
    """Why the grant failed when Slack refused the kubeconfig (shown to the requester)."""
    return f"the kubeconfig could not be sent to you on Slack ({code})"


NO_DM_CHANNEL = "Slack did not open a direct message channel"
