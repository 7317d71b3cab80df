"""A local Slack: Web API, file uploads, response URLs and Socket Mode, on 127.0.0.1.

The only emulated party of our test bed, so it answers in Slack's real wire format
and enforces the limits Slack enforces (block counts, text lengths, token types).
Point the real ``slack_sdk`` / Bolt clients at it::

    async with SlackEmulator() as emu:
        emu.add_user("U0ALICE", email="alice@example.com")
        client = AsyncWebClient(token="xoxb-test", base_url=emu.base_url)
        await client.chat_postMessage(channel="C0APPROVALS", text="hi")
        (call,) = await emu.wait_for("chat.postMessage")

Every request is recorded (``calls``) after it has been answered, so once
``wait_for`` returns, the workspace state (``messages``, ``uploaded_files``, ...)
already reflects it. Deliberate leniency: channel IDs need not be registered
(``add_channel`` is only needed for ``#name`` lookups and ``conversations.*``), and
any ``U…``/``W…`` ID can be DMed; registered users are checked (deleted ones can't).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import secrets
import socket
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from aiohttp import BodyPartReader, WSCloseCode, WSMsgType, web

from tests.support.patience import PATIENCE
from tests.support.slack_signing import APP_ID, BOT_ID, BOT_USER_ID, TEAM_DOMAIN, TEAM_ID

JSON = dict[str, Any]
T = TypeVar("T")

# Pseudo method names under which non-Web-API requests are recorded in ``calls``.
UPLOAD_URL = "upload_url"
RESPONSE_URL = "response_url"

APP_TOKEN_METHODS = frozenset({"apps.connections.open"})
JSON_ENCODED_PARAMS = ("blocks", "attachments", "view", "files", "metadata")
MESSAGE_BLOCK_LIMIT = 50
VIEW_BLOCK_LIMIT = 100
MESSAGE_TEXT_LIMIT = 40_000


# =========================================================================== records


@dataclass(frozen=True)
class RecordedCall:
    """One request as the emulator saw and answered it.

    ``params`` merges query string and body (form or JSON), without ``token``;
    JSON-encoded form fields (``blocks``, ``view``, ...) are decoded.
    """

    method: str
    params: JSON
    headers: dict[str, str]
    at: float
    token: str | None = None
    status: int = 200
    response: JSON = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))

    @property
    def error(self) -> str | None:
        error = self.response.get("error")
        return str(error) if error is not None else None


@dataclass
class UploadedFile:
    """A file reserved by ``files.getUploadURLExternal``; shared once completed."""

    file_id: str
    filename: str
    length: int
    content: bytes | None = None
    title: str | None = None
    channel_id: str | None = None
    channels: tuple[str, ...] = ()
    initial_comment: str | None = None
    thread_ts: str | None = None
    completed: bool = False
    deleted: bool = False


@dataclass(frozen=True)
class SocketAck:
    """What a Socket Mode client sent back for an envelope."""

    envelope_id: str
    payload: JSON | None
    at: float


class SlackEmulatorTimeout(AssertionError):
    """Awaited traffic did not arrive in time (an assertion failure in tests)."""


class SlackError(Exception):
    """A Web API method answers ``{"ok": false, "error": error, **extra}``."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


def invalid_arguments(*messages: str) -> SlackError:
    return SlackError(
        "invalid_arguments",
        response_metadata={"messages": [f"[ERROR] {m}" for m in messages]},
    )


# =========================================================================== block limits


def block_errors(blocks: Any, limit: int, pointer: str = "/blocks") -> list[str]:
    """Slack-style schema errors for a block list (empty when Slack would accept it)."""
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        return [f"must be an array of objects [json-pointer:{pointer}]"]
    errors = _too_many(blocks, limit, pointer) + _duplicates(blocks, "block_id", pointer)
    for i, block in enumerate(blocks):
        errors += _block_errors(block, f"{pointer}/{i}")
    return errors


