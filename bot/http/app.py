"""One aiohttp application: Slack's endpoint, the offboarding webhook, health, metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import ValidationError
from slack_sdk.errors import SlackClientError

from bot.core import Core
from bot.errors import UnknownUser
from bot.http import openapi, signing
from bot.http.schemas import ErrorBody, OffboardBody, OffboardDone, OffboardPending, PendingGrant
from bot.metrics import CONTENT_TYPE, Metrics
from k8s.grants import rfc3339

__all__ = ["MAX_WEBHOOK_BODY", "HttpService", "OffboardBody", "SlackHandler"]

log = logging.getLogger(__name__)

MAX_WEBHOOK_BODY = 64 * 1024
READY_TIMEOUT_SECONDS = 3.0  # each /readyz probe (Redis, every cluster)

SlackHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str) -> web.Response:
    return web.json_response(ErrorBody(error=message).model_dump(), status=status)


@dataclass
class HttpService:
    """The bot's HTTP endpoints (CONTRACT.md, "HTTP"); ``build()`` makes the aiohttp app.

    ``core``: the workflow, Redis and clusters the endpoints use. ``metrics``: what
    ``/metrics`` serves. ``offboard_secret``: the HMAC secret of ``/hooks/offboard``
    (``None`` or empty: the endpoint answers 404). ``slack_handler``: serves
    ``POST /slack/events`` (default ``None``: not routed, as in Socket Mode).
    ``clock``: Unix seconds now (default ``time.time``), for the signature's
    replay window. ``accepting`` is ``False`` while draining (``/readyz`` 503).
    """

    core: Core
    metrics: Metrics
    offboard_secret: str | None = field(kw_only=True)
    slack_handler: SlackHandler | None = field(default=None, kw_only=True)
    clock: Callable[[], float] = field(default=time.time, kw_only=True)
    accepting: bool = field(default=True, init=False)

    def build(self) -> web.Application:
        app = web.Application(client_max_size=MAX_WEBHOOK_BODY * 16)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics_page)
        app.router.add_get("/openapi.json", self.openapi)
        app.router.add_post("/hooks/offboard", self.offboard)
        if self.slack_handler is not None:
            app.router.add_post("/slack/events", self.slack_handler)
        return app

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, _: web.Request) -> web.Response:
        problems = await self.readiness_problems()
        if problems or not self.accepting:
            return web.json_response(
                {"status": "unavailable", "problems": problems or ["shutting down"]}, status=503
            )
        return web.json_response({"status": "ready"})

    async def readiness_problems(self) -> list[str]:
        checks = [("redis", self._ping_redis())] + [
            (f"cluster {c.name}", self._ping_cluster(c.name)) for c in self.core.clusters
        ]
        results = await asyncio.gather(*(_timed(coro) for _, coro in checks))
        return [f"{name}: {err}" for (name, _), err in zip(checks, results, strict=True) if err]

    async def _ping_redis(self) -> None:
        await self.core.redis.ping()  # type: ignore[misc]  # redis-py types it sync|async

    async def _ping_cluster(self, name: str) -> None:
        c = self.core.clusters[name]
        await c.call(c.core.get_api_resources, _request_timeout=(2.0, READY_TIMEOUT_SECONDS))

    async def metrics_page(self, _: web.Request) -> web.Response:
        return web.Response(
            body=await self.metrics.scrape(), headers={"Content-Type": CONTENT_TYPE}
        )

    async def openapi(self, _: web.Request) -> web.Response:
        return web.json_response(openapi.document())

    async def offboard(self, request: web.Request) -> web.Response:
        if not self.offboard_secret:
            return _error(404, "not found")
        body = await _read_limited(request, MAX_WEBHOOK_BODY)
        if body is None:
            return _error(413, f"body over {MAX_WEBHOOK_BODY} bytes")
        ok = signing.verify(
            self.offboard_secret,
            request.headers.get("X-AccessBot-Timestamp"),
            request.headers.get("X-AccessBot-Signature"),
            body,
            self.clock(),
        )
        if not ok:
            return _error(401, "bad or stale signature")
        try:
            parsed = OffboardBody.model_validate(json.loads(body))
        except (ValueError, ValidationError) as exc:
            return _error(400, _first_problem(exc))
        except RecursionError:
            # json.loads recurses per nesting level; a signed but absurd body
            # must still get a 400, never a 5xx.
            return _error(400, "body is nested too deeply")
        return await self._run_offboard(parsed)

    async def _run_offboard(self, body: OffboardBody) -> web.Response:
        wf = self.core.workflow
        try:
            user = await wf.resolve_user(email=body.email, user_id=body.slack_user_id)
        except UnknownUser as exc:
            return _error(404, str(exc))
        except (SlackClientError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            # Who the person is could not be told (Slack down, nothing cached):
            # a retryable answer, as HR systems retry a 503.
            log.warning("offboarding lookup failed: %s", exc)
            return _error(503, "Slack did not answer the user lookup; retry shortly")
        result = await wf.offboard(user, "hr-webhook", body.reason or "offboarded by HR")
        if not result.done:
            # The truth, not a promise: these grants' objects may still exist.
            # Cleanup jobs keep at it; each retry of this call re-attempts them.
            log.error("offboarding %s incomplete: %d grants pending", user, len(result.pending))
            pending = [PendingGrant(grant=p.grant, cluster=p.cluster) for p in result.pending]
            answer = OffboardPending(user=result.user, pending=pending)
            return web.json_response(answer.model_dump(), status=503)
        done = OffboardDone(
            user=result.user,
            revoked=result.revoked,
            cancelled=result.cancelled,
            verified={c: rfc3339(at) for c, at in sorted(result.verified.items())},
        )
        return web.json_response(done.model_dump())


async def _timed(coro: Awaitable[Any]) -> str | None:
    try:
        await asyncio.wait_for(coro, READY_TIMEOUT_SECONDS)
        return None
    except TimeoutError:
        return "timed out"
    except Exception as exc:
        return exc.__class__.__name__ if not str(exc) else str(exc)


async def _read_limited(request: web.Request, limit: int) -> bytes | None:
    """The raw body, or None if it is over ``limit`` (without reading it all)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(16384):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _first_problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        return f"{where}: {err['msg']}"
    return "body is not valid JSON"
