"""The access workflow end to end on real Redis and real apiservers."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from bot.errors import NotAllowed
from bot.lifecycle import State
from bot.models import Grant
from bot.policy import AccessRequestSpec, RequestRejected
from bot.store import Change
from bot.workflow import Outcome
from k8s import grants as k8s_grants
from tests.support.cluster import TestCluster
from tests.support.doubles import RecordingNotifier
from tests.support.harness import (
    Harness,
    scheduled_steps,
    until_step_done,
    wait_for_grant,
    workflow_harness,
)
from tests.support.patience import PATIENCE

pytestmark = pytest.mark.cluster


def spec(
    role: str = "edit",
    ns: str | None = "team-a",
    *,
    cluster: str = "a",
    user: str = "U0ALICE",
    duration: dt.timedelta | None = None,
) -> AccessRequestSpec:
    return AccessRequestSpec(
        requester=user,
        role=role,
        cluster=cluster,
        namespace=ns,
        duration=duration,
        reason="fixing checkout",
    )


def kubeconfig_of(h: Harness, grant_id: str, tmp_path: Path) -> Path:
    (delivery,) = h.notifier.delivered_to(grant_id)
    path = tmp_path / delivery.filename
    path.write_bytes(delivery.content)
    return path


async def poll_unauthorized(
    cluster: TestCluster, kubeconfig: Path, timeout: float = PATIENCE
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        r = await asyncio.to_thread(
            cluster.kubectl, "get", "pods", "-n", "team-a", kubeconfig=kubeconfig, check=False
        )
        if r.returncode != 0 and "Unauthorized" in r.stderr + r.stdout:
            return
        assert asyncio.get_running_loop().time() < deadline, r.stderr
        await asyncio.sleep(0.5)


async def provision_job_done(h: Harness, grant_id: str) -> None:
    await until_step_done(h.core, grant_id, "provision")


async def test_request_approve_use_expire(
    harness: Harness, cluster: TestCluster, tmp_path: Path
) -> None:
    wf = harness.workflow
    grant = await wf.submit(spec(duration=dt.timedelta(seconds=20)))
    assert grant.state == State.PENDING
    assert [c.id for c in harness.notifier.cards] == [grant.id]

    decision = await wf.approve(grant.id, "U0LEAD")
    assert decision.outcome == Outcome.APPROVED
    active = await harness.wait_state(grant.id, State.ACTIVE)
    assert active.delivered_file is not None

    kubeconfig = kubeconfig_of(harness, grant.id, tmp_path)
    assert kubeconfig.name == "a-edit.kubeconfig"
    ok = cluster.kubectl("get", "pods", "-n", "team-a", kubeconfig=kubeconfig)
    assert ok.returncode == 0
    other = cluster.kubectl("get", "pods", "-n", "team-b", kubeconfig=kubeconfig, check=False)
    assert "Forbidden" in other.stderr

    # Objects carry the contract's labels and annotations.
    objs = [
        o
        for o in await k8s_grants.list_managed(harness.core.clusters["a"])
        if o.grant_id == grant.id
    ]
    assert {o.kind for o in objs} == {"ServiceAccount", "RoleBinding"}
    assert all(o.requester == "U0ALICE" and o.expires_at is not None for o in objs)

    expired = await harness.wait_state(grant.id, State.EXPIRED)
    assert expired.history[-1].actor == "accessbot"
    # The state changes first (with a durable cleanup job), then the objects go.
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while [o for o in await k8s_grants.list_managed(harness.core.clusters["a"])
           if o.grant_id == grant.id]:  # fmt: skip
        assert asyncio.get_running_loop().time() < deadline, "objects outlived the expiry"
        await asyncio.sleep(0.05)
    await poll_unauthorized(cluster, kubeconfig)


async def test_auto_approved_role_goes_straight_to_active(harness: Harness) -> None:
    grant = await harness.workflow.submit(spec("view"))
    assert grant.state == State.APPROVED
    assert harness.notifier.cards == []
    await harness.wait_state(grant.id, State.ACTIVE)
    assert len(harness.notifier.delivered_to(grant.id)) == 1


async def test_fifty_concurrent_approvals_make_one_grant(harness: Harness) -> None:
    approvers = {f"U0APP{i:02d}" for i in range(50)}
    harness.directory.groups["platform-leads"] = approvers
    grant = await harness.workflow.submit(spec())
    decisions = await asyncio.gather(
        *(harness.workflow.approve(grant.id, a) for a in sorted(approvers))
    )
    outcomes = [d.outcome for d in decisions]
    assert outcomes.count(Outcome.APPROVED) == 1
    assert set(outcomes) == {Outcome.APPROVED, Outcome.ALREADY_DECIDED}
    await harness.wait_state(grant.id, State.ACTIVE)
    # A duplicate could only come from a second provision job: none is left to run.
    await provision_job_done(harness, grant.id)
    assert len(harness.notifier.delivered_to(grant.id)) == 1
    audit = await harness.core.store.audit_tail(1000)
    provisioning = [e for e in audit if e["grant_id"] == grant.id and e["event"] == "provisioning"]
    assert len(provisioning) == 1
    sas = [
        o
        for o in await k8s_grants.list_managed(harness.core.clusters["a"])
        if o.grant_id == grant.id and o.kind == "ServiceAccount"
    ]
    assert len(sas) == 1


async def test_replayed_approval_counts_once(harness: Harness) -> None:
    grant = await harness.workflow.submit(spec("cluster-admin", None))
    results = await asyncio.gather(
        *(harness.workflow.approve(grant.id, "U0LEAD") for _ in range(5))
    )
    assert sorted(d.outcome for d in results) == sorted(
        [Outcome.RECORDED] + [Outcome.ALREADY_COUNTED] * 4
    )
    current = await harness.workflow.get(grant.id)
    assert current.state == State.PENDING
    assert current.approvals == ("U0LEAD",)
    assert (await harness.workflow.approve(grant.id, "U0SRE1")).outcome == Outcome.APPROVED


async def test_requester_cannot_approve_own_request(harness: Harness) -> None:
    harness.directory.groups["platform-leads"].add("U0ALICE")
    grant = await harness.workflow.submit(spec())
    with pytest.raises(NotAllowed, match="your own request"):
        await harness.workflow.approve(grant.id, "U0ALICE")
    with pytest.raises(NotAllowed, match="not an approver"):
        await harness.workflow.approve(grant.id, "U0RANDOM")
    assert (await harness.workflow.get(grant.id)).approvals == ()


async def test_deny_ends_request_and_late_approval_changes_nothing(harness: Harness) -> None:
    grant = await harness.workflow.submit(spec())
    denied = await harness.workflow.deny(grant.id, "U0PL1", "not during the freeze")
    assert denied.outcome == Outcome.DENIED
    assert denied.grant.history[-1].reason == "not during the freeze"
    late = await harness.workflow.approve(grant.id, "U0LEAD")
    assert late.outcome == Outcome.ALREADY_DECIDED
    assert late.grant.state == State.DENIED


async def test_rejections_say_what_is_allowed(harness: Harness) -> None:
    with pytest.raises(RequestRejected, match="maximum"):
        await harness.workflow.submit(spec(duration=dt.timedelta(hours=5)))
    with pytest.raises(RequestRejected, match="team-"):
        await harness.workflow.submit(spec(ns="payments"))


async def test_revoke_by_owner_removes_access(
    harness: Harness, cluster: TestCluster, tmp_path: Path
) -> None:
    grant = await harness.workflow.submit(spec("view"))
    await harness.wait_state(grant.id, State.ACTIVE)
    kubeconfig = kubeconfig_of(harness, grant.id, tmp_path)
    with pytest.raises(NotAllowed):
        await harness.workflow.revoke(grant.id, "U0BOB")
    revoked = await harness.workflow.revoke(grant.id, "U0ALICE", "done")
    assert revoked.state == State.REVOKED
    assert not await k8s_grants.list_managed(harness.core.clusters["a"])
    await poll_unauthorized(cluster, kubeconfig)
    # Idempotent: a second revoke changes nothing and does not fail.
    assert (await harness.workflow.revoke(grant.id, "U0ADMIN")).state == State.REVOKED


async def test_offboarding_revokes_on_two_clusters_and_blocks(harness: Harness) -> None:
    wf = harness.workflow
    on_a = await wf.submit(spec("view"))
    on_b = await wf.submit(spec("view", cluster="b", ns="team-b"))
    pending = await wf.submit(spec())
    await harness.wait_state(on_a.id, State.ACTIVE)
    await harness.wait_state(on_b.id, State.ACTIVE)

    user = await wf.resolve_user(email="alice@example.com")
    result = await wf.offboard(user, "hr-webhook", "left the company")
    assert sorted(result.revoked) == sorted([on_a.id, on_b.id])
    assert result.cancelled == [pending.id]
    for name in ("a", "b"):
        assert not await k8s_grants.list_managed(harness.core.clusters[name])
    with pytest.raises(NotAllowed, match="offboarded"):
        await wf.submit(spec("view"))

    assert result.done
    assert set(result.verified) == {"a", "b"}
    # Repeating a finished call is harmless and tells the same story.
    again = await wf.offboard(user, "hr-webhook")
    assert (again.revoked, again.cancelled, again.verified) == (
        result.revoked, result.cancelled, result.verified
    )  # fmt: skip
    assert await wf.reenable(user, "U0ADMIN")
    assert (await wf.submit(spec())).state == State.PENDING


async def test_extension_auto_approved_moves_expiry_and_redelivers(harness: Harness) -> None:
    grant = await harness.workflow.submit(spec("view", duration=dt.timedelta(hours=1)))
    active = await harness.wait_state(grant.id, State.ACTIVE)
    extended = await harness.workflow.extend(grant.id, "U0ALICE", dt.timedelta(hours=2))
    assert extended.expires_at == active.expires_at + dt.timedelta(hours=2)
    steps = await scheduled_steps(harness.core, grant.id)
    assert "expire" in steps
    assert steps["expire"] == pytest.approx(extended.expires_at.timestamp())
    assert len(harness.notifier.delivered_to(grant.id)) == 2
    with pytest.raises(RequestRejected, match="maximum"):
        await harness.workflow.extend(grant.id, "U0ALICE", dt.timedelta(hours=6))


async def test_extension_of_approval_role_needs_an_approver(harness: Harness) -> None:
    wf = harness.workflow
    grant = await wf.submit(spec(duration=dt.timedelta(hours=1)))
    await wf.approve(grant.id, "U0LEAD")
    active = await harness.wait_state(grant.id, State.ACTIVE)
    request = await wf.extend(grant.id, "U0ALICE", dt.timedelta(hours=1))
    assert request.kind == "extend"
    assert request.state == State.PENDING
    assert (await wf.get(grant.id)).expires_at == active.expires_at
    await wf.approve(request.id, "U0PL2")
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while (await wf.get(grant.id)).expires_at == active.expires_at:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    assert (await wf.get(grant.id)).expires_at == active.expires_at + dt.timedelta(hours=1)


async def test_card_lost_to_a_crash_is_posted_later(harness: Harness) -> None:
    harness.notifier.fail_cards = 1
    harness.workflow.card_retry = dt.timedelta(seconds=0.5)
    with pytest.raises(OSError, match="connection reset"):
        await harness.workflow.submit(spec())
    (pending,) = await harness.core.store.by_state(State.PENDING)
    assert pending.card is None
    posted = await wait_for_grant(harness.core, pending.id, lambda g: g.card is not None, PATIENCE)
    assert posted.state == State.PENDING
    assert [c.id for c in harness.notifier.cards] == [pending.id]


async def test_revoke_says_what_it_ended_and_from_where(harness: Harness) -> None:
    active = await harness.workflow.submit(spec("view"))
    await harness.wait_state(active.id, State.ACTIVE)
    first = await harness.workflow.revoke(active.id, "U0ALICE", "done")
    assert (first.was, first.grant.state, first.already_over) == (
        State.ACTIVE, State.REVOKED, False,
    )  # fmt: skip
    again = await harness.workflow.revoke(active.id, "U0ADMIN")
    assert (again.was, again.grant.state, again.already_over) == (
        State.REVOKED, State.REVOKED, True,
    )  # fmt: skip

    pending = await harness.workflow.submit(spec())  # edit: needs an approval
    cancelled = await harness.workflow.revoke(pending.id, "U0ALICE")
    assert (cancelled.was, cancelled.grant.state, cancelled.already_over) == (
        State.PENDING, State.CANCELLED, False,
    )  # fmt: skip


async def test_overlapping_provisioning_attempts_leave_the_active_grant_working(
    harness: Harness, cluster: TestCluster, tmp_path: Path
) -> None:
    """Attempts that overlap the one that activates the grant (a lost lease, a second
    replica) must not take its objects back: the grant stays active and its file works."""
    grant = await harness.workflow.submit(spec("view"))
    attempts = await asyncio.gather(
        *(harness.workflow.provision(grant.id) for _ in range(6)), return_exceptions=True
    )
    for outcome in attempts:
        assert not isinstance(outcome, BaseException) or type(outcome).__name__ == "RetryLater"
    active = await harness.wait_state(grant.id, State.ACTIVE)
    await until_step_done(harness.core, grant.id, "provision")
    assert len(harness.notifier.delivered_to(grant.id)) == 1
    mine = [o for o in await k8s_grants.list_managed(harness.core.clusters["a"])
            if o.grant_id == active.id]  # fmt: skip
    assert {o.kind for o in mine} == {"ServiceAccount", "RoleBinding"}
    r = await asyncio.to_thread(
        cluster.kubectl, "get", "pods", "-n", "team-a",
        kubeconfig=kubeconfig_of(harness, grant.id, tmp_path), check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr


async def test_provisioning_starts_when_the_approval_commits_not_at_the_next_poll(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> None:
    # A worker that would not poll again for an hour: only the wake the store gives its
    # own process on committing a step due now can start the approved grant's provisioning.
    clusters = {"a": cluster, "b": cluster_b}
    hour = {"poll_seconds": 3600.0}
    async with workflow_harness(redis_url, clusters, tmp_path, scheduler_options=hour) as h:
        # Once this one is active the worker has claimed and gone to sleep: nothing it
        # holds is due within the hour.
        first = await h.workflow.submit(spec("view", user="U0SRE1"))
        await h.wait_state(first.id, State.ACTIVE)
        approved = await h.workflow.submit(spec())
        await h.workflow.approve(approved.id, "U0PL1")
        auto = await h.workflow.submit(spec("view", user="U0BOB"))
        for grant_id in (approved.id, auto.id):
            await h.wait_state(grant_id, State.ACTIVE)
            assert len(h.notifier.delivered_to(grant_id)) == 1


class SlackNeverAnswersReminders(RecordingNotifier):
    """A Slack that takes a reminder DM and never answers (throttled without end)."""

    async def remind(self, grant: Grant) -> None:
        self.reminders.append(grant)
        await asyncio.Event().wait()


async def test_an_overdue_expiry_never_waits_on_its_reminder(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> None:
    # After downtime a grant's reminder and expiry are both overdue; the reminder goes
    # first (the expiry is filed once it is recorded). Slack never answering it may
    # cost the reminder, never the revocation.
    clusters = {"a": cluster, "b": cluster_b}
    notifier = SlackNeverAnswersReminders()
    async with workflow_harness(redis_url, clusters, tmp_path, notifier=notifier) as h:
        grant = await h.workflow.submit(spec("view"))
        await h.wait_state(grant.id, State.ACTIVE)
        assert grant.duration_s is not None
        by = dt.timedelta(seconds=grant.duration_s + 60)  # it began a minute over its time

        def earlier(g: Grant) -> Change:
            assert g.expires_at is not None
            history = tuple(s.model_copy(update={"at": s.at - by}) for s in g.history)
            moved = {"expires_at": g.expires_at - by, "created_at": g.created_at - by}
            return Change(g.model_copy(update={"history": history, **moved}))

        await h.core.store.update(grant.id, earlier)
        await h.wait_state(grant.id, State.EXPIRED)
        assert [r.id for r in notifier.reminders] == [grant.id]
        assert [o for o in await k8s_grants.list_managed(h.core.clusters["a"])
                if o.grant_id == grant.id] == []  # fmt: skip


async def test_an_expiry_step_read_before_an_extension_ends_nothing(harness: Harness) -> None:
    # The step runner read the grant when its expiry was due; an extension committed
    # before the step's own transaction: the grant lives on to its new end.
    grant = await harness.workflow.submit(spec("view"))
    await harness.wait_state(grant.id, State.ACTIVE)
    stale = await harness.core.store.get(grant.id)
    assert stale is not None
    await harness.core.workflow.ending.on_expire(stale)  # its end is an hour away
    live = await harness.core.store.get(grant.id)
    assert live is not None
    assert live.state == State.ACTIVE
