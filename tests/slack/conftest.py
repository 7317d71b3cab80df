from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.slack.support import SlackBed, slack_bed
from tests.support.cluster import TestCluster


@pytest.fixture
async def bed(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> AsyncIterator[SlackBed]:
    async with slack_bed(redis_url, {"a": cluster, "b": cluster_b}, tmp_path) as b:
        yield b
