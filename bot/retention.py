"""Bounded Redis: ended grants are forgotten after ``defaults.retention``.

The agenda files a FORGET step for an ended grant with nothing left on its cluster
(:mod:`bot.agenda`), due ``retention`` after it ended. Its handler calls :func:`forget`:
one optimistic transaction that re-reads the record, asks the agenda again (the step must
still be FORGET and due: a grant found with objects again, or a policy with a longer
retention, keeps it) and deletes the record with every key naming it: the requester's set,
its state set and its due-index entry (with any lease or claim on it). No tombstone is
kept: ``accessbot audit`` says an id without history may have been forgotten, and why.

Records that ended before this step existed hold no due-index entry: the reconciler's
first pass files theirs (:func:`refile_ended`), from the agenda alone; no migration.

Idempotent and crash-safe: a forgotten grant has no record, so a step run again (a lost
reply, a reclaimed lease) finds nothing to do; a crash before EXEC forgets nothing.

The audit stream is bounded too (see :meth:`bot.store.Store.audit_caps`): by length,
``AUDIT_MAXLEN`` entries, and by age, entries older than ``retention`` are trimmed.
"""

from __future__ import annotations

from datetime import datetime

from redis.asyncio.client import Pipeline

from bot.agenda import StepKind
from bot.leases import Entries
from bot.lifecycle import TERMINAL
from bot.models import Grant
from bot.store import Store

__all__ = ["forget", "refile_ended"]


async def forget(store: Store, grant_id: str, now: datetime) -> bool:
    """Remove ``grant_id`` and every index entry naming it, if its FORGET step is due at
    ``now``; True when this call removed it."""
    plan = store.plan
    if plan is None:
        raise RuntimeError("this Store was built without an agenda: it only reads")
    key = store.grant_key(grant_id)

    async def attempt(pipe: Pipeline) -> bool:
        # redis-py's transaction(): WATCH key, run this, EXEC; re-run on a concurrent write.
        raw = await pipe.get(key)
        grant = Grant.model_validate_json(raw) if raw else None
        step = None if grant is None else plan(grant, now)
        if grant is None or step is None or step.kind != StepKind.FORGET or step.due > now:
            return False
        pipe.multi()
        pipe.delete(key)
        pipe.srem(store.user_key(grant.requester), grant_id)
        pipe.srem(store.state_key(grant.state), grant_id)
        store.scheduler.cancel_in(pipe, grant_id)
        return True

    done: bool = await store.redis.transaction(attempt, key, value_from_callable=True)
    return done


async def refile_ended(store: Store, entries: Entries, batch: int = 500) -> list[str]:
    """File the next step (FORGET) of every ended grant the due index holds nothing for;
    their ids. Reads ids only (SSCAN, HMGET in batches); loads just the unfiled records."""
    filed: list[str] = []
    for state in sorted(TERMINAL):
        ids = [i async for i in store.redis.sscan_iter(store.state_key(state), count=batch)]
        for start in range(0, len(ids), batch):
            chunk = ids[start : start + batch]
            held = await store.redis.hmget(entries.keys.jobs, chunk)  # type: ignore[misc]
            for grant_id, job in zip(chunk, held, strict=True):
                if job is None and await store.refile(grant_id) is not None:
                    filed.append(grant_id)
    return filed
