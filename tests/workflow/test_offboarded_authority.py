"""An offboarded person has no authority, and nothing becomes active for them.

Real Redis, real apiservers. Races are made deterministic with our own ports
(a Directory that holds a lookup open) and the provisioning step seam, never by
patching the workflow's collaborators.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis as sync_redis

from bot.errors import NotAllowed
from bot.lifecycle import State
from bot.models import Offboarding
from bot.policy import AccessRequestSpec
from bot.workflow import Outcome
from k8s import grants as k8s_grants
from tests.support.cluster import TestCluster
from tests.support.doubles import StaticDirectory
from tests.support.harness import (
    Harness,
    default_directory,
    settled,
    until_step_done,
    wait_for_grant,
    workflow_harness,
)

pytestmark = pytest.mark.cluster


def spec(role: str = "edit", ns: str | None = "team-a", user: str = "U0ALICE") -> AccessRequestSpec:
    return AccessRequestSpec(
        requester=user, role=role, cluster="a", namespace=ns, duration=None, reason="on call"
    )


async def objects_of(h: Harness, grant_id: str) -> list[k8s_grants.ManagedObject]:
    return [
        o for o in await k8s_grants.list_managed(h.core.clusters["a"]) if o.grant_id == grant_id
    ]


async def refusals(h: Harness, actor: str) -> list[dict[str, str]]:
    return [
        e
        for e in await h.core.store.audit_tail(500)
        if e["event"] == "refused" and e["actor"] == actor
    ]


async def test_offboarded_approver_is_refused_and_their_approvals_stop_counting(
    harness: Harness,
) -> None:
    wf = harness.workflow
    two = await wf.submit(spec("cluster-admin", None, user="U0BOB"))
    assert (await wf.approve(two.id, "U0LEAD")).outcome == Outcome.RECORDED
    one = await wf.submit(spec())

    await wf.offboard("U0LEAD", "hr-webhook", "left")

    with pytest.raises(NotAllowed, match="offboarded"):
        await wf.approve(one.id, "U0LEAD")
    with pytest.raises(NotAllowed, match="offboarded"):
        await wf.deny(one.id, "U0LEAD")
    assert (await wf.get(one.id)).state == State.PENDING
    # U0LEAD's earlier approval no longer counts: a second approver does not
    # complete a two-approval request on its strength.
    assert (await wf.approve(two.id, "U0SRE1")).outcome == Outcome.RECORDED
    current = await wf.get(two.id)
    assert current.state == State.PENDING
    assert current.approvals == ("U0SRE1",)
    assert len(await refusals(harness, "U0LEAD")) == 2


async def test_offboarded_admin_can_do_nothing(harness: Harness) -> None:
    wf = harness.workflow
    bobs = await wf.submit(spec("view", user="U0BOB"))
    active = await harness.wait_state(bobs.id, State.ACTIVE)
    pending = await wf.submit(spec(user="U0BOB"))
    await wf.offboard("U0ADMIN", "hr-webhook", "left")

    attempts = [
        wf.list_grants("U0ADMIN", everyone=True),
        wf.list_grants("U0ADMIN"),
        wf.awaiting("U0ADMIN"),
        wf.revoke(bobs.id, "U0ADMIN"),
        wf.extend(bobs.id, "U0ADMIN", dt.timedelta(minutes=30)),
        wf.cancel(pending.id, "U0ADMIN"),
        wf.reenable("U0ADMIN", "U0ADMIN"),
        wf.reenable("U0BOB", "U0ADMIN"),
        wf.submit(spec("view", user="U0ADMIN")),
    ]
    for attempt in attempts:
        with pytest.raises(NotAllowed, match="you were offboarded"):
            await attempt
    assert not await wf.is_admin("U0ADMIN")
    assert (await wf.get(bobs.id)).state == State.ACTIVE
    assert (await wf.get(bobs.id)).expires_at == active.expires_at
    assert (await wf.get(pending.id)).state == State.PENDING
    assert len(await objects_of(harness, bobs.id)) == 2
    assert len(await refusals(harness, "U0ADMIN")) == len(attempts)


async def test_approval_by_someone_offboarded_before_provisioning_never_becomes_active(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> None:
    async with workflow_harness(
        redis_url, {"a": cluster, "b": cluster_b}, tmp_path, start=False
    ) as h:
        grant = await h.workflow.submit(spec())
        assert (await h.workflow.approve(grant.id, "U0LEAD")).outcome == Outcome.APPROVED
        # The approver leaves before the provisioning job ran.
        await h.workflow.offboard("U0LEAD", "hr-webhook")
        h.core.start()
        final = await h.wait_state(grant.id, State.FAILED)
        assert "offboarded" in (final.failure or "")
        assert h.notifier.delivered_to(grant.id) == []
        assert await objects_of(h, grant.id) == []


@dataclass
class SlowDirectory(StaticDirectory):
    """Holds handle lookups open until released: Slack's users.info round trip, stretched."""

    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle_of(self, user_id: str) -> str:
        self.entered.set()
        await self.release.wait()
        return await super().handle_of(user_id)


