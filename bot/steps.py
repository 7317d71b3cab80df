"""The step runner: claimed grants go to the one handler of their next step's kind.

The scheduler (:mod:`bot.scheduler`) claims a grant when its due-index entry is due; the
runner loads the grant, asks the agenda again (the grant may have moved on since it was
filed) and dispatches on the :class:`~bot.agenda.StepKind`:

- no record, or no next step: nothing to do (the entry finishes and leaves the index);
- a step not yet due (filed for an earlier step, claimed a hair early): run again at its
  due time (``Defer``, no attempt counted);
- else the handler of that kind. A handler that raises is retried with backoff (attempts,
  dead-lettering as the scheduler's ``max_attempts`` says); one that returns without the
  agenda moving on is a bug in the handler, treated as a failure so the step is retried
  rather than silently dropped.

A *sweep* entry (kind :data:`SWEEP`, ``data["cluster"]``) is the reconciler's request to
remove a grant's objects by label: objects of a grant Redis no longer knows, or of an
ended grant the cluster still shows. After it, the grant's own next step is filed again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from bot.agenda import StepKind
from bot.leases import Defer, Job
from bot.models import Grant, utcnow
from bot.scheduler import Scheduler
from bot.store import Plan, Store

__all__ = ["SWEEP", "StepHandler", "StepRunner", "SweepHandler"]

log = logging.getLogger(__name__)

# The kind of a reconciler's sweep entry: objects whose grant record Redis lost.
SWEEP = "sweep"

StepHandler = Callable[[Grant], Awaitable[None]]
# (grant id, cluster name, the record if any): remove the grant's objects there by label.
SweepHandler = Callable[[str, str, Grant | None], Awaitable[None]]


class NoProgress(RuntimeError):
    """A handler returned but the grant's next step is the one it was asked to take."""


@dataclass
class StepRunner:
    """Runs due steps. ``store``: records and the due index; ``plan``: the agenda (the
    store's); ``clock``: UTC now, the same clock the handlers use (read at each call)."""

    store: Store
    plan: Plan
    clock: Callable[[], datetime] = utcnow
    handlers: dict[StepKind, StepHandler] = field(default_factory=dict)
    sweep: SweepHandler | None = None

    def register(self, kind: StepKind, handler: StepHandler) -> None:
        """The one handler of ``kind`` (registering again replaces it)."""
        self.handlers[kind] = handler

    def attach(self, scheduler: Scheduler) -> None:
        """Have ``scheduler`` run every step kind (and sweeps) through this runner."""
        for kind in StepKind:
            scheduler.register(kind.value, self.run)
        scheduler.register(SWEEP, self.run)

    async def run(self, entry: Job) -> None:
        """Take the due step of the grant ``entry.id``, if it still has one."""
        if entry.kind == SWEEP:
            await self._sweep(entry)
            return
        grant = await self.store.get(entry.id)
        if grant is None:
            return
        now = self.clock()
        step = self.plan(grant, now)
        if step is None:
            return
        if step.due > now:
            raise Defer((step.due - now).total_seconds(), f"{step.kind} not due yet")
        handler = self.handlers.get(step.kind)
        if handler is None:
            raise LookupError(f"no handler for step {step.kind}")
        await handler(grant)
        after = await self.store.get(entry.id)
        if after is not None and self.plan(after, self.clock()) == step:
            raise NoProgress(f"{step.kind} of {entry.id} returned without moving on")

    async def _sweep(self, entry: Job) -> None:
        cluster = str(entry.data.get("cluster") or "")
        if self.sweep is None or not cluster:
            log.error("dropping a sweep without handler or cluster", extra={"job_id": entry.id})
            return
        grant = await self.store.get(entry.id)
        await self.sweep(entry.id, cluster, grant)
        if grant is not None:
            await self.store.refile(entry.id)