def _block_errors(block: JSON, pointer: str) -> list[str]:
    kind = block.get("type")
    errors = _too_long(block.get("block_id"), 255, f"{pointer}/block_id")
    if kind == "section":
        errors += _section_errors(block, pointer)
    elif kind == "header":
        errors += _too_long(_text(block.get("text")), 150, f"{pointer}/text/text")
    elif kind == "actions":
        elements = block.get("elements") or []
        errors += _too_many(elements, 25, f"{pointer}/elements")
        errors += _duplicates(elements, "action_id", f"{pointer}/elements")
        errors += _elements_errors(elements, f"{pointer}/elements")
    elif kind == "context":
        errors += _too_many(block.get("elements") or [], 10, f"{pointer}/elements")
    elif kind == "input":
        errors += _too_long(_text(block.get("label")), 2000, f"{pointer}/label/text")
        errors += _element_errors(block.get("element") or {}, f"{pointer}/element")
    return errors


def _section_errors(block: JSON, pointer: str) -> list[str]:
    fields = block.get("fields") or []
    if block.get("text") is None and not fields:
        return [f"must provide text or fields [json-pointer:{pointer}]"]
    errors = _too_long(_text(block.get("text")), 3000, f"{pointer}/text/text")
    errors += _too_many(fields, 10, f"{pointer}/fields")
    for i, item in enumerate(fields):
        errors += _too_long(_text(item), 2000, f"{pointer}/fields/{i}/text")
    accessory = block.get("accessory")
    if isinstance(accessory, dict):
        errors += _element_errors(accessory, f"{pointer}/accessory")
    return errors


def _elements_errors(elements: list[JSON], pointer: str) -> list[str]:
    errors: list[str] = []
    for i, element in enumerate(elements):
        errors += _element_errors(element, f"{pointer}/{i}")
    return errors


def _element_errors(element: JSON, pointer: str) -> list[str]:
    errors = _too_long(element.get("action_id"), 255, f"{pointer}/action_id")
    if element.get("type") == "button":
        errors += _too_long(_text(element.get("text")), 75, f"{pointer}/text/text")
        errors += _too_long(element.get("value"), 2000, f"{pointer}/value")
        errors += _too_long(element.get("url"), 3000, f"{pointer}/url")
    options = element.get("options")
    if isinstance(options, list):
        errors += _too_many(options, 100, f"{pointer}/options")
        for i, option in enumerate(options):
            errors += _too_long(_text(option.get("text")), 75, f"{pointer}/options/{i}/text/text")
            errors += _too_long(option.get("value"), 150, f"{pointer}/options/{i}/value")
    return errors


def _text(obj: Any) -> Any:
    return obj.get("text") if isinstance(obj, dict) else None


def _too_long(value: Any, limit: int, pointer: str) -> list[str]:
    if isinstance(value, str) and len(value) > limit:
        return [f"must be less than {limit + 1} characters [json-pointer:{pointer}]"]
    return []


def _too_many(items: list[Any], limit: int, pointer: str) -> list[str]:
    if len(items) > limit:
        return [f"must provide an array with no more than {limit} items [json-pointer:{pointer}]"]
    return []


def _duplicates(items: list[JSON], key: str, pointer: str) -> list[str]:
    seen: set[Any] = set()
    errors: list[str] = []
    for i, item in enumerate(items):
        value = item.get(key)
        if value is not None and value in seen:
            errors.append(f"duplicate {key} {value!r} [json-pointer:{pointer}/{i}/{key}]")
        seen.add(value)
    return errors


def view_errors(view: JSON) -> list[str]:
    """Schema errors for a modal or Home tab view."""
    kind = view.get("type")
    if kind not in ("modal", "home"):
        return ["must be a valid enum value [json-pointer:/view/type]"]
    errors = block_errors(view.get("blocks", []), VIEW_BLOCK_LIMIT, "/view/blocks")
    errors += _too_long(view.get("private_metadata"), 3000, "/view/private_metadata")
    errors += _too_long(view.get("callback_id"), 255, "/view/callback_id")
    errors += _too_long(view.get("external_id"), 255, "/view/external_id")
    if kind == "modal":
        errors += _modal_errors(view)
    return errors


