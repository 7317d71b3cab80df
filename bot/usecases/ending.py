"""Ending a grant: revoke, expire, and the cleanup that removes its objects until proven gone.

The state changes first, and with it the grant's next step becomes its cleanup
(:mod:`bot.agenda`), so the user sees the truth at once and a crash before the
deletes finish leaves a due step that finishes them; the inline cleanup then
deletes and records the receipt (:mod:`bot.usecases.receipts`). The step
handlers of expiry, reminder and cleanup live here too.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from bot.lifecycle import State, is_terminal
from bot.models import Grant
from bot.retry import retrying
from bot.scheduler import Defer
from bot.store import Change
from bot.usecases.authorization import Authorization
from bot.usecases.deps import SYSTEM, Deps
from bot.usecases.receipts import Receipts
from bot.usecases.requests import Requests
from k8s import grants as k8s_grants
from k8s.errors import ClusterError
from k8s.grants import ObjectRef

log = logging.getLogger(__name__)

# Slack's least time to send an expiry reminder, even when the expiry is due already.
REMINDER_PATIENCE_SECONDS = 5.0


@dataclass(frozen=True)
class Revocation:
    """What a revoke did.

    ``grant``: the grant (or request) as it stands after the call; its state
    says how it ended (cancelled, revoked, or another end that raced this one).
    ``was``: its state when the revoke was asked.
    """

    grant: Grant
    was: State

    @property
    def state(self) -> State:
        """The state it is in now (``grant.state``)."""
        return self.grant.state

    @property
    def already_over(self) -> bool:
        """It had ended before the revoke was asked: nothing was revoked."""
        return is_terminal(self.was)


@dataclass(frozen=True)
class Ending:
    """Ending grants; ``requests`` cancels a pending one, ``receipts`` proves an end."""

    deps: Deps
    authz: Authorization
    requests: Requests
    receipts: Receipts

    async def revoke(
        self, grant_id: str, actor: str, reason: str = "", *, operator: bool = False
    ) -> Revocation:
        """End a grant (or cancel a pending request). ``operator``: the CLI, already trusted.

        An extension request is only ever cancelled or (approved, not yet
        applied) revoked on its own: it has no objects, and revoking it never
        touches the grant it extends. Once applied it has ended. Raises
        UnknownGrant, and NotAllowed (audited) unless ``actor`` owns it or is an admin.
        """
        grant = await self.deps.grant(grant_id)
        if not operator:
            await self.authz.require_owner_or_admin(grant, actor, "revoke")
        if grant.state == State.PENDING:
            after = await self.requests.cancel_pending(grant_id, actor, reason)
        else:
            after = await self.end(grant_id, State.REVOKED, actor, reason)
        return Revocation(after or await self.deps.grant(grant_id), was=grant.state)

    async def end(self, grant_id: str, target: State, actor: str, reason: str) -> Grant | None:
        """Move a live grant to ``target`` and remove its objects.

        The state changes first, which makes the cleanup the grant's next step
        (due one ``cleanup_grace`` later, so it does not race the inline cleanup
        that normally makes it moot), so the user sees the truth at once and a
        crash before the deletes finish leaves a due step that finishes them.
        """
        ended = await self.end_state(grant_id, target, actor, reason)
        if ended is not None and ended.kind == "access":
            await self.cleanup(ended.id, ended.cluster, ended.objects)
        return ended

    async def end_state(
        self, grant_id: str, target: State, actor: str, reason: str
    ) -> Grant | None:
        """Only the state change of :meth:`end` (its cleanup step follows from it)."""
        deps = self.deps
        now = deps.clock()

        def decide(g: Grant) -> Change | None:
            if g.kind == "extend":
                # Only an approved request not yet applied ends this way (never by
                # expiry); its objects are its parent's: it has none of its own to remove
                # (the agenda gives it no cleanup).
                if g.state != State.APPROVED or target == State.EXPIRED:
                    return None
                return Change(g.moved(target, actor, now, reason))
            if not g.live or (target == State.EXPIRED and g.state != State.ACTIVE):
                return None
            if target == State.EXPIRED and (g.expires_at is None or g.expires_at > now):
                return None  # extended since the step was read: its new end is filed
            return Change(g.moved(target, actor, now, reason))  # next step: the cleanup

        return await deps.store.update(grant_id, decide)

    async def cleanup(
        self, grant_id: str, cluster_name: str, objects: tuple[ObjectRef, ...] | None = None
    ) -> list[str]:
        """Delete an ended grant's objects, then prove on the cluster that access is gone.

        Never raises for the cluster: a refused or failed delete is logged and
        left to the verification, whose failed receipt raises the alert; the
        grant's cleanup step (its next step since it ended) then runs again until
        a receipt verifies. Slack hears of it only after the store has the receipt.
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
        # Verified: the grant has no next step any more; else its cleanup step stays due.
        await self.receipts.receipt(grant_id, cluster_name, again=bool(deleted))
        return deleted

    async def delete_objects(
        self, grant_id: str, cluster_name: str, objects: tuple[ObjectRef, ...] | None
    ) -> list[str]:
        """Delete a grant's objects: by recorded UID when it knows them, else by label."""
        cluster = self.deps.clusters[cluster_name]
        if objects is not None:
            return await k8s_grants.revoke_objects(cluster, objects)
        return await k8s_grants.revoke(cluster, grant_id)

    async def on_cleanup(self, grant: Grant) -> None:
        """The cleanup step: delete by recorded UID (else by label), then verify; run again
        one ``cleanup_grace`` later (Defer: never counted as a failure, never given up)
        until a receipt verifies."""
        deleted: list[str] = []
        try:
            deleted = await self.delete_objects(grant.id, grant.cluster, grant.objects)
        except ClusterError as exc:
            log.error("cleanup of %s on %s failed: %s", grant.id, grant.cluster, exc,
                      extra={"grant_id": grant.id})  # fmt: skip
        if not await self.receipts.receipt(grant.id, grant.cluster, again=bool(deleted)):
            raise Defer(self.deps.cleanup_grace.total_seconds(), "receipt not verified yet")

    async def sweep(self, grant_id: str, cluster: str, grant: Grant | None) -> None:
        """The reconciler's sweep: remove a grant's objects on ``cluster`` by label (it saw
        objects the recorded UIDs may not cover, or of a grant Redis no longer knows);
        a known ended grant's receipt is checked again."""
        if grant is not None and grant.kind != "access":
            return  # an extension request owns no objects; never touch its parent's
        if grant is None:
            await self.delete_objects(grant_id, cluster, None)
            return
        deleted: list[str] = []
        try:
            deleted = await self.delete_objects(grant_id, cluster, None)
        except ClusterError as exc:
            log.error("sweep of %s on %s failed: %s", grant_id, cluster, exc,
                      extra={"grant_id": grant_id})  # fmt: skip
        await self.receipts.receipt(grant_id, cluster, again=bool(deleted))

    async def on_expire(self, grant: Grant) -> None:
        """The expiry step: end the active grant (the runner calls it only once due)."""
        await self.end(grant.id, State.EXPIRED, SYSTEM, "expired")

    async def on_remind(self, grant: Grant) -> None:
        """The reminder step: warn the requester, then record it was sent for this expiry
        (a crash in between sends it again: at least once).

        The expiry waits behind this step, so Slack gets only the time left until it
        (at least REMINDER_PATIENCE_SECONDS): a throttled Slack may cost a reminder,
        never a late revocation (say, both overdue after downtime).
        """
        expires = grant.expires_at
        left = 0.0 if expires is None else (expires - self.deps.clock()).total_seconds()
        try:
            await asyncio.wait_for(
                self.deps.notifier.remind(grant), max(left, REMINDER_PATIENCE_SECONDS)
            )
        except TimeoutError:
            log.warning("the expiry reminder of %s was not sent in time", grant.id,
                        extra={"grant_id": grant.id})  # fmt: skip

        def sent(g: Grant) -> Change | None:
            if g.state != State.ACTIVE or g.expires_at != expires or g.reminded_for == expires:
                return None
            return Change(g.model_copy(update={"reminded_for": expires}))

        await self.deps.store.update(grant.id, sent)
