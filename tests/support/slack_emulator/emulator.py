"""The server: one aiohttp app on 127.0.0.1 routing the Web API, upload URLs,
response URLs and the Socket Mode link; records every call and lets tests wait."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Collection
from typing import TypeVar

from aiohttp import WSCloseCode, web

from tests.support.async_server import AsyncServer
from tests.support.patience import PATIENCE
from tests.support.slack_emulator.files import _Files
from tests.support.slack_emulator.limits import ChannelLimit, _Limits
from tests.support.slack_emulator.records import (
    APP_TOKEN_METHODS,
    JSON,
    RESPONSE_URL,
    RecordedCall,
    SlackEmulatorTimeout,
    SlackError,
    SocketAck,
    _Fault,
    _Reply,
)
from tests.support.slack_emulator.socket_mode import _SocketMode
from tests.support.slack_emulator.web_api import _WebApi
from tests.support.slack_emulator.wire import _bearer_token, _read_params
from tests.support.slack_signing import APP_ID, BOT_ID, BOT_USER_ID, TEAM_ID

T = TypeVar("T")


class SlackEmulator(AsyncServer, _WebApi, _Files, _Limits, _SocketMode):
    """Slack's Web API, upload URLs, response URLs and Socket Mode on one local port.

    ``bot_tokens`` / ``app_tokens``: the accepted tokens (default ``None``: any
    ``xoxb-…`` is a valid bot token and any ``xapp-…`` a valid app-level token).
    ``team_id``, ``bot_user_id``, ``bot_id``, ``app_id``: the workspace and app
    identity ``auth.test`` and messages show (default: ``tests.support.slack_signing``'s).
    Nothing listens until ``start()`` (or ``async with``); the port is then random.
    Every ``timeout`` of the ``wait_*`` methods is in seconds.

    What Slack does under load, both off by default so a test opts in:
    ``channel_limit``: Slack's per-channel ``chat.postMessage`` limit (a
    :class:`~tests.support.slack_emulator.limits.ChannelLimit`, e.g.
    ``ChannelLimit(per_second=1, burst=3)``): posts beyond it answer HTTP 429 with
    ``Retry-After``; also :meth:`limit_channels` / :meth:`unlimit_channels` later.
    ``latency``: seconds every Web API call, upload and response URL post takes to
    answer (Slack over a network: about 0.1); also :meth:`set_latency`.
    Both survive :meth:`reset` (they are set-up, like users); the buckets refill.
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
        channel_limit: ChannelLimit | None = None,
        latency: float = 0.0,
    ) -> None:
        super().__init__(team_id=team_id, bot_user_id=bot_user_id, bot_id=bot_id, app_id=app_id)
        self._channel_limit = channel_limit
        self.set_latency(latency)
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
        self._buckets = {}

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
        """Wait until ``count`` answered calls of ``method`` (matching ``predicate``) exist;
        raises ``SlackEmulatorTimeout`` after ``timeout`` seconds (default ``PATIENCE``)."""

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
        await self._wait_latency()
        if method in self._delays:
            await asyncio.sleep(self._delays[method])
        held = self._held.get(method)
        if held is not None:
            await held.wait()
        fault = self._take_fault(method) or self._channel_refusal(method, params)
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

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        at = time.time()
        params = await _read_params(request)
        params["response_url"] = str(request.url)
        await self._wait_latency()
        reply = self._take_fault(RESPONSE_URL) or _Reply.ok({})
        headers = dict(request.headers)
        call = RecordedCall(RESPONSE_URL, params, headers, at, None, reply.status, reply.body or {})
        self._record(call)
        return reply.to_response()
