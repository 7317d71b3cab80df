"""Durable, Redis-backed job scheduler: grant expiry, reminders, request timeouts, provisioning.

Why not arq or saq: both refuse a second enqueue of a live job id (arq's ``_job_id`` and saq's
job ``key`` make enqueue return None), so an extension cannot *move* a deferred expiry, and
cancel is a cooperative abort flag rather than an exact removal. Both enqueue through their own
WATCH/MULTI or Lua call, so a job cannot commit in the same MULTI/EXEC as the state change that
needs it. Here ``add_to``/``cancel_in`` join the caller's transaction and ZADD moves exactly.

Redis layout under ``prefix``::

    :due     ZSET  job id -> due (epoch ms)         waiting jobs
    :jobs    HASH  job id -> JSON payload           every job not yet finished
    :leases  ZSET  job id -> lease expiry (epoch ms) jobs some worker is running
    :owners  HASH  job id -> claim token            which claim holds the lease

Each claim gets a unique token (stored in ``:owners``), so a late completion, retry or renewal
from a worker whose lease was reclaimed, cancelled or superseded never touches newer state.
Delivery is at-least-once (a stalled or killed worker's job runs again after its lease), so
handlers must be idempotent; with live workers each due job is claimed exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

__all__ = [
    "DeadHandler",
    "Handler",
    "Job",
    "LagObserver",
    "RetryLater",
    "Scheduler",
    "UnknownJobKind",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

Handler = Callable[["Job"], Awaitable[None]]
LagObserver = Callable[[str, float], None]
DeadHandler = Callable[["Job", BaseException], Awaitable[None]]

# Reclaiming and finishing are bounded per call so one script never blocks Redis for long.
_RECLAIM_LIMIT = 1000
_FINISH_BATCH = 500
# Shortest pause between claims when jobs are due in a dense stream.
_MIN_SLEEP = 0.005
# How long to back off the worker loop when Redis itself is failing.
_REDIS_ERROR_PAUSE = 1.0


@dataclass(frozen=True)
class Job:
    """One scheduled unit of work; ``id`` is chosen by the caller and identifies it exactly."""

    id: str
    kind: str
    due: float  # epoch seconds
    data: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0

    def to_payload(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_payload(cls, raw: str) -> Job:
        doc = json.loads(raw)
        return cls(
            id=str(doc["id"]),
            kind=str(doc["kind"]),
            due=float(doc["due"]),
            data=dict(doc.get("data") or {}),
            attempts=int(doc.get("attempts", 0)),
        )


class RetryLater(Exception):
    """Raised by a handler to be run again after ``seconds`` (counts as an attempt)."""

    def __init__(self, seconds: float, reason: str = "") -> None:
        super().__init__(reason or f"retry in {seconds:g}s")
        self.seconds = max(0.0, float(seconds))


class UnknownJobKind(LookupError):
    """No handler is registered for a claimed job's kind (e.g. during a rolling upgrade)."""


@dataclass(frozen=True)
class _Claim:
    job: Job
    token: str
    payload: str  # exactly as claimed: the version the completion scripts compare against


@dataclass(frozen=True)
class _Keys:
    due: str
    jobs: str
    leases: str
    owners: str

    @classmethod
    def under(cls, prefix: str) -> _Keys:
        return cls(f"{prefix}:due", f"{prefix}:jobs", f"{prefix}:leases", f"{prefix}:owners")

    @property
    def all(self) -> list[str]:
        return [self.due, self.jobs, self.leases, self.owners]


# All scripts take KEYS = due, jobs, leases, owners.

