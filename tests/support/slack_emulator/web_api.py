"""Slack's Web API methods (conversations, auth, chat, views, users, usergroups)
over the workspace state; files are in ``files``, Socket Mode in ``socket_mode``."""

from __future__ import annotations

import copy
import secrets
import time
from typing import Any

from tests.support.slack_emulator.blocks import block_errors, view_errors
from tests.support.slack_emulator.records import (
    JSON,
    MESSAGE_BLOCK_LIMIT,
    MESSAGE_TEXT_LIMIT,
    SlackError,
    invalid_arguments,
)
from tests.support.slack_emulator.wire import _is_user_id, _split, _truthy
from tests.support.slack_emulator.workspace import _Workspace
from tests.support.slack_signing import TEAM_DOMAIN


class _WebApi(_Workspace):
    """Slack's Web API methods over in-memory workspace state (no I/O here).

    A method ``a.bCd`` is implemented by ``_api_a_bCd(params) -> JSON``; it returns
    the response fields besides ``ok`` or raises ``SlackError``.
    """

    def _api_conversations_open(self, params: JSON) -> JSON:
        users = _split(params.get("users"))
        if not users:
            raise SlackError("users_list_not_supplied")
        for user_id in users:
            self._check_dm_user(user_id)
        if len(users) > 1:
            return {"channel": {"id": "G" + "".join(sorted(u[1:] for u in users))[:20]}}
        already_open = users[0] in self._dms
        channel: JSON = {"id": self.dm_channel(users[0])}
        if _truthy(params.get("return_im")):
            channel |= {"is_im": True, "user": users[0], "created": int(time.time())}
        return (
            {"no_op": True, "already_open": True, "channel": channel}
            if already_open
            else {"channel": channel}
        )

    def _api_conversations_info(self, params: JSON) -> JSON:
        channel_id = str(params.get("channel") or "")
        if channel_id in self._channels:
            return {"channel": copy.deepcopy(self._channels[channel_id])}
        for user_id, dm in self._dms.items():
            if dm == channel_id:
                return {"channel": {"id": dm, "is_im": True, "user": user_id, "is_open": True}}
        raise SlackError("channel_not_found")

    def _api_conversations_list(self, params: JSON) -> JSON:
        types = set(_split(params.get("types")) or ["public_channel"])
        wanted = [
            c
            for c in self._channels.values()
            if ("private_channel" if c["is_private"] else "public_channel") in types
            and not (c["is_archived"] and _truthy(params.get("exclude_archived")))
        ]
        return {"channels": copy.deepcopy(wanted), "response_metadata": {"next_cursor": ""}}

    # ------------------------------------------------------------------ chat

    def _api_auth_test(self, params: JSON) -> JSON:
        return {
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": TEAM_DOMAIN.capitalize(),
            "user": "accessbot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _api_chat_postMessage(self, params: JSON) -> JSON:
        channel = self._channel_id(params.get("channel"), dm_for_user=True)
        self._check_content(params)
        message = self._bot_message(self._clock.next(), params)
        self._messages[channel].append(message)
        return {"channel": channel, "ts": message["ts"], "message": copy.deepcopy(message)}

    def _api_chat_update(self, params: JSON) -> JSON:
        channel = self._channel_id(params.get("channel"))
        message = self._stored_message(channel, str(params.get("ts") or ""))
        self._check_content(params)
        for key in ("text", "blocks", "attachments", "metadata"):
            if key in params:
                message[key] = params[key]
        message["edited"] = {"user": self.bot_user_id, "ts": self._clock.next()}
        return {
            "channel": channel,
            "ts": message["ts"],
            "text": message.get("text", ""),
            "message": copy.deepcopy(message),
        }

    def _api_chat_delete(self, params: JSON) -> JSON:
        channel = self._channel_id(params.get("channel"))
        message = self._stored_message(channel, str(params.get("ts") or ""))
        self._messages[channel].remove(message)
        return {"channel": channel, "ts": message["ts"]}

    def _api_chat_postEphemeral(self, params: JSON) -> JSON:
        channel = self._channel_id(params.get("channel"), dm_for_user=True)
        user = str(params.get("user") or "")
        if not _is_user_id(user):
            raise SlackError("user_not_found")
        self._check_content(params)
        message = self._bot_message(self._clock.next(), params) | {"channel": channel, "user": user}
        self._ephemeral.append(message)
        return {"message_ts": message["ts"]}

    def _stored_message(self, channel: str, ts: str) -> JSON:
        for message in self._messages.get(channel, []):
            if message["ts"] == ts:
                return message
        raise SlackError("message_not_found")

    def _check_content(self, params: JSON) -> None:
        if not any(params.get(key) for key in ("text", "blocks", "attachments")):
            raise SlackError("no_text")
        if len(str(params.get("text") or "")) > MESSAGE_TEXT_LIMIT:
            raise SlackError("msg_too_long")
        if "blocks" in params:
            self._check_blocks(params["blocks"])

    @staticmethod
    def _check_blocks(blocks: Any) -> None:
        if not isinstance(blocks, list):
            raise SlackError("invalid_blocks_format")
        errors = block_errors(blocks, MESSAGE_BLOCK_LIMIT)
        if errors:
            messages = [f"[ERROR] {e}" for e in errors]
            raise SlackError(
                "invalid_blocks", errors=errors, response_metadata={"messages": messages}
            )

    def _bot_message(self, ts: str, params: JSON) -> JSON:
        message: JSON = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "team": self.team_id,
            "ts": ts,
            "text": str(params.get("text") or ""),
        }
        for key in ("blocks", "attachments", "thread_ts", "metadata"):
            if params.get(key):
                message[key] = params[key]
        return message

    # ------------------------------------------------------------------ views

    def _api_views_open(self, params: JSON) -> JSON:
        return {"view": self._open_view(params)}

    def _api_views_push(self, params: JSON) -> JSON:
        return {"view": self._open_view(params)}

    def _api_views_update(self, params: JSON) -> JSON:
        current = self._find_view(params)
        submitted_hash = params.get("hash")
        if submitted_hash and submitted_hash != current["hash"]:
            raise SlackError("hash_conflict")
        view = self._new_view(self._view_param(params), view_id=current["id"])
        self._views[view["id"]] = view
        return {"view": copy.deepcopy(view)}

    def _api_views_publish(self, params: JSON) -> JSON:
        user_id = str(params.get("user_id") or "")
        if not _is_user_id(user_id):
            raise invalid_arguments("missing required field: user_id")
        view = self._view_param(params)
        if view.get("type") != "home":
            raise invalid_arguments("must be a valid enum value [json-pointer:/view/type]")
        previous = self._home_views.get(user_id)
        published = self._new_view(view, view_id=previous["id"] if previous else None)
        self._home_views[user_id] = published
        return {"view": copy.deepcopy(published)}

    def _open_view(self, params: JSON) -> JSON:
        if not params.get("trigger_id") and not params.get("interactivity_pointer"):
            raise invalid_arguments("missing required field: trigger_id")
        view = self._new_view(self._view_param(params))
        self._views[view["id"]] = view
        return copy.deepcopy(view)

    def _find_view(self, params: JSON) -> JSON:
        view_id, external_id = params.get("view_id"), params.get("external_id")
        for view in self._views.values():
            if view["id"] == view_id or (external_id and view["external_id"] == external_id):
                return view
        raise SlackError("not_found")

    @staticmethod
    def _view_param(params: JSON) -> JSON:
        view = params.get("view")
        if not isinstance(view, dict):
            raise invalid_arguments("missing required field: view")
        errors = view_errors(view)
        if errors:
            raise invalid_arguments(*errors)
        return view

    def _new_view(self, view: JSON, *, view_id: str | None = None) -> JSON:
        vid = view_id or self._ids.next("V")
        return {
            "id": vid,
            "team_id": self.team_id,
            "type": view["type"],
            "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "title": view.get("title"),
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "close": view.get("close"),
            "submit": view.get("submit"),
            "previous_view_id": None,
            "root_view_id": vid,
            "app_id": self.app_id,
            "external_id": view.get("external_id", ""),
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }

    # ------------------------------------------------------------------ users

    def _api_users_info(self, params: JSON) -> JSON:
        user = self._users.get(str(params.get("user") or ""))
        if user is None:
            raise SlackError("user_not_found")
        return {"user": copy.deepcopy(user)}

    def _api_users_lookupByEmail(self, params: JSON) -> JSON:
        email = str(params.get("email") or "").lower()
        for user in self._users.values():
            if str(user["profile"].get("email", "")).lower() == email and email:
                return {"user": copy.deepcopy(user)}
        raise SlackError("users_not_found")

    def _api_usergroups_list(self, params: JSON) -> JSON:
        include_users = _truthy(params.get("include_users"))
        include_disabled = _truthy(params.get("include_disabled"))
        groups = [
            self._usergroup_view(g, include_users)
            for g in self._usergroups.values()
            if include_disabled or not g["date_delete"]
        ]
        return {"usergroups": groups}

    def _api_usergroups_users_list(self, params: JSON) -> JSON:
        group = self._usergroups.get(str(params.get("usergroup") or ""))
        if group is None:
            raise SlackError("no_such_subteam")
        return {"users": list(group["users"])}

    @staticmethod
    def _usergroup_view(group: JSON, include_users: bool) -> JSON:
        shown = copy.deepcopy(group)
        if not include_users:
            del shown["users"]
        return shown
