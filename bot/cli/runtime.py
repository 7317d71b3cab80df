"""What the CLI commands share: exit codes, Redis (given or embedded), the core
without Slack when no bot token is set, and how times and failures are printed."""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from bot.core import Core, build_core
from bot.models import Grant, MessageRef
from bot.policy import load_policy
from bot.redis_conn import RedisTarget, redis_target
from bot.redis_server import RedisProcess
from bot.settings import ConfigError, Settings, bot_namespace

EXIT_PROBLEM, EXIT_CONFIG = 1, 2


def fail(message: str, code: int) -> NoReturn:
    """One line ``accessbot: <message>`` on stderr, then exit with ``code``."""
    print(f"accessbot: {message}", file=sys.stderr)
    sys.exit(code)


def problem(message: str) -> int:
    """Print ``message`` as a problem on stderr; returns ``EXIT_PROBLEM``."""
    print(f"accessbot: {message}", file=sys.stderr)
    return EXIT_PROBLEM


def operator() -> str:
    """The actor recorded for a terminal command: ``cli:<login name>``."""
    return f"cli:{getpass.getuser()}"


def stamp(at: str) -> str:
    """An ISO 8601 time as ``YYYY-MM-DDTHH:MM:SSZ`` in UTC; other text as it is."""
    try:
        return datetime.fromisoformat(at).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return at


class _QuietNotifier:
    """Used when SLACK_BOT_TOKEN is unset: the CLI still works, nobody is messaged."""

    async def post_card(self, grant: Grant) -> MessageRef | None:
        return None

    async def deliver_kubeconfig(self, grant: Grant, filename: str, content: bytes) -> str:
        raise RuntimeError("cannot deliver a kubeconfig without SLACK_BOT_TOKEN")

    async def grant_changed(self, before: Grant, after: Grant) -> None:
        return None

    async def remind(self, grant: Grant) -> None:
        return None

    async def nudge(self, grant: Grant, nudge: object) -> None:
        return None


class _NoDirectory:
    """Used when SLACK_BOT_TOKEN is unset: nobody can be looked up."""

    async def groups_of(self, user_id: str) -> frozenset[str]:
        return frozenset()

    async def members_of(self, handle: str) -> frozenset[str]:
        return frozenset()

    async def user_for_email(self, email: str) -> str | None:
        raise ConfigError("looking up an email needs SLACK_BOT_TOKEN (users:read.email)")

    async def handle_of(self, user_id: str) -> str:
        return user_id.lower()

    async def user_exists(self, user_id: str) -> bool:
        return False


def _embedded_redis(settings: Settings) -> RedisProcess:
    return RedisProcess(Path(settings.accessbot_data_dir).resolve()).attach_or_start()


@asynccontextmanager
async def redis_url(settings: Settings) -> AsyncIterator[RedisTarget]:
    """``REDIS_URL`` or the Sentinel master (:func:`bot.redis_conn.redis_target`), else
    the embedded redis-server's URL (started for the command and stopped after it,
    unless one was already running in the data directory).

    Raises ``RedisUnavailable`` when the embedded server cannot start, ``ConfigError``
    for a bad Sentinel setting.
    """
    if (target := redis_target(settings)) is not None:
        yield target
        return
    process = await asyncio.to_thread(_embedded_redis, settings)
    owned = process.pid is not None
    try:
        yield process.url
    finally:
        if owned:
            process.stop()


@asynccontextmanager
async def core(settings: Settings) -> AsyncIterator[Core]:
    """The bot's core (policy, Redis, clusters, workflow) for one command; Slack is
    used for messages and lookups only when ``SLACK_BOT_TOKEN`` is set.

    Raises ``PolicyError``, ``ConfigError`` or ``RedisUnavailable`` (exit code 2).
    """
    policy = load_policy(settings.accessbot_policy, bot_namespace=bot_namespace(settings))
    async with redis_url(settings) as url:
        notifier: Any = _QuietNotifier()
        directory: Any = _NoDirectory()
        if settings.slack_bot_token is not None:
            from bot.slack import SlackDirectory, SlackNotifier, make_slack_client

            client = make_slack_client(
                settings.slack_bot_token.get_secret_value(), settings.slack_api_url
            )
            notifier, directory = SlackNotifier(client, policy), SlackDirectory(client)
        built = await build_core(
            policy, url, notifier=notifier, directory=directory, kubeconfig=settings.kubeconfig
        )
        if settings.slack_bot_token is not None:
            # Tell what the command changes (when no `serve` drains the outbox meanwhile,
            # within the close's flush; what is left waits for the next drainer).
            built.start_drainer()
        try:
            yield built
        finally:
            await built.close()
