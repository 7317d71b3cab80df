"""Extensions: audited, approved by someone else, applied once, and written onto the objects.

Real Redis and apiservers; the reconciler runs with a controllable clock so the
"past the old expiry" moments need no waiting.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bot.errors import NotAllowed
from bot.lifecycle import State
from bot.models import Grant
from bot.policy import AccessRequestSpec
from bot.workflow import Outcome
from k8s import grants as k8s_grants
from tests.support.cluster import TestCluster
from tests.support.harness import Harness, pending_jobs, settled

pytestmark = pytest.mark.cluster


def spec(role: str, duration: dt.timedelta | None = None) -> AccessRequestSpec:
    return AccessRequestSpec(
        requester="U0ALICE", role=role, cluster="a", namespace="team-a", duration=duration,
        reason="migration",
    )  # fmt: skip


async def objects_of(h: Harness, grant_id: str) -> list[k8s_grants.ManagedObject]:
    found = await k8s_grants.list_managed(h.core.clusters["a"])
    return [o for o in found if o.grant_id == grant_id]


def latest_kubeconfig(h: Harness, grant_id: str, tmp_path: Path) -> Path:
    delivery = h.notifier.delivered_to(grant_id)[-1]
    path = tmp_path / f"{grant_id}-latest.kubeconfig"
    path.write_bytes(delivery.content)
    return path


async def can_read(cluster: TestCluster, kubeconfig: Path) -> bool:
    r = await asyncio.to_thread(
        cluster.kubectl, "get", "pods", "-n", "team-a", kubeconfig=kubeconfig, check=False
    )
    return r.returncode == 0


async def extended_entries(h: Harness, grant_id: str) -> list[dict[str, str]]:
    return [
        e
        for e in await h.core.store.audit_tail(500)
        if e["grant_id"] == grant_id and e["event"] == "extended"
    ]


async def active_edit(h: Harness) -> Grant:
    grant = await h.workflow.submit(spec("edit", dt.timedelta(hours=1)))
    await h.workflow.approve(grant.id, "U0LEAD")
    return await h.wait_state(grant.id, State.ACTIVE)


async def approved_extension(h: Harness, grant_id: str, by: dt.timedelta) -> Grant:
    """An admin asks to extend, someone else approves; the grant as extended."""
    request = await h.workflow.extend(grant_id, "U0ADMIN", by)
    assert request.state == State.PENDING
    assert (await h.workflow.approve(request.id, "U0PL1")).outcome == Outcome.APPROVED
    await h.wait_state(request.id, State.APPLIED)
    extended: Grant = await h.workflow.get(grant_id)
    return extended


async def test_direct_extensions_are_audited_and_told(harness: Harness) -> None:
    grant = await harness.workflow.submit(spec("view", dt.timedelta(hours=1)))
    active = await harness.wait_state(grant.id, State.ACTIVE)
    assert active.expires_at is not None
    for _ in range(3):
        await harness.workflow.extend(grant.id, "U0ALICE", dt.timedelta(hours=2))
    entries = await extended_entries(harness, grant.id)
    assert len(entries) == 3
    expiries = [active.expires_at + dt.timedelta(hours=2 * n) for n in (1, 2, 3)]
    for entry, expiry in zip(entries, expiries, strict=True):
        assert entry["actor"] == "U0ALICE"
        assert "by 2h" in entry["reason"]
        assert k8s_grants.rfc3339(expiry) in entry["reason"]
        assert "approved by policy" in entry["reason"]
    # Each extension reached the change hook as a new step (the audit channel's source).
    steps = [a.history[-1] for b, a in harness.notifier.changes
             if a.id == grant.id and len(a.history) > len(b.history)]  # fmt: skip
    assert [s.event for s in steps].count("extended") == 3


async def test_admin_extension_is_the_admins_request_and_others_approve_it(
    harness: Harness, cluster: TestCluster, tmp_path: Path
) -> None:
    wf = harness.workflow
    harness.directory.groups["platform-leads"].add("U0ALICE")  # would qualify otherwise
    grant = await active_edit(harness)
    assert grant.expires_at is not None
    request = await wf.extend(grant.id, "U0ADMIN", dt.timedelta(minutes=30))
    assert (request.kind, request.requester, request.state) == ("extend", "U0ADMIN", "pending")
    assert request.objects is None
    assert request.delivered_file is None
    with pytest.raises(NotAllowed, match="own request"):
        await wf.approve(request.id, "U0ADMIN")
    with pytest.raises(NotAllowed, match="extension of your own grant"):
        await wf.approve(request.id, "U0ALICE")
    assert request.id not in [g.id for g in await wf.awaiting("U0ALICE")]
    assert (await wf.approve(request.id, "U0PL1")).outcome == Outcome.APPROVED

    applied = await harness.wait_state(request.id, State.APPLIED)
    assert applied.ended
    extended = await wf.get(grant.id)
    assert extended.expires_at == grant.expires_at + dt.timedelta(minutes=30)
    (entry,) = await extended_entries(harness, grant.id)
    assert entry["actor"] == "U0ADMIN"
    assert "by 30m" in entry["reason"]
    assert "approved by U0PL1" in entry["reason"]
    assert k8s_grants.rfc3339(extended.expires_at) in entry["reason"]  # type: ignore[arg-type]

    # Revoking the applied request changes nothing, least of all the grant.
    after = await wf.revoke(request.id, "U0ADMIN")
    assert after.state == State.APPLIED
    assert (await wf.get(grant.id)).state == State.ACTIVE
    assert len(await objects_of(harness, grant.id)) == 2
    assert await can_read(cluster, latest_kubeconfig(harness, grant.id, tmp_path))


async def test_revoking_a_pending_extension_request_leaves_the_grant(
    harness: Harness, cluster: TestCluster, tmp_path: Path
) -> None:
    grant = await active_edit(harness)
    request = await harness.workflow.extend(grant.id, "U0ALICE", dt.timedelta(minutes=30))
    assert (await harness.workflow.revoke(request.id, "U0ALICE")).state == State.CANCELLED
    # No job due, running or retrying: a cleanup of the parent set off by the revoke
    # would have run by now; and no job waits to touch the parent later but its own
    # expiry and reminder.
    await settled(harness.core)
    later = {j.kind for i, j in (await pending_jobs(harness.core)).items() if i == grant.id}
    assert later <= {"expire", "remind"}, later
    current = await harness.workflow.get(grant.id)
    assert (current.state, current.expires_at) == (State.ACTIVE, grant.expires_at)
    assert len(await objects_of(harness, grant.id)) == 2
    assert await can_read(cluster, latest_kubeconfig(harness, grant.id, tmp_path))


@pytest.mark.parametrize("how", ["direct", "approved"])
async def test_extension_survives_old_expiry_reconcile_and_redis_wipe(
    harness: Harness, cluster: TestCluster, tmp_path: Path, redis_url: str, how: str
) -> None:
    wf = harness.workflow
    if how == "direct":  # view: the policy extends it at once
        grant = await wf.submit(spec("view", dt.timedelta(minutes=30)))
        active = await harness.wait_state(grant.id, State.ACTIVE)
        assert active.expires_at is not None
        extended = await wf.extend(grant.id, "U0ALICE", dt.timedelta(minutes=30))
    else:  # edit: an admin asks, someone else approves, the request is applied
        active = grant = await active_edit(harness)
        assert active.expires_at is not None
        extended = await approved_extension(harness, grant.id, dt.timedelta(minutes=30))
    new_expiry = active.expires_at + dt.timedelta(minutes=30)
    assert extended.expires_at == new_expiry
    # The objects carry the new expiry as soon as the extension is done, and the
    # grant's approvers as the record holds them.
    objs = await objects_of(harness, grant.id)
    assert len(objs) == 2
    assert {o.expires_at for o in objs} == {new_expiry}
    assert {o.approved_by for o in objs} == {extended.approvals}
    kubeconfig = latest_kubeconfig(harness, grant.id, tmp_path)

    past_old = active.expires_at + dt.timedelta(minutes=1)
    reconciler = harness.core.reconciler
    reconciler.clock = lambda: past_old
    report = await reconciler.reconcile()
    assert grant.id not in report.revoked
    assert len(await objects_of(harness, grant.id)) == 2
    assert await can_read(cluster, kubeconfig)

    r = aioredis.from_url(redis_url)
    await r.flushall()
    await r.aclose()
    report = await reconciler.reconcile()
    assert grant.id in report.deferred
    job = await harness.core.scheduler.get(grant.id)  # the sweep: the record's tombstone
    assert job is not None
    assert job.due == pytest.approx(new_expiry.timestamp())
    assert len(await objects_of(harness, grant.id)) == 2
    assert await can_read(cluster, kubeconfig)

    reconciler.clock = lambda: new_expiry + dt.timedelta(seconds=1)
    assert grant.id in (await reconciler.reconcile()).revoked


async def test_reconciler_writes_the_records_facts_onto_stale_objects(harness: Harness) -> None:
    active = grant = await active_edit(harness)  # approved by U0LEAD: approvers on the objects
    assert active.expires_at is not None
    assert active.approvals == ("U0LEAD",)
    extended = await approved_extension(harness, grant.id, dt.timedelta(minutes=30))
    assert extended.expires_at == active.expires_at + dt.timedelta(minutes=30)
    # As if the process died between recording the extension and patching the
    # objects, and someone had also edited the approvers on them.
    stale = k8s_grants.grant_annotations("U0ALICE", "edit", active.expires_at, ("U0MALLORY",))
    await k8s_grants.annotate(harness.core.clusters["a"], grant.id, stale)

    harness.core.reconciler.clock = lambda: active.expires_at + dt.timedelta(minutes=1)  # type: ignore[operator]
    report = await harness.core.reconciler.reconcile()
    assert report.repaired == [grant.id]
    assert report.revoked == []
    objs = await objects_of(harness, grant.id)
    assert len(objs) == 2
    assert {o.expires_at for o in objs} == {extended.expires_at}
    assert {o.approved_by for o in objs} == {("U0LEAD",)}

    # The approvers alone disagree: repaired too.
    assert extended.expires_at is not None
    forged = k8s_grants.grant_annotations("U0ALICE", "edit", extended.expires_at, ("U0MALLORY",))
    await k8s_grants.annotate(harness.core.clusters["a"], grant.id, forged)
    assert (await harness.core.reconciler.reconcile()).repaired == [grant.id]
    assert {o.approved_by for o in await objects_of(harness, grant.id)} == {("U0LEAD",)}


async def test_active_grant_whose_service_account_was_deleted_is_not_shown_active(
    harness: Harness, cluster: TestCluster
) -> None:
    grant = await harness.workflow.submit(spec("view"))
    await harness.wait_state(grant.id, State.ACTIVE)
    (sa,) = [o for o in await objects_of(harness, grant.id) if o.kind == "ServiceAccount"]
    # Someone removes it by hand: the record would go on saying "active".
    await asyncio.to_thread(cluster.kubectl, "delete", "serviceaccount", "-n", str(sa.namespace),
                            sa.name)  # fmt: skip
    report = await harness.core.reconciler.reconcile()
    assert report.vanished == [grant.id]
    revoked = await harness.wait_state(grant.id, State.REVOKED)
    assert "deleted outside AccessBot" in revoked.history[-1].reason
    # The owner is told (the notifier's change hook is what DMs them).
    told = [a for b, a in harness.notifier.changes if a.id == grant.id and b.state != a.state]
    assert told[-1].state == State.REVOKED
    deadline = asyncio.get_running_loop().time() + 30
    while await objects_of(harness, grant.id):  # the orphaned binding goes too
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.2)
    assert (await harness.core.reconciler.reconcile()).vanished == []


async def test_max_extensions_holds_when_two_extension_requests_were_asked_at_once(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> None:
    from tests.support.harness import POLICY, workflow_harness

    limited = POLICY.replace(
        'namespaces: ["team-*"],\n', 'namespaces: ["team-*"], max_extensions: 1,\n', 1
    )
    assert "max_extensions: 1" in limited
    async with workflow_harness(redis_url, {"a": cluster, "b": cluster_b}, tmp_path,
                                policy_text=limited) as h:  # fmt: skip
        grant = await active_edit(h)
        assert grant.expires_at is not None
        first = await h.workflow.extend(grant.id, "U0ALICE", dt.timedelta(minutes=30))
        second = await h.workflow.extend(grant.id, "U0ALICE", dt.timedelta(minutes=20))
        await h.workflow.approve(second.id, "U0LEAD")
        await h.wait_state(second.id, State.APPLIED)
        await h.workflow.approve(first.id, "U0LEAD")
        failed = await h.wait_state(first.id, State.FAILED)
        assert "the most role edit allows" in (failed.failure or "")
        current = await h.workflow.get(grant.id)
        assert current.expires_at == grant.expires_at + dt.timedelta(minutes=20)
        assert len(current.extensions) == 1
