"""Injected faults: Slack errors, rate limits (HTTP 429 with ``Retry-After``),
bare server errors, delays and stalls, per method."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support.slack_emulator.records import _Fault, _Reply


class _Limits:
    """Failure injection (mixed into ``SlackEmulator``)."""

    def fail(
        self, method: str, error: str = "channel_not_found", times: int = 1, **extra: Any
    ) -> None:
        """The next ``times`` calls of ``method`` answer ``ok: false`` with ``error``."""
        self._add_fault(method, _Reply.error(error, **extra), times)

    def rate_limit(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        """The next ``times`` calls answer HTTP 429 ``ratelimited`` with ``Retry-After``
        (``retry_after``: whole seconds, as Slack's header says them)."""
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
