"""Provisioning: the saga from an approved request to an active grant with its kubeconfig delivered.

approved → provisioning → objects and token → verify the kubeconfig → deliver →
active, or failed with whatever was made taken back. Every step is idempotent
and backed by the durable ``provision`` step (:mod:`bot.agenda`), so a crash anywhere
resumes rather than repeats; one delivery claim keeps a resumed attempt from sending a second file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from bot.lifecycle import State
from bot.models import Grant, new_id
from bot.policy import RequestRejected, recheck_request
from bot.policy_breakglass import recheck_break_glass
from bot.retry import retrying
from bot.scheduler import RetryLater
from bot.store import Change
from bot.usecases.authorization import APPROVER_OFFBOARDED, REQUESTER_OFFBOARDED
from bot.usecases.credentials import deliver, grant_spec, verified_kubeconfig
from bot.usecases.deps import SYSTEM, Deps, user_reason
from bot.usecases.ending import Ending
from k8s import grants as k8s_grants
from k8s.errors import Failure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Provisioning:
    """The provisioning saga; ``ending`` takes back what a failed or ended attempt made."""

    deps: Deps
    ending: Ending

    async def provision(self, grant_id: str) -> Grant | None:
        """approved → provisioning → objects → verify → deliver → active, or rolled back.

        Returns the grant as it ends up (None if there is no such grant). A
        :class:`~bot.errors.Failure` (a cluster error after the retries, a missing
        namespace, an unmanaged object in the way, a kubeconfig that fails
        verification, :class:`~bot.slack.notifier.DeliveryFailed`) fails the grant
        and takes back what was made; RetryLater when another attempt is
        delivering; any other exception is a bug and propagates.
        """
        deps = self.deps
        grant = await self._begin(grant_id)
        if grant is None:
            return await deps.store.get(grant_id)
        _passed(deps, "provisioning")
        # Requested under an older policy: the policy in force when anything is
        # created decides (role, ClusterRole, namespace, duration, approvals).
        try:
            if grant.break_glass is not None:  # taken without approval: ratified later
                recheck_break_glass(deps.policy, grant.role)
            given = None if grant.break_glass is not None else len(grant.approvals)
            recheck_request(deps.policy, grant.decided, approvals_given=given)
        except RequestRejected as exc:
            return await self.fail(grant, str(exc))
        if grant.starts_at is not None and (
            grant.expires_at is not None and grant.expires_at <= deps.clock()
        ):
            # Scheduled access whose whole window passed while the bot could not act. (An
            # unscheduled grant resumed late is still made and delivered: its own expiry
            # step then ends it, and the requester hears both.)
            return await self.fail(grant, "its scheduled time window ended before it could start")
        try:
            token, content = await self._make_credentials(grant)
            # The end the cluster honours is on record before anyone is told a time.
            grant = await self._record_token(grant, token)
            _passed(deps, "verified")
            if grant.delivered_file:
                delivery = grant.delivered_file
            else:
                claim = await self._claim_delivery(grant.id)
                if claim == "done":
                    # An overlapping attempt delivered and activated it: its objects
                    # are the ones in use, so this attempt leaves them alone.
                    return await deps.store.get(grant.id)
                if claim == "ended":
                    # Revoked (say, offboarded) while we made the objects: no
                    # kubeconfig goes out, and what we made is taken back.
                    await self.ending.cleanup(grant.id, grant.cluster)
                    return await deps.store.get(grant.id)
                if claim == "busy":
                    raise RetryLater(
                        deps.delivery_claim_seconds / 2, "another attempt is delivering"
                    )
                delivery = await deliver(deps, grant, content)
        except Failure as exc:
            # Permanent, or transient after the retries: the attempt ends, cleanly.
            # Anything else (a ValueError, say) is a bug: it fails the step, which is
            # logged and retried, and the grant is never "failed" with its text.
            return await self.fail(grant, user_reason(exc))
        return await self._activate(grant, delivery, token.objects)

    async def _begin(self, grant_id: str) -> Grant | None:
        """Move an approved grant to provisioning (or find one a crash left there)."""
        now = self.deps.clock()

        def start(g: Grant) -> Change | None:
            # Whole seconds: the expires-at annotation has no fractions, and the
            # record and the objects must agree on when access ends.
            # Scheduled access: the clock starts at the start, not when it ran.
            expires = _ceil_second((g.starts_at or now) + g.duration)
            return Change(
                g.moved(State.PROVISIONING, SYSTEM, now).model_copy(update={"expires_at": expires})
            )

        started = await self.deps.store.update_checked(
            grant_id, self._saga_step(State.APPROVED, now, start)
        )
        if started is not None and started.state == State.PROVISIONING:
            return started
        current = await self.deps.store.get(grant_id)
        # A crash mid-saga leaves the grant in provisioning: resume it.
        return current if current is not None and current.state == State.PROVISIONING else None

    async def _make_credentials(self, grant: Grant) -> tuple[k8s_grants.IssuedToken, str]:
        """Objects and token, then the kubeconfig checked exactly as the user will use it."""
        deps = self.deps
        cluster = deps.clusters[grant.cluster]
        spec = grant_spec(deps, grant)
        token = await retrying(
            f"provision {grant.id}",
            lambda: k8s_grants.provision(cluster, spec, on_step=deps.on_provision_step),
            deps.backoff,
        )
        return token, await verified_kubeconfig(deps, grant, spec, token)

    async def _record_token(self, grant: Grant, token: k8s_grants.IssuedToken) -> Grant:
        """Record the grant's end as the token allows it (before delivery)."""
        ends = token.ends_at or grant.expires_at
        insecure = self.deps.clusters[grant.cluster].trust.insecure

        def decide(g: Grant) -> Change | None:
            if g.state != State.PROVISIONING:
                return None
            cap = token.lifetime_seconds if token.shortened else g.token_cap_s
            update = {"expires_at": ends, "token_cap_s": cap, "tls_insecure": insecure}
            if all(getattr(g, k) == v for k, v in update.items()):
                return None
            return Change(g.model_copy(update=update))

        return await self.deps.store.update(grant.id, decide) or grant.model_copy(
            update={"expires_at": ends}
        )

    async def _claim_delivery(self, grant_id: str) -> Literal["claimed", "busy", "done", "ended"]:
        """Become the one attempt allowed to send this grant's kubeconfig.

        Returns "claimed", "busy" (another live attempt holds the claim), "done"
        (another attempt activated it meanwhile) or "ended" (it ended, or its record
        is gone: what was made must be taken back). A claim older than
        ``delivery_claim_seconds`` belongs to an attempt presumed dead (its
        process crashed before recording the delivery), so a crash at that
        exact point costs a delay, never a second file. The requester's
        offboarding is re-checked in this transaction: none is delivered to
        someone offboarded meanwhile.
        """
        store = self.deps.store
        attempt, now = new_id(), self.deps.clock()
        stale = timedelta(seconds=self.deps.delivery_claim_seconds)

        def claim(g: Grant) -> Change | None:
            if g.delivery_claimed_at is not None and now - g.delivery_claimed_at < stale:
                return None  # busy
            return Change(
                g.model_copy(update={"delivery_attempt": attempt, "delivery_claimed_at": now})
            )

        # The verdict is read off the record as committed, never remembered from a run.
        claimed = await store.update_checked(
            grant_id, self._saga_step(State.PROVISIONING, now, claim)
        )
        current = claimed or await store.get(grant_id)
        if current is not None and current.state == State.ACTIVE:
            return "done"
        if current is None or current.state != State.PROVISIONING:
            return "ended"
        return "claimed" if current.delivery_attempt == attempt else "busy"

    def _saga_step(
        self, expected: State, now: datetime, step: Callable[[Grant], Change | None]
    ) -> Callable[[Grant, frozenset[str]], Change | None]:
        """A store decision for one saga step: ``step`` runs only while the grant is in
        ``expected``, and never for a grant whose authority was offboarded meanwhile
        (read in the same transaction): that grant ends instead (see ``_blocked``)."""

        def decide(g: Grant, offboarded: frozenset[str]) -> Change | None:
            if g.state != expected:
                return None
            blocked = self._blocked(g, offboarded, now)
            return blocked if blocked is not None else step(g)

        return decide

    def _blocked(self, g: Grant, offboarded: frozenset[str], now: datetime) -> Change | None:
        """End a grant on its way to active whose requester, or whose only approvals, are
        offboarded: revoked for the former, failed (request again) for the latter."""
        if g.requester in offboarded:
            ended = g.moved(State.REVOKED, SYSTEM, now, REQUESTER_OFFBOARDED)
        elif not g.tally.without(offboarded).satisfied:
            ended = g.moved(State.FAILED, SYSTEM, now, APPROVER_OFFBOARDED).model_copy(
                update={"failure": APPROVER_OFFBOARDED}
            )
        else:
            return None
        return Change(ended)  # its next step: the cleanup of whatever was made

    async def _activate(
        self, grant: Grant, delivery: str, objects: tuple[k8s_grants.ObjectRef, ...]
    ) -> Grant | None:
        deps = self.deps
        now = deps.clock()

        def activate(g: Grant) -> Change | None:
            active = g.moved(State.ACTIVE, SYSTEM, now).model_copy(
                update={"delivered_file": delivery, "objects": objects}
            )
            return Change(active)  # its next steps: the reminder, the expiry

        # The file is already in the user's DM: wait out a Redis blip rather
        # than fail the step and have a retry send it again.
        activated = await deps.store.update_checked(
            grant.id,
            self._saga_step(State.PROVISIONING, now, activate),
            patience=deps.record_patience_seconds,
        )
        if activated is not None and activated.state != State.ACTIVE:
            activated = None  # ended here: offboarded while the file was on its way
        if activated is None:
            current = await deps.store.get(grant.id)
            if current is not None and current.delivered_file == delivery:
                return current  # our write landed; only its reply was lost
            # Revoked (or failed) while we worked: take back what we made.
            await self.ending.cleanup(grant.id, grant.cluster, objects)
            return await deps.store.get(grant.id)
        return activated

    async def fail(self, grant: Grant, reason: str) -> Grant | None:
        """Mark failed and undo whatever was made; the cleanup step is due first."""
        deps = self.deps
        now = deps.clock()
        log.warning("grant %s failed: %s", grant.id, reason, extra={"grant_id": grant.id})
        failed = await deps.store.update(
            grant.id,
            lambda g: (
                None
                if g.ended
                else Change(
                    g.moved(State.FAILED, SYSTEM, now, reason).model_copy(
                        update={"failure": reason}
                    )
                )
            ),
        )
        await self.ending.cleanup(grant.id, grant.cluster)
        return failed or await deps.store.get(grant.id)


def _passed(deps: Deps, step: str) -> None:
    """Tell the crash-drill seam a saga step is done (the objects' steps: k8s.grants)."""
    if deps.on_provision_step is not None:
        deps.on_provision_step(step)


def _ceil_second(at: datetime) -> datetime:
    whole = at.replace(microsecond=0)
    return whole if whole == at else whole + timedelta(seconds=1)
