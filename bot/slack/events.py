"""The Events API listeners: App Home opened, a person changed or deactivated, a
usergroup created, changed or its members changed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.slack.payloads import strings
from bot.slack.surface import Listeners, Surface
from bot.slack.text import JSON

log = logging.getLogger(__name__)

T = TypeVar("T")

# Work that must happen (a deactivation's offboarding) waits for Redis this long
# between attempts, at most.
REDIS_RETRY_CAP_SECONDS = 10.0
# Who the audit log says offboarded a person Slack deactivated.
OFFBOARD_ACTOR = "slack"


class Events(Listeners):
    """The event listeners."""

    def __init__(self, surface: Surface) -> None:
        super().__init__(surface)
        self.directory = surface.directory

    async def home_opened(self, event: JSON) -> None:
        if event.get("tab", "home") != "home":
            return
        await self.surface.publish_home(str(event.get("user") or ""))

    async def user_changed(self, event: JSON) -> None:
        """Keep the directory's view of this one user current; offboard a deactivation.

        Slack sends ``user_change`` for every status, huddle or profile change, so
        only this user's cached entries change (from the event's own user object).
        """
        user = event.get("user")
        if not isinstance(user, dict):
            return
        user_id = str(user.get("id") or "")
        if not user_id:
            return
        self.directory.user_changed(user)
        if user.get("deleted") is not True:
            return
        result = await until_redis_answers(
            f"offboarding {user_id}",
            lambda: self.workflow.offboard(user_id, OFFBOARD_ACTOR, "Slack account deactivated"),
        )
        log.info(
            "offboarded %s: revoked %s, cancelled %s", user_id, result.revoked, result.cancelled
        )

    async def usergroup_changed(self, event: JSON) -> None:
        """``subteam_created`` / ``subteam_updated``: the event carries the whole usergroup."""
        subteam = event.get("subteam")
        if isinstance(subteam, dict):
            await self.directory.usergroup_changed(subteam)

    async def usergroup_members_changed(self, event: JSON) -> None:
        """``subteam_members_changed``: who joined and who left one usergroup."""
        await self.directory.usergroup_members_changed(
            str(event.get("subteam_id") or ""),
            added=strings(event.get("added_users")),
            removed=strings(event.get("removed_users")),
        )


async def until_redis_answers(what: str, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` until Redis lets it finish; retries only Redis being unreachable.

    For work Slack will not deliver again once acknowledged (a deactivation): the
    attempt repeats, with a growing pause up to REDIS_RETRY_CAP_SECONDS, for as
    long as this process runs. ``work`` must be idempotent.
    """
    pause_seconds = 0.5
    while True:
        try:
            return await work()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning(
                "%s waits for Redis (%s); retrying in %.1fs",
                what,
                str(exc) or exc.__class__.__name__,
                pause_seconds,
            )
            await asyncio.sleep(pause_seconds)
            pause_seconds = min(pause_seconds * 2, REDIS_RETRY_CAP_SECONDS)
