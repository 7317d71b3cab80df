"""The offboarding webhook says "done" only when it is: objects gone on every cluster.

Cluster b sits behind a fault proxy that the bot uses; the issued kubeconfig
talks to cluster b directly, so the test can prove with the real kubectl that
the person's token still works while the webhook says 503, and stops working
once it says 200.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer

from bot.http.app import HttpService
from bot.lifecycle import State
from bot.metrics import Metrics
from bot.policy import AccessRequestSpec
from k8s import grants as k8s_grants
from tests.service.test_http import Client
from tests.support.cluster import TestCluster
from tests.support.fault_proxy import FaultProxy
from tests.support.harness import POLICY, Harness, prepare_clusters, workflow_harness

pytestmark = pytest.mark.cluster
SECRET = "offboard-test-secret"
BODY = json.dumps({"slack_user_id": "U0ALICE", "reason": "left"}).encode()


@dataclass
class Bed:
    h: Harness
    client: Client
    proxy: FaultProxy
    cluster_a: TestCluster
    cluster_b: TestCluster


@pytest.fixture
async def bed(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> AsyncIterator[Bed]:
    proxy = await FaultProxy(cluster_b).start()
    kubeconfig = prepare_clusters({"a": cluster, "b": cluster_b}, tmp_path)
    doc = yaml.safe_load(kubeconfig.read_text())
    for entry in doc["clusters"]:
        if entry["name"] == cluster_b.name:
            entry["cluster"]["server"] = proxy.url  # the bot reaches b through the proxy
    kubeconfig.write_text(yaml.safe_dump(doc))
    # ...while the people it grants access to reach b directly.
    policy = POLICY.replace("b: {context: b}", f'b: {{context: b, server: "{cluster_b.server}"}}')
    try:
        async with workflow_harness(
            redis_url,
            {"a": cluster, "b": cluster_b},
            tmp_path,
            policy_text=policy,
            kubeconfig=kubeconfig,
        ) as h:
            app = HttpService(h.core, Metrics(), offboard_secret=SECRET).build()
            async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as s:
                yield Bed(h, Client(server, s), proxy, cluster, cluster_b)
    finally:
        await proxy.stop()


def view(cluster: str, ns: str) -> AccessRequestSpec:
    return AccessRequestSpec(
        requester="U0ALICE", role="view", cluster=cluster, namespace=ns, duration=None,
        reason="incident 7",
    )  # fmt: skip


async def kubeconfig_of(bed: Bed, grant_id: str, tmp_path: Path) -> Path:
    (delivery,) = bed.h.notifier.delivered_to(grant_id)
    path = tmp_path / f"{grant_id}.kubeconfig"
    path.write_bytes(delivery.content)
    return path


async def can_read(cluster: TestCluster, kubeconfig: Path) -> tuple[bool, str]:
    r = await asyncio.to_thread(
        cluster.kubectl, "get", "pods", "-n", "team-b", kubeconfig=kubeconfig, check=False
    )
    return r.returncode == 0, r.stderr + r.stdout


async def until_unauthorized(cluster: TestCluster, kubeconfig: Path, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        ok, out = await can_read(cluster, kubeconfig)
        if not ok and "Unauthorized" in out:
            return
        assert asyncio.get_running_loop().time() < deadline, out
        await asyncio.sleep(0.5)


async def objects(bed: Bed, name: str, grant_id: str) -> list[str]:
    """The grant's objects, read directly (the bot's own view of b may be cut off)."""
    target = bed.cluster_b if name == "b" else bed.cluster_a
    r = await asyncio.to_thread(
        target.kubectl, "get", "serviceaccounts,rolebindings,clusterrolebindings", "-A",
        "-l", f"accessbot.io/grant-id={grant_id}", "-o", "name",
    )  # fmt: skip
    return r.stdout.split()


async def two_active_grants(bed: Bed, tmp_path: Path) -> tuple[str, str, Path]:
    on_a = await bed.h.workflow.submit(view("a", "team-a"))
    on_b = await bed.h.workflow.submit(view("b", "team-b"))
    for g in (on_a, on_b):
        await bed.h.wait_state(g.id, State.ACTIVE)
    kubeconfig_b = await kubeconfig_of(bed, on_b.id, tmp_path)
    assert (await can_read(bed.cluster_b, kubeconfig_b))[0]
    return on_a.id, on_b.id, kubeconfig_b


async def test_webhook_says_503_while_a_cluster_keeps_access_and_200_once_gone(
    bed: Bed, tmp_path: Path
) -> None:
    on_a, on_b, kubeconfig_b = await two_active_grants(bed, tmp_path)
    bed.proxy.faults.reset = 1.0  # cluster b stops answering the bot

    expected = {"user": "U0ALICE", "pending": [{"grant": on_b, "cluster": "b"}]}
    started = time.monotonic()
    assert await bed.client.offboard(BODY) == (503, expected)
    print(f"\n503 with cluster b unreachable answered in {time.monotonic() - started:.2f}s")
    assert await objects(bed, "a", on_a) == []  # the first call made progress on a
    # HR retries: still the truth, not a 200 with nothing revoked.
    assert await bed.client.offboard(BODY) == (503, expected)
    ok, out = await can_read(bed.cluster_b, kubeconfig_b)
    assert ok, f"the 503 claimed access might live, and it does: {out}"
    assert len(await objects(bed, "b", on_b)) == 2
    assert (await bed.h.workflow.get(on_b)).state == State.REVOKED

    bed.proxy.faults.off()
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    started = time.monotonic()
    status, body = await bed.client.offboard(BODY)
    print(f"200 once b answers again in {time.monotonic() - started:.2f}s")
    assert status == 200, body
    assert sorted(body["revoked"]) == sorted([on_a, on_b])  # type: ignore[arg-type]
    assert body["cancelled"] == []
    verified = body["verified"]
    assert isinstance(verified, dict)
    assert set(verified) == {"a", "b"}
    assert dt.datetime.fromisoformat(verified["b"].replace("Z", "+00:00")) >= before
    assert await objects(bed, "b", on_b) == []
    await until_unauthorized(bed.cluster_b, kubeconfig_b)
    # A finished call repeats harmlessly, with the same answer, without the clusters:
    # with b cut off again it still says 200.
    assert await bed.client.offboard(BODY) == (200, body)
    bed.proxy.faults.reset = 1.0
    assert await bed.client.offboard(BODY) == (200, body)


async def test_durable_cleanup_finishes_without_another_call(bed: Bed, tmp_path: Path) -> None:
    _, on_b, kubeconfig_b = await two_active_grants(bed, tmp_path)
    bed.proxy.faults.reset = 1.0
    status, body = await bed.client.offboard(BODY)
    assert status == 503
    assert body["pending"] == [{"grant": on_b, "cluster": "b"}]

    bed.proxy.faults.off()
    # Nobody calls again: the cleanup job removes the objects and records it.
    gone = await bed.h.wait_state(on_b, State.REVOKED)
    deadline = asyncio.get_running_loop().time() + 60
    while gone.objects_gone_at is None:
        assert asyncio.get_running_loop().time() < deadline, "cleanup job never finished"
        await asyncio.sleep(0.2)
        gone = await bed.h.workflow.get(on_b)
    assert await objects(bed, "b", on_b) == []
    await until_unauthorized(bed.cluster_b, kubeconfig_b)
    status, body = await bed.client.offboard(BODY)
    assert status == 200
    assert body["verified"]["b"] == k8s_grants.rfc3339(gone.objects_gone_at)  # type: ignore[index]


async def test_cli_offboard_exits_1_naming_what_may_remain(
    bed: Bed, tmp_path: Path, redis_url: str
) -> None:
    """`accessbot offboard` tells the same truth as the webhook: exit 1, naming the
    pending grant, while a cluster may keep access; 0 once it is gone."""
    from tests.service.test_cli import accessbot

    _, on_b, _ = await two_active_grants(bed, tmp_path)
    policy = POLICY.replace(
        "b: {context: b}", f'b: {{context: b, server: "{bed.cluster_b.server}"}}'
    )
    (tmp_path / "policy.yaml").write_text(policy)
    env = {"REDIS_URL": redis_url, "KUBECONFIG": str(bed.h.kubeconfig)}
    bed.proxy.faults.reset = 1.0
    off = await asyncio.to_thread(
        accessbot, "offboard", "--slack-user", "U0ALICE", env=env, cwd=tmp_path
    )
    assert off.returncode == 1, off.stdout + off.stderr
    assert f"b/{on_b}: objects may still exist" in off.stderr
    assert "is not finished" in off.stderr
    assert len(await objects(bed, "b", on_b)) == 2

    bed.proxy.faults.off()
    again = await asyncio.to_thread(
        accessbot, "offboard", "--slack-user", "U0ALICE", env=env, cwd=tmp_path
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert await objects(bed, "b", on_b) == []
