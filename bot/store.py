"""Grants in Redis: records, indexes, the due index, idempotency keys, the audit stream.

Every state change is one optimistic transaction (WATCH the record, compute
the change with pure code, MULTI/EXEC the write). The record, its indexes,
its audit entries and its due-index entry (the agenda's next step, see
:mod:`bot.agenda`) commit together or not at all, so two approvers clicking
at once or a replayed delivery can never approve, provision or expire
anything twice, and no grant is ever without the step that moves it on.

Redis layout, schema 2 (``prefix`` ``ab``; the scheduler's keys under ``ab:sched``)::

    ab:schema            STRING  "2"
    ab:grant:<id>        STRING  the Grant as JSON
    ab:user:<user>       SET     grant ids of a requester
    ab:state:<state>     SET     grant ids in a state
    ab:offboarded        HASH    user -> Offboarding JSON
    ab:idem:<key>        STRING  idempotency marks (with a TTL)
    ab:audit             STREAM  audit entries (about AUDIT_MAXLEN, none older than retention)
    ab:sched:due         ZSET    grant id -> due of its next step (epoch ms): the due index
    ab:sched:jobs        HASH    grant id -> {"kind": step kind, "due", "attempts", "data"}
    ab:sched:leases      ZSET    grant id -> lease expiry (epoch ms) while a worker runs it
    ab:sched:owners      HASH    grant id -> claim token

Schema 1 kept one job per step (``expire:<id>``, ``remind:<id>`` ...) in the same
four scheduler keys; :mod:`bot.migrations` turns it into schema 2 on start-up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from bot.agenda import NextStep
from bot.audit import audit_entry, log_entry, new_steps, request_entry
from bot.errors import NotAllowed
from bot.leases import Entries, Job
from bot.lifecycle import State
from bot.models import Grant, Offboarding, utcnow

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
AUDIT_MAXLEN = 100_000


class SchemaMismatch(RuntimeError):
    """Redis holds data written by a newer AccessBot."""


@dataclass(frozen=True)
class Change:
    """What one transaction writes: the new record (its next step follows from it)."""

    grant: Grant


# The agenda bound to a policy: the next step of a grant at a time (bot.agenda.next_step).
Plan = Callable[[Grant, datetime], NextStep | None]


def entry_for(grant_id: str, step: NextStep) -> Job:
    """The due-index entry of a grant's next step (fresh: no attempts yet)."""
    return Job(id=grant_id, kind=step.kind.value, due=step.due.timestamp())


Decide = Callable[[Grant], Change | None]
# Like Decide, also told which of the people involved are offboarded, as read
# in the same transaction: a concurrent offboarding aborts and re-runs it.
CheckedDecide = Callable[[Grant, frozenset[str]], Change | None]


class RequesterOffboarded(NotAllowed):
    """The record's requester is offboarded: nothing may be created for them."""

    def __init__(self, user: str) -> None:
        super().__init__(f"{user} is offboarded")
        self.user = user


AfterCommit = Callable[[Grant, Grant], Awaitable[None]]
# Writes that must commit with a change, queued in its MULTI/EXEC (bot.outbox: the message).
InCommit = Callable[[Pipeline, Grant | None, Grant], None]


