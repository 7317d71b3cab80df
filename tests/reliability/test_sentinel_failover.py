"""Redis Sentinel failover under load: a master, one replica and three sentinels as real
redis-server processes; the master SIGKILLed while 100 requests are in flight.

The bot reaches Redis only through the sentinels (``REDIS_SENTINELS`` and
``REDIS_SENTINEL_MASTER``, read by the same code as ``accessbot serve``). Every
request must end once: active (its kubeconfig delivered once) and then expired on
its own time with its objects deleted, or failed with nothing left on the cluster.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.lifecycle import TERMINAL, State
from bot.models import Grant
from bot.policy import AccessRequestSpec
from bot.redis_conn import SentinelTarget, redis_target
from bot.settings import Settings
from k8s import grants as k8s_grants
from tests.support.cluster import TestCluster
from tests.support.harness import Harness, wait_for_grant, workflow_harness
from tests.support.patience import PATIENCE
from tests.support.sentinel import SERVICE, SentinelGroup, started_group

pytestmark = pytest.mark.cluster
T = TypeVar("T")
REQUESTS = 100
# Long enough that every grant is made after the failover; its expiry then runs on
# the promoted replica.
GRANT_SECONDS = 30
# The bot waits out a Redis outage of up to one lease before it gives up recording a
# delivery (and a retry would send a second file): leases outlast the failover, as
# README asks of a Sentinel deployment (down-after-milliseconds well under a lease).
LEASE_SECONDS = 10.0


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    started = started_group(tmp_path / "redis")
    yield started
    started.stop()


async def with_retries(op: Callable[[], Awaitable[T]], failures: Counter[str]) -> T:
    """What Slack does for us: deliver again until the bot answers."""
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while True:
        try:
            return await op()
        except (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError) as exc:
            failures[type(exc).__name__] += 1
            assert asyncio.get_running_loop().time() < deadline, "Redis never came back"
            await asyncio.sleep(0.1)


async def test_master_killed_mid_load_every_request_ends_once_and_expiry_still_runs(
    group: SentinelGroup, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> None:
    settings = Settings(
        redis_sentinels=group.sentinels_setting, redis_sentinel_master=SERVICE, redis_url=None
    )
    target = redis_target(settings)
    assert isinstance(target, SentinelTarget)
    failures: Counter[str] = Counter()
    async with workflow_harness(
        target,
        {"a": cluster, "b": cluster_b},
        tmp_path,
        reconcile_interval=5.0,
        scheduler_options={"lease_seconds": LEASE_SECONDS},
    ) as h:
        started: list[int] = []
        all_sent = asyncio.Event()

        async def one(i: int) -> Grant:
            await asyncio.sleep(i * 0.01)  # a stream: the kill lands mid-request for most
            started.append(i)
            if len(started) == REQUESTS:
                all_sent.set()
            spec = AccessRequestSpec(
                requester=f"U0DEV{i:03d}", role="edit", cluster="a", namespace="team-a",
                duration=dt.timedelta(seconds=GRANT_SECONDS), reason=f"load {i}",
            )  # fmt: skip
            grant = await with_retries(lambda: h.workflow.submit(spec), failures)
            decision = await with_retries(lambda: h.workflow.approve(grant.id, "U0LEAD"), failures)
            return decision.grant  # type: ignore[no-any-return]

        async def failover() -> dt.datetime:
            await all_sent.wait()
            old = await asyncio.to_thread(group.master)  # the master now, whoever it is
            # In flight: sent, and no kubeconfig delivered yet.
            in_flight = REQUESTS - len({d.grant_id for d in h.notifier.deliveries})
            await asyncio.to_thread(old.kill)
            killed = asyncio.get_running_loop().time()
            new = await asyncio.to_thread(group.master)
            took = asyncio.get_running_loop().time() - killed
            print(f"\nmaster killed with {in_flight} requests in flight; "
                  f"{new.address} promoted {took:.1f}s later")  # fmt: skip
            assert in_flight > 0
            assert new is not old
            return dt.datetime.now(dt.UTC)

        *grants, promoted_at = await asyncio.gather(*(one(i) for i in range(REQUESTS)), failover())
        assert isinstance(promoted_at, dt.datetime)
        print(f"retried deliveries while Redis failed over: {dict(failures)}")
        await _every_request_ends_once(h, [g for g in grants if isinstance(g, Grant)], promoted_at)


async def _every_request_ends_once(
    h: Harness, grants: list[Grant], promoted_at: dt.datetime
) -> None:
    assert len(grants) == REQUESTS
    ended = [
        await wait_for_grant(h.core, g.id, lambda g: g.state in TERMINAL, PATIENCE + GRANT_SECONDS)
        for g in grants
    ]
    # A request whose answer was lost (the record written, then Redis went away before
    # the bot could answer) and which was sent again is a second, pending request:
    # never approved, never made; approvers see it until it times out (README,
    # "Redis Sentinel"). Every record that was approved is the one its requester got.
    answered = {g.id for g in grants}
    records = [await h.core.store.get(key.removeprefix("ab:grant:"))
               for key in await h.core.redis.keys("ab:grant:*")]  # fmt: skip
    extra = [g for g in records if g is not None and g.id not in answered]
    assert Counter(g.requester for g in records if g is not None and g.id in answered) == Counter(
        g.requester for g in grants
    )
    assert all(g.state == State.PENDING and not g.approvals for g in extra), extra
    print(f"{len(extra)} request(s) sent again after a lost answer: left pending, never made")
    states = Counter(g.state for g in ended)
    assert set(states) <= {State.EXPIRED, State.FAILED}, states
    audit = [fields for _, fields in await h.core.redis.xrange("ab:audit")]
    ends = Counter(e["grant_id"] for e in audit if e["event"] in {str(s) for s in TERMINAL})
    activations = Counter(e["grant_id"] for e in audit if e["event"] == "active")
    for g in ended:
        assert ends[g.id] == 1, f"{g.id} ended {ends[g.id]} times"
        delivered = len(h.notifier.delivered_to(g.id))
        if g.state == State.EXPIRED:
            assert activations[g.id] == 1, f"{g.id} activated {activations[g.id]} times"
            assert delivered == 1, f"{g.id}: {delivered} kubeconfigs"
            assert g.expires_at is not None
            assert g.expires_at > promoted_at, "made before the failover"
        else:
            assert activations[g.id] == 0, f"{g.id} failed after it was delivered"
    # Nothing is left on the cluster: expired grants' objects deleted, failed ones
    # rolled back, and no object of a grant the store does not know.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while left := await k8s_grants.list_managed(h.core.clusters["a"]):
        assert loop.time() < deadline, f"left on the cluster: {left[:3]}"
        await asyncio.sleep(0.2)
    lags = sorted(
        (g.history[-1].at - g.expires_at).total_seconds()
        for g in ended
        if g.state == State.EXPIRED and g.expires_at is not None
    ) or [0.0]
    print(f"{states[State.EXPIRED]} expired on the promoted master, {states[State.FAILED]} failed; "
          f"expiry lag median {lags[len(lags) // 2]:.2f}s, max {lags[-1]:.2f}s")  # fmt: skip


def test_accessbot_check_finds_the_master_through_the_sentinels(
    group: SentinelGroup, tmp_path: Path
) -> None:
    """The CLI reads the two variables from the environment, as ``serve`` does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ACCESSBOT_"))}
    env |= {"REDIS_SENTINELS": group.sentinels_setting, "REDIS_SENTINEL_MASTER": SERVICE,
            "ACCESSBOT_POLICY": str(tmp_path / "absent.yaml"),
            "ACCESSBOT_DATA_DIR": str(tmp_path / "data")}  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "bot", "check"], env=env, cwd=tmp_path, capture_output=True,
        text=True, timeout=PATIENCE, check=False,
    )  # fmt: skip
    line = f"✓ redis: reachable: master '{SERVICE}' of sentinels {group.sentinels_setting}"
    assert line in out.stdout, out.stdout + out.stderr
    assert not (tmp_path / "data").exists(), "an embedded redis-server was started"
