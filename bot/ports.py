"""What the workflow needs from the outside world, as interfaces.

The Slack app implements them for real; workflow tests use small recording
doubles. Neither side imports the other.
"""

from __future__ import annotations

from typing import Protocol

from bot.models import Grant, MessageRef


class Notifier(Protocol):
    async def post_card(self, grant: Grant) -> MessageRef | None:
        """Post the approval card for a pending request; its reference, if posted."""

    async def deliver_kubeconfig(self, grant: Grant, filename: str, content: bytes) -> str:
        """Send the kubeconfig to the requester privately; returns a delivery id."""

    async def grant_changed(self, before: Grant, after: Grant) -> None:
        """Tell people about a committed change (card, requester DM, audit channel)."""

    async def remind(self, grant: Grant) -> None:
        """Warn the requester that the grant expires soon."""


class Directory(Protocol):
    async def groups_of(self, user_id: str) -> frozenset[str]:
        """Usergroup handles (without "@") the user belongs to."""

    async def user_for_email(self, email: str) -> str | None:
        """The user ID for an email address, or None if nobody has it."""

    async def handle_of(self, user_id: str) -> str:
        """A short human name for the user (their Slack handle)."""

    async def user_exists(self, user_id: str) -> bool:
        """Whether the workspace knows this user ID (deactivated users count)."""