# Claim due jobs: each id moves from :due to :leases in one atomic step, so across any number
# of workers exactly one gets it. Also returns the earliest remaining due time so the worker
# can sleep precisely until then.
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {''}
for i, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local payload = redis.call('HGET', KEYS[2], id)
  if payload then
    local token = ARGV[4] .. ':' .. i
    redis.call('ZADD', KEYS[3], ARGV[2], id)
    redis.call('HSET', KEYS[4], id, token)
    out[#out + 1] = id
    out[#out + 1] = payload
    out[#out + 1] = token
  end
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if nxt[2] then out[1] = nxt[2] end
return out
"""

# Success or death, for a batch of (id, token, payload) triples. Only the current claim may
# finish a job; if the id was scheduled again while the handler ran (a grant extension moving
# its expiry), the new schedule survives. Per job: 0 = claim lost, 1 = finished, 2 = kept.
_FINISH = """
local out = {}
for i = 1, #ARGV, 3 do
  local id, token, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local outcome = 0
  if redis.call('HGET', KEYS[4], id) == token then
    redis.call('HDEL', KEYS[4], id)
    redis.call('ZREM', KEYS[3], id)
    outcome = 2
    if not redis.call('ZSCORE', KEYS[1], id) and redis.call('HGET', KEYS[2], id) == payload then
      redis.call('HDEL', KEYS[2], id)
      outcome = 1
    end
  end
  out[#out + 1] = outcome
end
return out
"""

# Failure with a retry: same ownership and re-schedule checks, then write the next attempt.
_RETRY = """
local id, token, payload = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', KEYS[4], id) ~= token then return 0 end
redis.call('HDEL', KEYS[4], id)
redis.call('ZREM', KEYS[3], id)
if redis.call('ZSCORE', KEYS[1], id) then return 2 end
if redis.call('HGET', KEYS[2], id) ~= payload then return 2 end
redis.call('HSET', KEYS[2], id, ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[5], id)
return 1
"""

# Heartbeat: extend the leases this worker still holds; return the tokens of those it lost.
_RENEW = """
local lost = {}
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[4], id) == ARGV[i + 1] then
    redis.call('ZADD', KEYS[3], ARGV[1], id)
  else
    lost[#lost + 1] = ARGV[i + 1]
  end
end
return lost
"""

# Graceful hand-over: put this worker's unfinished claims back as due now. NX keeps a newer
# schedule made while the handler ran.
_RELEASE = """
local n = 0
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[4], id) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[4], id)
    redis.call('ZREM', KEYS[3], id)
    if redis.call('HEXISTS', KEYS[2], id) == 1 then
      redis.call('ZADD', KEYS[1], 'NX', ARGV[1], id)
    end
    n = n + 1
  end
end
return n
"""

# A dead worker's claims: leases that expired without a heartbeat go back to due.
_RECLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
  if redis.call('HEXISTS', KEYS[2], id) == 1 then
    redis.call('ZADD', KEYS[1], 'NX', ARGV[1], id)
  end
end
return ids
"""


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _text(value: bytes | str) -> str:
    # The caller's client may or may not use decode_responses.
    return value.decode() if isinstance(value, bytes) else value


def _require_buffering(pipe: Pipeline) -> None:
    # After WATCH and before MULTI a redis-py pipeline runs commands immediately and returns
    # coroutines; queued here they would never be awaited and the job silently never exist.
    if pipe.watching and not pipe.explicit_transaction:
        raise RuntimeError("call pipe.multi() after WATCH before queueing scheduler commands")


def _default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _log_extra(job: Job, **more: Any) -> dict[str, Any]:
    # Ids and kinds only: job data may hold user e-mails, cluster names, tokens.
    return {"job_id": job.id, "kind": job.kind, "attempts": job.attempts, **more}


class Scheduler:
    """Schedules jobs (any process) and runs them (``run``, in each replica)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str = "ab:sched",
        worker_id: str | None = None,
        lease_seconds: float = 30.0,
        poll_interval: float = 0.1,
        concurrency: int = 64,
        clock: Callable[[], float] = time.time,
        max_attempts: int = 10,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        shutdown_grace: float = 8.0,
        claim_batch: int = 256,
        on_lag: LagObserver | None = None,
        on_dead: DeadHandler | None = None,
    ) -> None:
        if concurrency < 1 or lease_seconds <= 0 or poll_interval <= 0 or max_attempts < 1:
            raise ValueError("concurrency, lease_seconds, poll_interval, max_attempts must be > 0")
        self._redis = redis
        self._keys = _Keys.under(prefix)
        self.worker_id = worker_id or _default_worker_id()
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.shutdown_grace = shutdown_grace
        self.claim_batch = claim_batch
        self.on_lag = on_lag
        self.on_dead = on_dead
        self._clock = clock
        self._handlers: dict[str, Handler] = {}
        self._running: dict[asyncio.Task[None], _Claim] = {}
        self._lost_tokens: set[str] = set()  # claims cancelled/reclaimed under a live handler
        self._claim_seq = 0
        self._finishing: list[tuple[_Claim, asyncio.Future[int]]] = []
        self._finisher: asyncio.Task[None] | None = None
        self._claim_script = redis.register_script(_CLAIM)
        self._finish_script = redis.register_script(_FINISH)
        self._retry_script = redis.register_script(_RETRY)
        self._renew_script = redis.register_script(_RENEW)
        self._release_script = redis.register_script(_RELEASE)
        self._reclaim_script = redis.register_script(_RECLAIM)

    # ----- scheduling API (usable from any process, no worker needed) -----

    def add_to(self, pipe: Pipeline, job: Job) -> None:
        """Queue "schedule or move ``job``" into the caller's pipeline / MULTI."""
        _require_buffering(pipe)
        pipe.hset(self._keys.jobs, job.id, job.to_payload())
        pipe.zadd(self._keys.due, {job.id: _ms(job.due)})

    def cancel_in(self, pipe: Pipeline, job_id: str) -> None:
        """Queue "cancel ``job_id``" into the caller's pipeline; also drops any lease on it.

        A handler already running keeps going (handlers are idempotent) but can no longer
        complete, retry or renew: its claim is gone.
        """
        _require_buffering(pipe)
        pipe.zrem(self._keys.due, job_id)
        pipe.hdel(self._keys.jobs, job_id)
        pipe.zrem(self._keys.leases, job_id)
        pipe.hdel(self._keys.owners, job_id)

    async def schedule(self, job: Job) -> None:
        """Schedule ``job``; if its id is already scheduled, move it (new due, data, attempts)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            self.add_to(pipe, job)
            await pipe.execute()

    async def cancel(self, job_id: str) -> bool:
        """Remove the job; True if it existed (waiting or running)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            self.cancel_in(pipe, job_id)
            _, removed, _, _ = await pipe.execute()
        return bool(removed)

    async def get(self, job_id: str) -> Job | None:
        raw = await _resolve(self._redis.hget(self._keys.jobs, job_id))
        return None if raw is None else Job.from_payload(_text(raw))

    async def pending_count(self) -> int:
        """Jobs not yet finished: waiting for their due time or running."""
        return int(await _resolve(self._redis.hlen(self._keys.jobs)))

    def register(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    # ----- worker -----

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run due jobs until ``stop`` is set, then shut down gracefully."""
        heartbeat = asyncio.create_task(self._heartbeat_loop(), name="scheduler-heartbeat")
        try:
            await self._claim_loop(stop)
            await self._drain(self.shutdown_grace)
        except asyncio.CancelledError:
            # Cancelled rather than stopped: no grace, but still hand the work back at once.
            await self._drain(0.0)
            raise
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            if self._finisher is not None:
                # Cancelled handlers may leave a flush in flight; let it land before returning.
                await asyncio.wait([self._finisher], timeout=5.0)

    async def release_all(self) -> int:
        """Hand every job this worker is running back to the due set (for another replica)."""
        claims = list(self._running.values())
        if not claims:
            return 0
        args: list[str | int] = [_ms(self._clock())]
        for claim in claims:
            args += [claim.job.id, claim.token]
        released = int(await self._release_script(keys=self._keys.all, args=args))
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
                    self._running, timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED
                )
                continue
            await _sleep_or_stop(stop, await self._claim_and_start(min(free, self.claim_batch)))

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
            return self.poll_interval
        # Sleep until the next due time but never longer than a poll: jobs scheduled by other
        # processes meanwhile may be due sooner. The floor batches a dense stream of due jobs
        # into fewer claims (a few ms of lag for far fewer round trips under load).
        return min(self.poll_interval, max(_MIN_SLEEP, next_due - self._clock()))

    async def _claim(self, limit: int) -> tuple[list[_Claim], float | None]:
        now = self._clock()
        self._claim_seq += 1
        reply: Sequence[bytes | str] = await self._claim_script(
            keys=self._keys.all,
            args=[
                _ms(now),
                _ms(now + self.lease_seconds),
                limit,
                f"{self.worker_id}:{self._claim_seq}",
            ],
        )
        head = _text(reply[0])
        next_due = float(head) / 1000 if head else None
        claims = []
        for i in range(1, len(reply), 3):
            claim = await self._parse_claim(_text(reply[i]), _text(reply[i + 1]), reply[i + 2])
            if claim is not None:
                claims.append(claim)
        return claims, next_due

    async def _parse_claim(self, job_id: str, payload: str, token: bytes | str) -> _Claim | None:
        try:
            return _Claim(Job.from_payload(payload), _text(token), payload)
        except (ValueError, KeyError, TypeError, AttributeError):
            # Unreadable forever: drop it rather than let it fail on every replica.
            log.error("dropping job with corrupt payload", extra={"job_id": job_id})
            with contextlib.suppress(RedisError):  # else its lease expires and we retry this
                await self._finish_script(keys=self._keys.all, args=[job_id, _text(token), payload])
            return None

    def _start(self, claim: _Claim) -> None:
        task = asyncio.create_task(self._execute(claim), name=f"job:{claim.job.id}")
        self._running[task] = claim
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        claim = self._running.pop(task, None)
        if claim is not None:
            self._lost_tokens.discard(claim.token)
        if not task.cancelled() and (exc := task.exception()) is not None and claim is not None:
            log.error("job task crashed", exc_info=exc, extra=_log_extra(claim.job))

    async def _execute(self, claim: _Claim) -> None:
        job = claim.job
        self._observe_lag(job)
        try:
            handler = self._handlers.get(job.kind)
            if handler is None:
                raise UnknownJobKind(job.kind)
            await handler(job)
        except asyncio.CancelledError:
            raise  # shutdown: release_all already handed the lease back
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
            log.exception("on_lag hook failed", extra=_log_extra(job))

    def _backoff(self, attempts: int) -> float:
        return min(self.backoff_max, self.backoff_base * 2.0 ** min(attempts, 32))

    async def _finish(self, claim: _Claim) -> int:
        """Record success (or a drop); returns the _FINISH outcome, -1 if Redis failed."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._finishing.append((claim, future))
        if self._finisher is None or self._finisher.done():
            self._finisher = asyncio.create_task(self._flush_finished(), name="scheduler-finish")
        try:
            outcome = await future
        except RedisError:
            # The lease will expire and the job run again: handlers are idempotent.
            log.exception("recording job completion failed", extra=_log_extra(claim.job))
            return -1
        if outcome == 0:
            log.info("job finished after losing its lease", extra=_log_extra(claim.job))
        return outcome

    async def _flush_finished(self) -> None:
        # Completions arriving while one flush is in flight queue up and go in the next call:
        # under load one round trip finishes many jobs, idle it costs no extra latency.
        while self._finishing:
            batch = self._finishing[:_FINISH_BATCH]
            del self._finishing[:_FINISH_BATCH]
            args: list[str] = []
            for claim, _ in batch:
                args += [claim.job.id, claim.token, claim.payload]
            try:
                outcomes: Sequence[int] = await self._finish_script(keys=self._keys.all, args=args)
            except Exception as exc:  # every waiter must hear back, whatever went wrong
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if not future.done():
                    future.set_result(int(outcome))

    async def _fail(self, claim: _Claim, exc: BaseException, delay: float) -> None:
        job = claim.job
        attempts = job.attempts + 1
        if attempts >= self.max_attempts:
            await self._bury(claim, exc)
            return
        retry = Job(job.id, job.kind, self._clock() + delay, job.data, attempts)
        if isinstance(exc, RetryLater):
            log.info("job asked to run later", extra=_log_extra(job, delay=delay))
        else:
            log.warning(
                "job failed; retrying",
                exc_info=exc,
                extra=_log_extra(job, delay=delay, error=type(exc).__name__),
            )
        try:
            await self._retry_script(
                keys=self._keys.all,
                args=[job.id, claim.token, claim.payload, retry.to_payload(), _ms(retry.due)],
            )
        except RedisError:
            log.exception("recording job retry failed", extra=_log_extra(job))

    async def _bury(self, claim: _Claim, exc: BaseException) -> None:
        job = claim.job
        log.error(
            "job failed too often; dropped",
            exc_info=exc,
            extra=_log_extra(job, error=type(exc).__name__),
        )
        if await self._finish(claim) == 1 and self.on_dead is not None:
            try:
                await self.on_dead(job, exc)
            except Exception:
                log.exception("on_dead hook failed", extra=_log_extra(job))

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await self._renew(list(self._running.values()))
            except RedisError:
                log.exception("renewing leases failed", extra={"worker": self.worker_id})

    async def _renew(self, claims: Iterable[_Claim]) -> None:
        held = {c.token: c for c in claims if c.token not in self._lost_tokens}
        if not held:
            return
        args: list[str | int] = [_ms(self._clock() + self.lease_seconds)]
        for claim in held.values():
            args += [claim.job.id, claim.token]
        lost: Sequence[bytes | str] = await self._renew_script(keys=self._keys.all, args=args)
        for raw in lost:
            # Cancelled, or reclaimed after a stall: the handler may finish but changes nothing.
            token = _text(raw)
            self._lost_tokens.add(token)
            log.info("lease lost while running", extra=_log_extra(held[token].job))

    async def _reclaim_expired(self) -> None:
        try:
            ids: Sequence[bytes | str] = await self._reclaim_script(
                keys=self._keys.all, args=[_ms(self._clock()), _RECLAIM_LIMIT]
            )
        except RedisError:
            log.exception("reclaiming expired leases failed", extra={"worker": self.worker_id})
            return
        if ids:
            log.warning(
                "reclaimed jobs whose worker stopped renewing its lease",
                extra={"job_ids": [_text(i) for i in ids], "count": len(ids)},
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


async def _resolve(value: Awaitable[_T] | _T) -> _T:
    # redis-py types its commands as "awaitable or not" because one class serves both APIs.
    if inspect.isawaitable(value):
        return await value
    return value


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    if seconds <= 0:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
