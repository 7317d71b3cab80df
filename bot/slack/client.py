"""The one Slack Web API client the notifier, the directory and the Bolt app share."""

from __future__ import annotations

import logging
from typing import Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

__all__ = [
    "CONFIG_ERRORS",
    "DEFAULT_API_URL",
    "SlackErrorObserver",
    "error_code",
    "make_slack_client",
]

DEFAULT_API_URL = "https://slack.com/api/"

# Errors no retry fixes: the app is set up wrongly (not invited, scope missing,
# channel gone). Admins hear about these; everything else is logged.
CONFIG_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "missing_scope",
        "is_archived",
        "invalid_auth",
        "account_inactive",
        "token_revoked",
        "not_allowed_token_type",
        "restricted_action",
    }
)

# The SDK formats request parameters into DEBUG lines whenever its logger's own
# level is NOTSET or DEBUG. A kubeconfig upload is such a request, so the client
# gets a logger pinned at INFO: no debug setting can put a token into a log line.
log = logging.getLogger(__name__)
_sdk_log = logging.getLogger("accessbot.slack.sdk")
_sdk_log.setLevel(logging.INFO)


class SlackErrorObserver(Protocol):
    """Told about every failed Web API call (``bot.metrics.Metrics`` is one)."""

    def slack_error(self, method: str, error: str) -> None: ...


class _ErrorCounter(AsyncRetryHandler):
    """Sees every response before the real retry handlers; never asks for a retry.

    The SDK offers no response hook, but it shows each response (and each
    connection error) to the retry handlers in order, so the first one can count
    failures, including each 429 that a later handler then retries.
    """

    def __init__(self, observer: SlackErrorObserver) -> None:
        super().__init__(max_retry_count=2**31)
        self._observer = observer

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        method = request.url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
        problem = _problem(response, error)
        if problem is not None:
            try:
                self._observer.slack_error(method, problem)
            except Exception:
                log.exception("Slack error observer failed")
        return False


def _problem(response: HttpResponse | None, error: Exception | None) -> str | None:
    if error is not None:
        return error.__class__.__name__
    if response is None:
        return None
    body = response.body
    if isinstance(body, dict) and body.get("ok") is False:
        return str(body.get("error") or "unknown_error")
    if response.status_code >= 400:
        return f"http_{response.status_code}"
    return None


def make_slack_client(
    token: str,
    api_url: str = DEFAULT_API_URL,
    *,
    metrics: SlackErrorObserver | None = None,
    session: aiohttp.ClientSession | None = None,
) -> AsyncWebClient:
    """An ``AsyncWebClient`` that honours ``Retry-After`` and retries 5xx and resets.

    ``metrics``, when given, hears ``(method, error)`` for every failed call.
    ``session``: a long-lived aiohttp session to reuse connections; without
    one slack_sdk opens a new session (and TLS handshake) for every call.
    """
    observers: list[AsyncRetryHandler] = [] if metrics is None else [_ErrorCounter(metrics)]
    handlers: list[AsyncRetryHandler] = [
        *observers,
        AsyncConnectionErrorRetryHandler(max_retry_count=2),
        # 429s: Slack says how long to wait; wait that long, a few times over.
        AsyncRateLimitErrorRetryHandler(max_retry_count=5),
        AsyncServerErrorRetryHandler(max_retry_count=2),
    ]
    base = api_url if api_url.endswith("/") else api_url + "/"
    return AsyncWebClient(
        token=token, base_url=base, retry_handlers=handlers, logger=_sdk_log, session=session
    )


def error_code(exc: BaseException) -> str:
    """Slack's error code (``channel_not_found``) of an API error, ``http_503`` for an
    HTTP error without one, else the exception's class name."""
    if isinstance(exc, SlackApiError):
        data = getattr(exc.response, "data", None)
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return str(data["error"])
        status = getattr(exc.response, "status_code", None)
        if isinstance(status, int) and status >= 400:
            return f"http_{status}"  # e.g. a 503 from a proxy, with no JSON body
    return exc.__class__.__name__
