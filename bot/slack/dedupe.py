"""Handle each Slack delivery once: Bolt does not de-duplicate.

Slack retries events; a signed slash command or submission captured in transit
can be replayed within the 5-minute signature window. Events are keyed by
``event_id``, everything else by ``trigger_id`` (Slack never sends the same one
twice, so a second sighting is a replay).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError
from slack_bolt.response import BoltResponse

from bot.ports import Deduplicator
from bot.slack.text import JSON

__all__ = ["DEDUPE_PATIENCE_SECONDS", "DEDUPE_TTL_SECONDS", "DeliveryDedupe"]

log = logging.getLogger(__name__)


# Slack retries an event for a few minutes at most, and accepts a signed request for
# five: an hour covers both replays and retries.
DEDUPE_TTL_SECONDS = 3600
# The check gets this long before the delivery is handled anyway, so the ack still
# goes out within Slack's 3 s whatever Redis does.
DEDUPE_PATIENCE_SECONDS = 1.5


class DeliveryDedupe:
    """Bolt middleware that drops a delivery seen before.

    Parameters:
        seen: remembers the deliveries (the store).
        ttl_seconds: how long a delivery is remembered. Default
            :data:`DEDUPE_TTL_SECONDS` (an hour).
        patience_seconds: how long the check may take; past it (or when Redis
            fails) the delivery is handled anyway: every handler is idempotent,
            and better twice than never. Default :data:`DEDUPE_PATIENCE_SECONDS`.
    """

    def __init__(
        self,
        seen: Deduplicator,
        *,
        ttl_seconds: int = DEDUPE_TTL_SECONDS,
        patience_seconds: float = DEDUPE_PATIENCE_SECONDS,
    ) -> None:
        self._seen = seen
        self._ttl_seconds = ttl_seconds
        self._patience_seconds = patience_seconds

    async def check(self, body: JSON, next_: Callable[[], Awaitable[None]]) -> BoltResponse | None:
        """Pass a delivery on to the listeners unless it was seen before."""
        key = delivery_key(body)
        if key:
            try:
                first = await asyncio.wait_for(
                    self._seen.first_time(key, self._ttl_seconds), self._patience_seconds
                )
            except (RedisError, TimeoutError) as exc:
                log.warning(
                    "de-duplication unavailable (%s); handling %s",
                    str(exc) or exc.__class__.__name__,
                    key,
                )
                first = True
            if not first:
                log.info("ignoring repeated Slack delivery %s", key)
                return BoltResponse(status=200, body="")
        await next_()
        return None


def delivery_key(body: JSON) -> str:
    """What makes a delivery unique: ``event_id`` for events, else ``trigger_id``."""
    if body.get("type") == "event_callback":
        event_id = body.get("event_id")
        return f"slack-event:{str(event_id)[:100]}" if event_id else ""
    trigger = body.get("trigger_id")
    return f"slack-trigger:{str(trigger)[:200]}" if trigger else ""
