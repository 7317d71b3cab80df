"""What scheduled access (``starts_at``) adds to cards, DMs and lists."""

from __future__ import annotations

from bot.models import Grant
from bot.slack.text import FIELD_TEXT_LIMIT, JSON, md, slack_date

__all__ = ["kubeconfig_when", "start_fields", "start_note"]


def start_fields(grant: Grant) -> list[JSON]:
    """The card's "Starts" field of a scheduled request (none otherwise)."""
    if grant.starts_at is None:
        return []
    return [md(f"*Starts*\n{slack_date(grant.starts_at)}", FIELD_TEXT_LIMIT)]


def start_note(grant: Grant) -> str:
    """`` · starts <date>`` for a scheduled grant (empty otherwise)."""
    return "" if grant.starts_at is None else f" · starts {slack_date(grant.starts_at)}"


def kubeconfig_when(grant: Grant) -> str:
    """What an approved requester is told about their kubeconfig."""
    if grant.starts_at is None:
        return "Preparing your kubeconfig…"
    return (
        f"Your access starts {slack_date(grant.starts_at)}; the kubeconfig arrives then "
        "(its time counts from the start)."
    )
