"""Injected faults and Slack's own limits: Slack errors, rate limits (HTTP 429 with
``Retry-After``), bare server errors, delays and stalls per method; and, opted into
(off by default), Slack's per-channel posting limit and a latency on every call."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

from tests.support.slack_emulator.records import JSON, _Fault, _Reply

# The methods Slack limits per channel: "about one message per second per channel,
# short bursts allowed" (chat.postMessage's special rate limit).
CHANNEL_LIMITED_METHODS = frozenset({"chat.postMessage"})


@dataclass(frozen=True)
class ChannelLimit:
    """Slack's per-channel posting limit as a token bucket.

    ``per_second``: messages a channel takes per second over time (Slack: about 1).
    ``burst``: messages a quiet channel takes back to back before the rate applies
    (Slack allows "short bursts"; 3 is a fair model). A post finding the bucket
    empty is answered HTTP 429 ``ratelimited`` with ``Retry-After`` (whole seconds,
    at least 1: how long until the channel takes one again) and changes nothing.
    """

    per_second: float = 1.0
    burst: int = 3

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.burst < 1:
            raise ValueError("per_second must be positive and burst at least 1")


class _Bucket:
    """One channel's tokens (monotonic time)."""

    def __init__(self, limit: ChannelLimit, now: float) -> None:
        self._limit = limit
        self._tokens = float(limit.burst)
        self._at = now

    def take(self, now: float) -> int | None:
        """Take a token: None when there was one, else the ``Retry-After`` seconds."""
        rate = self._limit.per_second
        self._tokens = min(float(self._limit.burst), self._tokens + (now - self._at) * rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return None
        return max(1, math.ceil((1 - self._tokens) / rate))


class _Limits:
    """Failure injection and Slack's limits (mixed into ``SlackEmulator``)."""

    _channel_limit: ChannelLimit | None
    _buckets: dict[str, _Bucket]
    _latency: float

    def fail(
        self, method: str, error: str = "channel_not_found", times: int = 1, **extra: Any
    ) -> None:
        """The next ``times`` calls of ``method`` answer ``ok: false`` with ``error``."""
        self._add_fault(method, _Reply.error(error, **extra), times)

    def rate_limit(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        """The next ``times`` calls answer HTTP 429 ``ratelimited`` with ``Retry-After``
        (``retry_after``: whole seconds, as Slack's header says them)."""
        self._add_fault(method, _rate_limited(retry_after), times)

    def limit_channels(self, per_second: float = 1.0, burst: int = 3) -> None:
        """Enforce Slack's per-channel limit on ``chat.postMessage`` from now on.

        Each channel (the ``channel`` argument as sent: a ``C…``/``D…`` id, a user id
        for a DM) gets its own token bucket of ``burst`` messages refilled at
        ``per_second`` (see :class:`ChannelLimit`); a post to an empty bucket is
        answered 429 with ``Retry-After`` and is not stored. Off by default;
        :meth:`unlimit_channels` turns it off again. Calls answered 429 are recorded
        like every call (``status == 429``, ``error == "ratelimited"``).
        """
        self._channel_limit = ChannelLimit(per_second, burst)
        self._buckets = {}

    def unlimit_channels(self) -> None:
        """Posts are never limited per channel again (the default)."""
        self._channel_limit = None
        self._buckets = {}

    def set_latency(self, seconds: float) -> None:
        """Answer every Web API call, upload and response URL post ``seconds`` after it
        arrives (Slack over a real network: about 0.1). 0, the default, turns it off.
        Adds to any per-method :meth:`delay`."""
        if seconds < 0:
            raise ValueError("latency cannot be negative")
        self._latency = seconds

    def server_error(self, method: str, status: int = 503, times: int = 1) -> None:
        """The next ``times`` calls answer a bare HTTP ``status`` (no JSON body).

        Faults also apply to the ``UPLOAD_URL`` and ``RESPONSE_URL`` pseudo methods.
        """
        self._add_fault(method, _Reply(status, None, text="upstream connect error"), times)

    def clear_faults(self) -> None:
        """Forget every fault still queued (``fail``, ``rate_limit``, ``server_error``):
        Slack is well again."""
        self._faults.clear()

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

    async def _wait_latency(self) -> None:
        if self._latency > 0:
            await asyncio.sleep(self._latency)

    def _channel_refusal(self, method: str, params: JSON) -> _Reply | None:
        """429 when ``method`` is limited per channel and the channel has no token left."""
        limit = self._channel_limit
        if limit is None or method not in CHANNEL_LIMITED_METHODS:
            return None
        channel = str(params.get("channel") or "")
        now = time.monotonic()
        bucket = self._buckets.setdefault(channel, _Bucket(limit, now))
        retry_after = bucket.take(now)
        return None if retry_after is None else _rate_limited(retry_after)

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


def _rate_limited(retry_after: int) -> _Reply:
    return _Reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})
