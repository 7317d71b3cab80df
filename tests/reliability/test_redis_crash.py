"""redis-server SIGKILLed and restarted (AOF on) in the middle of approvals."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.core import Core
from bot.lifecycle import State
from bot.models import Grant
from bot.policy import AccessRequestSpec
from bot.redis_server import RedisProcess
from bot.workflow import Decision
from k8s import grants as k8s_grants
from tests.support.cluster import TestCluster
from tests.support.harness import until_step_done, workflow_harness
from tests.support.patience import PATIENCE

pytestmark = pytest.mark.cluster
T = TypeVar("T")
REQUESTS = 40
redeliveries = 0


async def with_retries(op: Callable[[], Awaitable[T]]) -> T:
    """What Slack does for us: deliver again until the bot answers."""
    global redeliveries
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while True:
        try:
            return await op()
        except (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError):
            redeliveries += 1
            assert asyncio.get_running_loop().time() < deadline, "Redis never came back"
            await asyncio.sleep(0.1)


async def test_redis_sigkill_loses_nothing_and_doubles_nothing(
    cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> None:
    redis = RedisProcess(tmp_path / "redis", appendonly=True).start(PATIENCE)
    try:
        async with workflow_harness(redis.url, {"a": cluster, "b": cluster_b}, tmp_path) as h:
            wf = h.workflow

            async def one(i: int) -> Grant:
                await asyncio.sleep(i * 0.025)  # a steady stream across the crash
                spec = AccessRequestSpec(
                    requester=f"U0DEV{i:03d}",
                    role="edit",
                    cluster="a",
                    namespace="team-a",
                    duration=None,
                    reason=f"load {i}",
                )
                grant: Grant = await with_retries(lambda: wf.submit(spec))
                decision: Decision = await with_retries(lambda: wf.approve(grant.id, "U0LEAD"))
                return decision.grant

            async def crash() -> None:
                await asyncio.sleep(0.3)
                redis.kill()
                await asyncio.sleep(0.5)
                await asyncio.to_thread(redis.start, PATIENCE)

            results = await asyncio.gather(*(one(i) for i in range(REQUESTS)), crash())
            acknowledged = [g for g in results if isinstance(g, Grant)]
            assert len(acknowledged) == REQUESTS
            assert redeliveries > 0, "the crash missed the load"
            print(f"\n{redeliveries} deliveries had to be retried while Redis was down")
            final = [await h.wait_state(g.id, State.ACTIVE) for g in acknowledged]
            # A second delivery could only come from a provision step running again.
            await _provision_jobs_done(h.core, [g.id for g in final])

            assert len({g.id for g in final}) == REQUESTS
            for g in final:
                assert len(h.notifier.delivered_to(g.id)) == 1, f"{g.id} delivered twice"
            sas = [o for o in await k8s_grants.list_managed(h.core.clusters["a"])
                   if o.kind == "ServiceAccount"]  # fmt: skip
            assert sorted(o.grant_id for o in sas) == sorted(g.id for g in final)
    finally:
        redis.stop()


async def _provision_jobs_done(core: Core, grant_ids: list[str]) -> None:
    for grant_id in grant_ids:
        await until_step_done(core, grant_id, "provision")
