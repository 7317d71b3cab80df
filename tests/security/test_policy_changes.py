"""What was decided under an earlier policy is created and extended only under today's.

An operator narrows a role, protects a namespace or raises the approvals while
requests wait and grants run; nothing the new policy forbids may then be
created or extended (the bot restarts with the new policy file, as it would).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bot.core import Core, build_core
from bot.lifecycle import State
from bot.policy import AccessRequestSpec, RequestRejected, parse_policy
from k8s import grants as k8s_grants
from tests.support.cluster import TestCluster
from tests.support.doubles import RecordingNotifier
from tests.support.harness import POLICY, default_directory, wait_for_grant, workflow_harness
from tests.support.patience import PATIENCE

pytestmark = pytest.mark.cluster

EDIT = """edit:  {cluster_role: edit, scope: namespace, max_duration: 4h, approvals: 1,
          approvers: ["U0LEAD", "@platform-leads"], namespaces: ["team-*"],
          accepts_risks: [token-minting, impersonation]}"""
NARROWED_EDIT = POLICY.replace(
    EDIT,
    """edit:  {cluster_role: view, scope: namespace, max_duration: 30m, approvals: 1,
          approvers: ["U0LEAD", "@platform-leads"], namespaces: ["team-b"]}""",
)
MORE_APPROVALS = POLICY.replace(
    EDIT,
    EDIT.replace("approvals: 1,", 'approvals: 2, approvers: ["U0LEAD", "U0SRE"],').replace(
        'approvers: ["U0LEAD", "@platform-leads"], ', ""
    ),
)
PROTECTING = POLICY.replace("defaults:", 'protected_namespaces: ["team-a"]\ndefaults:')


@asynccontextmanager
async def restarted(policy_text: str, redis_url: str, kubeconfig: Path) -> AsyncIterator[Core]:
    core = await build_core(
        parse_policy(policy_text),
        redis_url,
        notifier=RecordingNotifier(),
        directory=default_directory(),
        kubeconfig=str(kubeconfig),
    )
    core.start()
    try:
        yield core
    finally:
        await core.close()


def test_the_policy_texts_really_differ() -> None:
    assert NARROWED_EDIT != POLICY
    assert PROTECTING != POLICY
    assert MORE_APPROVALS != POLICY
    assert parse_policy(MORE_APPROVALS).roles["edit"].approvals == 2


@pytest.mark.parametrize("changed", [NARROWED_EDIT, PROTECTING, MORE_APPROVALS])
async def test_an_approval_after_a_policy_change_creates_nothing_it_forbids(
    changed: str, redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> None:
    clusters = {"a": cluster, "b": cluster_b}
    async with workflow_harness(redis_url, clusters, tmp_path, start=False) as h:
        spec = AccessRequestSpec(
            requester="U0ALICE", role="edit", cluster="a", namespace="team-a",
            duration=None, reason="asked under the old policy",
        )  # fmt: skip
        grant = await h.workflow.submit(spec)
        await h.core.close()
    async with restarted(changed, redis_url, h.kubeconfig) as core:
        await core.workflow.approve(grant.id, "U0LEAD")
        final = await wait_for_grant(core, grant.id, lambda g: g.ended, PATIENCE)
        assert final.state == State.FAILED
        assert final.failure is not None
        assert "policy changed" in final.failure
        left = [o for o in await k8s_grants.list_managed(core.clusters["a"])
                if o.grant_id == grant.id]  # fmt: skip
        assert left == []


@pytest.mark.parametrize("changed", [NARROWED_EDIT, PROTECTING])
async def test_a_grant_the_policy_no_longer_allows_is_not_extended(
    changed: str, redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> None:
    role = "edit" if changed is NARROWED_EDIT else "view"
    clusters = {"a": cluster, "b": cluster_b}
    async with workflow_harness(redis_url, clusters, tmp_path) as h:
        spec = AccessRequestSpec(
            requester="U0ALICE", role=role, cluster="a", namespace="team-a",
            duration=dt.timedelta(hours=1), reason="before the change",
        )  # fmt: skip
        grant = await h.workflow.submit(spec)
        if role == "edit":
            await h.workflow.approve(grant.id, "U0LEAD")
        active = await h.wait_state(grant.id, State.ACTIVE)
        await h.core.close()
    async with restarted(changed, redis_url, h.kubeconfig) as core:
        try:
            with pytest.raises(RequestRejected, match="policy changed"):
                await core.workflow.extend(grant.id, "U0ALICE", dt.timedelta(minutes=30))
            current = await core.store.get(grant.id)
            assert current is not None
            assert current.expires_at == active.expires_at
        finally:
            await core.workflow.revoke(grant.id, "U0ADMIN", operator=True)