def _modal_errors(view: JSON) -> list[str]:
    if not isinstance(view.get("title"), dict):
        return ["missing required field: title [json-pointer:/view/title]"]
    errors: list[str] = []
    for key in ("title", "submit", "close"):
        errors += _too_long(_text(view.get(key)), 24, f"/view/{key}/text")
    blocks = view.get("blocks") or []
    has_input = any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
    if has_input and view.get("submit") is None:
        errors.append("must provide submit if input blocks are present [json-pointer:/view]")
    return errors


# =========================================================================== helpers


class _TsClock:
    """Message timestamps: ``"<seconds>.<micros>"``, unique and increasing."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> str:
        self._last = max(time.time_ns() // 1000, self._last + 1)
        return f"{self._last // 1_000_000}.{self._last % 1_000_000:06d}"


class _Ids:
    def __init__(self) -> None:
        self._counter = 0

    def next(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}EMU{self._counter:06d}"


@dataclass(frozen=True)
class _Reply:
    status: int
    body: JSON | None
    headers: dict[str, str] = field(default_factory=dict)
    text: str = ""

    @classmethod
    def ok(cls, data: JSON) -> _Reply:
        return cls(200, {"ok": True, **data})

    @classmethod
    def error(cls, error: str, **extra: Any) -> _Reply:
        return cls(200, {"ok": False, "error": error, **extra})

    def to_response(self) -> web.Response:
        if self.body is None:
            return web.Response(status=self.status, text=self.text, headers=self.headers)
        return web.json_response(self.body, status=self.status, headers=self.headers)


@dataclass
class _Fault:
    reply: _Reply
    remaining: int


def _is_user_id(value: str) -> bool:
    return len(value) > 1 and value[0] in "UW"


def _truthy(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")


def _split(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v.strip() for v in str(value or "").split(",") if v.strip()]


def _decode_json_params(params: JSON) -> JSON:
    for key in JSON_ENCODED_PARAMS:
        value = params.get(key)
        if isinstance(value, str):
            # Malformed JSON stays a string: the method then reports it as invalid.
            with contextlib.suppress(ValueError):
                params[key] = json.loads(value)
    return params


async def _read_params(request: web.Request) -> JSON:
    params: JSON = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            body = await request.json()
            params.update(body if isinstance(body, dict) else {"_body": body})
        else:
            form = await request.post()
            params.update({key: _form_value(value) for key, value in form.items()})
    return _decode_json_params(params)


def _form_value(value: str | bytes | bytearray | web.FileField) -> str | bytes:
    if isinstance(value, web.FileField):
        return value.file.read()
    return value if isinstance(value, str) else bytes(value)


def _bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def _read_upload(request: web.Request) -> bytes:
    """Raw POST body, or the first part of a multipart upload."""
    if not request.content_type.startswith("multipart/"):
        return await request.read()
    reader = await request.multipart()
    part = await reader.next()
    return await part.read() if isinstance(part, BodyPartReader) else b""


def _tz_fields(tz: str) -> JSON:
    now = datetime.now(ZoneInfo(tz))
    offset = now.utcoffset()
    return {
        "tz": tz,
        "tz_label": now.tzname(),
        "tz_offset": int(offset.total_seconds()) if offset else 0,
    }


# =========================================================================== Web API


class _WebApi:
    """Slack's Web API methods over in-memory workspace state (no I/O here).

    A method ``a.bCd`` is implemented by ``_api_a_bCd(params) -> JSON``; it returns
    the response fields besides ``ok`` or raises ``SlackError``.
    """

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

    # ------------------------------------------------------------------ files

    def _api_files_upload(self, params: JSON) -> JSON:
        raise SlackError("method_deprecated")

    def _api_files_getUploadURLExternal(self, params: JSON) -> JSON:
        filename = str(params.get("filename") or "")
        length = str(params.get("length") or "")
        if not filename or not length.isdigit():
            raise invalid_arguments("missing required field: filename or length")
        file_id = self._ids.next("F")
        self._files[file_id] = UploadedFile(file_id=file_id, filename=filename, length=int(length))
        return {"upload_url": f"{self._root_url}upload/v1/{file_id}", "file_id": file_id}

    def _api_files_completeUploadExternal(self, params: JSON) -> JSON:
        entries = params.get("files")
        if not isinstance(entries, list) or not entries:
            raise invalid_arguments("missing required field: files")
        channels = self._share_targets(params)
        files = [self._uploaded(entry) for entry in entries]
        for file in files:
            self._complete(file, _entry_title(entries, file.file_id), channels, params)
        self._post_file_share(files, channels, params)
        return {"files": [self._file_object(f) for f in files]}

    def _api_files_delete(self, params: JSON) -> JSON:
        """Delete a file; as on Slack, its messages keep a tombstone in its place."""
        file = self._files.get(str(params.get("file") or ""))
        if file is None:
            raise SlackError("file_not_found")
        if file.deleted:
            raise SlackError("file_deleted")
        file.deleted = True
        file.content = None
        for messages in self._messages.values():
            for message in messages:
                if any(f.get("id") == file.file_id for f in message.get("files", [])):
                    message["files"] = [
                        {"id": f["id"], "mode": "tombstone"} if f.get("id") == file.file_id else f
                        for f in message["files"]
                    ]
        return {}

    def _share_targets(self, params: JSON) -> tuple[str, ...]:
        targets = _split(params.get("channels")) or _split(params.get("channel_id"))
        return tuple(self._channel_id(t) for t in targets)

    def _uploaded(self, entry: Any) -> UploadedFile:
        file = self._files.get(str(entry.get("id") if isinstance(entry, dict) else ""))
        if file is None or file.content is None or file.completed:
            raise SlackError("file_not_found")
        return file

    def _complete(
        self, file: UploadedFile, title: str | None, channels: tuple[str, ...], params: JSON
    ) -> None:
        file.title = title or file.filename
        file.channels = channels
        file.channel_id = channels[0] if channels else None
        file.initial_comment = params.get("initial_comment")
        file.thread_ts = params.get("thread_ts")
        file.completed = True
        self._shared_files.append(file)

    def _post_file_share(
        self, files: list[UploadedFile], channels: tuple[str, ...], params: JSON
    ) -> None:
        for channel in channels:
            message = self._bot_message(self._clock.next(), params)
            message |= {"text": params.get("initial_comment") or "", "upload": True}
            message["files"] = [self._file_object(f) for f in files]
            self._messages[channel].append(message)

    def _file_object(self, file: UploadedFile) -> JSON:
        return {
            "id": file.file_id,
            "created": int(time.time()),
            "name": file.filename,
            "title": file.title,
            "mimetype": "application/octet-stream",
            "filetype": "binary",
            "user": self.bot_user_id,
            "size": len(file.content or b""),
            "is_external": False,
            "is_public": any(c.startswith("C") for c in file.channels),
            "channels": [c for c in file.channels if c.startswith("C")],
            "ims": [c for c in file.channels if c.startswith("D")],
            "url_private": f"{self._root_url}files/{file.file_id}/{file.filename}",
        }

    # ------------------------------------------------------------------ Socket Mode

    def _api_apps_connections_open(self, params: JSON) -> JSON:
        ticket = str(uuid.uuid4())
        self._tickets.add(ticket)
        ws_root = self._root_url.replace("http://", "ws://", 1)
        return {"url": f"{ws_root}link/?ticket={ticket}&app_id={self.app_id}"}


def _entry_title(entries: list[Any], file_id: str) -> str | None:
    """The ``title`` given for ``file_id`` in ``files.completeUploadExternal``'s list."""
    for entry in entries:
        if isinstance(entry, dict) and entry.get("id") == file_id and entry.get("title"):
            return str(entry["title"])
    return None


