"""What ends a provisioning attempt: permanent failures fail the grant cleanly; a bug does not.

Real Redis and real apiservers. The bug is raised from the saga's own step seam
(``on_provision_step``, the crash drills' hook), standing for any code path that
raises ``ValueError`` by mistake: the requester must never see "grant failed"
with a traceback's text, and the attempt is retried (and logged) instead.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bot.lifecycle import State
from bot.policy import AccessRequestSpec
from k8s import grants as k8s_grants
from k8s import names
from tests.support.cluster import TestCluster
from tests.support.harness import Harness, settled, until_step_done, workflow_harness
from tests.support.patience import PATIENCE

pytestmark = pytest.mark.cluster

BUG = "bug: unexpected binding shape"


def view(ns: str = "team-a") -> AccessRequestSpec:
    return AccessRequestSpec(
        requester="U0ALICE", role="view", cluster="a", namespace=ns, duration=None, reason="debug"
    )


async def objects_of(h: Harness, grant_id: str) -> list[k8s_grants.ManagedObject]:
    return [
        o for o in await k8s_grants.list_managed(h.core.clusters["a"]) if o.grant_id == grant_id
    ]


async def logged_error(caplog: pytest.LogCaptureFixture, text: str) -> logging.LogRecord:
    """The first log record carrying an exception whose text contains ``text``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while True:
        for r in caplog.records:
            if r.exc_info and r.exc_info[1] is not None and text in str(r.exc_info[1]):
                return r
        assert loop.time() < deadline, f"nothing logged the error {text!r}"
        await asyncio.sleep(0.05)


async def test_a_bug_in_the_saga_is_logged_and_retried_never_a_failed_grant(
    redis_url: str,
    cluster: TestCluster,
    cluster_b: TestCluster,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    async with workflow_harness(
        redis_url, {"a": cluster, "b": cluster_b}, tmp_path, start=False
    ) as h:
        raised: list[str] = []

        def buggy(step: str) -> None:
            if step == "binding" and not raised:
                raised.append(step)
                raise ValueError(BUG)

        h.workflow.on_provision_step = buggy
        grant = await h.workflow.submit(view())  # auto-approved: the provision step is due
        h.core.start()

        record = await logged_error(caplog, BUG)
        assert record.levelno >= logging.WARNING
        # The step's retry (the "bug" gone) finishes the saga.
        final = await h.wait_state(grant.id, State.ACTIVE, State.FAILED)
        assert final.state == State.ACTIVE, final.failure
        assert final.failure is None
        assert all(BUG not in step.reason for step in final.history)
        assert State.FAILED not in {step.to_state for step in final.history}
        assert len(h.notifier.delivered_to(grant.id)) == 1
        # Nobody was told anything carrying the bug's text either.
        assert all(BUG not in step.reason for _, after in h.notifier.changes
                   for step in after.history)  # fmt: skip


async def test_a_missing_namespace_fails_the_grant_cleanly(harness: Harness) -> None:
    grant = await harness.workflow.submit(view("team-gone"))  # allowed by policy, absent
    failed = await harness.wait_state(grant.id, State.FAILED, State.ACTIVE)
    assert failed.state == State.FAILED
    assert failed.failure is not None
    assert "team-gone" in failed.failure
    assert "does not exist" in failed.failure
    await until_step_done(harness.core, grant.id, "provision")
    await settled(harness.core)
    assert harness.notifier.delivered_to(grant.id) == []
    assert await objects_of(harness, grant.id) == []


async def test_an_unmanaged_object_in_the_way_fails_the_grant_and_is_left_alone(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> None:
    async with workflow_harness(
        redis_url, {"a": cluster, "b": cluster_b}, tmp_path, start=False
    ) as h:
        grant = await h.workflow.submit(view())
        squatter = names.service_account_name(grant.handle, grant.id)
        await asyncio.to_thread(
            cluster.kubectl, "create", "serviceaccount", squatter, "-n", "accessbot-users"
        )
        try:
            h.core.start()
            failed = await h.wait_state(grant.id, State.FAILED, State.ACTIVE)
            assert failed.state == State.FAILED
            assert failed.failure is not None
            assert "not managed by accessbot" in failed.failure
            await until_step_done(h.core, grant.id, "provision")
            await settled(h.core)
            assert h.notifier.delivered_to(grant.id) == []
            # Someone else's ServiceAccount: never deleted by the cleanup of our failure.
            got = await asyncio.to_thread(
                cluster.kubectl, "get", "serviceaccount", squatter, "-n", "accessbot-users",
                "-o", "name",
            )  # fmt: skip
            assert got.stdout.strip() == f"serviceaccount/{squatter}"
        finally:
            await asyncio.to_thread(
                cluster.kubectl, "delete", "serviceaccount", squatter, "-n", "accessbot-users",
                "--ignore-not-found",
            )  # fmt: skip
