"""Ending a grant: revoke, expire, and the cleanup that removes its objects until proven gone.

The state changes first, together with a durable cleanup job, so the user sees
the truth at once and a crash before the deletes finish leaves a job that
finishes them; the inline cleanup then deletes and records the receipt
(:mod:`bot.usecases.receipts`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.lifecycle import LIVE, State
from bot.models import ClusterObject, Grant
from bot.retry import retrying
from bot.scheduler import Job, RetryLater
from bot.store import Change
from bot.usecases import jobs
from bot.usecases.authorization import Authorization
from bot.usecases.deps import SYSTEM, Deps
from bot.usecases.receipts import Receipts
from bot.usecases.requests import Requests
from k8s import grants as k8s_grants
from k8s.errors import ClusterError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ending:
    """Ending grants; ``requests`` cancels a pending one, ``receipts`` proves an end."""

    deps: Deps
    authz: Authorization
    requests: Requests
    receipts: Receipts

    async def revoke(
        self, grant_id: str, actor: str, reason: str = "", *, operator: bool = False
    ) -> Grant:
        """End a grant (or cancel a pending request). ``operator``: the CLI, already trusted.

        An extension request is only ever cancelled or (approved, not yet
        applied) revoked on its own: it has no objects, and revoking it never
        touches the grant it extends. Once applied it has ended.
        """
        grant = await self.deps.grant(grant_id)
        if not operator:
            await self.authz.require_owner_or_admin(grant, actor, "revoke")
        if grant.state == State.PENDING:
            cancelled = await self.requests.cancel_pending(grant_id, actor, reason)
            return cancelled or await self.deps.grant(grant_id)
        ended = await self.end(grant_id, State.REVOKED, actor, reason)
        return ended or await self.deps.grant(grant_id)

    async def end(
        self, grant_id: str, target: State, actor: str, reason: str, *, running: str = ""
    ) -> Grant | None:
        """Move a live grant to ``target`` and remove its objects.

        The state changes first, together with a cleanup job, so the user sees
        the truth at once and a crash before the deletes finish leaves a job
        that finishes them. That job waits one lease, so it does not race the
        inline cleanup that normally cancels it. ``running``: the job calling
        us, which finishes by itself and must not be cancelled under its feet.
        """
        ended = await self.end_state(grant_id, target, actor, reason, running=running)
        if ended is not None and ended.kind == "access":
            await self.cleanup(ended.id, ended.cluster, ended.objects)
        return ended

    async def end_state(
        self, grant_id: str, target: State, actor: str, reason: str, *, running: str = ""
    ) -> Grant | None:
        """Only the state change of :meth:`end` (with its durable cleanup job)."""
        deps = self.deps
        now = deps.clock()

        def decide(g: Grant) -> Change | None:
            if g.state not in LIVE:
                return None
            if target == State.EXPIRED and g.state != State.ACTIVE:
                return None
            if g.kind == "extend":
                # Its objects are its parent's: there is nothing of its own to remove.
                return Change(
                    g.moved(target, actor, now, reason), cancel=[jobs.provision_job(g.id)]
                )
            return Change(
                g.moved(target, actor, now, reason),
                schedule=[jobs.cleanup_safety_net(deps, g, now)],
                cancel=[j for j in jobs.live_jobs(g.id) if j != running],
            )

        return await deps.store.update(grant_id, decide)

    async def cleanup(
        self, grant_id: str, cluster_name: str, objects: tuple[ClusterObject, ...] | None = None
    ) -> list[str]:
        """Delete an ended grant's objects, then prove on the cluster that access is gone.

        Never raises for the cluster: a refused or failed delete is logged and
        left to the verification, whose failed receipt raises the alert; the
        cleanup job (scheduled when the grant ended) then runs again until a
        receipt verifies. Slack hears of it only after the store has the receipt.
        """
        deps = self.deps
        deleted: list[str] = []
        try:
            deleted = await retrying(
                f"revoke {grant_id}",
                lambda: self.delete_objects(grant_id, cluster_name, objects),
                deps.backoff,
            )
        except ClusterError as exc:
            log.error("revoking %s on %s failed: %s", grant_id, cluster_name, exc,
                      extra={"grant_id": grant_id})  # fmt: skip
        if await self.receipts.receipt(grant_id, cluster_name, again=bool(deleted)):
            await deps.scheduler.cancel(jobs.cleanup_job(grant_id))
        else:
            # Verification failed: make sure the durable retry exists, whoever ended it.
            due = deps.clock() + deps.cleanup_grace
            await deps.scheduler.schedule(
                jobs.job(jobs.cleanup_job(grant_id), due, cluster=cluster_name)
            )
        return deleted

    async def delete_objects(
        self, grant_id: str, cluster_name: str, objects: tuple[ClusterObject, ...] | None
    ) -> list[str]:
        """Delete a grant's objects: by recorded UID when it knows them, else by label."""
        cluster = self.deps.clusters[cluster_name]
        if objects is not None:
            refs = [k8s_grants.ObjectRef(o.kind, o.namespace, o.name, o.uid) for o in objects]
            return await k8s_grants.revoke_objects(cluster, refs)
        return await k8s_grants.revoke(cluster, grant_id)

    async def on_cleanup_job(self, j: Job) -> None:
        """The durable cleanup: delete, then verify; again later until a receipt verifies."""
        deps = self.deps
        grant_id = jobs.grant_of(j)
        grant = await deps.store.get(grant_id)
        if grant is not None and grant.kind != "access":
            return  # an extension request owns no objects; never touch its parent's
        cluster = j.data.get("cluster") or (grant.cluster if grant else None)
        # The reconciler asks by label: it saw objects the recorded UIDs may not cover.
        objects = None if grant is None or j.data.get("by") == "label" else grant.objects
        if cluster is None:
            return
        if grant is None:
            await self.delete_objects(grant_id, cluster, objects)
            return
        deleted: list[str] = []
        try:
            deleted = await self.delete_objects(grant_id, cluster, objects)
        except ClusterError as exc:
            log.error("cleanup of %s on %s failed: %s", grant_id, cluster, exc,
                      extra={"grant_id": grant_id})  # fmt: skip
        if not await self.receipts.receipt(grant_id, cluster, again=bool(deleted)):
            # Scheduled afresh (the scheduler keeps a job moved while it ran), not
            # failed: a failure count would give up one day; this runs until verified.
            due = deps.clock() + deps.cleanup_grace
            await deps.scheduler.schedule(jobs.job(j.id, due, **j.data))

    async def on_expire_job(self, j: Job) -> None:
        """End an active grant at its expiry (never early)."""
        grant_id = jobs.grant_of(j)
        grant = await self.deps.store.get(grant_id)
        if grant is None or grant.state != State.ACTIVE or grant.expires_at is None:
            return
        early = (grant.expires_at - self.deps.clock()).total_seconds()
        if early > 0:
            current = await self.deps.scheduler.get(j.id)
            if current is not None and current.due != j.due:
                return  # extended while we were claimed: the moved job will fire
            # Claimed a hair early (rounding, a replica's clock): never drop an
            # expiry on the floor, run again when it is due.
            raise RetryLater(early, "claimed before the grant's expiry")
        await self.end(grant_id, State.EXPIRED, SYSTEM, "expired", running=j.id)

    async def on_remind_job(self, j: Job) -> None:
        """Warn the requester that an active grant expires soon."""
        grant = await self.deps.store.get(jobs.grant_of(j))
        if grant is not None and grant.state == State.ACTIVE:
            await self.deps.notifier.remind(grant)
