"""The audit channel's sender: one post per change while the channel is calm,
digests under a burst, nothing dropped.

Slack takes about one message per second per channel (short bursts allowed) and
answers more with HTTP 429 and ``Retry-After``. 10,000 expiries in a minute would
be 10,000 posts, hours of backlog. So changes wait here in order and go out at the
channel's pace:

- calm (at most ``AuditPace.backlog`` changes waiting): one post each, as before;
- a burst (more waiting than that): the waiting changes are gathered for
  ``AuditPace.window_seconds`` (counted from the oldest) and posted as digests,
  "37 grants expired in the last minute: `g1`, `g2`, …", naming every grant id,
  split across messages within Slack's limits; calm again once nothing waits;
- a post that must be read on its own (a failed verification receipt, a
  break-glass grant: :attr:`AuditPost.alone`) is never digested and jumps the queue.

A post Slack refuses for a while (429 past the client's own retries, a 5xx, a
broken connection) is kept and tried again later, in its place; only a refusal no
retry fixes (the channel is gone) drops it, logged with the ids and told to the
admins. The Redis audit stream, written by the store, keeps one entry per change
whatever happens here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.audit import new_steps
from bot.models import Grant
from bot.slack.blocks import Message, audit_message, receipt_message
from bot.slack.blocks.digests import audit_digests
from bot.slack.client import error_code
from bot.slack.retry_after import is_transient, retry_after_seconds

__all__ = ["RECEIPT_EVENTS", "AuditPace", "AuditPost", "AuditSender", "audit_posts"]

log = logging.getLogger(__name__)

# The audit steps that carry a revocation receipt (see Workflow._receipt).
RECEIPT_EVENTS = frozenset({"verified", "verification_failed"})


@dataclass(frozen=True)
class AuditPace:
    """How fast the audit channel is fed.

    ``per_second`` and ``burst``: the channel's pace (Slack: about 1 per second,
    short bursts). ``backlog``: the most changes allowed to wait for one post each;
    more than that is a burst. ``window_seconds``: how long a digest gathers, from
    the oldest change it names. ``retry_cap_seconds``: the longest pause between
    attempts when Slack keeps failing.
    """

    per_second: float = 1.0
    burst: int = 3
    backlog: int = 10
    window_seconds: float = 60.0
    retry_cap_seconds: float = 60.0


@dataclass(frozen=True)
class AuditPost:
    """One change for the audit channel: its own message, and what a digest says of it."""

    grant_id: str
    event: str
    message: Message
    alone: bool = False


def audit_posts(before: Grant, after: Grant) -> list[AuditPost]:
    """The audit channel's posts for a committed change, one per audit entry."""
    created = after.is_new
    steps = after.history if created else new_steps(before, after)
    posts = []
    if created:
        alarm = after.break_glass is not None
        posts.append(AuditPost(after.id, "requested", audit_message(after, None), alarm))
    for step in steps:
        event = step.event or str(step.to_state)
        if event in RECEIPT_EVENTS and after.receipt is not None:
            message = receipt_message(after, after.receipt)
            alone = event == "verification_failed" or not after.receipt.verified
            posts.append(AuditPost(after.id, event, message, alone))
        else:
            posts.append(AuditPost(after.id, event, audit_message(after, step)))
    return posts


@dataclass
class _Waiting:
    post: AuditPost
    since: float


