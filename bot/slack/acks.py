"""An ack that says when it has been given, so the HTTP answer need not wait for Bolt.

With ``process_before_response=False`` Bolt runs the listener as a task and polls
``ack.response`` every 10 ms until it is set (``slack_bolt.listener.asyncio_runner``,
Bolt 1.x), which puts a floor of 10 ms, and a busy loop, under every answer. Bolt
takes the ``ack`` it hands to listeners from the request's context when one is
there (``AsyncBoltContext.ack``); :class:`AnnouncedAck` is such an ack that also
sets an :class:`asyncio.Event` the moment it is called, so
:mod:`bot.slack.ingress` sends the HTTP answer at once and leaves Bolt's
dispatch to finish in the background.
"""

from __future__ import annotations

import asyncio
from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.response import BoltResponse

__all__ = ["AnnouncedAck"]


class AnnouncedAck(AsyncAck):
    """Bolt's ack, plus :attr:`given`: an event set once ``response`` holds the answer."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Bolt leaves it unannotated
        self.given = asyncio.Event()

    async def __call__(self, *args: Any, **kwargs: Any) -> BoltResponse:
        response = await super().__call__(*args, **kwargs)
        self.given.set()
        return response
