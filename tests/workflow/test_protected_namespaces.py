"""No grant is ever made in a protected namespace, whatever the request's history."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.lifecycle import State
from bot.policy import AccessRequestSpec, RequestRejected
from k8s import grants as k8s_grants
from tests.support.cluster import TestCluster
from tests.support.harness import POLICY, Harness, wait_for_grant, workflow_harness

pytestmark = pytest.mark.cluster


def spec(namespace: str) -> AccessRequestSpec:
    return AccessRequestSpec(
        requester="U0ALICE", role="edit", cluster="a", namespace=namespace, duration=None,
        reason="fixing checkout",
    )  # fmt: skip


@pytest.mark.parametrize("namespace", ["kube-system", "accessbot-users", "kube-public"])
async def test_request_for_a_protected_namespace_is_refused(
    harness: Harness, namespace: str
) -> None:
    with pytest.raises(RequestRejected, match=f"^namespace {namespace} is protected: "):
        await harness.workflow.submit(spec(namespace))
    assert await harness.core.store.by_user("U0ALICE") == []


async def test_pending_request_made_before_the_namespace_became_protected_is_not_granted(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> None:
    clusters = {"a": cluster, "b": cluster_b}
    async with workflow_harness(redis_url, clusters, tmp_path) as before:
        pending = await before.workflow.submit(spec("team-a"))
        assert pending.state == State.PENDING
    # The bot restarts with a policy that now protects team-a; then the approval comes.
    protected = POLICY + 'protected_namespaces: ["team-a"]\n'
    async with workflow_harness(redis_url, clusters, tmp_path, policy_text=protected) as after:
        await after.workflow.approve(pending.id, "U0LEAD")
        failed = await wait_for_grant(after.core, pending.id, lambda g: g.ended, 30)
        assert failed.state == State.FAILED
        assert "namespace team-a is protected by the policy (team-a)" in (failed.failure or "")
        managed = await k8s_grants.list_managed(after.core.clusters["a"])
        assert pending.id not in {o.grant_id for o in managed}
        assert after.notifier.delivered_to(pending.id) == []
