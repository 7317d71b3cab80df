"""The barrier tests put before "nothing bad happened" is not vacuous: it holds
until the scheduler has done what was set in motion."""

from __future__ import annotations

import pytest

from bot.lifecycle import State
from bot.policy import AccessRequestSpec
from tests.support.harness import Harness, pending_jobs, settled

pytestmark = pytest.mark.cluster


async def test_settled_waits_for_the_provisioning_job(harness: Harness) -> None:
    spec = AccessRequestSpec(
        requester="U0ALICE", role="view", cluster="a", namespace="team-a", duration=None,
        reason="on call",
    )  # fmt: skip
    grant = await harness.workflow.submit(spec)
    assert grant.state != State.ACTIVE  # provisioning is the scheduler's, after submit
    await settled(harness.core)
    # Were settled() blind to due or running jobs it would return before provisioning.
    assert (await harness.workflow.get(grant.id)).state == State.ACTIVE
    assert len(harness.notifier.delivered_to(grant.id)) == 1
    entry = (await pending_jobs(harness.core)).get(grant.id)
    assert entry is None or entry.kind != "provision"
