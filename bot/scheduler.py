"""The worker loop: claim due entries, run their handlers, retry, renew and hand back leases.

Durable and Redis-backed (Lua scripts and layout: :mod:`bot.leases`). In the bot every entry
is one grant whose next step is due (:mod:`bot.agenda`, run by :mod:`bot.steps`), filed by
the store in the record's own MULTI/EXEC (``add_to``/``cancel_in``; ZADD moves exactly).

Why not arq or saq: both refuse a second enqueue of a live job id (arq's ``_job_id``, saq's
``key``), so an extension cannot *move* a deferred expiry; cancel is a cooperative abort flag,
not an exact removal; and both enqueue through their own WATCH/MULTI or Lua call, so an entry
cannot commit in the same MULTI/EXEC as the state change that needs it.

Delivery is at-least-once (a stalled or killed worker's entry runs again after its lease), so
handlers must be idempotent; with live workers each due entry is claimed exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bot.leases import (
    Claim,
    Defer,
    Entries,
    Job,
    Leases,
    RetryLater,
    UnknownJobKind,
    default_worker_id,
    log_extra,
)

__all__ = [
    "DeadHandler",
    "Defer",
    "Handler",
    "Job",
    "LagObserver",
    "RetryLater",
    "Scheduler",
    "UnknownJobKind",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

Handler = Callable[[Job], Awaitable[None]]
LagObserver = Callable[[str, float], None]
DeadHandler = Callable[[Job, BaseException], Awaitable[None]]

# Reclaiming and finishing are bounded per call so one script never blocks Redis for long.
_RECLAIM_LIMIT, _FINISH_BATCH = 1000, 500
# Shortest pause between claims when jobs are due in a dense stream.
_MIN_SLEEP = 0.005
# How long to back off the worker loop when Redis itself is failing.
_REDIS_ERROR_PAUSE = 1.0


class Scheduler(Entries):
    """Files entries (any process, :class:`~bot.leases.Entries`) and runs them (``run``,
    in each replica).

    Args:
        redis: the client (any ``decode_responses``).
        prefix: key prefix of the four keys; default ``"ab:sched"``.
        worker_id: names this worker in claim tokens and logs; default host:pid:random.
        lease_seconds: how long a claim holds an entry without a heartbeat (renewed every
            third of it); a killed worker's entries run again after this; default 30.
        poll_seconds: longest sleep between claims: entries filed by other processes are
            seen within it, by this one at once (``wake``); default 0.1.
        concurrency: handlers running at once in this worker; default 64.
        clock: epoch seconds now; default ``time.time`` (tests drive their own).
        max_attempts: failed runs before an entry is dead-lettered (``Defer`` never
            counts); default 10.
        backoff_base_seconds / backoff_max_seconds: retry delay after the n-th failure,
            ``base * 2**n`` capped at max; defaults 1 and 60.
        shutdown_grace_seconds: how long ``run`` lets handlers finish after ``stop``
            before handing their entries back; default 8.
        claim_batch: most entries claimed in one script call; default 256.
        on_lag: told ``(kind, seconds late)`` as each handler starts (metrics).
        on_dead: told ``(entry, error)`` when an entry is dead-lettered.

    Raises ValueError for a non-positive concurrency, lease, poll or max_attempts.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str = "ab:sched",
        worker_id: str | None = None,
        lease_seconds: float = 30.0,
        poll_seconds: float = 0.1,
        concurrency: int = 64,
        clock: Callable[[], float] = time.time,
        max_attempts: int = 10,
        backoff_base_seconds: float = 1.0,
        backoff_max_seconds: float = 60.0,
        shutdown_grace_seconds: float = 8.0,
        claim_batch: int = 256,
        on_lag: LagObserver | None = None,
        on_dead: DeadHandler | None = None,
    ) -> None:
        if concurrency < 1 or lease_seconds <= 0 or poll_seconds <= 0 or max_attempts < 1:
            raise ValueError("concurrency, lease_seconds, poll_seconds, max_attempts must be > 0")
        super().__init__(redis, prefix)
        self.worker_id = worker_id or default_worker_id()
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.backoff_base_seconds = backoff_base_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.shutdown_grace_seconds = shutdown_grace_seconds
        self.claim_batch = claim_batch
        self.on_lag = on_lag
        self.on_dead = on_dead
        self._clock = clock
        self._handlers: dict[str, Handler] = {}
        self._running: dict[asyncio.Task[None], Claim] = {}
        self._lost_tokens: set[str] = set()  # claims cancelled/reclaimed under a live handler
        self._claim_seq = 0
        self._finishing: list[tuple[Claim, asyncio.Future[int]]] = []
        self._finisher: asyncio.Task[None] | None = None
        self._leases = Leases(redis, self._keys)

    def register(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run due jobs until ``stop`` is set, then shut down gracefully."""
        done = asyncio.Event()  # ends the heartbeat even when a cancel is lost (3.11 wait_for)
        heartbeat = asyncio.create_task(self._heartbeat_loop(done), name="scheduler-heartbeat")
        try:
            await self._claim_loop(stop)
            await self._drain(self.shutdown_grace_seconds)
        except asyncio.CancelledError:
            # Cancelled rather than stopped: no grace, but still hand the work back at once.
            await self._drain(0.0)
            raise
        finally:
            done.set()
            heartbeat.cancel()
            await asyncio.wait([heartbeat], timeout=self.lease_seconds)
            if self._finisher is not None:  # a flush cancelled handlers left lands first
                await asyncio.wait([self._finisher], timeout=5.0)

    async def release_all(self) -> int:
        """Hand every job this worker is running back to the due set (for another replica)."""
        claims = list(self._running.values())
        if not claims:
            return 0
        released = await self._leases.release(self._clock(), claims)
        log.info("released unfinished jobs", extra={"count": released, "worker": self.worker_id})
        return released

    @property
    def running_count(self) -> int:
        return len(self._running)

    async def _claim_loop(self, stop: asyncio.Event) -> None:
        next_reclaim = 0.0
        while not stop.is_set():
            if time.monotonic() >= next_reclaim:
                await self._reclaim_expired()
                next_reclaim = time.monotonic() + self.lease_seconds / 2
            free = self.concurrency - len(self._running)
            if free <= 0:
                # Full: wake when a handler finishes (or after a poll, to notice stop).
                await asyncio.wait(
                    self._running, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED
                )
                continue
            self._wake.clear()  # what was filed before this claim, the claim will see
            pause = await self._claim_and_start(min(free, self.claim_batch))
            await _sleep_or_stop(stop, pause, self._wake)

    async def _claim_and_start(self, limit: int) -> float:
        """Claim up to ``limit`` due jobs and start them; return how long to sleep next."""
        try:
            claims, next_due = await self._claim(limit)
        except RedisError:
            log.exception("claiming jobs failed; retrying", extra={"worker": self.worker_id})
            return _REDIS_ERROR_PAUSE
        for claim in claims:
            self._start(claim)
        if len(claims) >= limit:
            return 0.0  # likely more already due
        if next_due is None:
            return self.poll_seconds
        # Sleep until the next due time but never longer than a poll: jobs scheduled by other
        # processes meanwhile may be due sooner. The floor batches a dense stream of due jobs
        # into fewer claims (a few ms of lag for far fewer round trips under load).
        return min(self.poll_seconds, max(_MIN_SLEEP, next_due - self._clock()))

    async def _claim(self, limit: int) -> tuple[list[Claim], float | None]:
        now = self._clock()
        self._claim_seq += 1
        found, next_due = await self._leases.claim(
            now, now + self.lease_seconds, limit, f"{self.worker_id}:{self._claim_seq}"
        )
        claims = []
        for job_id, payload, token in found:
            claim = await self._parse_claim(job_id, payload, token)
            if claim is not None:
                claims.append(claim)
        return claims, next_due

    async def _parse_claim(self, job_id: str, payload: str, token: str) -> Claim | None:
        try:
            return Claim(Job.from_payload(payload), token, payload)
        except (ValueError, KeyError, TypeError, AttributeError):
            # Unreadable forever: drop it rather than let it fail on every replica.
            log.error("dropping job with corrupt payload", extra={"job_id": job_id})
            with contextlib.suppress(RedisError):  # else its lease expires and we retry this
                await self._leases.finish([(job_id, token, payload)])
            return None

    def _start(self, claim: Claim) -> None:
        task = asyncio.create_task(self._execute(claim), name=f"job:{claim.job.id}")
        self._running[task] = claim
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        claim = self._running.pop(task, None)
        if claim is not None:
            self._lost_tokens.discard(claim.token)
        if not task.cancelled() and (exc := task.exception()) is not None and claim is not None:
            log.error("job task crashed", exc_info=exc, extra=log_extra(claim.job))

    async def _execute(self, claim: Claim) -> None:
        job = claim.job
        self._observe_lag(job)
        try:
            handler = self._handlers.get(job.kind)
            if handler is None:
                raise UnknownJobKind(job.kind)
            await handler(job)
        except asyncio.CancelledError:
            raise  # shutdown: release_all already handed the lease back
        except Defer as exc:
            await self._refile(claim, exc)
        except RetryLater as exc:
            await self._fail(claim, exc, exc.seconds)
        except Exception as exc:
            await self._fail(claim, exc, self._backoff(job.attempts))
        else:
            await self._finish(claim)

    def _observe_lag(self, job: Job) -> None:
        if self.on_lag is None:
            return
        try:
            self.on_lag(job.kind, self._clock() - job.due)
        except Exception:
            log.exception("on_lag hook failed", extra=log_extra(job))

    def _backoff(self, attempts: int) -> float:
        return min(self.backoff_max_seconds, self.backoff_base_seconds * 2.0 ** min(attempts, 32))

    async def _finish(self, claim: Claim) -> int:
        """Record success (or a drop); returns the FINISH outcome, -1 if Redis failed."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._finishing.append((claim, future))
        if self._finisher is None or self._finisher.done():
            self._finisher = asyncio.create_task(self._flush_finished(), name="scheduler-finish")
        try:
            outcome = await future
        except RedisError:
            # The lease will expire and the job run again: handlers are idempotent.
            log.exception("recording job completion failed", extra=log_extra(claim.job))
            return -1
        if outcome == 0:
            log.info("job finished after losing its lease", extra=log_extra(claim.job))
        return outcome

    async def _flush_finished(self) -> None:
        # Completions arriving while one flush is in flight queue up and go in the next call:
        # under load one round trip finishes many jobs, idle it costs no extra latency.
        while self._finishing:
            batch = self._finishing[:_FINISH_BATCH]
            del self._finishing[:_FINISH_BATCH]
            try:
                outcomes = await self._leases.finish(
                    [(c.job.id, c.token, c.payload) for c, _ in batch]
                )
            except Exception as exc:  # every waiter must hear back, whatever went wrong
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if not future.done():
                    future.set_result(int(outcome))

    async def _fail(self, claim: Claim, exc: BaseException, delay: float) -> None:
        """A failed attempt: again after ``delay`` seconds, or dead after ``max_attempts``."""
        job = claim.job
        if job.attempts + 1 >= self.max_attempts:
            await self._bury(claim, exc)
            return
        if isinstance(exc, RetryLater):
            log.info("job asked to run later", extra=log_extra(job, delay=delay))
        else:
            log.warning(
                "job failed; retrying",
                exc_info=exc,
                extra=log_extra(job, delay=delay, error=type(exc).__name__),
            )
        await self._run_again(claim, delay, job.attempts + 1)

    async def _refile(self, claim: Claim, exc: Defer) -> None:
        """Run again after ``exc.seconds``; the attempts so far stay as they are."""
        job = claim.job
        log.info("job deferred", extra=log_extra(job, delay=exc.seconds, reason=str(exc)))
        await self._run_again(claim, exc.seconds, job.attempts)

    async def _run_again(self, claim: Claim, delay: float, attempts: int) -> None:
        """Re-file the claimed entry ``delay`` seconds from now with ``attempts``."""
        job = claim.job
        later = Job(job.id, job.kind, self._clock() + delay, job.data, attempts)
        try:
            await self._leases.retry(claim, later)
        except RedisError:
            log.exception("recording when to run a job again failed", extra=log_extra(job))

    async def _bury(self, claim: Claim, exc: BaseException) -> None:
        job = claim.job
        log.error(
            "job failed too often; dropped",
            exc_info=exc,
            extra=log_extra(job, error=type(exc).__name__),
        )
        if await self._finish(claim) == 1 and self.on_dead is not None:
            try:
                await self.on_dead(job, exc)
            except Exception:
                log.exception("on_dead hook failed", extra=log_extra(job))

    async def _heartbeat_loop(self, done: asyncio.Event) -> None:
        while not done.is_set():
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await self._renew(list(self._running.values()))
            except RedisError:
                log.exception("renewing leases failed", extra={"worker": self.worker_id})

    async def _renew(self, claims: Iterable[Claim]) -> None:
        held = {c.token: c for c in claims if c.token not in self._lost_tokens}
        if not held:
            return
        lost = await self._leases.renew(self._clock() + self.lease_seconds, list(held.values()))
        for token in lost:
            # Cancelled, or reclaimed after a stall: the handler may finish but changes nothing.
            self._lost_tokens.add(token)
            log.info("lease lost while running", extra=log_extra(held[token].job))

    async def _reclaim_expired(self) -> None:
        try:
            ids = await self._leases.reclaim(self._clock(), _RECLAIM_LIMIT)
        except RedisError:
            log.exception("reclaiming expired leases failed", extra={"worker": self.worker_id})
            return
        if ids:
            log.warning(
                "reclaimed jobs whose worker stopped renewing its lease",
                extra={"job_ids": ids, "count": len(ids)},
            )

    async def _drain(self, grace: float) -> None:
        """Let running handlers finish within ``grace`` seconds; hand the rest back."""
        pending = set(self._running)
        if pending and grace > 0:
            _, pending = await asyncio.wait(pending, timeout=grace)
        if not pending:
            return
        try:
            await self.release_all()
        except RedisError:
            log.exception("releasing unfinished jobs failed; their leases will expire")
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=1.0)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float, wake: asyncio.Event) -> None:
    if seconds <= 0 or wake.is_set():
        return
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    for waiting in waits:
        waiting.cancel()
