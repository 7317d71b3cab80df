from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.cluster import TestCluster
from tests.support.harness import Harness, workflow_harness

pytestmark = pytest.mark.cluster


@pytest.fixture
async def harness(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> AsyncIterator[Harness]:
    async with workflow_harness(redis_url, {"a": cluster, "b": cluster_b}, tmp_path) as h:
        yield h
