"""The emulator's records and replies: recorded calls, uploaded files, Socket Mode
acks, Slack errors, and the ids and timestamps it hands out."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

JSON = dict[str, Any]

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
