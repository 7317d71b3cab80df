"""``POST /slack/events``: verify the signature, hand the request to Bolt, and answer
Slack within its 3 s whatever happens behind.

Every command and click is acknowledged before anything slow happens. With
Bolt's default ``process_before_response=False`` the HTTP response (or Socket
Mode ack) goes out at ``ack()`` and the listener keeps running, so Slack's 3 s
deadline holds even when an apiserver takes seconds per call. What runs before
``ack()`` is pure (parsing, policy checks) or a local Redis read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot.http.signing import verify_slack

__all__ = ["ANSWER_DEADLINE_SECONDS", "slack_http_handler"]

log = logging.getLogger(__name__)

# Slack wants an answer to every delivery within 3 s; the HTTP layer answers at
# this point in any case (see also bot.slack.dedupe and PRE_ACK_PATIENCE_SECONDS).
ANSWER_DEADLINE_SECONDS = 2.5


def slack_http_handler(
    app: AsyncApp,
    signing_secret: str,
    *,
    clock: Callable[[], float] = time.time,
    answer_within_seconds: float = ANSWER_DEADLINE_SECONDS,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``POST /slack/events`` for aiohttp: verify, parse, dispatch, answer in time.

    The signature is checked on the raw bytes before anything parses them (401 for
    any malformed or wrong header; see ``bot.http.signing``); a signed body that is
    not a Slack payload is a 400. Bolt acks commands and clicks as soon as the
    listener calls ``ack()``; should anything before that take longer than
    ``answer_within_seconds`` (a hung Redis; default
    :data:`ANSWER_DEADLINE_SECONDS`), Slack gets an empty 200 then and the
    dispatch carries on in the background, so Slack never sees a timeout and
    never retries or disables the event subscription because of us. ``clock``
    gives Unix seconds, for the signature's timestamp window.
    """
    background: set[asyncio.Task[BoltResponse]] = set()

    async def handle(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        headers = request.headers
        if _is_ssl_check(raw):
            return web.Response(status=200)  # carries no action; Bolt skips verifying it too
        if not verify_slack(
            signing_secret,
            headers.get("X-Slack-Request-Timestamp"),
            headers.get("X-Slack-Signature"),
            raw,
            clock(),
        ):
            return web.json_response({"error": "invalid request"}, status=401)
        try:
            bolt_request = AsyncBoltRequest(
                body=raw.decode("utf-8"),
                query=request.query_string,
                headers={k: headers.getall(k) for k in headers},
            )
        except Exception as exc:  # any parse failure of a signed body: its problem
            log.warning("unparseable Slack request: %s", exc.__class__.__name__)
            return web.json_response({"error": "malformed request body"}, status=400)
        dispatch = asyncio.ensure_future(app.async_dispatch(bolt_request))
        # Held until done: it may outlive this request (and asyncio keeps only weak
        # references to tasks).
        background.add(dispatch)
        dispatch.add_done_callback(_settled(background))
        try:
            response = await asyncio.wait_for(asyncio.shield(dispatch), answer_within_seconds)
        except TimeoutError:
            log.warning(
                "Slack request not answered in %.1fs; acknowledging it now", answer_within_seconds
            )
            return web.Response(status=200)
        except Exception:  # Bolt answers its own errors; this would be a bug of ours
            return web.Response(status=200)
        return await to_aiohttp_response(response)

    return handle


def _settled(
    background: set[asyncio.Task[BoltResponse]],
) -> Callable[[asyncio.Task[BoltResponse]], None]:
    def done(task: asyncio.Task[BoltResponse]) -> None:
        background.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("Slack request failed: %r", exc, exc_info=exc)

    return done


def _is_ssl_check(raw: bytes) -> bool:
    """Slack's periodic certificate probe of a slash command URL (``ssl_check=1``)."""
    if len(raw) > 1000 or b"ssl_check=1" not in raw:
        return False
    fields = parse_qs(raw.decode("utf-8", "replace"))
    return fields.get("ssl_check") == ["1"] and not ({"command", "payload"} & fields.keys())
