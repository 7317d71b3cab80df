"""``bot.ports.Directory`` on Slack's API: usergroups, handles and emails, cached.

Usergroup methods are Tier 2 (about 20 calls a minute) and every approval click
asks "which groups is this person in?", so the whole handle → members map is
fetched at once and kept for ``ttl`` seconds. When a refresh fails, the last map
is used (a membership a few minutes old beats refusing every click); with no
map at all the error propagates and the caller refuses, i.e. fails closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.client import error_code

__all__ = ["SlackDirectory"]

log = logging.getLogger(__name__)

DEFAULT_TTL = 300.0


@dataclass(frozen=True)
class _Entry:
    value: Any
    at: float


class SlackDirectory:
    """Who is in which usergroup, who has which email, and what people are called."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._clock = clock
        self._groups: _Entry | None = None
        self._groups_lock = asyncio.Lock()
        self._handles: dict[str, _Entry] = {}
        self._emails: dict[str, _Entry] = {}

    def _fresh(self, entry: _Entry | None) -> bool:
        return entry is not None and self._clock() - entry.at < self._ttl

    # -- usergroups ----------------------------------------------------------------

    async def _group_map(self) -> Mapping[str, frozenset[str]]:
        if self._fresh(self._groups):
            assert self._groups is not None
            return dict(self._groups.value)
        async with self._groups_lock:
            if self._fresh(self._groups):  # another caller refreshed while we waited
                assert self._groups is not None
                return dict(self._groups.value)
            try:
                members = await self._load_groups()
            except (SlackApiError, OSError) as exc:
                if self._groups is None:
                    raise
                log.warning("usergroups refresh failed (%s); using the last list", error_code(exc))
                return dict(self._groups.value)
            self._groups = _Entry(members, self._clock())
            return members

    async def _load_groups(self) -> dict[str, frozenset[str]]:
        resp = await self._client.usergroups_list(include_users=True, include_disabled=False)
        members: dict[str, frozenset[str]] = {}
        for group in resp.get("usergroups") or []:
            handle = str(group.get("handle") or "").lower()
            if not handle:
                continue
            users = group.get("users")
            if not isinstance(users, list) or len(users) < _count(group.get("user_count")):
                # Not included or cut short: ask for this group's members directly.
                listed = await self._client.usergroups_users_list(usergroup=str(group["id"]))
                users = listed.get("users") or []
            members[handle] = frozenset(str(u) for u in users)
        return members

    async def groups_of(self, user_id: str) -> frozenset[str]:
        """Handles (without "@") of the usergroups ``user_id`` belongs to."""
        groups = await self._group_map()
        return frozenset(h for h, users in groups.items() if user_id in users)

    async def members_of(self, handle: str) -> frozenset[str]:
        """User IDs in the usergroup ``handle`` (with or without "@"); empty if unknown."""
        groups = await self._group_map()
        return groups.get(handle.removeprefix("@").lower(), frozenset())

    # -- people ---------------------------------------------------------------------

    async def user_for_email(self, email: str) -> str | None:
        key = email.strip().lower()
        cached = self._emails.get(key)
        if self._fresh(cached):
            assert cached is not None
            return str(cached.value)
        try:
            resp = await self._client.users_lookupByEmail(email=key)
        except SlackApiError as exc:
            if error_code(exc) == "users_not_found":
                return None  # not cached: the person may be invited any minute
            raise
        user = resp.get("user") or {}
        user_id = str(user.get("id") or "")
        if not user_id:
            return None
        self._emails[key] = _Entry(user_id, self._clock())
        return user_id

    async def handle_of(self, user_id: str) -> str:
        """The Slack username (``alice``); the lower-cased ID when Slack cannot say."""
        cached = self._handles.get(user_id)
        if self._fresh(cached):
            assert cached is not None
            return str(cached.value)
        try:
            resp = await self._client.users_info(user=user_id)
        except (SlackApiError, OSError) as exc:
            # A request must not fail because a display name is unavailable.
            log.warning("users.info %s failed (%s)", user_id, error_code(exc))
            return user_id.lower()
        user = resp.get("user") or {}
        handle = str(user.get("name") or "") or user_id.lower()
        self._handles[user_id] = _Entry(handle, self._clock())
        return handle

    async def user_exists(self, user_id: str) -> bool:
        """Whether Slack knows ``user_id`` (deactivated users count); errors propagate."""
        if self._fresh(self._handles.get(user_id)):
            return True
        try:
            resp = await self._client.users_info(user=user_id)
        except SlackApiError as exc:
            if error_code(exc) == "user_not_found":
                return False
            raise
        user = resp.get("user") or {}
        self._handles[user_id] = _Entry(str(user.get("name") or user_id.lower()), self._clock())
        return True

    def forget(self, user_id: str) -> None:
        """Drop what is cached about a user (they changed or left)."""
        self._handles.pop(user_id, None)
        for key, entry in list(self._emails.items()):
            if entry.value == user_id:
                del self._emails[key]
        # Deactivation removes people from usergroups: refresh memberships too.
        self._groups = None


def _count(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0