@pytest.fixture
async def slow(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> AsyncIterator[tuple[Harness, SlowDirectory]]:
    base = default_directory()
    directory = SlowDirectory(groups=base.groups, emails=base.emails, handles=base.handles)
    async with workflow_harness(
        redis_url, {"a": cluster, "b": cluster_b}, tmp_path, directory=directory
    ) as h:
        yield h, directory


async def test_request_in_flight_when_offboarded_is_never_created(
    slow: tuple[Harness, SlowDirectory],
) -> None:
    h, directory = slow
    submitting = asyncio.create_task(h.workflow.submit(spec("view")))
    await asyncio.wait_for(directory.entered.wait(), 10)
    # The webhook lands while the request waits on Slack.
    result = await h.workflow.offboard("U0ALICE", "hr-webhook", "left")
    assert result.done
    directory.release.set()
    with pytest.raises(NotAllowed, match="offboarded"):
        await submitting
    assert await h.core.store.by_user("U0ALICE") == []
    # No job due, running or retrying: a grant slipping through would have been
    # provisioned (its only way to objects and a kubeconfig) by now.
    await settled(h.core)
    assert h.notifier.deliveries == []
    assert await k8s_grants.list_managed(h.core.clusters["a"]) == []


def _mark_offboarded(redis_url: str, user: str) -> None:
    """What the webhook's first write does, from another process's connection."""
    r = sync_redis.Redis.from_url(redis_url)
    record = Offboarding(user=user, at=dt.datetime.now(dt.UTC), by="hr-webhook")
    r.hsetnx("ab:offboarded", user, record.model_dump_json())
    r.close()


async def test_provisioning_rechecks_before_it_delivers(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> None:
    async with workflow_harness(
        redis_url, {"a": cluster, "b": cluster_b}, tmp_path, start=False
    ) as h:
        grant = await h.workflow.submit(spec("view"))

        def offboard_mid_saga(step: str) -> None:
            # The objects and the token exist; offboarding lands before delivery.
            if step == "token":
                _mark_offboarded(redis_url, "U0ALICE")

        h.workflow.on_provision_step = offboard_mid_saga
        h.core.start()
        final = await h.wait_state(grant.id, State.REVOKED, State.ACTIVE, State.FAILED)
        assert final.state == State.REVOKED
        assert final.history[-1].reason == "the requester was offboarded"
        # The objects this attempt made are taken back, and that is recorded.
        await wait_for_grant(h.core, grant.id, lambda g: g.objects_gone_at is not None, 30)
        assert await objects_of(h, grant.id) == []
        assert h.notifier.delivered_to(grant.id) == []


async def test_provisioning_of_an_approved_grant_checks_offboarding_atomically(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> None:
    async with workflow_harness(
        redis_url, {"a": cluster, "b": cluster_b}, tmp_path, start=False
    ) as h:
        grant = await h.workflow.submit(spec("view"))
        _mark_offboarded(redis_url, "U0ALICE")  # marked; the grants not yet ended
        h.core.start()
        final = await h.wait_state(grant.id, State.REVOKED, State.ACTIVE, State.FAILED)
        assert final.state == State.REVOKED
        # The provisioning job, the only one that delivers, has run to its end (it is
        # gone from the scheduler), and so has any cleanup it left behind.
        await until_step_done(h.core, grant.id, "provision")
        await settled(h.core)
        assert h.notifier.delivered_to(grant.id) == []
        assert await objects_of(h, grant.id) == []
