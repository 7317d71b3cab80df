"""What the use cases and the adapters need from the outside world, as interfaces.

The Slack app implements :class:`Notifier` and :class:`Directory` for real;
workflow tests use small recording doubles. The store implements
:class:`Deduplicator`. Neither side imports the other: the Slack app reaches
the notifier and the directory only through these protocols.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from bot.models import Grant, MessageRef
from bot.nudge_rules import Nudge
from k8s.rbac import Allowance

# What is known about a role's permissions: the analysis, a problem reading it
# (plain words), or None while it is still being read.
Permissions = Allowance | str | None


class PermissionSource(Protocol):
    """Reads what a ClusterRole allows (:class:`bot.usecases.permissions.PermissionChecks`)."""

    def check(
        self, cluster: str, cluster_role: str, *, namespaced: bool
    ) -> asyncio.Task[Permissions]:
        """Read now, or join a read under way; the task never raises."""

    def known(self, cluster: str, cluster_role: str, *, namespaced: bool) -> Permissions:
        """The latest answer known, without waiting."""


class Notifier(Protocol):
    """Tells people about requests and grants (the workflow), and privately answers a
    person (the adapter)."""

    async def post_card(self, grant: Grant) -> MessageRef | None:
        """Post the approval card for a pending request; its reference, if posted."""

    async def deliver_kubeconfig(self, grant: Grant, filename: str, content: bytes) -> str:
        """Send the kubeconfig to the requester privately; returns a delivery id."""

    async def grant_changed(self, before: Grant, after: Grant) -> None:
        """Tell people about a committed change (card, requester DM, audit channel).

        Called by the outbox's drainer (:mod:`bot.outbox`) after the commit, one grant's
        changes in order; it may take as long as Slack takes, and returns once told."""

    async def remind(self, grant: Grant) -> None:
        """Warn the requester that the grant expires soon."""

    async def nudge(self, grant: Grant, nudge: Nudge) -> None:
        """Post a reminder or an escalation about a pending request in its card's thread,
        naming ``nudge.who``. Failures are logged, never raised."""

    async def send_dm(self, user: str, message: Any) -> None:
        """Send ``message`` (the adapter's own rendering; on Slack a
        ``bot.slack.blocks.Message``) to ``user`` privately. Failures are logged,
        never raised."""

    def use_permissions(self, permissions: PermissionSource) -> None:
        """Show roles' permissions (on approval cards) as ``permissions`` reads them."""


class Directory(Protocol):
    """Who people are and which usergroups they are in, kept current by the
    workspace's own events."""

    async def groups_of(self, user_id: str) -> frozenset[str]:
        """Usergroup handles (without "@") the user belongs to."""

    async def members_of(self, handle: str) -> frozenset[str]:
        """User IDs in the usergroup ``handle`` (with or without "@"); empty if unknown."""

    async def user_for_email(self, email: str) -> str | None:
        """The user ID for an email address, or None if nobody has it."""

    async def handle_of(self, user_id: str) -> str:
        """A short human name for the user (their Slack handle)."""

    async def user_exists(self, user_id: str) -> bool:
        """Whether the workspace knows this user ID (deactivated users count)."""

    def user_changed(self, user: Mapping[str, Any]) -> None:
        """Learn one person's change from the workspace's own event (Slack: the
        ``user_change`` event's ``user`` object)."""

    async def usergroup_changed(self, subteam: Mapping[str, Any]) -> None:
        """Learn a usergroup's new state from the workspace's event (Slack:
        ``subteam_created`` / ``subteam_updated``, the whole ``subteam`` object)."""

    async def usergroup_members_changed(
        self, group_id: str, *, added: Iterable[str], removed: Iterable[str]
    ) -> None:
        """Learn who joined (``added``) and left (``removed``) one usergroup."""


class Deduplicator(Protocol):
    """Remembers deliveries (events, commands, clicks) so a retry or replay is handled once."""

    async def first_time(self, key: str, ttl_seconds: int = 3600) -> bool:
        """True exactly once per ``key`` within ``ttl_seconds`` (default an hour): the
        first sighting of a delivery, never a retry or a replay of it."""
