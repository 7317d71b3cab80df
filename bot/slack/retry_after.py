"""Slack's ``Retry-After``, honoured past the client's own retries.

The client's ``AsyncRateLimitErrorRetryHandler`` (:func:`bot.slack.client.make_slack_client`)
waits ``Retry-After`` and tries again, five times. Several messages racing for one
channel (fifty grants of one person ending at once: a DM each, at about one per
second) can outlast that; then the call fails ``ratelimited``. :func:`patiently`
goes on waiting what Slack says and trying again, so such a message is late,
never dropped.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError

from bot.slack.client import error_code

__all__ = [
    "RATE_LIMIT_PATIENCE_SECONDS",
    "TRANSIENT_SLACK_ERRORS",
    "is_passing",
    "is_transient",
    "patiently",
    "retry_after_seconds",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Slack errors that are over by themselves: worth the same call again later.
TRANSIENT_SLACK_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


def is_transient(code: str) -> bool:
    """Whether a Slack failure (an :func:`bot.slack.client.error_code`) is worth another
    attempt later: a rate limit, Slack's own trouble, or an HTTP 5xx (a proxy's 503)."""
    return code in TRANSIENT_SLACK_ERRORS or code.startswith("http_5")


def is_passing(exc: BaseException) -> bool:
    """Whether a failed Slack call may well work later: a transient Slack answer
    (:func:`is_transient`), or no answer at all (connection, timeout)."""
    if isinstance(exc, SlackApiError):
        return is_transient(error_code(exc))
    return isinstance(exc, (aiohttp.ClientError, TimeoutError, OSError))


# How long one message keeps waiting out 429s before it is given up (and logged).
RATE_LIMIT_PATIENCE_SECONDS = 900.0


def retry_after_seconds(exc: SlackApiError) -> float | None:
    """The ``Retry-After`` of a 429 answer, in seconds; None without one."""
    headers = getattr(exc.response, "headers", None) or {}
    for name, value in dict(headers).items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) and value else value
            try:
                return max(0.0, float(str(raw)))
            except ValueError:
                return None
    return None


async def patiently(
    call: Callable[[], Awaitable[T]], patience_seconds: float = RATE_LIMIT_PATIENCE_SECONDS
) -> T:
    """``await call()``; while Slack answers ``ratelimited``, wait its ``Retry-After``
    (plus up to a second, so racing callers spread out) and call again, for at most
    ``patience_seconds``. Any other error, and the last 429, is raised."""
    deadline = time.monotonic() + patience_seconds
    while True:
        try:
            return await call()
        except SlackApiError as exc:
            if error_code(exc) != "ratelimited":
                raise
            wait = (retry_after_seconds(exc) or 1.0) + random.random()  # noqa: S311 (jitter)
            if time.monotonic() + wait > deadline:
                raise
            log.info("Slack rate-limited a post; trying again in %.1f s", wait)
            await asyncio.sleep(wait)
