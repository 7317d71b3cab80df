"""Offboarding: block a person, end everything they hold or asked for, and prove it gone.

Also finding the person (by email or Slack user ID, even one the directory has
forgotten) and re-enabling them. Each call makes progress and reports the
truth (:class:`OffboardResult`); the durable cleanup steps keep at it meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from bot.errors import UnknownUser
from bot.lifecycle import State
from bot.models import Grant
from bot.models import Offboarding as OffboardingRecord
from bot.store import Change
from bot.usecases.authorization import Authorization
from bot.usecases.deps import Deps
from bot.usecases.ending import Ending
from bot.usecases.receipts import Receipts
from bot.usecases.requests import Requests
from k8s import grants as k8s_grants
from k8s.errors import ClusterError

log = logging.getLogger(__name__)

Progress = Callable[[Grant, str], object]  # hears of each grant offboarding ends, and how


class PendingCleanup(NamedTuple):
    """A grant (by id) whose objects may still exist on ``cluster``."""

    grant: str
    cluster: str


@dataclass(frozen=True)
class OffboardResult:
    """What offboarding achieved so far, derived from the store and the clusters.

    ``revoked``/``cancelled``: the user's grants and requests ended since they
    were offboarded (the same lists on every call). ``pending``: grants whose
    objects may still exist, by cluster. ``verified``: per cluster the user had
    access on, when the bot last confirmed none of their objects remain.
    """

    user: str
    revoked: list[str]
    cancelled: list[str]
    pending: list[PendingCleanup] = field(default_factory=list)
    verified: dict[str, datetime] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return not self.pending


@dataclass(frozen=True)
class Offboarding:
    """Offboarding a person and finding who they are; ``receipts`` proves their access gone."""

    deps: Deps
    authz: Authorization
    requests: Requests
    ending: Ending
    receipts: Receipts

    async def resolve_user(self, *, email: str | None = None, user_id: str | None = None) -> str:
        """The Slack user ID for an email or ID; UnknownUser if nobody has it.

        A user the directory has forgotten but who still holds grants here is
        known: offboarding must be able to reach them.
        """
        directory = self.deps.directory
        if user_id:
            if await directory.user_exists(user_id) or await self.deps.store.by_user(user_id):
                return user_id
            raise UnknownUser(f"no Slack user with id {user_id!r}")
        if email:
            found = await directory.user_for_email(email)
            if found:
                return found
        raise UnknownUser(f"no Slack user with email {email!r}")

    async def offboard(
        self,
        user: str,
        actor: str,
        reason: str = "",
        *,
        progress: Progress | None = None,
    ) -> OffboardResult:
        """Block the user, end everything they hold or asked for, and remove their objects.

        Each call makes progress and reports the truth: ``pending`` names every
        grant whose objects may still exist (a cluster did not answer); the
        durable cleanup steps keep at it meanwhile. Repeating a finished call
        returns the same answer without touching the clusters again.
        ``progress`` hears about each grant as it is ended (the CLI prints it).
        """
        store = self.deps.store
        now = self.deps.clock()
        await store.mark_offboarded(OffboardingRecord(user=user, at=now, by=actor, reason=reason))
        record = await store.offboarding(user)
        since = record.at if record is not None else now
        why = reason or "offboarded"
        for g in await store.by_user(user):
            if g.state == State.PENDING:
                await self.requests.cancel_pending(g.id, actor, why)
            elif not g.ended:  # live, or an approved extension request
                result = await self.ending.end_state(g.id, State.REVOKED, actor, why)
                if progress is not None and g.kind == "access":
                    progress(g, "revoked" if result is not None else "already ended")
        await self._withdraw_approvals(user)
        pending, verified = await self._sweep(user)
        grants = await store.by_user(user)

        def ended_since(g: Grant, state: State) -> bool:
            step = g.history[-1] if g.history else None
            return g.state == state and step is not None and step.at >= since

        return OffboardResult(
            user=user,
            revoked=[g.id for g in grants if g.kind == "access" and ended_since(g, State.REVOKED)],
            cancelled=[g.id for g in grants if ended_since(g, State.CANCELLED)],
            pending=pending,
            verified=verified,
        )

    async def reenable(self, user: str, actor: str) -> bool:
        await self.authz.require_admin(actor, "re-enable an offboarded user")
        return await self.deps.store.reenable(user)

    async def _withdraw_approvals(self, user: str) -> None:
        """An offboarded person's approvals on pending requests stop counting (and showing)."""
        store = self.deps.store
        for g in await store.by_state(State.PENDING):
            if user in g.approvals:
                await store.update(
                    g.id,
                    lambda c: (
                        Change(
                            c.model_copy(update={"approvals": c.tally.without({user}).approvers})
                        )
                        if c.state == State.PENDING and user in c.approvals
                        else None
                    ),
                )

    async def _sweep(self, user: str) -> tuple[list[PendingCleanup], dict[str, datetime]]:
        """Delete and look for the user's objects on each cluster not yet confirmed clean."""
        store = self.deps.store
        by_cluster: dict[str, list[Grant]] = {}
        for g in await store.by_user(user):
            if g.kind == "access" and (g.may_have_objects or g.objects_gone_at is not None):
                by_cluster.setdefault(g.cluster, []).append(g)
        swept = await asyncio.gather(
            *(self._sweep_cluster(user, c, gs) for c, gs in sorted(by_cluster.items()))
        )
        pending = sorted(
            (p for _, left, _ in swept for p in left), key=lambda p: (p.cluster, p.grant)
        )
        verified = {cluster: at for cluster, _, at in swept if at is not None}
        return pending, verified

    async def _sweep_cluster(
        self, user: str, cluster: str, grants: list[Grant]
    ) -> tuple[str, list[PendingCleanup], datetime | None]:
        """One cluster of ``_sweep``: the grants still pending there, or when it was
        verified clean of ``user``'s objects (None while any is pending)."""
        open_ = [g for g in grants if g.may_have_objects]
        if not open_:
            return cluster, [], max(g.objects_gone_at for g in grants if g.objects_gone_at)
        try:
            at = await self._confirm_gone(cluster, user, {g.id for g in grants})
        except ClusterError as exc:
            log.warning("offboarding %s: cluster %s not clean yet: %s", user, cluster, exc)
            for g in open_:
                if (await self.deps.grant(g.id)).ended:
                    await self.receipts.receipt(g.id, cluster)  # the failed receipt: an alert
            return cluster, [PendingCleanup(g.id, cluster) for g in open_], None
        # Gone as far as a listing shows; the receipts prove it grant by grant.
        pending = [
            PendingCleanup(g.id, cluster)
            for g in open_
            if not await self.receipts.receipt(g.id, cluster, again=True)
        ]
        if pending:
            return cluster, pending, None
        done = await self.deps.store.many(g.id for g in grants)
        return cluster, [], max((g.objects_gone_at for g in done if g.objects_gone_at), default=at)

    async def _confirm_gone(self, cluster_name: str, user: str, grant_ids: set[str]) -> datetime:
        """Delete every object of these grants (or naming ``user``), then look again.

        One attempt, no backoff: the caller (an HR system) retries, and the
        cleanup steps retry durably. Raises ClusterError while anything remains.
        """
        cluster = self.deps.clusters[cluster_name]

        async def mine() -> dict[str, list[k8s_grants.ObjectRef]]:
            found: dict[str, list[k8s_grants.ObjectRef]] = {}
            for o in await k8s_grants.list_managed(cluster):
                if o.grant_id in grant_ids or o.requester == user:
                    found.setdefault(o.grant_id, []).append(o.ref)
            return found

        found = await mine()
        for current in await self.deps.store.many(found):
            if not current.ended:
                raise ClusterError(f"grant {current.id} has not ended", cluster=cluster_name)
        # Exactly what was listed, pinned by UID, grants in parallel (the pool bounds it).
        await asyncio.gather(*(k8s_grants.revoke_objects(cluster, refs) for refs in found.values()))
        left = await mine()
        if left:
            raise ClusterError(
                f"cluster {cluster_name}: objects of {', '.join(sorted(left))} remain",
                cluster=cluster_name,
                transient=True,
            )
        return self.deps.clock()
