"""Redis schema migrations, run on start-up by ``build_core`` (every replica; one wins).

Schema 1 -> 2: one job per step becomes one due-index entry per grant.

Schema 1 kept a job for each thing to do, named by what it did and whom:
``provision:<id>``, ``expire:<id>``, ``remind:<id>``, ``timeout:<id>``, ``cleanup:<id>``,
``card:<id>`` (``:sched:jobs`` payloads, ``:sched:due`` scores). Schema 2 keeps one entry
per grant, id = the grant id, filed from the agenda (:mod:`bot.agenda`). The migration, in
one transaction:

- asks the agenda for every stored grant's next step and files it (a job that had already
  failed some attempts of the same step keeps its count);
- records on each active grant whose reminder is no longer owed (its ``remind`` job ran or
  was never scheduled) that it was sent for its current expiry (``reminded_for``), so no
  reminder goes out twice;
- keeps a ``cleanup`` job whose grant has no record (the reconciler's, for objects of a
  grant Redis lost) as a sweep entry (:data:`bot.steps.SWEEP`) with its due time and cluster;
- deletes every schema-1 job key, lease and claim token;
- stamps ``ab:schema`` 2.

Jobs leased by a schema-1 worker still running are dropped with the rest: stop the old
replicas before starting this version (the Helm chart's rolling update does).
"""

from __future__ import annotations

import logging

from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from bot.agenda import StepKind
from bot.leases import Job, text
from bot.lifecycle import State
from bot.models import Grant
from bot.steps import SWEEP
from bot.store import SCHEMA_VERSION, SchemaMismatch, Store, entry_for

__all__ = ["migrate"]

log = logging.getLogger(__name__)

_V1_KINDS = frozenset({"provision", "expire", "remind", "timeout", "cleanup", "card"})


async def migrate(store: Store) -> None:
    """Bring the store to ``SCHEMA_VERSION``; raises SchemaMismatch for a newer one."""
    key = f"{store.prefix}:schema"
    while True:
        async with store.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key, store.scheduler.keys.jobs)
                raw = await pipe.get(key)
                found = int(raw) if raw else None
                if found is not None and found > SCHEMA_VERSION:
                    raise SchemaMismatch(
                        f"Redis data has schema {found}; "
                        f"this AccessBot understands {SCHEMA_VERSION}"
                    )
                if found == SCHEMA_VERSION:
                    return
                if found is None and not await _has_records(store):
                    pipe.multi()
                    pipe.set(key, SCHEMA_VERSION)
                    await pipe.execute()
                    return
                await _v1_to_v2(store, pipe)
                pipe.set(key, SCHEMA_VERSION)
                await pipe.execute()
                log.info("migrated Redis to schema %d", SCHEMA_VERSION)
                return
            except WatchError:
                continue


async def _has_records(store: Store) -> bool:
    async for _ in store.redis.scan_iter(match=f"{store.prefix}:grant:*", count=100):
        return True
    return bool(await store.redis.hlen(store.scheduler.keys.jobs))  # type: ignore[misc]


async def _v1_to_v2(store: Store, pipe: Pipeline) -> None:
    """Read schema 1 (under WATCH), then queue schema 2's writes (after MULTI)."""
    keys = store.scheduler.keys
    jobs: dict[str, Job] = {}
    for job_id, payload in (await pipe.hgetall(keys.jobs)).items():  # type: ignore[misc]
        kind, _, grant_id = text(job_id).partition(":")
        if kind in _V1_KINDS and grant_id:
            jobs[text(job_id)] = Job.from_payload(text(payload))
    grants: list[Grant] = []
    async for grant_key in store.redis.scan_iter(match=f"{store.prefix}:grant:*", count=500):
        raw = await pipe.get(grant_key)
        if raw:
            grants.append(Grant.model_validate_json(raw))
    assert store.plan is not None, "migrating needs the agenda"
    now = store.clock()
    pipe.multi()
    for job_id in jobs:
        pipe.zrem(keys.due, job_id)
        pipe.hdel(keys.jobs, job_id)
        pipe.zrem(keys.leases, job_id)
        pipe.hdel(keys.owners, job_id)
    known = {g.id for g in grants}
    for grant in grants:
        grant = _v1_record(grant, jobs, store)
        pipe.set(f"{store.prefix}:grant:{grant.id}", grant.model_dump_json())
        step = store.plan(grant, now)
        if step is None:
            continue
        entry = entry_for(grant.id, step)
        old = jobs.get(f"{step.kind.value}:{grant.id}")
        if old is not None and old.attempts:
            entry = Job(entry.id, entry.kind, max(entry.due, old.due), entry.data, old.attempts)
        store.scheduler.add_to(pipe, entry)
    for job_id, job in jobs.items():
        kind, _, grant_id = job_id.partition(":")
        if kind == "cleanup" and grant_id not in known and job.data.get("cluster"):
            sweep = Job(grant_id, SWEEP, job.due, {"cluster": str(job.data["cluster"])})
            store.scheduler.add_to(pipe, sweep)


def _v1_record(grant: Grant, jobs: dict[str, Job], store: Store) -> Grant:
    """The record as schema 2 reads it: a reminder not owed any more is marked sent."""
    if grant.state != State.ACTIVE or grant.kind != "access" or grant.expires_at is None:
        return grant
    assert store.plan is not None
    step = store.plan(grant, store.clock())
    if step is not None and step.kind == StepKind.REMIND and f"remind:{grant.id}" not in jobs:
        return grant.model_copy(update={"reminded_for": grant.expires_at})
    return grant
