"""Schema 1 -> 2: a Redis written by the job-per-step code (captured in
fixtures/v1_layout.json by capture_v1_layout.py) is migrated on start-up, and
every grant's next step then runs: pending times out, approved provisions,
expiry fires, ended grants are cleaned up, the extension request is decided."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from bot.agenda import StepKind
from bot.leases import Job
from bot.lifecycle import State
from bot.migrations import migrate
from bot.store import SCHEMA_VERSION
from tests.support.cluster import TestCluster
from tests.support.harness import SCHEDULER_PREFIX, wait_for_grant, workflow_harness
from tests.support.patience import PATIENCE

pytestmark = pytest.mark.cluster

FIXTURE = Path(__file__).parent / "fixtures" / "v1_layout.json"


async def restore(redis_url: str) -> dict[str, Any]:
    """Write the captured schema-1 keys, exactly as they were."""
    doc: dict[str, Any] = json.loads(FIXTURE.read_text())
    r = aioredis.from_url(redis_url, decode_responses=True)
    for key, item in doc["keys"].items():
        kind, value = item["type"], item["value"]
        if kind == "string":
            await r.set(key, value)
        elif kind == "set":
            await r.sadd(key, *value)  # type: ignore[misc]
        elif kind == "zset":
            await r.zadd(key, dict(value))
        elif kind == "hash":
            await r.hset(key, mapping=value)  # type: ignore[misc]
        elif kind == "stream":
            for fields in value:
                await r.xadd(key, fields)
    await r.aclose()
    return doc


async def test_v1_layout_is_migrated_and_every_next_step_runs(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> None:
    doc = await restore(redis_url)
    assert doc["schema"] == 1
    # Schema 1's reconciler filed a cleanup job for objects of a grant Redis had lost
    # (the capture made none: added here, as that reconciler wrote it).
    r = aioredis.from_url(redis_url, decode_responses=True)
    orphan = Job("cleanup:orphan0001", "cleanup", 4070908800.0, {"cluster": "a", "by": "label"})
    await r.hset(f"{SCHEDULER_PREFIX}:jobs", orphan.id, orphan.to_payload())  # type: ignore[misc]
    await r.zadd(f"{SCHEDULER_PREFIX}:due", {orphan.id: 4070908800000})
    await r.aclose()
    assert any(k.startswith("expire:") for k in doc["keys"][f"{SCHEDULER_PREFIX}:jobs"]["value"])
    clusters = {"a": cluster, "b": cluster_b}
    async with workflow_harness(redis_url, clusters, tmp_path, start=False) as h:
        r = h.core.redis
        assert await r.get("ab:schema") == str(SCHEMA_VERSION)
        due: dict[str, float] = dict(await r.zrange(f"{SCHEDULER_PREFIX}:due", 0, -1,
                                                    withscores=True))  # fmt: skip
        # One entry per grant with something left to do, keyed by the grant id; no job ids.
        assert set(due) == {"pendingold", "pendingnew", "approved01", "activeold", "activefar",
                            "revoked01", "extend0001", "orphan0001",
                            "denied0001", "expired001"}  # fmt: skip
        # The lost grant's cleanup is a sweep by label at the same time (its tombstone).
        sweep = await h.core.scheduler.get("orphan0001")
        assert sweep == Job("orphan0001", "sweep", 4070908800.0, {"cluster": "a"})
        del due["orphan0001"]
        kinds = {gid: (await h.core.scheduler.get(gid)).kind for gid in due}  # type: ignore[union-attr]
        assert kinds == {
            "pendingold": StepKind.TIMEOUT, "pendingnew": StepKind.REMIND_APPROVERS,
            "approved01": StepKind.PROVISION, "activeold": StepKind.EXPIRE,
            "activefar": StepKind.REMIND, "revoked01": StepKind.CLEANUP,
            "extend0001": StepKind.EXTEND,
            "denied0001": StepKind.FORGET, "expired001": StepKind.FORGET,
        }  # fmt: skip
        jobs = await r.hkeys(f"{SCHEDULER_PREFIX}:jobs")  # type: ignore[misc]
        assert sorted(jobs) == sorted([*due, "orphan0001"])
        # A step that had failed before keeps its count of attempts.
        assert (await h.core.scheduler.get("approved01")).attempts == 1  # type: ignore[union-attr]
        # The reminder was still owed (its job existed): not marked sent.
        far = await h.core.store.get("activefar")
        assert far is not None
        assert far.reminded_for is None
        # Migrating again changes nothing.
        await migrate(h.core.store)
        again = dict(await r.zrange(f"{SCHEDULER_PREFIX}:due", 0, -1, withscores=True))
        assert again == {**due, "orphan0001": 4070908800000}

        h.core.start()
        timed_out = await h.wait_state("pendingold", State.TIMED_OUT)
        assert timed_out.history[-1].reason == "nobody decided in time"
        active = await h.wait_state("approved01", State.ACTIVE, State.FAILED)
        assert active.state == State.ACTIVE, active.failure
        assert len(h.notifier.delivered_to("approved01")) == 1
        assert (await h.wait_state("activeold", State.EXPIRED)).state == State.EXPIRED
        await wait_for_grant(h.core, "revoked01", lambda g: g.objects_gone_at is not None,
                             PATIENCE)  # fmt: skip
        await h.wait_state("extend0001", State.APPLIED, State.FAILED)
        pending = await h.core.store.get("pendingnew")
        assert pending is not None
        assert pending.state == State.PENDING
        assert await h.core.scheduler.get("pendingnew") is not None
        # Its reminder is years away: not sent. (Without objects on the cluster the
        # reconciler revokes it as vanished; that is the reconciler's business.)
        assert not [g for g in h.notifier.reminders if g.id == "activefar"]
        # The grant provisioned now has its own next step: its reminder.
        entry = await h.core.scheduler.get("approved01")
        assert entry is not None
        assert entry.kind == StepKind.REMIND