# =========================================================================== the server


class SlackEmulator(_WebApi):
    """Slack's Web API, upload URLs, response URLs and Socket Mode on one local port.

    Tokens: ``bot_tokens``/``app_tokens`` list the accepted tokens; by default any
    ``xoxb-…`` is a valid bot token and any ``xapp-…`` a valid app-level token.
    """

    def __init__(
        self,
        *,
        bot_tokens: Collection[str] | None = None,
        app_tokens: Collection[str] | None = None,
        team_id: str = TEAM_ID,
        bot_user_id: str = BOT_USER_ID,
        bot_id: str = BOT_ID,
        app_id: str = APP_ID,
    ) -> None:
        super().__init__(team_id=team_id, bot_user_id=bot_user_id, bot_id=bot_id, app_id=app_id)
        self._bot_tokens = None if bot_tokens is None else frozenset(bot_tokens)
        self._app_tokens = None if app_tokens is None else frozenset(app_tokens)
        self._runner: web.AppRunner | None = None
        self._sockets: list[web.WebSocketResponse] = []
        self._changed = asyncio.Event()
        self._clear_records()

    def _clear_records(self) -> None:
        self.calls: list[RecordedCall] = []
        self.socket_envelopes: list[JSON] = []
        self.socket_acks: dict[str, SocketAck] = {}
        self._faults: defaultdict[str, deque[_Fault]] = defaultdict(deque)
        self._delays: dict[str, float] = {}
        self._held: dict[str, asyncio.Event] = {}
        self._started: defaultdict[str, int] = defaultdict(int)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> SlackEmulator:
        if self._runner is not None:
            raise RuntimeError("SlackEmulator already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        runner = web.AppRunner(self._build_app(), access_log=None, handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runner = runner
        self._root_url = f"http://127.0.0.1:{port}/"
        return self

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SlackEmulator:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/upload/v1/{file_id}", self._handle_upload)
        app.router.add_post("/response/{hook_id}", self._handle_response_url)
        app.router.add_get("/link/", self._handle_socket)
        return app

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT/``."""
        if not self._root_url:
            raise RuntimeError("SlackEmulator not started")
        return self._root_url

    @property
    def base_url(self) -> str:
        """Web API base, for ``AsyncWebClient(base_url=...)`` / ``SLACK_API_URL``."""
        return self.root_url + "api/"

    def new_response_url(self) -> str:
        """A ``response_url`` for a command/action payload; POSTs to it are recorded."""
        return f"{self.root_url}response/{uuid.uuid4().hex}"

    # ------------------------------------------------------------------ failure injection

    def fail(
        self, method: str, error: str = "channel_not_found", times: int = 1, **extra: Any
    ) -> None:
        """The next ``times`` calls of ``method`` answer ``ok: false`` with ``error``."""
        self._add_fault(method, _Reply.error(error, **extra), times)

    def rate_limit(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        """The next ``times`` calls answer HTTP 429 ``ratelimited`` with ``Retry-After``."""
        reply = _Reply(
            429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)}
        )
        self._add_fault(method, reply, times)

    def server_error(self, method: str, status: int = 503, times: int = 1) -> None:
        """The next ``times`` calls answer a bare HTTP ``status`` (no JSON body).

        Faults also apply to the ``UPLOAD_URL`` and ``RESPONSE_URL`` pseudo methods.
        """
        self._add_fault(method, _Reply(status, None, text="upstream connect error"), times)

    def delay(self, method: str, seconds: float) -> None:
        """Answer every later call of ``method`` after ``seconds`` (0 turns it off)."""
        if seconds > 0:
            self._delays[method] = seconds
        else:
            self._delays.pop(method, None)

    def hold(self, *methods: str) -> None:
        """Answer no call of these methods until :meth:`release` (Slack stalled)."""
        for method in methods:
            self._held.setdefault(method, asyncio.Event())

    def release(self) -> None:
        """Answer every held call now, and hold nothing from here on."""
        for event in self._held.values():
            event.set()
        self._held = {}

    def _add_fault(self, method: str, reply: _Reply, times: int) -> None:
        if times < 1:
            raise ValueError("times must be at least 1")
        self._faults[method].append(_Fault(reply, times))

    def _take_fault(self, method: str) -> _Reply | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining == 0:
            queue.popleft()
        return fault.reply

    # ------------------------------------------------------------------ records

    def calls_to(self, method: str) -> list[RecordedCall]:
        return [c for c in self.calls if c.method == method]

    def reset(self) -> None:
        """Forget calls, messages, views, files, acks and pending failures/delays.

        Users, user groups, channels and DM channel IDs are kept.
        """
        self._clear_records()
        self._clear_workspace_records()

    async def wait_for(
        self,
        method: str,
        count: int = 1,
        timeout: float = PATIENCE,
        predicate: Callable[[RecordedCall], bool] | None = None,
    ) -> list[RecordedCall]:
        """Wait until ``count`` answered calls of ``method`` (matching ``predicate``) exist."""

        def matching() -> list[RecordedCall] | None:
            found = [c for c in self.calls_to(method) if predicate is None or predicate(c)]
            return found if len(found) >= count else None

        def describe() -> str:
            seen = [c.method for c in self.calls]
            return f"expected {count} call(s) to {method} within {timeout}s; calls so far: {seen}"

        return await self._wait_until(matching, timeout, describe)

    def _record(self, call: RecordedCall) -> None:
        self.calls.append(call)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_until(
        self, check: Callable[[], T | None], timeout: float, describe: Callable[[], str]
    ) -> T:
        deadline = asyncio.get_running_loop().time() + timeout
        while (result := check()) is None:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise SlackEmulatorTimeout(describe())
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                continue
        return result

    # ------------------------------------------------------------------ HTTP handlers

    async def wait_started(self, method: str, count: int = 1, timeout: float = 10.0) -> None:
        """Until ``count`` calls of ``method`` have arrived (answered or not yet).

        With ``delay`` this finds a moment when the bot has a call in flight.
        """
        await self._wait_until(
            lambda: True if self._started[method] >= count else None,
            timeout,
            lambda: f"{method} started {self._started[method]} times, not {count}",
        )

    async def _handle_api(self, request: web.Request) -> web.Response:
        at = time.time()
        method = request.match_info["method"]
        self._started[method] += 1
        self._notify()
        params = await _read_params(request)
        param_token = params.pop("token", None)
        token = _bearer_token(request) or (str(param_token) if param_token else None)
        reply = await self._answer(method, params, token)
        self._record(
            RecordedCall(
                method, params, dict(request.headers), at, token, reply.status, reply.body or {}
            )
        )
        return reply.to_response()

    async def _answer(self, method: str, params: JSON, token: str | None) -> _Reply:
        handler = self._method_handler(method)
        if handler is None:
            return _Reply.error("unknown_method")
        auth_error = self._auth_error(method, token)
        if auth_error is not None:
            return _Reply.error(auth_error)
        if method in self._delays:
            await asyncio.sleep(self._delays[method])
        held = self._held.get(method)
        if held is not None:
            await held.wait()
        fault = self._take_fault(method)
        if fault is not None:
            return fault
        try:
            return _Reply.ok(handler(params))
        except SlackError as exc:
            return _Reply.error(exc.error, **exc.extra)
        except Exception as exc:  # an emulator bug or input it can't model: still recorded
            return _Reply(500, {"ok": False, "error": "fatal_error", "emulator_error": repr(exc)})

    def _auth_error(self, method: str, token: str | None) -> str | None:
        if not token:
            return "not_authed"
        is_app, is_bot = self._is_app_token(token), self._is_bot_token(token)
        wanted, other = (is_app, is_bot) if method in APP_TOKEN_METHODS else (is_bot, is_app)
        if wanted:
            return None
        return "not_allowed_token_type" if other else "invalid_auth"

    def _is_bot_token(self, token: str) -> bool:
        if self._bot_tokens is None:
            return token.startswith("xoxb-")
        return token in self._bot_tokens

    def _is_app_token(self, token: str) -> bool:
        if self._app_tokens is None:
            return token.startswith("xapp-")
        return token in self._app_tokens

    async def _handle_upload(self, request: web.Request) -> web.Response:
        at = time.time()
        file_id = request.match_info["file_id"]
        content = await _read_upload(request)
        reply = self._take_fault(UPLOAD_URL) or self._store_upload(file_id, content)
        params: JSON = {"file_id": file_id, "length": len(content)}
        headers = dict(request.headers)
        self._record(RecordedCall(UPLOAD_URL, params, headers, at, status=reply.status))
        return reply.to_response()

    def _store_upload(self, file_id: str, content: bytes) -> _Reply:
        file = self._files.get(file_id)
        if file is None or file.completed:
            return _Reply(404, None, text="file not found")
        file.content = content
        return _Reply(200, None, text=f"OK - {len(content)}")

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        at = time.time()
        params = await _read_params(request)
        params["response_url"] = str(request.url)
        reply = self._take_fault(RESPONSE_URL) or _Reply.ok({})
        headers = dict(request.headers)
        call = RecordedCall(RESPONSE_URL, params, headers, at, None, reply.status, reply.body or {})
        self._record(call)
        return reply.to_response()

    # ------------------------------------------------------------------ Socket Mode

    @property
    def socket_connections(self) -> int:
        """Number of currently connected Socket Mode clients."""
        return len(self._sockets)

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("ticket") not in self._tickets:
            return web.Response(status=401, text="invalid ticket")
        ws = web.WebSocketResponse(timeout=2.0)
        await ws.prepare(request)
        self._sockets.append(ws)
        try:
            await ws.send_json(self._hello())
            self._notify()
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_socket_text(msg.data)
        finally:
            self._sockets.remove(ws)
            self._notify()
        return ws

    def _hello(self) -> JSON:
        return {
            "type": "hello",
            "num_connections": len(self._sockets),
            "debug_info": {
                "host": "applink-emulator",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": self.app_id},
        }

    def _on_socket_text(self, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            return
        if isinstance(message, dict) and "envelope_id" in message:
            envelope_id = str(message["envelope_id"])
            payload = message.get("payload")
            self.socket_acks[envelope_id] = SocketAck(envelope_id, payload, time.time())
            self._notify()

    async def wait_socket_connected(self, count: int = 1, timeout: float = PATIENCE) -> None:
        """Wait until at least ``count`` Socket Mode clients are connected."""

        def connected() -> bool | None:
            return True if len(self._sockets) >= count else None

        def describe() -> str:
            return f"expected {count} Socket Mode connection(s), have {len(self._sockets)}"

        await self._wait_until(connected, timeout, describe)

    async def socket_send(
        self,
        payload_type: str,
        payload: JSON,
        *,
        accepts_response_payload: bool | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
        timeout: float = PATIENCE,
    ) -> str:
        """Push an envelope (``events_api``, ``interactive``, ``slash_commands``).

        Waits up to ``timeout`` for a connected client; returns the envelope ID.
        """
        await self.wait_socket_connected(timeout=timeout)
        if accepts_response_payload is None:
            accepts_response_payload = _accepts_response_payload(payload_type, payload)
        envelope: JSON = {
            "envelope_id": str(uuid.uuid4()),
            "payload": payload,
            "type": payload_type,
            "accepts_response_payload": accepts_response_payload,
        }
        if payload_type == "events_api":
            envelope |= {"retry_attempt": retry_attempt, "retry_reason": retry_reason}
        await self._sockets[-1].send_json(envelope)
        self.socket_envelopes.append(envelope)
        return str(envelope["envelope_id"])

    async def socket_disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask every connected client to reconnect, as Slack does periodically."""
        message = {
            "type": "disconnect",
            "reason": reason,
            "debug_info": {"host": "applink-emulator"},
        }
        for ws in list(self._sockets):
            await ws.send_json(message)

    async def wait_socket_ack(self, envelope_id: str, timeout: float = PATIENCE) -> JSON | None:
        """Wait for the client's ack of ``envelope_id``; returns its payload (or None)."""

        def acked() -> SocketAck | None:
            return self.socket_acks.get(envelope_id)

        def describe() -> str:
            return f"no ack for envelope {envelope_id} within {timeout}s"

        ack = await self._wait_until(acked, timeout, describe)
        return ack.payload


def _accepts_response_payload(payload_type: str, payload: JSON) -> bool:
    if payload_type == "slash_commands":
        return True
    return payload_type == "interactive" and payload.get("type") in (
        "view_submission",
        "block_suggestion",
    )
