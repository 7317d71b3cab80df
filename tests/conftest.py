"""Session-wide real servers: redis-server and kube-apiserver with etcd."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, settings

from bot.redis_server import RedisProcess, RedisUnavailable
from tests.support.cluster import TestCluster, TestenvUnavailable, start_cluster, testenv_bin_dir
from tests.support.patience import PATIENCE

IN_CI = bool(os.environ.get("CI"))

# Hypothesis' two clocks (the per-example deadline and the "input generation is slow"
# health check) fail a test for being on a busy machine, not for being wrong; both are
# off for the suite. Every other health check stays on, and example counts are Hypothesis'
# (or the test's own @settings): load makes a run longer, never smaller.
settings.register_profile("accessbot", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "accessbot"))


def _unavailable(message: str) -> None:
    """Skip locally, fail in CI: CI must run every test for real."""
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    try:
        proc = RedisProcess(tmp_path_factory.mktemp("redis"), appendonly=False).start(PATIENCE)
    except RedisUnavailable as exc:
        _unavailable(str(exc))
    yield proc
    proc.stop()


@pytest.fixture
async def redis_url(redis_process: RedisProcess) -> str:
    """URL of the session's Redis, emptied before each test."""
    r = aioredis.from_url(redis_process.url)
    await r.flushall()
    await r.aclose()
    return redis_process.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    r = aioredis.from_url(redis_url, decode_responses=True)
    yield r
    await r.aclose()


@pytest.fixture(scope="session")
def testenv_bin() -> Path:
    try:
        return testenv_bin_dir()
    except TestenvUnavailable as exc:
        _unavailable(f"Kubernetes test binaries unavailable: {exc}")
        raise


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory, testenv_bin: Path) -> Iterator[TestCluster]:
    """A real kube-apiserver + etcd, shared by the whole session."""
    c = start_cluster("test-a", tmp_path_factory.mktemp("cluster-a"), testenv_bin)
    yield c
    c.stop()


@pytest.fixture(scope="session")
def cluster_b(tmp_path_factory: pytest.TempPathFactory, testenv_bin: Path) -> Iterator[TestCluster]:
    """A second, independent apiserver for multi-cluster behaviour."""
    c = start_cluster("test-b", tmp_path_factory.mktemp("cluster-b"), testenv_bin)
    yield c
    c.stop()


# The cluster: tokens live at most this long, whatever is asked for.
TOKEN_CAP = "1h"


@pytest.fixture(scope="session")
def cluster_capped(
    tmp_path_factory: pytest.TempPathFactory, testenv_bin: Path
) -> Iterator[TestCluster]:
    """An apiserver started with ``--service-account-max-token-expiration=1h``."""
    c = start_cluster(
        "test-capped",
        tmp_path_factory.mktemp("cluster-capped"),
        testenv_bin,
        extra_args=(f"--service-account-max-token-expiration={TOKEN_CAP}",),
    )
    yield c
    c.stop()
