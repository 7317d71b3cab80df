"""Where the bot's Redis is and how to reach it: one URL (``REDIS_URL``), or a master
found through Redis Sentinel (``REDIS_SENTINELS`` and ``REDIS_SENTINEL_MASTER``).

With Sentinel, ``REDIS_URL`` is optional and gives what a URL gives besides an
address: ``rediss://`` (TLS, with its ``ssl_*`` query options), the user and
password, the database number, timeouts. Its host and port are not used: the
sentinels name the master. The master and its replicas get all of it; the
sentinels get TLS and the timeouts but no password (redis-py's default: a
sentinel with ``requirepass`` is not supported). redis-py's Sentinel client asks
the sentinels for the master before each new connection and drops connections
to a master that was demoted, so a failover looks like a short Redis outage:
commands in it fail with ``ConnectionError`` and are retried as for one Redis.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from bot.settings import ConfigError, Settings

# Every Redis command the bot sends is bounded: a hung server (SIGSTOP, a stalled
# disk under AOF fsync, a network black hole) turns into redis.exceptions.TimeoutError
# after this long instead of a call that never returns. Our commands and Lua scripts
# are small (bounded batches), so 5 s is generous; a URL query such as
# ``?socket_timeout=10`` overrides it.
REDIS_SOCKET_TIMEOUT_SECONDS = 5.0
REDIS_CONNECT_TIMEOUT_SECONDS = 3.0
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelTarget:
    """A master found through sentinels: ``sentinels`` (host, port) pairs, the master's
    ``service`` name (``REDIS_SENTINEL_MASTER``), and ``options_url``, the
    ``REDIS_URL`` whose scheme, credentials, database and query options apply
    (None: plain TCP, no password, database 0)."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    options_url: str | None = None

    def __str__(self) -> str:  # for logs and `accessbot check`: never the password
        where = ",".join(f"{h}:{p}" for h, p in self.sentinels)
        tls = " (TLS)" if self.options_url and self.options_url.startswith("rediss:") else ""
        return f"master {self.service!r} of sentinels {where}{tls}"


RedisTarget = str | SentinelTarget


def parse_sentinels(value: str) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port,...`` (port 26379 when left out; ``[v6]:port`` for IPv6).

    Raises ``ValueError`` worded for the operator.
    """
    found: list[tuple[str, int]] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        parsed = urlparse(f"//{item}")
        try:
            port = DEFAULT_SENTINEL_PORT if parsed.port is None else parsed.port
        except ValueError:
            raise ValueError(f"{item!r}: the port must be a number 1-65535") from None
        if not parsed.hostname or parsed.path or parsed.username or not 0 < port < 65536:
            raise ValueError(f"{item!r} is not host:port")
        found.append((parsed.hostname, port))
    if not found:
        raise ValueError("name at least one sentinel as host:port")
    return tuple(found)


def redis_target(settings: Settings) -> RedisTarget | None:
    """The Redis the settings name: a :class:`SentinelTarget` when ``REDIS_SENTINELS``
    is set, else ``REDIS_URL``; None: neither (the embedded redis-server).

    Raises ``ConfigError`` naming the variable that is wrong or missing.
    """
    sentinels = (settings.redis_sentinels or "").strip()
    master = (settings.redis_sentinel_master or "").strip()
    if not sentinels:
        if master:
            raise ConfigError("REDIS_SENTINEL_MASTER is set but REDIS_SENTINELS is not")
        return settings.redis_url or None
    if not master:
        raise ConfigError(
            "REDIS_SENTINEL_MASTER is not set (the master's name in the sentinels' "
            "configuration, e.g. mymaster)"
        )
    try:
        parsed = parse_sentinels(sentinels)
    except ValueError as exc:
        raise ConfigError(f"REDIS_SENTINELS: {exc}") from None
    url = settings.redis_url or None
    if url is not None and urlparse(url).scheme not in ("redis", "rediss"):
        raise ConfigError(
            "REDIS_URL must be redis:// or rediss:// with REDIS_SENTINELS "
            "(it gives TLS, password and database; the sentinels give the address)"
        )
    return SentinelTarget(parsed, master, url)


def _bounded(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Only connection errors are retried (twice, with jittered backoff up to 1 s): a
    command that timed out may have run, and re-sending a ``SET NX`` or an ``XADD``
    would not be harmless."""
    return {
        "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT_SECONDS,
        **kwargs,
        "decode_responses": True,
        "retry": Retry(
            ExponentialWithJitterBackoff(base=0.1, cap=1.0),
            retries=2,
            supported_errors=(RedisConnectionError,),
        ),
    }


def redis_client(target: RedisTarget) -> Redis:
    """The Redis client every part of the bot shares, with bounded waits: from a URL,
    or the master of a :class:`SentinelTarget` (re-resolved after a failover)."""
    if isinstance(target, str):
        return Redis.from_url(target, **_bounded({}))
    options: dict[str, Any] = dict(parse_url(target.options_url)) if target.options_url else {}
    for address in ("host", "port", "path"):
        options.pop(address, None)
    tls = options.pop("connection_class", None) is SSLConnection
    for_sentinels = {k: v for k, v in options.items()
                     if k.startswith(("socket_", "ssl_"))}  # fmt: skip
    # No retry or decoding for a sentinel: the next one is asked instead, and
    # redis-py parses their answers itself.
    for_sentinels = {"socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
                     "socket_connect_timeout": REDIS_CONNECT_TIMEOUT_SECONDS,
                     **for_sentinels, "ssl": tls}  # fmt: skip
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=for_sentinels)
    master: SentinelRedis = sentinel.master_for(
        target.service, redis_class=SentinelRedis, **_bounded({**options, "ssl": tls})
    )
    return master


class SentinelRedis(Redis):
    """The master's client; closing it closes the connections to the sentinels too."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        pool: Any = self.connection_pool
        await _close_all(pool.sentinel_manager.sentinels)


async def _close_all(clients: Iterable[Redis]) -> None:
    for client in clients:
        await client.aclose()
