"""The notification outbox (bot/outbox.py) on a real Redis: every committed change is
told, in order per grant, by whichever drainer holds the lease; nothing is lost when a
drainer dies between reading an entry and telling it."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis

from bot.core import redis_client
from bot.leases import Entries
from bot.models import Grant
from bot.outbox import Outbox
from bot.store import Change, Store
from tests.support.patience import PATIENCE

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
Told = list[tuple[str, int, int]]  # (grant id, version before, version after)


def new_grant(grant_id: str) -> Grant:
    return Grant.model_validate(
        {"id": grant_id, "requester": "U0ALICE", "handle": "alice", "role": "edit",
         "cluster": "a", "namespace": "team-a", "scope": "namespace", "cluster_role": "edit",
         "duration_s": 3600, "reason": "r0", "approvals_required": 1, "created_at": NOW,
         "pending_until": NOW + timedelta(hours=24)}
    )  # fmt: skip


def recorder(told: Told, delay: Callable[[], float] = lambda: 0.0):  # type: ignore[no-untyped-def]
    async def tell(before: Grant, after: Grant) -> None:
        await asyncio.sleep(delay())
        told.append((after.id, before.version, after.version))

    return tell


def store_with(redis: aioredis.Redis, outbox: Outbox) -> Store:
    return Store(redis, Entries(redis), plan=lambda _g, _now: None, on_commit=[outbox.add_to])


async def change(store: Store, grant_id: str, n: int) -> None:
    await store.update(grant_id, lambda g: Change(g.model_copy(update={"reason": f"r{n}"})))


@asynccontextmanager
async def draining(outbox: Outbox) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(outbox.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await task


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.02)


async def test_each_grant_is_told_every_change_once_in_commit_order(redis_url: str) -> None:
    """Changes of many grants committed concurrently while a drainer tells them with
    random delays: every grant hears each of its versions once, oldest first."""
    redis = redis_client(redis_url)
    told: Told = []
    outbox = Outbox(redis, recorder(told, lambda: random.random() / 50), lease_seconds=2.0)
    store = store_with(redis, outbox)
    ids = [f"grant{n:03d}" for n in range(12)]
    async with draining(outbox):
        for grant_id in ids:
            await store.create(new_grant(grant_id))

        async def churn(grant_id: str) -> None:
            for n in range(1, 9):
                await change(store, grant_id, n)
                await asyncio.sleep(random.random() / 100)

        await asyncio.gather(*(churn(i) for i in ids))
        assert await outbox.flush(PATIENCE)
    for grant_id in ids:
        versions = [(b, a) for g, b, a in told if g == grant_id]
        assert versions == [(0, 0)] + [(v - 1, v) for v in range(1, 9)], versions
    assert await redis.xlen(outbox.key) == 0  # told entries are deleted: the stream is bounded
    await redis.aclose()


async def test_changes_committed_with_no_drainer_are_told_when_one_starts(redis_url: str) -> None:
    """The commit is the message: a process that commits and dies before any drainer
    read its entries loses nothing."""
    redis = redis_client(redis_url)
    told: Told = []
    outbox = Outbox(redis, recorder(told), lease_seconds=2.0)
    store = store_with(redis, outbox)
    await store.create(new_grant("lonely"))
    await change(store, "lonely", 1)
    assert await outbox.untold() == 2
    async with draining(outbox):
        assert await outbox.flush(PATIENCE)
    assert told == [("lonely", 0, 0), ("lonely", 0, 1)]
    await redis.aclose()


async def test_a_drainer_killed_before_telling_loses_nothing(redis_url: str) -> None:
    """A drainer process reads a change and is SIGKILLed before it told it: once its
    lease lapses another drainer claims the entry and tells it, before the grant's later
    changes (per-grant order holds across the take-over)."""
    redis = redis_client(redis_url)
    told: Told = []
    survivor = Outbox(redis, recorder(told), lease_seconds=1.0)
    store = store_with(redis, survivor)
    doomed = subprocess.Popen(
        [sys.executable, "-m", "tests.support.outbox_worker", redis_url, "1.0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert doomed.stdout is not None
        assert await asyncio.to_thread(doomed.stdout.readline) == "leading\n"
        await store.create(new_grant("victim"))  # read by the doomed drainer, never told
        assert await asyncio.to_thread(doomed.wait, PATIENCE) == -9, "the drainer was not killed"
        pending = await redis.xpending(survivor.key, "tellers")
        assert pending["pending"] == 1, pending  # read, not acknowledged
        await change(store, "victim", 1)  # a later change, committed while nobody drains
        async with draining(survivor):
            assert await survivor.flush(PATIENCE)
    finally:
        doomed.kill()
        doomed.wait()
    assert told == [("victim", 0, 0), ("victim", 0, 1)]
    # The dead drainer's consumer is forgotten once nothing is pending for it.
    consumers = await redis.xinfo_consumers(survivor.key, "tellers")
    assert [c["name"] for c in consumers] == [survivor.consumer]
    await redis.aclose()


async def test_a_stopped_drainer_hands_over_what_it_had_not_told(redis_url: str) -> None:
    """A drainer stopped while its tell hangs (Slack stalled) leaves the entry pending;
    the next drainer tells it, and the grant's next change after it."""
    redis = redis_client(redis_url)
    stalled = asyncio.Event()

    async def hang(before: Grant, after: Grant) -> None:
        stalled.set()
        await asyncio.Event().wait()

    first = Outbox(redis, hang, lease_seconds=2.0)
    store = store_with(redis, first)
    async with draining(first):
        await store.create(new_grant("held"))
        await asyncio.wait_for(stalled.wait(), PATIENCE)
        await change(store, "held", 1)
    told: Told = []
    second = Outbox(redis, recorder(told), lease_seconds=2.0)
    async with draining(second):
        assert await second.flush(PATIENCE)
    assert told == [("held", 0, 0), ("held", 0, 1)]
    await redis.aclose()


