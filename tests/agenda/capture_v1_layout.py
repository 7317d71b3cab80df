"""Capture the schema-1 Redis layout (grant records + job-id scheduler) as a JSON fixture.

Run once with the code *before* the agenda (commit 489ca9a) to write
``tests/agenda/fixtures/v1_layout.json``; kept for the record of how the fixture
was made. Every grant is written through the schema-1 code path: the store's
``Change(schedule=..., cancel=...)`` with the workflow's own job builders.

    PYTHONPATH=$PWD python -m tests.agenda.capture_v1_layout
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

OUT = Path(__file__).parent / "fixtures" / "v1_layout.json"


async def dump(r: aioredis.Redis) -> dict[str, Any]:
    """Every key as {"type": ..., "value": ...} (plain JSON, no DUMP blobs)."""
    out: dict[str, Any] = {}
    for key in sorted(await r.keys("*")):
        kind = await r.type(key)
        if kind == "string":
            value: Any = await r.get(key)
        elif kind == "set":
            value = sorted(await r.smembers(key))  # type: ignore[misc]
        elif kind == "zset":
            value = [[m, s] for m, s in await r.zrange(key, 0, -1, withscores=True)]
        elif kind == "hash":
            value = await r.hgetall(key)  # type: ignore[misc]
        elif kind == "stream":
            value = [fields for _id, fields in await r.xrange(key)]
        else:
            raise ValueError(f"unexpected key type {kind} for {key}")
        out[key] = {"type": kind, "value": value}
    return out


async def capture(url: str) -> dict[str, Any]:
    from bot.lifecycle import State
    from bot.models import Grant, MessageRef
    from bot.policy import parse_policy
    from bot.scheduler import Scheduler
    from bot.store import Change, Store
    from bot.workflow import (
        SYSTEM,
        Workflow,
        _job,
        card_job,
        expire_job,
        provision_job,
        remind_job,
        timeout_job,
    )
    from tests.support.harness import POLICY

    r = aioredis.from_url(url, decode_responses=True)
    scheduler = Scheduler(r)
    store = Store(r, scheduler)
    await store.migrate()
    policy = parse_policy(POLICY)
    # Only the pure helpers are used (job lists); no cluster, no Slack.
    wf = Workflow(policy, store, scheduler, None, None, None)  # type: ignore[arg-type]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    wf.clock = lambda: now
    past = now - dt.timedelta(days=2)
    far = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)

    def grant(gid: str, role: str = "view", **more: Any) -> Grant:
        base: dict[str, Any] = {
            "id": gid, "requester": "U0ALICE", "handle": "alice", "role": role, "cluster": "a",
            "namespace": "team-a", "scope": "namespace", "cluster_role": role, "duration_s": 3600,
            "reason": "fixture", "approvals_required": 0 if role == "view" else 1,
            "created_at": past, "pending_until": past + dt.timedelta(hours=24),
        }  # fmt: skip
        base.update(more)
        return Grant(**base)

    async def step(gid: str, change: Change) -> None:
        await store.update(gid, lambda _g: change)

    # 1. pending, card never posted, timed out long ago: card + timeout jobs.
    p1 = grant("pendingold", role="edit")
    await store.create(p1, [_job(timeout_job(p1.id), p1.pending_until),
                            _job(card_job(p1.id), past + wf.card_retry)])  # fmt: skip
    # 2. pending with its card, waiting until far in the future: timeout job only.
    p2 = grant("pendingnew", role="edit", pending_until=far)
    await store.create(p2, [_job(timeout_job(p2.id), p2.pending_until),
                            _job(card_job(p2.id), past + wf.card_retry)])  # fmt: skip
    card = MessageRef(channel="C0APPROVALS", ts="1.000100")
    await step(p2.id, Change(p2.model_copy(update={"card": card}), cancel=[card_job(p2.id)]))
    # 3. approved, not yet provisioned: provision job.
    a1 = grant("approved01").moved(State.APPROVED, SYSTEM, past, "auto-approved by policy")
    await store.create(a1, [_job(provision_job(a1.id), past)])
    # 4. active, expiry already passed when the test runs: expire job (no reminder).
    live = grant("activeold").moved(State.APPROVED, SYSTEM, past)
    live = live.moved(State.PROVISIONING, SYSTEM, past)
    await store.create(live)
    soon = now + dt.timedelta(minutes=1)
    act = live.moved(State.ACTIVE, SYSTEM, now).model_copy(
        update={"expires_at": soon, "delivered_file": "F00000001", "objects": ()}
    )
    await step(act.id, Change(act, schedule=wf._expiry_jobs(act)))
    # 5. active far in the future: expire + remind jobs.
    live2 = grant("activefar").moved(State.APPROVED, SYSTEM, past)
    live2 = live2.moved(State.PROVISIONING, SYSTEM, past)
    await store.create(live2)
    act2 = live2.moved(State.ACTIVE, SYSTEM, now).model_copy(
        update={"expires_at": far, "delivered_file": "F00000002", "objects": ()}
    )
    await step(act2.id, Change(act2, schedule=wf._expiry_jobs(act2)))
    # 6. revoked, cleanup unconfirmed: the cleanup safety net job.
    live3 = grant("revoked01").moved(State.APPROVED, SYSTEM, past)
    live3 = live3.moved(State.PROVISIONING, SYSTEM, past)
    await store.create(live3)
    rev = live3.moved(State.REVOKED, "U0ALICE", now, "done")
    await step(rev.id, Change(rev, schedule=[wf._cleanup_safety_net(rev, now)],
                              cancel=[expire_job(rev.id), remind_job(rev.id),
                                      provision_job(rev.id)]))  # fmt: skip
    # 7. denied: no job at all.
    d1 = grant("denied0001", role="edit")
    await store.create(d1, [_job(timeout_job(d1.id), d1.pending_until)])
    den = d1.moved(State.DENIED, "U0LEAD", past).model_copy(update={"denied_by": "U0LEAD"})
    await step(d1.id, Change(den, cancel=[timeout_job(d1.id)]))
    # 8. expired and verified gone: no job.
    e1 = grant("expired001").moved(State.APPROVED, SYSTEM, past)
    e1 = e1.moved(State.PROVISIONING, SYSTEM, past).moved(State.ACTIVE, SYSTEM, past)
    e1 = e1.moved(State.EXPIRED, SYSTEM, past).model_copy(
        update={"expires_at": past, "objects_gone_at": past}
    )
    await store.create(e1)
    # 9. an approved extension request of grant 5: provision job (applies it).
    x1 = grant("extend0001", role="edit", kind="extend", extends=act2.id, requester="U0BOB",
               handle="bob").moved(State.APPROVED, "U0LEAD", now)  # fmt: skip
    await store.create(x1, [_job(provision_job(x1.id), now)])
    # A job that failed once and waits for its retry keeps its attempts.
    job = await scheduler.get(provision_job(a1.id))
    assert job is not None
    await scheduler.schedule(type(job)(job.id, job.kind, job.due, job.data, 1))
    # Something unrelated to grants under the prefix: idempotency and offboarding.
    await store.first_time("slack:event:Ev01", ttl_seconds=86400 * 365 * 50)
    doc = await dump(r)
    await r.aclose()
    return {"captured_at": now.isoformat(), "schema": 1, "keys": doc}


async def main() -> None:
    from bot.redis_server import RedisProcess

    with tempfile.TemporaryDirectory() as tmp:
        proc = RedisProcess(Path(tmp), appendonly=False).start(10.0)
        try:
            doc = await capture(proc.url)
        finally:
            proc.stop()
    OUT.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT} ({len(doc['keys'])} keys)")


if __name__ == "__main__":
    asyncio.run(main())
