"""100 approvals while the apiserver misbehaves: nothing half-made survives."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bot.lifecycle import State
from bot.policy import AccessRequestSpec
from k8s import grants as k8s_grants
from tests.support.cluster import TestCluster, ensure_namespaces
from tests.support.fault_proxy import FaultProxy, Faults
from tests.support.harness import NAMESPACES, workflow_harness
from tests.support.patience import PATIENCE

pytestmark = pytest.mark.cluster

POLICY = """
approvals_channel: C0APPROVALS
clusters:
  a: {context: proxied}
roles:
  edit: {cluster_role: edit, scope: namespace, max_duration: 4h, approvals: 1,
         approvers: ["U0LEAD"], namespaces: ["team-*"]}
"""
GRANTS = 100


async def test_hundred_approvals_through_a_faulty_apiserver(
    redis_url: str, cluster: TestCluster, tmp_path: Path
) -> None:
    ensure_namespaces(cluster, *NAMESPACES)
    faults = Faults(delay=0.05, delay_seconds=0.5, reset=0.04, error=0.04, throttle=0.04)
    proxy = await FaultProxy(cluster, faults).start()
    try:
        kubeconfig = proxy.kubeconfig(tmp_path / "kubeconfig", "proxied")
        async with workflow_harness(redis_url, {"a": cluster}, tmp_path, policy_text=POLICY,
                                    kubeconfig=kubeconfig) as h:  # fmt: skip
            started = time.monotonic()
            requests = [
                await h.workflow.submit(AccessRequestSpec(
                    requester=f"U0DEV{i:03d}", role="edit", cluster="a", namespace="team-a",
                    duration=None, reason=f"drill {i}"))
                for i in range(GRANTS)
            ]  # fmt: skip
            await asyncio.gather(*(h.workflow.approve(r.id, "U0LEAD") for r in requests))
            final = [
                await h.wait_state(r.id, State.ACTIVE, State.FAILED, timeout=180) for r in requests
            ]
            under_faults = time.monotonic() - started
            faults.off()
            await _drain_cleanups(h.core.scheduler, timeout=PATIENCE)

            objects = await k8s_grants.list_managed(h.core.clusters["a"])
            by_grant: dict[str, list[str]] = {}
            for o in objects:
                by_grant.setdefault(o.grant_id, []).append(o.kind)
            active = {g.id for g in final if g.state == State.ACTIVE}
            failed = {g.id for g in final if g.state == State.FAILED}
            assert set(by_grant) == active, "objects without a live grant, or a grant without"
            for kinds in by_grant.values():
                assert sorted(kinds) == ["RoleBinding", "ServiceAccount"]
            for g in final:
                delivered = h.notifier.delivered_to(g.id)
                assert len(delivered) == (1 if g.id in active else 0)
                if g.id in failed:
                    assert g.failure
            print(f"\n{len(active)} active, {len(failed)} failed-and-rolled-back in "
                  f"{under_faults:.1f}s; injected {dict(proxy.injected)}")  # fmt: skip
            assert sum(proxy.injected.values()) > 20, "the drill injected too few faults"
            assert active, "nothing got through: the retry policy is too weak"
    finally:
        await proxy.stop()


async def _drain_cleanups(scheduler: object, timeout: float) -> None:
    """Wait until no cleanup step is pending: rollbacks deferred by faults have run."""
    from bot.scheduler import Scheduler

    assert isinstance(scheduler, Scheduler)
    deadline = time.monotonic() + timeout
    while True:
        entries = await scheduler._redis.hgetall(scheduler.keys.jobs)  # type: ignore[misc]
        pending = [i for i, payload in entries.items() if '"kind":"cleanup"' in str(payload)]
        if not pending:
            return
        assert time.monotonic() < deadline, f"cleanups still pending: {pending[:5]}"
        await asyncio.sleep(0.2)