async def test_one_drainer_at_a_time_and_the_next_takes_over(redis_url: str) -> None:
    """Two processes' drainers: one holds the lease and tells everything (whichever
    process committed); when it stops, the other tells what comes next."""
    redis = redis_client(redis_url)
    told: dict[str, Told] = {"a": [], "b": []}
    boxes = {n: Outbox(redis, recorder(told[n]), lease_seconds=2.0) for n in ("a", "b")}
    stores = {n: store_with(redis, box) for n, box in boxes.items()}
    stops = {n: asyncio.Event() for n in boxes}
    tasks = {n: asyncio.create_task(box.run(stops[n])) for n, box in boxes.items()}
    try:

        async def someone_leads() -> bool:
            return any(box.leading for box in boxes.values())

        await until(someone_leads, "nobody took the lease")
        lead = "a" if boxes["a"].leading else "b"
        other = "b" if lead == "a" else "a"
        await stores["a"].create(new_grant("g1"))
        await stores["b"].create(new_grant("g2"))
        assert await boxes[lead].flush(PATIENCE)
        assert not boxes[other].leading
        stops[lead].set()
        await tasks[lead]

        async def other_leads() -> bool:
            return boxes[other].leading

        await until(other_leads, "the other drainer never took over")
        await change(stores[lead], "g1", 1)
        assert await boxes[other].flush(PATIENCE)
    finally:
        for n in boxes:
            stops[n].set()
        await asyncio.gather(*tasks.values())
    assert sorted(told[lead]) == [("g1", 0, 0), ("g2", 0, 0)]
    assert told[other] == [("g1", 0, 1)]
    await redis.aclose()


async def test_a_backlog_bigger_than_the_drainer_holds_is_told_whole_and_in_order(
    redis_url: str,
) -> None:
    """Entries left pending by a dead drainer and new ones, many more than a drainer
    keeps in memory at once (10 reads of ``batch``): all told, each grant in order."""
    redis = redis_client(redis_url)
    dead = Outbox(redis, recorder([]), batch=3)
    store = store_with(redis, dead)
    ids = [f"bulk{n}" for n in range(5)]
    for grant_id in ids:
        await store.create(new_grant(grant_id))
    for n in range(1, 8):
        for grant_id in ids:
            await change(store, grant_id, n)
    await redis.xgroup_create(dead.key, "tellers", id="0", mkstream=True)
    # A drainer that read everything and died: all 40 entries pending for its consumer.
    read = await redis.xreadgroup("tellers", "gone", {dead.key: ">"}, count=1000)
    assert sum(len(entries) for _key, entries in read) == 40
    for grant_id in ids:  # and more committed after it died
        await change(store, grant_id, 8)
    told: Told = []
    survivor = Outbox(redis, recorder(told), lease_seconds=2.0, batch=3, concurrency=2)
    async with draining(survivor):
        assert await survivor.flush(PATIENCE)
    for grant_id in ids:
        versions = [(b, a) for g, b, a in told if g == grant_id]
        assert versions == [(0, 0)] + [(v - 1, v) for v in range(1, 9)], versions
    await redis.aclose()
