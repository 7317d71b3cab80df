"""The store's one due index follows the agenda, and the step runner dispatches on it
(real Redis; no cluster, no Slack: the handlers here are the test's own)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import redis.asyncio as aioredis

from bot.agenda import StepKind, Timing, plan_for
from bot.lifecycle import State
from bot.models import Grant, MessageRef, utcnow
from bot.policy import parse_policy
from bot.reconciler import Reconciler
from bot.scheduler import Scheduler
from bot.steps import StepRunner
from bot.store import Change, Store
from k8s.clients import ClusterRegistry
from tests.support.harness import POLICY
from tests.support.patience import PATIENCE

POL = parse_policy(POLICY)


DEFAULT = Timing()
RETENTION = dt.timedelta(days=90)  # defaults.retention's default


def make(redis: aioredis.Redis, timing: Timing = DEFAULT) -> tuple[Store, Scheduler]:
    sched = Scheduler(redis, lease_seconds=2.0, poll_seconds=0.02, backoff_base_seconds=0.05)
    return Store(redis, sched, plan=plan_for(POL, lambda: timing)), sched


def grant(gid: str, now: dt.datetime, **more: object) -> Grant:
    doc: dict[str, object] = {
        "id": gid, "requester": "U0ALICE", "handle": "alice", "role": "edit", "cluster": "a",
        "namespace": "team-a", "scope": "namespace", "cluster_role": "edit", "duration_s": 3600,
        "reason": "r", "approvals_required": 1, "created_at": now,
        "pending_until": now + dt.timedelta(hours=24),
    }  # fmt: skip
    doc.update(more)
    return Grant.model_validate(doc)


async def index(redis: aioredis.Redis) -> dict[str, float]:
    return {m: s / 1000 for m, s in await redis.zrange("ab:sched:due", 0, -1, withscores=True)}


async def test_one_entry_per_grant_moves_with_its_next_step(redis: aioredis.Redis) -> None:
    store, sched = make(redis)
    now = utcnow().replace(microsecond=0)  # the index keeps milliseconds
    g = await store.create(grant("g1", now))
    assert await index(redis) == {"g1": (now + dt.timedelta(seconds=30)).timestamp()}
    assert (await sched.get("g1")).kind == StepKind.CARD  # type: ignore[union-attr]

    card = MessageRef(channel="C", ts="1.0")
    await store.update("g1", lambda g: Change(g.model_copy(update={"card": card})))
    # Carded: its approvers' reminder (tests/unit/test_nudges.py), then its timeout.
    assert await index(redis) == {"g1": (now + dt.timedelta(minutes=15)).timestamp()}
    await store.update("g1", lambda g: Change(g.model_copy(update={"approvers_reminded_at": now})))
    assert await index(redis) == {"g1": g.pending_until.timestamp()}

    await store.update("g1", lambda g: Change(g.moved(State.APPROVED, "U0LEAD", now)))
    assert (await sched.get("g1")).kind == StepKind.PROVISION  # type: ignore[union-attr]
    before = await redis.hget("ab:sched:jobs", "g1")  # type: ignore[misc]
    # The saga writes the record several times; the claimed entry is left alone.
    await store.update("g1", lambda g: Change(g.moved(State.PROVISIONING, "accessbot", now)))
    await store.update("g1", lambda g: Change(g.model_copy(update={"token_cap_s": 60})))
    assert await redis.hget("ab:sched:jobs", "g1") == before  # type: ignore[misc]

    ends = now + dt.timedelta(hours=1)
    active = {"expires_at": ends}
    await store.update(
        "g1", lambda g: Change(g.moved(State.ACTIVE, "accessbot", now).model_copy(update=active))
    )
    assert await index(redis) == {"g1": (ends - dt.timedelta(minutes=10)).timestamp()}

    await store.update("g1", lambda g: Change(g.moved(State.REVOKED, "U0ALICE", now)))
    assert (await sched.get("g1")).kind == StepKind.CLEANUP  # type: ignore[union-attr]
    await store.update("g1", lambda g: Change(g.model_copy(update={"objects_gone_at": now})))
    # Nothing left on the cluster: only forgetting, retention after it ended.
    assert await index(redis) == {"g1": (now + RETENTION).timestamp()}
    assert (await sched.get("g1")).kind == StepKind.FORGET  # type: ignore[union-attr]
    assert await sched.pending_count() == 1


async def test_a_pending_request_ended_is_only_to_be_forgotten(redis: aioredis.Redis) -> None:
    store, sched = make(redis)
    now = utcnow().replace(microsecond=0)
    await store.create(grant("g2", now))
    await store.update("g2", lambda g: Change(g.moved(State.DENIED, "U0LEAD", now)))
    assert await index(redis) == {"g2": (now + RETENTION).timestamp()}
    assert (await sched.get("g2")).kind == StepKind.FORGET  # type: ignore[union-attr]


@asynccontextmanager
async def running(sched: Scheduler) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(sched.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task


async def until(check: Callable[[], object], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while not await check():  # type: ignore[misc]
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.02)


async def test_runner_dispatches_on_the_fresh_step(redis: aioredis.Redis) -> None:
    store, sched = make(redis, Timing(card_retry=dt.timedelta(0)))
    ran: list[tuple[str, StepKind]] = []

    async def post_card(g: Grant) -> None:
        ran.append((g.id, StepKind.CARD))
        card = MessageRef(channel="C", ts="1.0")
        await store.update(g.id, lambda c: Change(c.model_copy(update={"card": card})))

    async def time_out(g: Grant) -> None:
        ran.append((g.id, StepKind.TIMEOUT))
        await store.update(g.id, lambda c: Change(c.moved(State.TIMED_OUT, "accessbot", utcnow())))

    runner = StepRunner(store, store.plan)  # type: ignore[arg-type]
    runner.register(StepKind.CARD, post_card)
    runner.register(StepKind.TIMEOUT, time_out)
    runner.attach(sched)
    now = utcnow()
    await store.create(grant("g3", now, pending_until=now + dt.timedelta(seconds=1)))
    async with running(sched):
        await until(lambda: _state_is(store, "g3", State.TIMED_OUT), "timed out")
    assert ran == [("g3", StepKind.CARD), ("g3", StepKind.TIMEOUT)]
    assert (await sched.get("g3")).kind == StepKind.FORGET  # type: ignore[union-attr]


async def test_a_handler_that_does_not_move_on_is_retried_not_dropped(
    redis: aioredis.Redis,
) -> None:
    store, sched = make(redis, Timing(card_retry=dt.timedelta(0)))
    calls = 0

    async def flaky_card(g: Grant) -> None:
        nonlocal calls
        calls += 1
        if calls >= 3:
            card = MessageRef(channel="C", ts="1.0")
            await store.update(g.id, lambda c: Change(c.model_copy(update={"card": card})))

    runner = StepRunner(store, store.plan)  # type: ignore[arg-type]
    runner.register(StepKind.CARD, flaky_card)
    runner.attach(sched)
    await store.create(grant("g4", utcnow()))
    async with running(sched):
        await until(lambda: _has_card(store, "g4"), "card posted on the third run")
    entry = await sched.get("g4")
    assert entry is not None
    assert entry.kind == StepKind.REMIND_APPROVERS  # the next step, filed by the store
    assert entry.attempts == 0


async def _state_is(store: Store, gid: str, state: State) -> bool:
    g = await store.get(gid)
    return g is not None and g.state == state


async def _has_card(store: Store, gid: str) -> bool:
    g = await store.get(gid)
    return g is not None and g.card is not None


async def test_the_reconciler_refiles_a_grant_the_index_lost(redis: aioredis.Redis) -> None:
    # A step dead-lettered after too many failures leaves the index; the next pass files
    # the grant's next step again (from the agenda, not from a remembered job).
    store, sched = make(redis)
    now = utcnow()
    await store.create(grant("g5", now))
    await store.create(grant("g6", now).moved(State.DENIED, "U0LEAD", now))
    await sched.cancel("g5")
    registry = ClusterRegistry({})
    try:
        report = await Reconciler(store, sched, registry).reconcile()
    finally:
        registry.close()
    assert report.rescheduled == ["g5"]
    entry = await sched.get("g5")
    assert entry is not None
    assert entry.kind == StepKind.CARD
    assert (await sched.get("g6")).kind == StepKind.FORGET  # type: ignore[union-attr]