class AuditSender:
    """Posts :class:`AuditPost` s to one channel at its pace (see the module docstring).

    Parameters:
        post: sends one message to the channel; raises ``SlackClientError`` (or a
            connection error) when Slack refuses.
        refused: told of a refusal no retry fixes (logs, alerts the admins).
        pace: the channel's pace. Default :class:`AuditPace` (Slack's).
        clock, sleep: monotonic seconds and waiting; a test may drive both.
    """

    def __init__(
        self,
        post: Callable[[Message], Awaitable[object]],
        refused: Callable[[SlackClientError], Awaitable[None]],
        *,
        pace: AuditPace | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._post = post
        self._refused = refused
        self._pace = pace or AuditPace()
        self._clock = clock
        self._sleep = sleep
        self._queue: deque[_Waiting] = deque()  # digestible, in order
        self._urgent: deque[_Waiting] = deque()  # alone: never digested, first out
        self._tokens = float(self._pace.burst)
        self._tokens_at = clock()
        self._digesting = False
        self._hurry = False
        self._failures = 0
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self.posted = 0  # messages the channel accepted (for tests and benchmarks)

    @property
    def waiting(self) -> int:
        """Changes not yet in the channel."""
        return len(self._queue) + len(self._urgent)

    def add(self, posts: Sequence[AuditPost]) -> None:
        """Queue ``posts`` (in order); they go out in the background."""
        if not posts:
            return
        now = self._clock()
        for post in posts:
            (self._urgent if post.alone else self._queue).append(_Waiting(post, now))
            if post.alone:
                self._wake.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._drain())

    async def flush(self, budget_seconds: float) -> None:
        """Post everything waiting now (no digest window), within ``budget_seconds``
        (shutdown). What is still waiting then stays queued (a later :meth:`add` sends
        it) and is logged by grant id; the sending stops till then."""
        self._hurry = True
        self._wake.set()
        worker = self._worker
        if worker is not None and not worker.done():
            await asyncio.wait({worker}, timeout=budget_seconds)
            if not worker.done():
                worker.cancel()
                await asyncio.wait({worker})
        self._hurry = False
        if self.waiting:
            ids = sorted({w.post.grant_id for w in (*self._urgent, *self._queue)})
            log.error(
                "%d audit-channel posts not sent yet (grants %s); the audit stream has them",
                self.waiting,
                ", ".join(ids),
            )

    # -- the worker ----------------------------------------------------------------------

    async def _drain(self) -> None:
        while self._queue or self._urgent:
            try:
                await self._next()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not end the audit channel for good
                log.exception("the audit-channel sender failed; trying again")
                await self._pause()
        self._digesting = False

    async def _next(self) -> None:
        if self._urgent:
            alone = self._urgent[0]
            await self._send(alone.post.message, [alone])
            return
        if not self._queue:
            return
        if not self._digesting and len(self._queue) <= self._pace.backlog:
            first = self._queue[0]
            await self._send(first.post.message, [first])
            return
        self._digesting = True
        oldest = self._queue[0].since
        due = oldest + self._pace.window_seconds
        if not self._hurry and self._clock() < due:
            await self._until_arrival_or(due)
            return
        batch = list(self._queue)
        order: dict[str, int] = {}
        for w in batch:
            order.setdefault(w.post.event, len(order))
        batch.sort(key=lambda w: order[w.post.event])  # stable: ids stay in order
        groups: dict[str, list[str]] = {}
        for w in batch:
            groups.setdefault(w.post.event, []).append(w.post.grant_id)
        span = self._clock() - oldest
        taken = 0
        for digest in audit_digests(list(groups.items()), span):
            covered = batch[taken : taken + digest.count]
            if not await self._send(digest.message, covered):
                return  # kept: the next round digests them again, with any newcomers
            taken += digest.count
        if not self._queue:
            self._digesting = False

    async def _send(self, message: Message, covered: list[_Waiting]) -> bool:
        """Post ``message`` at the channel's pace; on success the changes it covers
        leave the queue. A passing refusal keeps them (after a pause); False then."""
        await self._token()
        try:
            await self._post(message)
        except SlackApiError as exc:
            code = error_code(exc)
            if is_transient(code):
                await self._pause(retry_after_seconds(exc))
                return False
            self._drop(covered)
            self._log_refused(covered)
            await self._refused(exc)
            return True
        except (SlackClientError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("audit channel post failed (%s); trying again", error_code(exc))
            await self._pause()
            return False
        self._drop(covered)
        self._failures = 0
        self.posted += 1
        return True

    def _drop(self, covered: list[_Waiting]) -> None:
        """The changes ``covered`` are told (or refused for good): out of the queues."""
        for queue in (self._urgent, self._queue):
            if len(covered) == 1 and queue and queue[0] is covered[0]:
                queue.popleft()
                return
        gone = {id(w) for w in covered}
        self._urgent = deque(w for w in self._urgent if id(w) not in gone)
        self._queue = deque(w for w in self._queue if id(w) not in gone)

    @staticmethod
    def _log_refused(covered: list[_Waiting]) -> None:
        log.error(
            "the audit channel refused %d posts (grants %s); the audit stream has them",
            len(covered),
            ", ".join(sorted({w.post.grant_id for w in covered})),
        )

    async def _token(self) -> None:
        """Wait until the channel takes one more message, and take it."""
        pace = self._pace
        while True:
            now = self._clock()
            refill = (now - self._tokens_at) * pace.per_second
            self._tokens = min(float(pace.burst), self._tokens + refill)
            self._tokens_at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            await self._sleep((1 - self._tokens) / pace.per_second)

    async def _pause(self, retry_after: float | None = None) -> None:
        """After a failed attempt: Slack's ``Retry-After``, else a growing backoff."""
        self._failures += 1
        self._tokens = 0.0
        self._tokens_at = self._clock()
        backoff = min(self._pace.retry_cap_seconds, 2.0 ** min(self._failures, 16))
        await self._sleep(retry_after if retry_after is not None else backoff)

    async def _until_arrival_or(self, due: float) -> None:
        """Sleep until ``due``, or until an ``alone`` post or a flush comes."""
        self._wake.clear()
        if self._urgent or self._hurry:
            return
        wait = asyncio.ensure_future(self._wake.wait())
        nap = asyncio.ensure_future(self._sleep(max(0.0, due - self._clock())))
        try:
            await asyncio.wait({wait, nap}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wait.cancel()
            nap.cancel()
