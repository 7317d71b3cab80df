"""TLS and password through Sentinel, as for REDIS_URL: every port TLS-only, the data
nodes behind a password; the bot's client follows the master across a failover."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.redis_conn import SentinelTarget, redis_client, redis_target
from bot.settings import Settings
from tests.support.patience import PATIENCE
from tests.support.pki import TestPKI
from tests.support.sentinel import SERVICE, Security, SentinelGroup, started_group

PASSWORD = "s3cret-redis"


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    started = started_group(tmp_path / "redis", Security(TestPKI(tmp_path / "pki"), PASSWORD))
    yield started
    started.stop()


async def test_tls_and_password_reach_the_master_before_and_after_a_failover(
    group: SentinelGroup, tmp_path: Path
) -> None:
    ca = tmp_path / "pki" / "ca.crt"
    url = f"rediss://:{PASSWORD}@not-used:1/2?ssl_ca_certs={ca}&ssl_cert_reqs=required"
    target = redis_target(
        Settings(
            redis_sentinels=group.sentinels_setting, redis_sentinel_master=SERVICE, redis_url=url
        )
    )
    assert isinstance(target, SentinelTarget)
    r = redis_client(target)
    try:
        await r.set("before", "1")
        old = await asyncio.to_thread(group.master)
        with old.client() as direct:  # the URL's database, on the master the sentinels named
            assert direct.execute_command("SELECT", 2)
            assert direct.get("before") == "1"
        await asyncio.to_thread(old.kill)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PATIENCE
        while True:
            try:
                await r.set("after", "2")
                break
            except (RedisConnectionError, RedisTimeoutError):
                assert loop.time() < deadline, "never reached the promoted master"
                await asyncio.sleep(0.1)
        new = await asyncio.to_thread(group.master)
        assert new is not old
        assert await r.get("before") == "1"
        assert await r.get("after") == "2"
    finally:
        await r.aclose()
