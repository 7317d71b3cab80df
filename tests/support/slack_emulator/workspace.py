"""The emulated workspace's state: users, usergroups, channels, DMs, and what
tests inspect (messages, ephemeral messages, files, views)."""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from tests.support.slack_emulator.records import JSON, SlackError, UploadedFile, _Ids, _TsClock
from tests.support.slack_emulator.wire import _is_user_id, _tz_fields


class _Workspace:
    """The in-memory workspace the Web API methods act on (no I/O here)."""

    def __init__(self, *, team_id: str, bot_user_id: str, bot_id: str, app_id: str) -> None:
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self._root_url = ""
        self._clock = _TsClock()
        self._ids = _Ids()
        self._users: dict[str, JSON] = {}
        self._usergroups: dict[str, JSON] = {}
        self._channels: dict[str, JSON] = {}
        self._dms: dict[str, str] = {}
        self._tickets: set[str] = set()
        self._clear_workspace_records()

    def _clear_workspace_records(self) -> None:
        self._messages: defaultdict[str, list[JSON]] = defaultdict(list)
        self._ephemeral: list[JSON] = []
        self._views: dict[str, JSON] = {}
        self._home_views: dict[str, JSON] = {}
        self._files: dict[str, UploadedFile] = {}
        self._shared_files: list[UploadedFile] = []

    def _method_handler(self, method: str) -> Callable[[JSON], JSON] | None:
        handler = getattr(self, "_api_" + method.replace(".", "_"), None)
        return handler if callable(handler) else None

    # ------------------------------------------------------------------ registries

    def add_user(
        self,
        user_id: str,
        *,
        name: str | None = None,
        real_name: str | None = None,
        email: str | None = None,
        deleted: bool = False,
        tz: str = "Europe/Berlin",
        is_bot: bool = False,
        is_admin: bool = False,
    ) -> JSON:
        """Register (or replace) a workspace member; returns Slack's user object."""
        handle = name or user_id.lower()
        full_name = real_name or handle
        profile: JSON = {
            "real_name": full_name,
            "real_name_normalized": full_name,
            "display_name": handle,
            "display_name_normalized": handle,
            "team": self.team_id,
        }
        if email is not None:
            profile["email"] = email
        user: JSON = {
            "id": user_id,
            "team_id": self.team_id,
            "name": handle,
            "deleted": deleted,
            "real_name": full_name,
            **_tz_fields(tz),
            "is_admin": is_admin,
            "is_owner": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": int(time.time()),
            "profile": profile,
        }
        self._users[user_id] = user
        return copy.deepcopy(user)

    def deactivate_user(self, user_id: str) -> JSON:
        """Mark a user deleted (and drop them from user groups, as Slack does).

        Returns the ``user_change`` event Slack would deliver for it.
        """
        user = self._users[user_id]
        user["deleted"] = True
        user["updated"] = int(time.time())
        for group in self._usergroups.values():
            if user_id in group["users"]:
                group["users"].remove(user_id)
                group["user_count"] = len(group["users"])
        ts = self._clock.next()
        return {
            "type": "user_change",
            "user": copy.deepcopy(user),
            "cache_ts": int(time.time()),
            "event_ts": ts,
        }

    def change_status(
        self, user_id: str, text: str = "In a huddle", emoji: str = ":headphones:"
    ) -> JSON:
        """Set a user's status; returns the ``user_change`` event Slack delivers for it.

        Slack sends this event to every app with ``users:read`` whenever anyone's
        status, huddle state or profile changes.
        """
        user = self._users[user_id]
        user["profile"]["status_text"] = text
        user["profile"]["status_emoji"] = emoji
        user["updated"] = int(time.time())
        return {
            "type": "user_change",
            "user": copy.deepcopy(user),
            "cache_ts": int(time.time()),
            "event_ts": self._clock.next(),
        }

    def change_usergroup_members(
        self, usergroup_id: str, *, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> JSON:
        """Add/remove members; returns the ``subteam_members_changed`` event.

        Shape as documented: ``subteam_id``, ``team_id``, ``date_previous_update``,
        ``date_update``, ``added_users``/``added_users_count``,
        ``removed_users``/``removed_users_count``.
        """
        group = self._usergroups[usergroup_id]
        added = [u for u in add if u not in group["users"]]
        removed = [u for u in remove if u in group["users"]]
        group["users"] = [u for u in group["users"] if u not in removed] + added
        group["user_count"] = len(group["users"])
        previous, group["date_update"] = group["date_update"], int(time.time())
        return {
            "type": "subteam_members_changed",
            "subteam_id": usergroup_id,
            "team_id": self.team_id,
            "date_previous_update": previous,
            "date_update": group["date_update"],
            "added_users": added,
            "added_users_count": str(len(added)),
            "removed_users": removed,
            "removed_users_count": str(len(removed)),
            "event_ts": self._clock.next(),
        }

    def usergroup_event(self, usergroup_id: str, kind: str = "subteam_updated") -> JSON:
        """The ``subteam_updated`` (or ``subteam_created``) event for a group as it is
        now: Slack sends the whole usergroup object, members included."""
        return {
            "type": kind,
            "subteam": copy.deepcopy(self._usergroups[usergroup_id]),
            "event_ts": self._clock.next(),
        }

    def add_usergroup(
        self,
        usergroup_id: str,
        handle: str,
        users: Iterable[str] = (),
        *,
        name: str | None = None,
        disabled: bool = False,
    ) -> JSON:
        """Register (or replace) a user group; ``handle`` may be given with ``@``."""
        now = int(time.time())
        members = list(users)
        group: JSON = {
            "id": usergroup_id,
            "team_id": self.team_id,
            "is_usergroup": True,
            "is_subteam": True,
            "name": name or handle.lstrip("@"),
            "description": "",
            "handle": handle.lstrip("@"),
            "is_external": False,
            "date_create": now,
            "date_update": now,
            "date_delete": now if disabled else 0,
            "auto_type": None,
            "created_by": self.bot_user_id,
            "updated_by": self.bot_user_id,
            "deleted_by": None,
            "prefs": {"channels": [], "groups": []},
            "users": members,
            "user_count": len(members),
            "channel_count": 0,
        }
        self._usergroups[usergroup_id] = group
        return copy.deepcopy(group)

    def add_channel(
        self, channel_id: str, name: str, *, is_private: bool = False, is_archived: bool = False
    ) -> JSON:
        """Register a channel so ``#name`` and ``conversations.*`` know it."""
        channel: JSON = {
            "id": channel_id,
            "name": name.lstrip("#"),
            "is_channel": not is_private,
            "is_group": is_private,
            "is_im": False,
            "is_private": is_private,
            "is_archived": is_archived,
            "is_member": True,
            "created": int(time.time()),
            "context_team_id": self.team_id,
        }
        self._channels[channel_id] = channel
        return copy.deepcopy(channel)

    def dm_channel(self, user_id: str) -> str:
        """The ``D…`` channel ``conversations.open(users=user_id)`` returns."""
        return self._dms.setdefault(user_id, "D" + user_id[1:])

    # ------------------------------------------------------------------ inspection

    def messages(self, channel: str) -> list[JSON]:
        """Messages in ``channel`` (oldest first), as currently stored."""
        return copy.deepcopy(self._messages.get(channel, []))

    def ephemeral_messages(self, channel: str | None = None, user: str | None = None) -> list[JSON]:
        return [
            copy.deepcopy(m)
            for m in self._ephemeral
            if channel in (None, m["channel"]) and user in (None, m["user"])
        ]

    @property
    def uploaded_files(self) -> list[UploadedFile]:
        """Files whose upload was completed, in completion order."""
        return list(self._shared_files)

    @property
    def views(self) -> dict[str, JSON]:
        """Modals by view ID, in their latest state."""
        return copy.deepcopy(self._views)

    def home_view(self, user_id: str) -> JSON | None:
        return copy.deepcopy(self._home_views.get(user_id))

    # ------------------------------------------------------------------ conversations

    def _channel_id(self, value: Any, *, dm_for_user: bool = False) -> str:
        channel = str(value or "")
        if channel.startswith("#"):
            return self._channel_by_name(channel[1:])
        if dm_for_user and _is_user_id(channel):
            self._check_dm_user(channel)
            return self.dm_channel(channel)
        if not channel or _is_user_id(channel):
            raise SlackError("channel_not_found")
        return channel

    def _channel_by_name(self, name: str) -> str:
        for channel in self._channels.values():
            if channel["name"] == name:
                return str(channel["id"])
        raise SlackError("channel_not_found")

    def _check_dm_user(self, user_id: str) -> None:
        if not _is_user_id(user_id):
            raise SlackError("user_not_found")
        user = self._users.get(user_id)
        if user is not None and user["deleted"]:
            raise SlackError("user_disabled")
