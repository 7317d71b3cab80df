"""Bounded Redis (issue 16, item 7): ended grants are forgotten ``defaults.retention`` after
they ended, never while their objects may be on the cluster; the audit stream is capped by
age as well as length. Real Redis and apiservers; time moves by the controllable clocks
(the workflow's, and the scheduler's wall clock), never by sleeping."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.agenda import StepKind
from bot.lifecycle import State
from bot.models import Grant, Receipt, utcnow
from bot.policy import AccessRequestSpec, parse_policy
from bot.retention import forget, refile_ended
from bot.store import Change
from k8s import grants as k8s_grants
from tests.service.test_cli import accessbot
from tests.support.cluster import TestCluster
from tests.support.harness import POLICY, Harness, wait_for_grant, workflow_harness
from tests.support.patience import PATIENCE

RETENTION = dt.timedelta(days=90)


def spec(role: str = "view", ns: str = "team-a") -> AccessRequestSpec:
    return AccessRequestSpec(requester="U0ALICE", role=role, cluster="a", namespace=ns,
                             duration=dt.timedelta(hours=1), reason="retention")  # fmt: skip


async def names(r: Redis, grant_id: str) -> list[str]:
    """Every key (but the audit stream and idempotency marks) whose content names the id."""
    found = []
    async for key in r.scan_iter(count=500):
        kind = await r.type(key)
        if key == "ab:audit" or key.startswith("ab:idem:"):
            continue
        if kind == "string":
            hit = grant_id in (await r.get(key) or "")
        elif kind == "set":
            hit = await r.sismember(key, grant_id)  # type: ignore[misc]
        elif kind == "zset":
            hit = await r.zscore(key, grant_id) is not None
        elif kind == "hash":
            hit = await r.hexists(key, grant_id)  # type: ignore[misc]
        else:
            hit = False
        if hit:
            found.append(key)
    return sorted(found)


async def objects_of(h: Harness, grant_id: str) -> list[str]:
    listed = await k8s_grants.list_managed(h.core.clusters["a"])
    return [o.ref.kind for o in listed if o.grant_id == grant_id]


def travel(h: Harness, to: dt.datetime) -> None:
    """Move every clock the bot reads (workflow, store, step runner, scheduler) to ``to``."""
    h.workflow.clock = lambda: to
    h.core.scheduler._clock = lambda: to.timestamp()


@pytest.mark.cluster
async def test_ended_grants_are_forgotten_after_retention_never_with_objects_left(
    harness: Harness, redis_url: str, tmp_path: Path
) -> None:
    h, wf, r = harness, harness.workflow, harness.core.redis
    # A: ended, objects gone, receipt verified.
    a = await wf.submit(spec())
    await h.wait_state(a.id, State.ACTIVE)
    await wf.revoke(a.id, "U0ALICE", "done")
    a = await wait_for_grant(h.core, a.id, lambda g: g.objects_gone_at is not None, PATIENCE)
    assert a.receipt is not None
    assert a.receipt.verified
    ended_a = next(s.at for s in a.history if s.to_state == State.REVOKED and s.event is None)
    job = await h.core.scheduler.get(a.id)
    assert job is not None
    assert job.kind == StepKind.FORGET
    assert job.due == pytest.approx((ended_a + RETENTION).timestamp(), abs=0.001)
    before = await names(r, a.id)
    assert before == ["ab:grant:" + a.id, "ab:sched:due", "ab:sched:jobs",
                      "ab:state:revoked", "ab:user:U0ALICE"]  # fmt: skip
    record_bytes = await r.memory_usage(f"ab:grant:{a.id}")
    print(f"\nMEMORY USAGE ab:grant:<ended grant> = {record_bytes} bytes")

    # C: ended with its objects left on the cluster (the cleanup has not verified).
    c = await wf.submit(spec(ns="team-b"))
    await h.wait_state(c.id, State.ACTIVE)
    await h.core.stop()  # nothing runs steps: the objects stay
    failed = Receipt(verified=False, at=utcnow())
    await h.core.store.update(c.id, lambda g: Change(
        g.moved(State.REVOKED, "U0ALICE", utcnow()).model_copy(update={"receipt": failed})
    ))  # fmt: skip
    assert await objects_of(h, c.id)

    # B: a request denied 45 days later.
    later = utcnow() + dt.timedelta(days=45)
    travel(h, later)
    b = await wf.submit(spec("edit"))
    await wf.deny(b.id, "U0LEAD", "no")

    # 91 days on: A is past its retention, B is not, C still has objects.
    far = utcnow() + RETENTION + dt.timedelta(days=1)
    travel(h, far)
    assert not await forget(h.core.store, c.id, far)
    assert await h.core.store.get(c.id) is not None
    assert (await h.core.scheduler.get(c.id)).kind == StepKind.CLEANUP  # type: ignore[union-attr]
    grant_keys = {k async for k in r.scan_iter("ab:grant:*")}
    assert grant_keys == {f"ab:grant:{g}" for g in (a.id, b.id, c.id)}
    h.core.start()
    await _until_gone(h, a.id)
    assert await names(r, a.id) == []
    # C is forgotten only once its cleanup removed the objects and a receipt verified them.
    await _until_gone(h, c.id)
    assert await objects_of(h, c.id) == []
    # (a reconciler pass that saw C's objects before the cleanup may have filed a sweep by
    # label for it, which runs, finds nothing and leaves the index)
    await _until(lambda: _named_nowhere(r, c.id), f"keys still name {c.id}")
    assert {k async for k in r.scan_iter("ab:grant:*")} == {f"ab:grant:{b.id}"}
    kept = await h.core.store.get(b.id)
    assert kept is not None
    assert kept.state == State.DENIED
    assert (await h.core.scheduler.get(b.id)).kind == StepKind.FORGET  # type: ignore[union-attr]
    # Lists do not break on forgotten grants.
    assert [g.id for g in await h.core.store.by_user("U0ALICE")] == [b.id]
    assert await h.core.store.by_state(State.REVOKED) == []
    # Forgetting again (a lost reply, a reclaimed lease) does nothing.
    assert not await forget(h.core.store, a.id, far)

    # The audit CLI still shows the stream's entries, and says the record is gone ...
    (tmp_path / "policy.yaml").write_text(POLICY)
    env = {"REDIS_URL": redis_url, "KUBECONFIG": str(h.kubeconfig)}
    life = await asyncio.to_thread(accessbot, "audit", a.id, env=env, cwd=tmp_path)
    assert life.returncode == 0, life.stderr
    assert "revoked" in life.stdout
    assert "its record is gone: records are kept for 90d after a grant ends" in life.stdout
    # ... and once the stream's age cap trimmed them too (the wall clock 91 days on), that
    # no history is kept, exiting 1 like any unknown id.
    h.core.store.wall = lambda: time.time() + far.timestamp() - utcnow().timestamp()
    await h.core.store.audit_event(refused(b.id))
    gone = await asyncio.to_thread(accessbot, "audit", a.id, env=env, cwd=tmp_path)
    assert gone.returncode == 1
    assert gone.stderr.startswith(f"accessbot: no history kept for {a.id}: ")
    assert "records are kept for 90d after a grant ends (defaults.retention)" in gone.stderr


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def _until_gone(h: Harness, grant_id: str) -> None:
    async def gone() -> bool:
        return await h.core.store.get(grant_id) is None

    await _until(gone, f"{grant_id} was not forgotten")


async def _named_nowhere(r: Redis, grant_id: str) -> bool:
    return await names(r, grant_id) == []


@pytest.mark.cluster
async def test_existing_ended_record_needs_no_migration(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> None:
    # An ended record as an older AccessBot left it: no due-index entry at all.
    ended_at = utcnow() - RETENTION - dt.timedelta(days=3)
    old = Grant.model_validate({
        "id": "oldended1", "requester": "U0CAROL", "handle": "carol", "role": "edit",
        "cluster": "a", "namespace": "team-a", "scope": "namespace", "cluster_role": "edit",
        "duration_s": 3600, "reason": "r", "approvals_required": 1,
        "created_at": ended_at - dt.timedelta(hours=1), "pending_until": ended_at,
    }).moved(State.DENIED, "U0LEAD", ended_at)  # fmt: skip
    r = Redis.from_url(redis_url, decode_responses=True)
    try:
        await r.flushdb()
        await r.set("ab:schema", "2")
        await r.set("ab:grant:oldended1", old.model_dump_json())
        await r.sadd("ab:user:U0CAROL", "oldended1")  # type: ignore[misc]
        await r.sadd("ab:state:denied", "oldended1")  # type: ignore[misc]
    finally:
        await r.aclose()
    async with workflow_harness(redis_url, {"a": cluster, "b": cluster_b}, tmp_path,
                                reconcile_interval=3600.0) as h:  # fmt: skip
        # The reconciler's first pass files the step the agenda computes, and it runs.
        await _until_gone(h, "oldended1")
        assert await names(h.core.redis, "oldended1") == []
        assert await refile_ended(h.core.store, h.core.scheduler) == []


def refused(grant_id: str) -> dict[str, str]:
    return {"event": "refused", "grant_id": grant_id, "from": "", "actor": "U0BOB"}


async def test_audit_stream_is_capped_by_age(redis: Redis) -> None:
    from bot.agenda import plan_for
    from bot.scheduler import Scheduler
    from bot.store import Store

    now_ms = int(time.time() * 1000)
    old_ms = now_ms - int((RETENTION + dt.timedelta(days=1)).total_seconds() * 1000)
    for i in range(300):  # three whole stream nodes (100 entries each) of old entries
        await redis.xadd("ab:audit", {"event": "old"}, id=f"{old_ms + i}-0")
    store = Store(redis, Scheduler(redis), plan=plan_for(parse_policy(POLICY)),
                  audit_max_age=RETENTION)  # fmt: skip
    await store.audit_event(refused("x"))
    left = await redis.xrange("ab:audit")
    assert [f["event"] for _id, f in left] == ["refused"]
    # Entries younger than the cap stay, however many writes follow.
    for _ in range(3):
        await store.audit_event(refused("y"))
    assert await redis.xlen("ab:audit") == 4
