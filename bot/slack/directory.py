"""``bot.ports.Directory`` on Slack's API: usergroups, handles and emails, cached.

Usergroup methods are Tier 2 (about 20 calls a minute) and every approval click
asks "which groups is this person in?", so the whole usergroup → members map is
fetched at once and refreshed every ``ttl`` seconds. In between, Slack's own
events keep it current: ``subteam_members_changed`` (who joined, who left),
``subteam_created`` / ``subteam_updated`` (the whole group) and ``user_change``
(a deactivated user leaves every group). Events change only what they name;
nothing is ever dropped wholesale.

When Slack fails (an error, a 5xx, a reset), the last good data is used: the
group map, a user's handle, an email's user. Membership a few minutes old beats
refusing every click. With no data at all the error propagates and the caller
refuses, i.e. fails closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.client import error_code

__all__ = ["SlackDirectory"]

log = logging.getLogger(__name__)

# How long a cached answer (a usergroup map, a handle, an email) is used before asking again.
DEFAULT_TTL_SECONDS = 300.0

# Everything a failed Web API call can raise: Slack's error answers (SlackApiError),
# other client errors, connection problems (OSError, aiohttp.ClientError) and
# timeouts.
SLACK_FAILURES: tuple[type[BaseException], ...] = (
    SlackClientError,
    OSError,
    aiohttp.ClientError,
    TimeoutError,
)


@dataclass(frozen=True)
class _Entry:
    value: Any
    at: float


@dataclass
class _Group:
    handle: str
    members: frozenset[str]


@dataclass
class _Groups:
    """The usergroup map as last loaded, with every event since applied to it."""

    by_id: dict[str, _Group] = field(default_factory=dict)
    loaded_at: float = float("-inf")

    def by_handle(self) -> dict[str, frozenset[str]]:
        return {g.handle: g.members for g in self.by_id.values()}


Change = Callable[[_Groups], None]


class SlackDirectory:
    """Who is in which usergroup, who has which email, and what people are called.

    Parameters:
        client: the Slack Web API client.
        ttl_seconds: how long a cached answer is used before Slack is asked
            again, in seconds (events keep it current meanwhile). Default
            :data:`DEFAULT_TTL_SECONDS` (300).
        clock: monotonic seconds, for the cache's age. Default ``time.monotonic``.
    """

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl_seconds = ttl_seconds
        self._clock = clock
        self._groups: _Groups | None = None
        self._groups_lock = asyncio.Lock()
        # Events that arrive while a full load is in flight: the load's answer may
        # predate them, so they are applied again on top of it.
        self._during_load: list[Change] | None = None
        self._handles: dict[str, _Entry] = {}
        self._emails: dict[str, _Entry] = {}

    def _still_fresh(self, at: float) -> bool:
        return self._clock() - at < self._ttl_seconds

    def _fresh_value(self, table: Mapping[str, _Entry], key: str) -> str | None:
        """The cached answer for ``key`` while it is fresh, else None (ask Slack)."""
        entry = table.get(key)
        return str(entry.value) if entry is not None and self._still_fresh(entry.at) else None

    # -- usergroups ----------------------------------------------------------------

    async def _group_map(self) -> Mapping[str, frozenset[str]]:
        current = self._groups
        if current is not None and self._still_fresh(current.loaded_at):
            return current.by_handle()
        async with self._groups_lock:
            current = self._groups
            if current is not None and self._still_fresh(current.loaded_at):
                return current.by_handle()  # another caller refreshed while we waited
            self._during_load = []
            try:
                loaded = await self._load_groups()
            except SLACK_FAILURES as exc:
                if self._groups is None:
                    raise
                log.warning("usergroups refresh failed (%s); using the last list", error_code(exc))
                return self._groups.by_handle()
            finally:
                replay, self._during_load = self._during_load or [], None
            for change in replay:
                change(loaded)
            self._groups = loaded
            return loaded.by_handle()

    async def _load_groups(self) -> _Groups:
        resp = await self._client.usergroups_list(include_users=True, include_disabled=False)
        groups = _Groups(loaded_at=self._clock())
        for group in resp.get("usergroups") or []:
            loaded = await self._complete(group)
            if loaded is not None:
                groups.by_id[str(group["id"])] = loaded
        return groups

    async def _complete(self, group: Mapping[str, Any]) -> _Group | None:
        """A usergroup object as a _Group, asking for its members if they are cut short."""
        handle = str(group.get("handle") or "").lower()
        group_id = str(group.get("id") or "")
        if not handle or not group_id:
            return None
        users = group.get("users")
        if not isinstance(users, list) or len(users) < _count(group.get("user_count")):
            # Not included or cut short: ask for this group's members directly.
            listed = await self._client.usergroups_users_list(usergroup=group_id)
            users = listed.get("users") or []
        return _Group(handle, frozenset(str(u) for u in users))

    def _apply(self, change: Change) -> None:
        if self._groups is not None:
            change(self._groups)
        if self._during_load is not None:
            self._during_load.append(change)

    async def groups_of(self, user_id: str) -> frozenset[str]:
        """Handles (without "@") of the usergroups ``user_id`` belongs to.

        Raises a Slack client error only when no usergroup list was ever loaded.
        """
        groups = await self._group_map()
        return frozenset(h for h, users in groups.items() if user_id in users)

    async def members_of(self, handle: str) -> frozenset[str]:
        """User IDs in the usergroup ``handle`` (with or without "@"); empty if unknown."""
        groups = await self._group_map()
        return groups.get(handle.removeprefix("@").lower(), frozenset())

    async def group_id(self, handle: str) -> str | None:
        """The ID (``S…``) of the usergroup ``handle`` (with or without "@"), for a
        ``<!subteam^ID>`` mention; None if unknown."""
        await self._group_map()
        key = handle.removeprefix("@").lower()
        known = self._groups.by_id.items() if self._groups is not None else ()
        return next((group_id for group_id, g in known if g.handle == key), None)

    async def usergroup_members_changed(
        self, group_id: str, *, added: Iterable[str], removed: Iterable[str]
    ) -> None:
        """Apply Slack's ``subteam_members_changed`` (``subteam_id``, ``added_users``,
        ``removed_users``) to the cached map.

        A group the map does not know yet is fetched (``usergroups.users.list``
        gives members, not the handle, so the whole list is refreshed next time).
        """
        plus, minus = frozenset(added), frozenset(removed)

        def change(groups: _Groups) -> None:
            group = groups.by_id.get(group_id)
            if group is None:
                groups.loaded_at = float("-inf")  # unknown group: reload on next use
                return
            group.members = (group.members - minus) | plus

        self._apply(change)

    async def usergroup_changed(self, subteam: Mapping[str, Any]) -> None:
        """Apply ``subteam_created`` / ``subteam_updated``: the event's whole usergroup.

        A disabled group (``date_delete`` set) is dropped; members cut short in the
        event are fetched; if that fails the next use reloads the whole list (and
        falls back to the last one, this group as it was, if Slack is down).
        """
        group_id = str(subteam.get("id") or "")
        if not group_id:
            return
        if _count(subteam.get("date_delete")) > 0:

            def drop(groups: _Groups) -> None:
                groups.by_id.pop(group_id, None)

            self._apply(drop)
            return
        try:
            group = await self._complete(subteam)
        except SLACK_FAILURES as exc:
            log.warning(
                "usergroup %s members unknown (%s); reloading later", group_id, error_code(exc)
            )
            group = None

        def change(groups: _Groups) -> None:
            if group is None:
                groups.loaded_at = float("-inf")
            else:
                groups.by_id[group_id] = _Group(group.handle, group.members)

        self._apply(change)

    # -- people ---------------------------------------------------------------------

    async def user_for_email(self, email: str) -> str | None:
        """The user ID with this email; None if Slack knows nobody with it.

        When Slack fails, the last known answer for the email is used; with none,
        the error propagates.
        """
        key = email.strip().lower()
        if (fresh := self._fresh_value(self._emails, key)) is not None:
            return fresh
        cached = self._emails.get(key)
        try:
            resp = await self._client.users_lookupByEmail(email=key)
        except SLACK_FAILURES as exc:
            if isinstance(exc, SlackApiError) and error_code(exc) == "users_not_found":
                return None  # not cached: the person may be invited any minute
            if cached is None:
                raise
            log.warning("users.lookupByEmail failed (%s); using the last answer", error_code(exc))
            return str(cached.value)
        user = resp.get("user") or {}
        user_id = str(user.get("id") or "")
        if not user_id:
            return None
        self._emails[key] = _Entry(user_id, self._clock())
        return user_id

    async def handle_of(self, user_id: str) -> str:
        """The Slack username (``alice``): the last known one when Slack fails, else the
        lower-cased ID."""
        if (fresh := self._fresh_value(self._handles, user_id)) is not None:
            return fresh
        try:
            resp = await self._client.users_info(user=user_id)
        except SLACK_FAILURES as exc:
            # A request must not fail because a display name is unavailable.
            log.warning("users.info %s failed (%s)", user_id, error_code(exc))
            last = self._handles.get(user_id)
            return str(last.value) if last is not None else user_id.lower()
        self._remember_user(resp.get("user") or {}, user_id)
        return str(self._handles[user_id].value)

    async def user_exists(self, user_id: str) -> bool:
        """Whether Slack knows ``user_id`` (deactivated users count).

        When Slack fails, a user seen before exists; otherwise the error propagates.
        """
        cached = self._handles.get(user_id)
        if cached is not None and self._still_fresh(cached.at):
            return True
        try:
            resp = await self._client.users_info(user=user_id)
        except SLACK_FAILURES as exc:
            if isinstance(exc, SlackApiError) and error_code(exc) == "user_not_found":
                return False
            if cached is None:
                raise
            log.warning("users.info %s failed (%s); known from before", user_id, error_code(exc))
            return True
        self._remember_user(resp.get("user") or {}, user_id)
        return True

    def _remember_user(self, user: Mapping[str, Any], user_id: str) -> None:
        now = self._clock()
        self._handles[user_id] = _Entry(str(user.get("name") or "") or user_id.lower(), now)
        profile = user.get("profile")
        email = profile.get("email") if isinstance(profile, Mapping) else None
        if isinstance(email, str) and email.strip():
            self._emails[email.strip().lower()] = _Entry(user_id, now)

    def user_changed(self, user: Mapping[str, Any]) -> None:
        """Apply a ``user_change`` event's user object: this user's entries only.

        Slack sends one for every status or huddle change of anyone, so nothing
        else is touched. A deactivated user (``deleted: true``) also leaves every
        usergroup, as Slack removes them.
        """
        user_id = str(user.get("id") or "")
        if not user_id:
            return
        self.forget(user_id)  # the name or email may have changed
        if user.get("name"):
            self._remember_user(user, user_id)
        if user.get("deleted") is True:

            def leave(groups: _Groups) -> None:
                for group in groups.by_id.values():
                    group.members = group.members - {user_id}

            self._apply(leave)

    def forget(self, user_id: str) -> None:
        """Drop what is cached about one user's handle and email (nothing else)."""
        self._handles.pop(user_id, None)
        for key, entry in list(self._emails.items()):
            if entry.value == user_id:
                del self._emails[key]


def _count(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0
