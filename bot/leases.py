"""The scheduler's Redis machinery: entries, leases, claim tokens and the Lua scripts.

Redis layout under the scheduler's ``prefix`` (``ab:sched`` in the bot)::

    :due     ZSET  entry id -> due (epoch ms)          waiting entries: the due index
    :jobs    HASH  entry id -> JSON payload            every entry not yet finished
    :leases  ZSET  entry id -> lease expiry (epoch ms) entries some worker is running
    :owners  HASH  entry id -> claim token             which claim holds the lease

In the bot an entry's id is a grant id and its payload says which step it was filed
for (:mod:`bot.agenda`) and how many attempts failed; the scheduler itself knows only
ids, kinds and due times (its own tests and ``bench.scheduler_lag`` use other ids).

Each claim gets a unique token (stored in ``:owners``), so a late completion, retry or
renewal from a worker whose lease was reclaimed, cancelled or superseded never touches
newer state.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import socket
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

_T = TypeVar("_T")

__all__ = [
    "Claim", "Defer", "Entries", "Job", "Keys", "Leases", "RetryLater", "UnknownJobKind",
    "default_worker_id", "log_extra", "ms", "require_buffering", "text",
]  # fmt: skip


@dataclass(frozen=True)
class Job:
    """One entry: ``id`` (the caller's; in the bot a grant id) identifies it exactly;
    ``kind`` picks the handler (in the bot the agenda's step kind, or ``sweep``); ``due``
    in epoch seconds; ``data`` travels with it; ``attempts`` failed so far."""

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


class Defer(Exception):
    """Raised by a handler to be run again after ``seconds``, *not* counted as an attempt.

    For work that is not failing but not yet due or not yet done (an entry claimed before
    its step's time, a cleanup waiting for its receipt to verify): it never dead-letters.
    """

    def __init__(self, seconds: float, reason: str = "") -> None:
        super().__init__(reason or f"run again in {seconds:g}s")
        self.seconds = max(0.0, float(seconds))


class UnknownJobKind(LookupError):
    """No handler is registered for a claimed job's kind (e.g. during a rolling upgrade)."""


@dataclass(frozen=True)
class Claim:
    job: Job
    token: str
    payload: str  # exactly as claimed: the version the completion scripts compare against


@dataclass(frozen=True)
class Keys:
    due: str
    jobs: str
    leases: str
    owners: str

    @classmethod
    def under(cls, prefix: str) -> Keys:
        return cls(f"{prefix}:due", f"{prefix}:jobs", f"{prefix}:leases", f"{prefix}:owners")

    @property
    def all(self) -> list[str]:
        return [self.due, self.jobs, self.leases, self.owners]


# All scripts take KEYS = due, jobs, leases, owners.

# Claim due jobs: each id moves from :due to :leases in one atomic step, so across any number
# of workers exactly one gets it. Also returns the earliest remaining due time so the worker
# can sleep precisely until then.
CLAIM = """
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
FINISH = """
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
RETRY = """
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
RENEW = """
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
RELEASE = """
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
RECLAIM = """
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


def ms(seconds: float) -> int:
    return round(seconds * 1000)


def text(value: bytes | str) -> str:
    # The caller's client may or may not use decode_responses.
    return value.decode() if isinstance(value, bytes) else value


def require_buffering(pipe: Pipeline) -> None:
    # After WATCH and before MULTI a redis-py pipeline runs commands immediately and returns
    # coroutines; queued here they would never be awaited and the job silently never exist.
    if pipe.watching and not pipe.explicit_transaction:
        raise RuntimeError("call pipe.multi() after WATCH before queueing scheduler commands")


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def log_extra(job: Job, **more: Any) -> dict[str, Any]:
    # Ids and kinds only: job data may hold user e-mails, cluster names, tokens.
    return {"job_id": job.id, "kind": job.kind, "attempts": job.attempts, **more}


class Leases:
    """The six scripts, registered once, as typed calls (``redis``: any client).

    Times are epoch seconds (stored as ms); tokens and ids are strings.
    """

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._keys = keys.all
        self._claim = redis.register_script(CLAIM)
        self._finish = redis.register_script(FINISH)
        self._retry = redis.register_script(RETRY)
        self._renew = redis.register_script(RENEW)
        self._release = redis.register_script(RELEASE)
        self._reclaim = redis.register_script(RECLAIM)

    async def claim(
        self, now: float, lease_until: float, limit: int, token_prefix: str
    ) -> tuple[list[tuple[str, str, str]], float | None]:
        """Claim up to ``limit`` entries due by ``now``: (id, payload, token) each, and
        the earliest due time left (epoch seconds), None when nothing waits."""
        reply: Sequence[bytes | str] = await self._claim(
            keys=self._keys, args=[ms(now), ms(lease_until), limit, token_prefix]
        )
        head = text(reply[0])
        found = [(text(reply[i]), text(reply[i + 1]), text(reply[i + 2]))
                 for i in range(1, len(reply), 3)]  # fmt: skip
        return found, (float(head) / 1000 if head else None)

    async def finish(self, done: Sequence[tuple[str, str, str]]) -> list[int]:
        """Finish (id, token, payload) claims: 0 claim lost, 1 finished, 2 kept (re-filed)."""
        args: list[str] = [part for triple in done for part in triple]
        return [int(o) for o in await self._finish(keys=self._keys, args=args)]

    async def retry(self, claim: Claim, later: Job) -> int:
        """Re-file ``claim`` as ``later``: 0 claim lost, 1 re-filed, 2 kept (re-filed meanwhile)."""
        args: list[str | int] = [claim.job.id, claim.token, claim.payload, later.to_payload()]
        args.append(ms(later.due))
        return int(await self._retry(keys=self._keys, args=args))

    async def renew(self, lease_until: float, held: Sequence[Claim]) -> list[str]:
        """Extend these claims' leases; the tokens of those no longer held."""
        args: list[str | int | float] = [ms(lease_until)]
        for claim in held:
            args += [claim.job.id, claim.token]
        lost: Sequence[bytes | str] = await self._renew(keys=self._keys, args=args)
        return [text(t) for t in lost]

    async def release(self, now: float, held: Sequence[Claim]) -> int:
        """Hand these claims back as due ``now``; how many were still held."""
        args: list[str | int | float] = [ms(now)]
        for claim in held:
            args += [claim.job.id, claim.token]
        return int(await self._release(keys=self._keys, args=args))

    async def reclaim(self, now: float, limit: int) -> list[str]:
        """Put entries whose lease expired by ``now`` back as due; their ids."""
        ids: Sequence[bytes | str] = await self._reclaim(keys=self._keys, args=[ms(now), limit])
        return [text(i) for i in ids]


class Entries:
    """Filing entries: usable from any process, no worker needed (``Scheduler`` runs them).

    ``redis``: any client; ``prefix``: the keys' prefix (see the module docstring).
    """

    def __init__(self, redis: aioredis.Redis, prefix: str = "ab:sched") -> None:
        self._redis = redis
        self._keys = Keys.under(prefix)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Say that an entry due now was just committed: a worker of this process claims
        at once instead of at its next poll (an approval's provisioning starts without
        waiting ``poll_seconds``). Without a worker in this process, nothing happens."""
        self._wake.set()

    @property
    def keys(self) -> Keys:
        """The four keys (for a migration or a test that reads the layout)."""
        return self._keys

    def add_to(self, pipe: Pipeline, job: Job) -> None:
        """Queue "schedule or move ``job``" into the caller's pipeline / MULTI."""
        require_buffering(pipe)
        pipe.hset(self._keys.jobs, job.id, job.to_payload())
        pipe.zadd(self._keys.due, {job.id: ms(job.due)})

    def cancel_in(self, pipe: Pipeline, job_id: str) -> None:
        """Queue "cancel ``job_id``" into the caller's pipeline; also drops any lease on it.

        A handler already running keeps going (handlers are idempotent) but can no longer
        complete, retry or renew: its claim is gone.
        """
        require_buffering(pipe)
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
        """The entry as filed (waiting or running), None when there is none."""
        raw = await _resolve(self._redis.hget(self._keys.jobs, job_id))
        return None if raw is None else Job.from_payload(text(raw))

    async def pending_count(self, due_before: float | None = None) -> int:
        """Entries not yet finished: waiting for their due time or running.

        ``due_before`` (epoch seconds): count only the waiting ones due before it,
        plus every running one (an ended grant waits months for its ``forget``).
        """
        if due_before is None:
            return int(await _resolve(self._redis.hlen(self._keys.jobs)))
        waiting = await _resolve(self._redis.zcount(self._keys.due, "-inf", ms(due_before)))
        running = await _resolve(self._redis.zcard(self._keys.leases))
        return int(waiting) + int(running)


async def _resolve(value: Awaitable[_T] | _T) -> _T:
    # redis-py types its commands as "awaitable or not" because one class serves both APIs.
    if inspect.isawaitable(value):
        return await value
    return value
