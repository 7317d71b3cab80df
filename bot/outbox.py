"""The notification outbox: every committed change is told to people from Redis, never
from the transaction's caller.

The store writes one stream entry per change (:meth:`Outbox.add_to`, called inside the
change's own MULTI/EXEC), so a change is never committed without its message and a
crash after the commit loses nothing. Drainers (:meth:`Outbox.run`, one per process)
read the stream as one consumer group and call the notifier (``tell``), so a slow or
throttled Slack delays messages and never an access decision: revocation deletes, and
provisioning goes on, while the messages wait here.

Redis layout (``prefix`` ``ab``)::

    ab:outbox         STREAM  one entry per change: grant, version, before, after (JSON)
    ab:outbox:lease   STRING  the token of the process whose drainer tells (PX lease)

Order: one process at a time drains (it holds ``ab:outbox:lease``, renewed by a
heartbeat); it tells the entries of one grant one after the other, in stream order,
which is commit order, so a grant's end is told before its receipt and its card is
redrawn in version order; different grants are told concurrently. Every replica's
commits wake the drainer at once (it blocks on ``XREADGROUP``).

At least once: an entry is acknowledged (``XACK`` and ``XDEL``, so the stream holds only
what is still to be told) after ``tell`` returned. A drainer that dies leaves its
entries pending; the next one takes the lease once it lapses and claims them
(``XAUTOCLAIM``) before reading anything newer. A crash between Slack's answer and the
acknowledgement tells that change twice: a repeated message beats a lost one (a lost
end or receipt DM would leave someone believing they still hold access, or an admin
never hearing of a revocation that failed to verify).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, ResponseError

from bot.errors import TransientFailure
from bot.models import Grant

log = logging.getLogger(__name__)

# Entries not yet told are kept up to about this many: only reached when no bot
# process drains for very long; then the oldest untold messages go first.
OUTBOX_MAXLEN = 100_000
GROUP = "tellers"
# Attempts to tell one entry when ``tell`` itself raises (a bug, not Slack: the Slack
# notifier logs Slack's refusals and returns); then it is logged and dropped.
TELL_ATTEMPTS = 3
# Longest pause between two tellings of a change Slack did not take (MessagesDelayed).
DELAYED_PAUSE_MAX_SECONDS = 60.0

Tell = Callable[[Grant, Grant], Awaitable[None]]

# Take the lease when free, or renew it when ours; 1 if ours afterwards.
_HOLD = """
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Outbox:
    """Durable notifications: written with each change, told by a drainer.

    Parameters:
        redis: the shared client (``decode_responses=True``).
        tell: told ``(before, after)`` of each change (a creation: ``(after, after)``),
            e.g. ``SlackNotifier.grant_changed``. May take as long as Slack takes.
        prefix: key prefix, as the store's. Default ``"ab"``.
        lease_seconds: how long a silent drainer keeps the lease: a crashed drainer's
            entries are told by another process after at most this long. Default 10.
        concurrency: grants told at once. Default 32.
        batch: entries read at a time. Default 100.
    """

    def __init__(
        self,
        redis: Redis,
        tell: Tell,
        *,
        prefix: str = "ab",
        lease_seconds: float = 10.0,
        concurrency: int = 32,
        batch: int = 100,
    ) -> None:
        if lease_seconds <= 0 or concurrency < 1 or batch < 1:
            raise ValueError("lease_seconds, concurrency and batch must be positive")
        self.redis = redis
        self.tell = tell
        self.key = f"{prefix}:outbox"
        self.lease_key = f"{prefix}:outbox:lease"
        self.lease_seconds = lease_seconds
        self.consumer = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._hold = redis.register_script(_HOLD)
        self._release = redis.register_script(_RELEASE)
        self._slots = asyncio.Semaphore(concurrency)
        self._batch = batch
        self._max_queued = 10 * batch
        self._queues: dict[str, deque[tuple[str, dict[str, str]]]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._queued: set[str] = set()  # entry ids read and not yet acknowledged here
        self._room = asyncio.Event()
        self._room.set()
        self.leading = False

    # -- writing (inside the store's transaction) ---------------------------------------

    def add_to(self, pipe: Pipeline, before: Grant | None, after: Grant) -> None:
        """Queue the change's entry in ``pipe`` (the store's MULTI/EXEC)."""
        fields = {
            "grant": after.id,
            "version": str(after.version),
            "before": "" if before is None else before.model_dump_json(),
            "after": after.model_dump_json(),
        }
        pipe.xadd(self.key, fields, maxlen=OUTBOX_MAXLEN, approximate=True)  # type: ignore[arg-type]

    # -- waiting -------------------------------------------------------------------------

    async def untold(self) -> int:
        """How many changes are not yet told (by any drainer)."""
        return int(await self.redis.xlen(self.key))

    async def flush(self, budget_seconds: float = 2.0) -> bool:
        """Wait (at most ``budget_seconds``) until every change committed so far was told,
        by this process or another; True if so."""
        deadline = time.monotonic() + budget_seconds
        while True:
            try:
                if not await self.untold():
                    return True
            except RedisError:
                log.warning("outbox: Redis unreachable while flushing")
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)

    # -- draining ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Drain until ``stop``: take the lease when it is free, then tell what is pending
        (claimed from a drainer that went away) and everything new, in order per grant."""
        try:
            while not stop.is_set():
                try:
                    if await self._take():
                        await self._lead(stop)
                except RedisError as exc:
                    log.warning("outbox: Redis trouble (%s); trying again", exc)
                except Exception:  # a bug must not end the telling for good
                    log.exception("outbox: the drainer failed; trying again")
                await _wait(stop, self.lease_seconds / 4)
        finally:
            await self._step_down()

    async def _take(self) -> bool:
        ms = int(self.lease_seconds * 1000)
        return bool(await self._hold(keys=[self.lease_key], args=[self.consumer, ms]))

    async def _lead(self, stop: asyncio.Event) -> None:
        await self._ensure_group()
        self.leading = True
        lost = asyncio.Event()
        heartbeat = asyncio.create_task(self._heartbeat(lost), name="outbox-lease")
        ended = (stop, lost)
        try:
            await self._claim(ended, min_idle_ms=0)  # whatever the last drainer left, first
            await self._forget_idle_consumers()
            next_claim = time.monotonic() + self.lease_seconds
            while not any(e.is_set() for e in ended):
                if not self._room.is_set():
                    await _first(self._room.wait(), stop.wait(), lost.wait())
                    continue
                if time.monotonic() >= next_claim:
                    await self._claim(ended, min_idle_ms=int(self.lease_seconds * 1000))
                    next_claim = time.monotonic() + self.lease_seconds
                read = asyncio.create_task(self._read())
                try:
                    await _first(read, stop.wait(), lost.wait())
                finally:
                    if not read.done():
                        read.cancel()  # entries it may have got stay pending: claimed later
                        with contextlib.suppress(BaseException):
                            await read
                if not read.cancelled():
                    for entry_id, fields in read.result():
                        self._dispatch(entry_id, fields)
        finally:
            # Python 3.11's wait_for (inside redis-py's send) can swallow a cancel, and a
            # heartbeat that lost one would renew the lease forever: ``lost`` ends it too.
            lost.set()
            heartbeat.cancel()
            await asyncio.wait({heartbeat}, timeout=self.lease_seconds)
            self.leading = False
            if not stop.is_set():
                # The lease went (or Redis did): the next drainer claims what these were
                # telling, so stop now or one grant would be told twice, out of order.
                await self._stop_workers()

    async def _heartbeat(self, lost: asyncio.Event) -> None:
        last = time.monotonic()
        while not lost.is_set():
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                if not await self._take():
                    log.warning("outbox: lost the drain lease to another process")
                    lost.set()
                    return
                last = time.monotonic()
            except RedisError:
                if time.monotonic() - last > self.lease_seconds:
                    lost.set()
                    return

    async def _ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read(self) -> list[tuple[str, dict[str, str]]]:
        block = int(min(self.lease_seconds / 3, 1.0) * 1000)
        try:
            found = await self.redis.xreadgroup(
                GROUP, self.consumer, {self.key: ">"}, count=self._batch, block=block
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self._ensure_group()  # the stream was deleted under us
            return []
        return [(i, f) for _key, entries in found or [] for i, f in entries]

    async def _claim(self, ended: tuple[asyncio.Event, ...], *, min_idle_ms: int) -> None:
        """Take over entries left pending (by a drainer that died, or reads we abandoned),
        a batch at a time as there is room, until one of ``ended`` is set."""
        start = "0-0"
        while not any(e.is_set() for e in ended):
            if not self._room.is_set():
                await _first(self._room.wait(), *(e.wait() for e in ended))
                continue
            answer = await self.redis.xautoclaim(
                self.key, GROUP, self.consumer, min_idle_ms, start_id=start, count=self._batch
            )
            start, entries = answer[0], answer[1]
            for entry_id, fields in entries:
                if fields:
                    self._dispatch(entry_id, fields)
            if start in ("0-0", b"0-0"):
                return

    async def _forget_idle_consumers(self) -> None:
        """Remove consumers of processes gone, once nothing is pending for them."""
        for info in await self.redis.xinfo_consumers(self.key, GROUP):
            name = str(info.get("name"))
            if name != self.consumer and not int(info.get("pending", 0)):
                await self.redis.xgroup_delconsumer(self.key, GROUP, name)

    def _dispatch(self, entry_id: str, fields: dict[str, str]) -> None:
        if entry_id in self._queued:
            return  # already being told here
        self._queued.add(entry_id)
        if len(self._queued) >= self._max_queued:
            self._room.clear()
        grant_id = fields.get("grant", "")
        self._queues.setdefault(grant_id, deque()).append((entry_id, fields))
        if grant_id not in self._workers:
            task = asyncio.create_task(self._work(grant_id), name=f"outbox-{grant_id}")
            self._workers[grant_id] = task

    async def _work(self, grant_id: str) -> None:
        """Tell one grant's entries in order, each acknowledged once told."""
        queue = self._queues[grant_id]
        try:
            async with self._slots:
                while queue:
                    entry_id, fields = queue[0]
                    await self._tell_one(entry_id, fields)
                    await self._ack(entry_id)
                    queue.popleft()
                    self._done(entry_id)
                del self._queues[grant_id]
                del self._workers[grant_id]
        except BaseException:
            # Cancelled (stepping down): what is left stays pending for the next drainer.
            for entry_id, _fields in queue:
                self._done(entry_id)
            self._queues.pop(grant_id, None)
            self._workers.pop(grant_id, None)
            raise

    def _done(self, entry_id: str) -> None:
        self._queued.discard(entry_id)
        if len(self._queued) < self._max_queued:
            self._room.set()

    async def _tell_one(self, entry_id: str, fields: dict[str, str]) -> None:
        try:
            after = Grant.model_validate_json(fields["after"])
            before = Grant.model_validate_json(fields["before"]) if fields.get("before") else None
        except (KeyError, ValueError):
            log.exception("outbox: unreadable entry %s dropped", entry_id)
            return
        failures, delays = 0, 0
        while True:
            try:
                await self.tell(before or after, after)
                return
            except TransientFailure as exc:
                # Slack down or throttling: never given up (the entry stays pending, this
                # grant's later changes wait behind it); other grants go on meanwhile.
                delays += 1
                pause = min(DELAYED_PAUSE_MAX_SECONDS, 0.5 * 2 ** min(delays, 10))
                log.warning("outbox: %s; again in %.0f s", exc, pause,
                            extra={"grant_id": after.id})  # fmt: skip
                await asyncio.sleep(pause * (0.5 + random.random() / 2))  # noqa: S311
            except Exception:
                failures += 1
                log.exception(
                    "outbox: telling %s v%s failed (attempt %d of %d)",
                    after.id, after.version, failures, TELL_ATTEMPTS,
                    extra={"grant_id": after.id},
                )  # fmt: skip
                if failures >= TELL_ATTEMPTS:
                    return  # a bug, not Slack: logged with its traceback, then given up
                await asyncio.sleep(0.2 * failures)

    async def _ack(self, entry_id: str) -> None:
        """Acknowledge and delete a told entry; a failure leaves it to be told again."""
        for attempt in range(3):
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.xack(self.key, GROUP, entry_id)
                    pipe.xdel(self.key, entry_id)
                    await pipe.execute()
                return
            except RedisError as exc:
                log.warning("outbox: could not acknowledge %s (%s)", entry_id, exc)
                await asyncio.sleep(0.2 * (attempt + 1))

    async def _stop_workers(self) -> None:
        workers = list(self._workers.values())
        for task in workers:
            task.cancel()
        if workers:  # bounded: a cancel lost in a Redis send leaves a worker to finish
            await asyncio.wait(workers, timeout=self.lease_seconds)

    async def _step_down(self) -> None:
        """Stop telling (what is left stays pending) and free the lease for another."""
        await self._stop_workers()
        with contextlib.suppress(RedisError):
            await self._release(keys=[self.lease_key], args=[self.consumer])


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _first(*waits: Awaitable[Any]) -> None:
    """Return when the first of ``waits`` is done; the others are cancelled, except
    tasks the caller owns (it looks at them afterwards)."""
    tasks = [w if isinstance(w, asyncio.Task) else asyncio.ensure_future(w) for w in waits]
    own = [t for t, w in zip(tasks, waits, strict=True) if t is not w]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in own:
            task.cancel()
