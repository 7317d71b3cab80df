"""Make the clusters agree with the store, and the due index with the agenda.

Runs at start-up and every ``interval`` seconds. Objects carry their own
``expires-at``, so even if Redis is wiped nothing outlives its time: an object
whose grant is unknown gets a sweep entry (a cleanup by label, the record's
tombstone) at its expiry (or now, if that has passed or is unreadable); an
object whose grant has ended is swept at once.

What happens next to each grant is not restored here: the agenda
(:mod:`bot.agenda`) says it and the store files it with every write. The pass
only re-files a grant of a pending or live state whose entry the index lost (a
step dead-lettered after too many failures, or a Redis that lost writes), and, on
its first pass, ended grants with no entry (their FORGET, :mod:`bot.retention`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from bot.leases import Entries, Job
from bot.lifecycle import State
from bot.models import Grant, utcnow
from bot.retention import refile_ended
from bot.steps import SWEEP
from bot.store import Change, Store
from k8s import grants as k8s_grants
from k8s.clients import ClusterRegistry
from k8s.errors import ClusterError

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    revoked: list[str] = field(default_factory=list)  # sweep due now
    deferred: list[str] = field(default_factory=list)  # sweep filed at the objects' expiry
    rescheduled: list[str] = field(default_factory=list)  # grants re-filed in the due index
    repaired: list[str] = field(default_factory=list)  # objects given the record's facts
    vanished: list[str] = field(default_factory=list)  # active grants whose objects are gone
    errors: list[str] = field(default_factory=list)

    @property
    def actions(self) -> int:
        return (
            len(self.revoked) + len(self.deferred) + len(self.rescheduled)
            + len(self.repaired) + len(self.vanished)
        )  # fmt: skip


@dataclass
class Reconciler:
    """``interval``: seconds between passes; ``clock``: UTC now; ``on_report``: told each
    pass's report (metrics)."""

    store: Store
    scheduler: Entries
    clusters: ClusterRegistry
    interval: float = 60.0
    clock: Callable[[], datetime] = utcnow
    on_report: Callable[[ReconcileReport], None] | None = None
    _ended_filed: bool = field(default=False, init=False)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.reconcile()
            except Exception:
                log.exception("reconcile pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)

    async def reconcile(self) -> ReconcileReport:
        report = ReconcileReport()
        await asyncio.gather(*(self._cluster(c.name, report) for c in self.clusters))
        await self._refile_lost(report)
        if not self._ended_filed:
            report.rescheduled += await refile_ended(self.store, self.scheduler)
            self._ended_filed = True
        if report.actions or report.errors:
            log.info(
                "reconciled: %d revoked, %d deferred, %d re-filed, %d repaired, %d errors",
                len(report.revoked), len(report.deferred),
                len(report.rescheduled), len(report.repaired), len(report.errors),
            )  # fmt: skip
        if self.on_report is not None:
            self.on_report(report)
        return report

    async def _cluster(self, name: str, report: ReconcileReport) -> None:
        # Read before the listing begins: these grants' objects existed before it did.
        active = [g for g in await self.store.by_state(State.ACTIVE) if g.cluster == name]
        try:
            objects = await k8s_grants.list_managed(self.clusters[name])
        except ClusterError as exc:
            report.errors.append(str(exc))
            return
        by_grant: dict[str, list[k8s_grants.ManagedObject]] = defaultdict(list)
        for obj in objects:
            by_grant[obj.grant_id].append(obj)
        grants = {g.id: g for g in await self.store.many(by_grant)}
        now = self.clock()
        for grant_id, objs in by_grant.items():
            grant = grants.get(grant_id)
            if grant is not None and grant.state == State.ACTIVE and grant.kind == "access":
                # The record is the truth for a live grant (an extension, say):
                # its objects get the record's facts, never a delete by stale ones.
                await self._repair(name, grant, objs, report)
                continue
            due = self._cleanup_due(grant, objs, now)
            if due is None:
                continue
            await self.scheduler.schedule(
                Job(id=grant_id, kind=SWEEP, due=due.timestamp(), data={"cluster": name})
            )
            (report.revoked if due <= now else report.deferred).append(grant_id)
        await self._vanished(active, by_grant, report)

    async def _vanished(
        self,
        active: list[Grant],
        by_grant: dict[str, list[k8s_grants.ManagedObject]],
        report: ReconcileReport,
    ) -> None:
        """An active grant whose ServiceAccount or binding is gone grants nothing: say so.

        Only ``active``, the grants read as active before the listing began, count:
        their objects existed before it, so the listing must have seen them (no clock
        is compared; a record whose times were rewritten changes nothing). One that
        changed since (an extension, say) is left to the next pass. The grant is
        revoked, which tells its owner, and its remains are cleaned up (the agenda's
        cleanup step).
        """
        now = self.clock()
        why = "its ServiceAccount or binding was deleted outside AccessBot"
        for grant in active:
            if grant.kind != "access":
                continue
            kinds = {o.kind for o in by_grant.get(grant.id, [])}
            if "ServiceAccount" in kinds and kinds & {"RoleBinding", "ClusterRoleBinding"}:
                continue
            version = grant.version

            def decide(g: Grant, version: int = version) -> Change | None:
                if g.state != State.ACTIVE or g.version != version:
                    return None
                return Change(g.moved(State.REVOKED, "reconciler", now, why))

            if await self.store.update(grant.id, decide) is not None:
                report.vanished.append(grant.id)

    async def _repair(
        self,
        name: str,
        grant: Grant,
        objs: list[k8s_grants.ManagedObject],
        report: ReconcileReport,
    ) -> None:
        if grant.expires_at is None:
            return
        expires = grant.expires_at.replace(microsecond=0)
        stale = [
            o
            for o in objs
            if o.expires_at != expires
            or o.approved_by != grant.approvals
            or o.requester != grant.requester
        ]
        if not stale:
            return
        current = await self.store.get(grant.id)
        if current is None or current.version != grant.version:
            return  # changed since it was read (an extension wrote its own facts): next pass
        facts = k8s_grants.grant_annotations(
            grant.requester, grant.role, grant.expires_at, grant.approvals
        )
        try:
            await k8s_grants.annotate(self.clusters[name], grant.id, facts)
        except ClusterError as exc:
            report.errors.append(str(exc))
            return
        report.repaired.append(grant.id)

    @staticmethod
    def _cleanup_due(
        grant: Grant | None, objs: list[k8s_grants.ManagedObject], now: datetime
    ) -> datetime | None:
        """When this grant's objects must go; None if they may stay."""
        expiries = [o.expires_at for o in objs]
        earliest = min((e for e in expiries if e is not None), default=None)
        if grant is not None and not grant.ended:
            # Live grants are the workflow's; only a lapsed expiry is ours to fix.
            return now if earliest is not None and earliest <= now else None
        if grant is None and earliest is not None and None not in expiries:
            # Unknown grant (e.g. Redis lost): trust the object's own expiry.
            return max(earliest, now)
        return now

    async def _refile_lost(self, report: ReconcileReport) -> None:
        """Every pending or live grant has its entry in the due index (filed by the store
        with each write; lost only to a dead-lettered step or a Redis that lost writes)."""
        grants = await self.store.by_state(
            State.PENDING, State.APPROVED, State.PROVISIONING, State.ACTIVE
        )
        for grant in grants:
            if await self.scheduler.get(grant.id) is not None:
                continue
            if await self.store.refile(grant.id) is not None:
                report.rescheduled.append(grant.id)
