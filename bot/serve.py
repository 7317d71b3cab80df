"""``accessbot serve``: the HTTP service, Slack (HTTP or Socket Mode), scheduler, reconciler."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp

from bot.core import Core, build_core
from bot.http.app import HttpService, SlackHandler
from bot.metrics import Metrics
from bot.policy import Policy, load_policy
from bot.redis_conn import RedisTarget, redis_target
from bot.redis_server import RedisProcess
from bot.settings import Settings, bot_namespace
from bot.slack import SlackDirectory, SlackNotifier, build_slack_app, make_slack_client
from bot.slack.app import slack_http_handler

log = logging.getLogger(__name__)

SHUTDOWN_BUDGET = 10.0  # seconds from SIGTERM to exit


@dataclass
class Redis:
    url: RedisTarget
    process: RedisProcess | None = None

    @classmethod
    def start(cls, settings: Settings) -> Redis:
        if (target := redis_target(settings)) is not None:
            return cls(target)
        data_dir = Path(settings.accessbot_data_dir).resolve()
        process = RedisProcess(data_dir, appendonly=True).attach_or_start()
        log.warning(
            "REDIS_URL is unset: running an embedded redis-server (AOF under %s). "
            "This is single-instance mode; use a shared Redis for several replicas.",
            data_dir,
        )
        return cls(process.url, process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


async def _build(
    settings: Settings, policy: Policy, redis_url: RedisTarget
) -> tuple[Core, web.Application]:
    assert settings.slack_bot_token is not None
    metrics = Metrics()
    session = aiohttp.ClientSession()
    client = make_slack_client(
        settings.slack_bot_token.get_secret_value(),
        settings.slack_api_url,
        metrics=metrics,
        session=session,
    )
    notifier = SlackNotifier(client, policy)
    directory = SlackDirectory(client)
    core = await build_core(
        policy,
        redis_url,
        notifier=notifier,
        directory=directory,
        kubeconfig=settings.kubeconfig,
        reconcile_interval=settings.accessbot_reconcile_seconds,
        scheduler_options={
            "lease_seconds": settings.accessbot_lease_seconds,
            "on_lag": metrics.observe_lag,
            "shutdown_grace_seconds": SHUTDOWN_BUDGET - 3.0,
        },
    )
    metrics.attach(core.store, policy)
    core.reconciler.on_report = lambda r: metrics.reconciled(
        len(r.revoked), len(r.deferred), len(r.rescheduled)
    )
    signing_secret = (
        settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    )
    slack = build_slack_app(
        core=core,
        client=client,
        signing_secret=signing_secret,
        socket_mode=settings.socket_mode,
        report_access=policy.reports,
    )
    http = HttpService(
        core,
        metrics,
        offboard_secret=(
            settings.accessbot_offboard_secret.get_secret_value()
            if settings.accessbot_offboard_secret
            else None
        ),
        slack_handler=None if settings.socket_mode else bolt_http_handler(slack, signing_secret),
    )
    app = http.build()
    app["service"] = http
    app["slack"] = slack
    app["slack_session"] = session
    return core, app


def bolt_http_handler(app: AsyncApp, signing_secret: str | None) -> SlackHandler | None:
    """Bolt inside our own aiohttp app (HTTP mode only: None without a signing secret).

    ``slack_http_handler`` verifies every signature and answers within Slack's 3 s.
    """
    if not signing_secret:
        return None
    return slack_http_handler(app, signing_secret)


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then stop within SHUTDOWN_BUDGET seconds."""
    settings.require_serve()
    policy = load_policy(settings.accessbot_policy, bot_namespace=bot_namespace(settings))
    redis = await asyncio.to_thread(Redis.start, settings)
    try:
        core, app = await _build(settings, policy, redis.url)
        await _run(settings, core, app)
    finally:
        redis.stop()


async def _run(settings: Settings, core: Core, app: web.Application) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, settings.accessbot_http_host, settings.accessbot_http_port)
    await site.start()
    core.start()
    socket: AsyncSocketModeHandler | None = None
    if settings.socket_mode:
        assert settings.slack_app_token is not None
        socket = AsyncSocketModeHandler(app["slack"], settings.slack_app_token.get_secret_value())
        await socket.connect_async()
    log.info(
        "accessbot serving on %s:%s (%s mode)",
        settings.accessbot_http_host,
        settings.accessbot_http_port,
        "Socket" if settings.socket_mode else "HTTP",
    )
    await stop.wait()
    log.info("shutting down: no new work; handing back unfinished steps")
    app["service"].accepting = False
    session = app["slack_session"]
    await asyncio.wait_for(_shutdown(core, runner, socket, session), SHUTDOWN_BUDGET - 0.5)


async def _shutdown(
    core: Core, runner: web.AppRunner, socket: Any, session: aiohttp.ClientSession
) -> None:
    if socket is not None:
        await socket.close_async()
    await runner.cleanup()
    await core.close()  # running steps may still message Slack until here
    await session.close()