@dataclass
class Store:
    """The grant records and their due index.

    ``redis``: the shared client. ``scheduler``: the due index's keys (a ``Scheduler``, or
    bare ``Entries`` for a process that never runs steps). ``plan``: the agenda (None: a
    read-only store; a write raises RuntimeError). ``prefix``: key prefix of the records.
    ``on_change``: hooks told ``(before, after)`` after each committed change; a failing hook
    is logged, never undoes the change. ``on_commit``: writes queued in each change's own
    transaction (``(pipe, before, after)``; ``before`` None for a creation), such as the
    outbox entry that tells people about it (:mod:`bot.outbox`). ``clock``: the time the
    agenda is asked at (UTC).
    ``audit_max_age``: the audit stream's age cap, by ``wall`` (epoch seconds).
    """

    redis: Redis
    scheduler: Entries
    prefix: str = "ab"
    on_change: list[AfterCommit] = field(default_factory=list)
    on_commit: list[InCommit] = field(default_factory=list)
    plan: Plan | None = None
    clock: Callable[[], datetime] = utcnow
    audit_max_age: timedelta | None = None  # the stream's age cap (defaults.retention)
    wall: Callable[[], float] = time.time

    # -- keys ---------------------------------------------------------------
    def _grant_key(self, grant_id: str) -> str:
        return f"{self.prefix}:grant:{grant_id}"

    def _user_key(self, user: str) -> str:
        return f"{self.prefix}:user:{user}"

    def _state_key(self, state: State | str) -> str:
        return f"{self.prefix}:state:{state}"

    # The key names, for what writes beside the store (bot.retention).
    grant_key, user_key, state_key = _grant_key, _user_key, _state_key

    @property
    def _audit_key(self) -> str:
        return f"{self.prefix}:audit"

    @property
    def _offboarded_key(self) -> str:
        return f"{self.prefix}:offboarded"

    # -- reads ---------------------------------------------------------------
    async def get(self, grant_id: str) -> Grant | None:
        raw = await self.redis.get(self._grant_key(grant_id))
        return Grant.model_validate_json(raw) if raw else None

    async def many(self, ids: Iterable[str]) -> list[Grant]:
        keys = [self._grant_key(i) for i in ids]
        if not keys:
            return []
        raws = await self.redis.mget(keys)
        return [Grant.model_validate_json(r) for r in raws if r]

    async def by_user(self, user: str) -> list[Grant]:
        ids = await self.redis.smembers(self._user_key(user))  # type: ignore[misc]
        return sorted(await self.many(ids), key=lambda g: g.created_at)

    async def by_state(self, *states: State) -> list[Grant]:
        ids: set[str] = set()
        for state in states:
            ids |= await self.redis.smembers(self._state_key(state))  # type: ignore[misc]
        return sorted(await self.many(ids), key=lambda g: g.created_at)

    async def count_by_state(self, state: State) -> int:
        return int(await self.redis.scard(self._state_key(state)))  # type: ignore[misc]

    # -- writes --------------------------------------------------------------
    async def create(self, grant: Grant) -> Grant:
        """Store a new record; its creation is audited like any other step.

        Raises RequesterOffboarded if the requester is offboarded. The check
        and the write are one transaction (the offboarding hash is WATCHed),
        so a request racing its requester's offboarding is either seen by the
        offboarding or refused here; it never slips between the two.
        """
        while True:
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(self._offboarded_key)
                    if await pipe.hexists(self._offboarded_key, grant.requester):  # type: ignore[misc]
                        raise RequesterOffboarded(grant.requester)
                    pipe.multi()
                    self._write(pipe, None, grant)
                    await pipe.execute()
                except WatchError:
                    continue
            break
        await self._after(None, grant)
        return grant

    async def update_checked(
        self,
        grant_id: str,
        decide: CheckedDecide,
        *,
        also: Sequence[str] = (),
        patience: float = 0.0,
    ) -> Grant | None:
        """``update``, with ``decide`` also told who is offboarded among the record's
        requester, its approvers and ``also``, read inside the same transaction."""
        return await self._retrying(grant_id, lambda: self._update_once(grant_id, decide, also),
                                    patience)  # fmt: skip

    async def update(self, grant_id: str, decide: Decide, *, patience: float = 0.0) -> Grant | None:
        """Apply ``decide`` to the current record atomically.

        ``decide`` is pure and may run several times under contention; it
        returns None when there is nothing to do (a stale click, a replay).
        Returns the record as committed, or None if nothing changed.

        ``patience``: seconds to keep trying while Redis is unreachable, for
        writes that record something already done elsewhere (a delivery).
        Since a lost reply may hide a committed write, ``decide`` must treat
        "already done" as done.
        """
        return await self._retrying(
            grant_id, lambda: self._update_once(grant_id, lambda g, _: decide(g), None), patience
        )

    async def _retrying(
        self, grant_id: str, once: Callable[[], Awaitable[Grant | None]], patience: float
    ) -> Grant | None:
        deadline = time.monotonic() + patience
        while True:
            try:
                return await once()
            except (RedisConnectionError, RedisTimeoutError):
                if time.monotonic() >= deadline:
                    raise
                log.warning("Redis unreachable; retrying the write of %s", grant_id)
                await asyncio.sleep(0.2)

    async def _update_once(
        self, grant_id: str, decide: CheckedDecide, also: Sequence[str] | None
    ) -> Grant | None:
        """One optimistic transaction; ``also`` None: offboarding is not consulted."""
        key = self._grant_key(grant_id)
        while True:
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    if also is None:
                        await pipe.watch(key)
                    else:
                        await pipe.watch(key, self._offboarded_key)
                    raw = await pipe.get(key)
                    if not raw:
                        return None
                    before = Grant.model_validate_json(raw)
                    blocked: frozenset[str] = frozenset()
                    if also is not None:
                        people = list(dict.fromkeys([before.requester, *before.approvals, *also]))
                        found = await pipe.hmget(self._offboarded_key, people)  # type: ignore[misc]
                        blocked = frozenset(p for p, f in zip(people, found, strict=True) if f)
                    change = decide(before, blocked)
                    if change is None:
                        return None
                    after = change.grant.model_copy(update={"version": before.version + 1})
                    pipe.multi()
                    self._write(pipe, before, after)
                    await pipe.execute()
                except WatchError:
                    continue
            await self._after(before, after)
            return after

    def _write(self, pipe: Pipeline, before: Grant | None, grant: Grant) -> None:
        pipe.set(self._grant_key(grant.id), grant.model_dump_json())
        pipe.sadd(self._user_key(grant.requester), grant.id)
        if before is not None and before.state != grant.state:
            pipe.srem(self._state_key(before.state), grant.id)
        pipe.sadd(self._state_key(grant.state), grant.id)
        self._file(pipe, before, grant)
        entries = [request_entry(grant)] if before is None else []
        entries += [audit_entry(grant, step) for step in new_steps(before, grant)]
        for entry in entries:
            self._audit_add(pipe, entry)
        for write in self.on_commit:
            write(pipe, before, grant)

    def _audit_add(self, pipe: Pipeline, entry: dict[str, str]) -> None:
        # Both caps: about AUDIT_MAXLEN entries, none (about) older than audit_max_age by
        # the wall clock (stream ids are the Redis server's milliseconds, not self.clock).
        pipe.xadd(self._audit_key, entry, maxlen=AUDIT_MAXLEN, approximate=True)  # type: ignore[arg-type]
        if self.audit_max_age is not None:
            oldest = int((self.wall() - self.audit_max_age.total_seconds()) * 1000)
            pipe.xtrim(self._audit_key, minid=f"{max(oldest, 0)}-0", approximate=True)

    def _file(self, pipe: Pipeline, before: Grant | None, grant: Grant) -> None:
        """Keep the due index on the agenda: the grant's entry moves only when its next
        step changes, so a handler writing the record it works on keeps its claim."""
        if self.plan is None:
            raise RuntimeError("this Store was built without an agenda: it only reads")
        now = self.clock()
        step = self.plan(grant, now)
        earlier = None if before is None else self.plan(before, now)
        if step is not None and step != earlier:
            self.scheduler.add_to(pipe, entry_for(grant.id, step))
        elif step is None and earlier is not None:
            self.scheduler.cancel_in(pipe, grant.id)

    async def refile(self, grant_id: str) -> NextStep | None:
        """File the grant's next step afresh (or remove its entry); returns the step.

        For entries the index lost: dead-lettered, replaced by a sweep, or written by a
        process that crashed between claiming and re-filing. Atomic with the record read.
        """
        if self.plan is None:
            raise RuntimeError("this Store was built without an agenda: it only reads")
        key = self._grant_key(grant_id)
        while True:
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    step = None
                    if raw:
                        step = self.plan(Grant.model_validate_json(raw), self.clock())
                    pipe.multi()
                    if step is None:
                        self.scheduler.cancel_in(pipe, grant_id)
                    else:
                        self.scheduler.add_to(pipe, entry_for(grant_id, step))
                    await pipe.execute()
                    return step
                except WatchError:
                    continue

    async def _after(self, before: Grant | None, after: Grant) -> None:
        now = self.clock()
        if self.plan is not None and (nxt := self.plan(after, now)) and nxt.due <= now:
            self.scheduler.wake()  # e.g. provisioning right after the approval commits
        if before is None:
            log_entry(request_entry(after))
        for step in new_steps(before, after):
            log_entry(audit_entry(after, step))
        for hook in self.on_change:
            try:
                await hook(before or after, after)
            except Exception:
                # A notification failure must never undo or block a committed change.
                log.exception("after-commit hook failed", extra={"grant_id": after.id})

    # -- idempotency ---------------------------------------------------------
    async def first_time(self, key: str, ttl_seconds: int = 3600) -> bool:
        """True exactly once per key within the TTL (Slack retries, webhook replays)."""
        return bool(await self.redis.set(f"{self.prefix}:idem:{key}", 1, nx=True, ex=ttl_seconds))

    # -- offboarding ----------------------------------------------------------
    async def offboarding(self, user: str) -> Offboarding | None:
        raw = await self.redis.hget(self._offboarded_key, user)  # type: ignore[misc]
        return Offboarding.model_validate_json(raw) if raw else None

    async def mark_offboarded(self, record: Offboarding) -> bool:
        """Block the user; False if they already were (the first record is kept)."""
        added = await self.redis.hsetnx(  # type: ignore[misc]
            self._offboarded_key, record.user, record.model_dump_json()
        )
        return bool(added)

    async def offboarded_among(self, users: Sequence[str]) -> frozenset[str]:
        """Which of ``users`` are offboarded (one round trip)."""
        people = list(dict.fromkeys(users))
        if not people:
            return frozenset()
        found = await self.redis.hmget(self._offboarded_key, people)  # type: ignore[misc]
        return frozenset(p for p, f in zip(people, found, strict=True) if f)

    async def reenable(self, user: str) -> bool:
        return bool(await self.redis.hdel(self._offboarded_key, user))  # type: ignore[misc]

    # -- audit ---------------------------------------------------------------
    async def audit_event(self, entry: dict[str, str]) -> None:
        """Record something that changed no state (a refused click) in the audit trail."""
        async with self.redis.pipeline(transaction=False) as pipe:
            self._audit_add(pipe, entry)
            await pipe.execute()
        log_entry(entry)

    async def audit_history(self, grant_id: str, page: int = 1000) -> list[dict[str, str]]:
        """Every audit entry of one grant, oldest first (the stream read in pages).

        Empty when the grant never existed or its entries were trimmed from
        the stream (about ``AUDIT_MAXLEN`` entries kept, none older than ``audit_max_age``).
        """
        found: list[dict[str, str]] = []
        start = "-"
        while True:
            batch = await self.redis.xrange(self._audit_key, min=start, max="+", count=page)
            found += [fields for _id, fields in batch if fields.get("grant_id") == grant_id]
            if len(batch) < page:
                return found
            start = "(" + batch[-1][0]

    async def audit_tail(self, count: int = 100) -> list[dict[str, str]]:
        entries = await self.redis.xrevrange(self._audit_key, count=count)
        return [fields for _id, fields in reversed(entries)]
