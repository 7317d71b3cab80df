"""The access workflow: every use case the Slack app, the webhook and the CLI share.

Rules live in pure code (:mod:`bot.policy`, :mod:`bot.lifecycle`); this module
sequences I/O around them. The shape of each use case is the same: decide
with pure code inside one store transaction (which also commits the scheduler
jobs the decision implies), then do the slow work, which is idempotent and
backed by a durable job so that a crash anywhere resumes rather than repeats.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from bot.audit import receipt_summary, refusal_entry
from bot.durations import format_duration
from bot.errors import NotAllowed, UnknownGrant, UnknownUser
from bot.lifecycle import LIVE, ExtensionRejected, State, new_expiry
from bot.models import (
    ClusterObject,
    Grant,
    MessageRef,
    Offboarding,
    Receipt,
    new_grant,
    new_id,
    utcnow,
)
from bot.policy import (
    AccessRequestSpec,
    Policy,
    RequestRejected,
    ResolvedRequest,
    is_admin,
    may_approve,
    recheck_request,
    resolve_request,
)
from bot.ports import Directory, Notifier
from bot.retry import Backoff, retrying
from bot.scheduler import Job, RetryLater, Scheduler
from bot.store import Change, RequesterOffboarded, Store
from k8s import grants as k8s_grants
from k8s import names
from k8s import rbac as k8s_rbac
from k8s.clients import ClusterRegistry
from k8s.errors import ClusterError
from k8s.kubeconfig import KubeconfigSpec, kubeconfig_names, render_kubeconfig

log = logging.getLogger(__name__)

SYSTEM = "accessbot"  # the actor for changes nobody clicked
OFFBOARDED = "you were offboarded; an admin must re-enable you before you can use AccessBot"
REQUESTER_OFFBOARDED = "the requester was offboarded"
APPROVER_OFFBOARDED = "an approval came from someone since offboarded and no longer counts"


class Outcome(StrEnum):
    APPROVED = "approved"  # this approval completed the tally
    RECORDED = "recorded"  # counted; more approvals needed
    ALREADY_COUNTED = "already_counted"
    DENIED = "denied"
    ALREADY_DECIDED = "already_decided"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    grant: Grant


@dataclass(frozen=True)
class PendingCleanup:
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


# -- job ids: meaningful, so scheduling again moves and cancelling is exact ------
def provision_job(grant_id: str) -> str:
    return f"provision:{grant_id}"


def expire_job(grant_id: str) -> str:
    return f"expire:{grant_id}"


def remind_job(grant_id: str) -> str:
    return f"remind:{grant_id}"


def timeout_job(grant_id: str) -> str:
    return f"timeout:{grant_id}"


def cleanup_job(grant_id: str) -> str:
    return f"cleanup:{grant_id}"


def card_job(grant_id: str) -> str:
    return f"card:{grant_id}"


def _job(job_id: str, at: datetime, **data: str) -> Job:
    kind = job_id.split(":", 1)[0]
    return Job(id=job_id, kind=kind, due=at.timestamp(), data=dict(data))


@dataclass
class Workflow:
    policy: Policy
    store: Store
    scheduler: Scheduler
    clusters: ClusterRegistry
    notifier: Notifier
    directory: Directory
    clock: Callable[[], datetime] = utcnow
    backoff: Backoff = field(default_factory=Backoff)
    # Test seam for crash drills: called with the saga step just completed.
    on_provision_step: Callable[[str], object] | None = None
    # How long a delivery claim holds off other attempts (about two scheduler
    # leases: longer than a live attempt needs between claim and record).
    delivery_claim_seconds: float = 60.0
    card_retry: timedelta = timedelta(seconds=30)
    cleanup_grace: timedelta = timedelta(seconds=30)
    record_patience: float = 30.0

    def register_jobs(self) -> None:
        handlers: dict[str, Callable[[Job], Awaitable[None]]] = {
            "provision": self._job_provision,
            "expire": self._job_expire,
            "remind": self._job_remind,
            "timeout": self._job_timeout,
            "cleanup": self._job_cleanup,
            "card": self._job_card,
        }
        for kind, handler in handlers.items():
            self.scheduler.register(kind, handler)

    # -- queries -------------------------------------------------------------
    async def get(self, grant_id: str) -> Grant:
        grant = await self.store.get(grant_id)
        if grant is None:
            raise UnknownGrant(f"no request or grant with id {grant_id!r}")
        return grant

    async def is_admin(self, user: str) -> bool:
        """Whether ``user`` holds admin rights now (an offboarded admin holds none)."""
        if await self.store.offboarding(user) is not None:
            return False
        return is_admin(self.policy, user, await self.directory.groups_of(user))

    async def may_decide(self, grant: Grant, user: str) -> bool:
        """Whether ``user`` may approve or deny ``grant`` (see ``_why_not_decider``)."""
        return await self._why_not_decider(grant, user) is None

    async def _why_not_decider(self, grant: Grant, user: str) -> str | None:
        if await self.store.offboarding(user) is not None:
            return OFFBOARDED
        if user == grant.requester:
            return "you cannot approve or deny your own request"
        if grant.kind == "extend" and grant.extends:
            parent = await self.store.get(grant.extends)
            if parent is not None and parent.requester == user:
                return "you cannot approve or deny an extension of your own grant"
        groups = await self.directory.groups_of(user)
        if not may_approve(self.policy, grant.role, user, groups, grant.requester):
            return f"you are not an approver for role {grant.role}"
        return None

    async def require_enabled(self, user: str, action: str, grant: Grant | None = None) -> None:
        """Raise an audited NotAllowed if ``user`` was offboarded: they may do nothing."""
        if await self.store.offboarding(user) is not None:
            raise await self._refuse(user, action, grant, OFFBOARDED)

    async def require_admin(self, user: str, action: str) -> None:
        """Raise an audited NotAllowed unless ``user`` is an admin now (never when offboarded)."""
        await self.require_enabled(user, action)
        if not await self.is_admin(user):
            raise await self._refuse(user, action, None, f"only AccessBot admins can {action}")

    async def list_grants(self, user: str, *, everyone: bool = False) -> list[Grant]:
        """A user's live and pending grants; admins may ask for everyone's."""
        shown = (State.PENDING, *LIVE)
        if everyone:
            await self.require_admin(user, "list everyone's grants")
            return await self.store.by_state(*shown)
        await self.require_enabled(user, "list")
        return [g for g in await self.store.by_user(user) if g.state in shown]

    async def awaiting(self, user: str) -> list[Grant]:
        """Pending requests this user could approve now."""
        await self.require_enabled(user, "list requests awaiting approval")
        groups = await self.directory.groups_of(user)
        candidates = [
            g
            for g in await self.store.by_state(State.PENDING)
            if user not in g.approvals
            and may_approve(self.policy, g.role, user, groups, g.requester)
        ]
        parents = {
            p.id: p for p in await self.store.many(g.extends for g in candidates if g.extends)
        }
        return [
            g
            for g in candidates
            if g.extends is None or getattr(parents.get(g.extends), "requester", None) != user
        ]

    # -- request -------------------------------------------------------------
    async def submit(self, spec: AccessRequestSpec) -> Grant:
        """Validate and store a request; post its card or approve it at once.

        Raises NotAllowed (audited) for an offboarded requester, also when the
        offboarding lands while this request is on its way (the store checks
        inside the transaction that creates the record).
        """
        await self.require_enabled(spec.requester, "request")
        resolved = resolve_request(self.policy, spec)
        now = self.clock()
        grant = new_grant(
            resolved,
            handle=await self.directory.handle_of(spec.requester),
            now=now,
            pending_ttl=self.policy.defaults.pending_ttl,
        )
        if self.clusters[grant.cluster].trust.insecure:
            grant = grant.model_copy(update={"tls_insecure": True})  # warned on the card
        if resolved.approvals_required == 0:
            grant = grant.moved(State.APPROVED, SYSTEM, now, "auto-approved by policy")
            return await self._create(grant, [_job(provision_job(grant.id), now)])
        grant = await self._create_pending(grant)
        await self._post_card(grant)
        return await self.get(grant.id)

    async def _create_pending(self, grant: Grant) -> Grant:
        # The card job is a safety net: if we die before the card is posted and
        # recorded, it posts the card later instead of leaving approvers unaware.
        return await self._create(
            grant,
            [
                _job(timeout_job(grant.id), grant.pending_until),
                _job(card_job(grant.id), self.clock() + self.card_retry),
            ],
        )

    async def _create(self, grant: Grant, jobs: list[Job]) -> Grant:
        try:
            return await self.store.create(grant, jobs)
        except RequesterOffboarded:
            raise await self._refuse(grant.requester, "request", None, OFFBOARDED) from None

    async def _post_card(self, grant: Grant) -> None:
        card = await self.notifier.post_card(grant)
        if card is not None:
            await self._set_card(grant.id, card)

    async def _set_card(self, grant_id: str, card: MessageRef) -> None:
        await self.store.update(
            grant_id,
            lambda g: Change(g.model_copy(update={"card": card}), cancel=[card_job(grant_id)]),
        )

    async def _job_card(self, job: Job) -> None:
        grant = await self.store.get(job.id.split(":", 1)[1])
        if grant is not None and grant.state == State.PENDING and grant.card is None:
            await self._post_card(grant)

    async def require_decider(self, grant: Grant, user: str, action: str) -> None:
        """Raise an audited NotAllowed unless ``user`` may approve or deny ``grant``."""
        why = await self._why_not_decider(grant, user)
        if why is not None:
            raise await self._refuse(user, action, grant, why)

    async def require_owner_or_admin(self, grant: Grant, user: str, action: str) -> None:
        """Raise an audited NotAllowed unless ``user`` owns ``grant`` or is an admin."""
        await self.require_enabled(user, action, grant)
        if user != grant.requester and not await self.is_admin(user):
            why = f"only the grant's owner or an admin can {action} it"
            raise await self._refuse(user, action, grant, why)

    async def approve(self, grant_id: str, approver: str) -> Decision:
        grant = await self.get(grant_id)
        await self.require_decider(grant, approver, "approve")
        now = self.clock()
        result: dict[str, Outcome] = {}
        refused: list[str] = []

        def decide(g: Grant, offboarded: frozenset[str]) -> Change | None:
            # Offboarding is read in this same transaction: an approver or a
            # requester offboarded a moment ago cannot slip an approval through.
            if g.state != State.PENDING:
                result["o"] = Outcome.ALREADY_DECIDED
                return None
            if approver in offboarded or g.requester in offboarded:
                refused.append(OFFBOARDED if approver in offboarded else REQUESTER_OFFBOARDED)
                return None
            if approver in g.approvals:
                result["o"] = Outcome.ALREADY_COUNTED
                return None
            # Approvals of people offboarded since no longer count (or show).
            tally = g.tally.without(offboarded).add(approver)
            g = g.model_copy(update={"approvals": tally.approvers})
            if not tally.satisfied:
                result["o"] = Outcome.RECORDED
                # Audited as its own event: each approval is answerable from the stream.
                counted = f"approval {len(tally.approvers)} of {g.approvals_required}"
                return Change(g.noted("approval", approver, now, counted))
            result["o"] = Outcome.APPROVED
            return self._approved(g, approver, now)

        updated = await self.store.update_checked(grant_id, decide, also=(approver,))
        if refused:
            raise await self._refuse(approver, "approve", grant, refused[0])
        return Decision(result["o"], updated or await self.get(grant_id))

    def _approved(self, g: Grant, approver: str, now: datetime) -> Change:
        # For an extension request the "provision" job applies the extension.
        return Change(
            g.moved(State.APPROVED, approver, now),
            schedule=[_job(provision_job(g.id), now)],
            cancel=[timeout_job(g.id)],
        )

    async def _refuse(self, actor: str, action: str, grant: Grant | None, why: str) -> NotAllowed:
        """Audit a refused attempt (it changes nothing) and return the error to raise."""
        entry = refusal_entry(actor, action, grant, why, self.clock().isoformat())
        await self.store.audit_event(entry)
        return NotAllowed(why)

    async def deny(self, grant_id: str, user: str, reason: str = "") -> Decision:
        grant = await self.get(grant_id)
        await self.require_decider(grant, user, "deny")
        now = self.clock()

        def decide(g: Grant) -> Change | None:
            if g.state != State.PENDING:
                return None
            denied = g.moved(State.DENIED, user, now, reason).model_copy(update={"denied_by": user})
            return Change(denied, cancel=[timeout_job(g.id)])

        updated = await self.store.update(grant_id, decide)
        if updated is None:
            return Decision(Outcome.ALREADY_DECIDED, await self.get(grant_id))
        return Decision(Outcome.DENIED, updated)

    async def cancel(self, grant_id: str, user: str, reason: str = "") -> Grant | None:
        grant = await self.get(grant_id)
        await self.require_enabled(user, "cancel", grant)
        if user != grant.requester and not await self.is_admin(user):
            raise await self._refuse(
                user, "cancel", grant, "only the requester or an admin can cancel a request"
            )
        return await self._cancel(grant_id, user, reason)

    async def _cancel(self, grant_id: str, actor: str, reason: str) -> Grant | None:
        now = self.clock()
        return await self.store.update(
            grant_id,
            lambda g: (
                Change(g.moved(State.CANCELLED, actor, now, reason), cancel=[timeout_job(g.id)])
                if g.state == State.PENDING
                else None
            ),
        )

    # -- provisioning saga ---------------------------------------------------
    async def _job_provision(self, job: Job) -> None:
        grant = await self.store.get(job.id.split(":", 1)[1])
        if grant is None:
            return
        if grant.kind == "extend":
            await self.apply_approved_extension(grant)
        else:
            await self.provision(grant.id)

    async def provision(self, grant_id: str) -> Grant | None:
        """approved → provisioning → objects → verify → deliver → active, or rolled back."""
        grant = await self._start_provisioning(grant_id)
        if grant is None:
            return await self.store.get(grant_id)
        # Requested under an older policy: the policy in force when anything is
        # created decides (role, ClusterRole, namespace, duration, approvals).
        try:
            recheck_request(self.policy, _decided(grant), approvals_given=len(grant.approvals))
        except RequestRejected as exc:
            return await self._fail(grant, str(exc))
        try:
            token, content = await self._make_credentials(grant)
            # The end the cluster honours is on record before anyone is told a time.
            grant = await self._record_token(grant, token)
            if grant.delivered_file:
                delivery = grant.delivered_file
            else:
                claim = await self._claim_delivery(grant.id)
                if claim == "ended":
                    # Revoked (say, offboarded) while we made the objects: no
                    # kubeconfig goes out, and what we made is taken back.
                    await self._cleanup(grant.id, grant.cluster)
                    return await self.store.get(grant.id)
                if claim == "busy":
                    raise RetryLater(
                        self.delivery_claim_seconds / 2, "another attempt is delivering"
                    )
                delivery = await self._deliver(grant, content)
        except (ClusterError, OSError, ValueError) as exc:
            return await self._fail(grant, _user_reason(exc))
        return await self._activate(grant, delivery, _records(token.objects))

    async def _record_token(self, grant: Grant, token: k8s_grants.IssuedToken) -> Grant:
        """Record the grant's end as the token allows it (before delivery)."""
        ends = token.ends_at or grant.expires_at
        insecure = self.clusters[grant.cluster].trust.insecure

        def decide(g: Grant) -> Change | None:
            if g.state != State.PROVISIONING:
                return None
            cap = token.lifetime_seconds if token.shortened else g.token_cap_s
            update = {"expires_at": ends, "token_cap_s": cap, "tls_insecure": insecure}
            if all(getattr(g, k) == v for k, v in update.items()):
                return None
            return Change(g.model_copy(update=update))

        return await self.store.update(grant.id, decide) or grant.model_copy(
            update={"expires_at": ends}
        )

    async def _claim_delivery(self, grant_id: str) -> str:
        """Become the one attempt allowed to send this grant's kubeconfig.

        Returns "claimed", "busy" (another live attempt holds the claim) or
        "ended" (the grant is no longer provisioning). A claim older than
        ``delivery_claim_seconds`` belongs to an attempt presumed dead (its
        process crashed before recording the delivery), so a crash at that
        exact point costs a delay, never a second file. The requester's
        offboarding is re-checked in this transaction: none is delivered to
        someone offboarded meanwhile.
        """
        attempt, now = new_id(), self.clock()
        stale = timedelta(seconds=self.delivery_claim_seconds)
        verdict = ["ended"]

        def decide(g: Grant, offboarded: frozenset[str]) -> Change | None:
            if g.state != State.PROVISIONING:
                return None
            blocked = self._blocked(g, offboarded, now)
            if blocked is not None:
                return blocked
            if g.delivery_claimed_at is not None and now - g.delivery_claimed_at < stale:
                verdict[0] = "busy"
                return None
            verdict[0] = "claimed"
            return Change(
                g.model_copy(update={"delivery_attempt": attempt, "delivery_claimed_at": now})
            )

        await self.store.update_checked(grant_id, decide)
        return verdict[0]

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
        return Change(
            ended,
            schedule=[self._cleanup_safety_net(g, now)],
            cancel=[expire_job(g.id), remind_job(g.id), provision_job(g.id)],
        )

    async def _start_provisioning(self, grant_id: str) -> Grant | None:
        now = self.clock()

        def decide(g: Grant, offboarded: frozenset[str]) -> Change | None:
            if g.state != State.APPROVED:
                return None
            blocked = self._blocked(g, offboarded, now)
            if blocked is not None:
                return blocked
            # Whole seconds: the expires-at annotation has no fractions, and the
            # record and the objects must agree on when access ends.
            expires = _ceil_second(now + g.duration)
            return Change(
                g.moved(State.PROVISIONING, SYSTEM, now).model_copy(update={"expires_at": expires})
            )

        started = await self.store.update_checked(grant_id, decide)
        if started is not None and started.state == State.PROVISIONING:
            return started
        current = await self.store.get(grant_id)
        # A crash mid-saga leaves the grant in provisioning: resume it.
        return current if current is not None and current.state == State.PROVISIONING else None

    def _spec(self, grant: Grant) -> k8s_grants.GrantSpec:
        assert grant.expires_at is not None
        return k8s_grants.GrantSpec(
            grant_id=grant.id,
            requester=grant.requester,
            handle=grant.handle,
            role=grant.role,
            cluster_role=grant.cluster_role,
            scope=grant.scope,
            namespace=grant.namespace,
            sa_namespace=self.policy.clusters[grant.cluster].namespace,
            expires_at=grant.expires_at,
            approved_by=grant.approvals,
        )

    async def _make_credentials(self, grant: Grant) -> tuple[k8s_grants.IssuedToken, str]:
        """Objects and token, then the kubeconfig checked exactly as the user will use it."""
        cluster = self.clusters[grant.cluster]
        spec = self._spec(grant)
        token = await retrying(
            f"provision {grant.id}",
            lambda: k8s_grants.provision(cluster, spec, on_step=self.on_provision_step),
            self.backoff,
        )
        return token, await self._verified_kubeconfig(grant, spec, token)

    async def _verified_kubeconfig(
        self, grant: Grant, spec: k8s_grants.GrantSpec, token: k8s_grants.IssuedToken
    ) -> str:
        """The requester's file, proven to connect and act as the grant before anyone gets it."""
        content = self._kubeconfig(grant, token)
        await retrying(
            f"verify {grant.id}",
            lambda: k8s_grants.verify(self.clusters[grant.cluster], spec, token, content),
            self.backoff,
        )
        return content

    def _kubeconfig(self, grant: Grant, token: k8s_grants.IssuedToken) -> str:
        """The file the requester gets: the bot's own trust in the cluster, their token."""
        cluster = self.clusters[grant.cluster]
        user, context = kubeconfig_names(grant.cluster, grant.role, grant.handle)
        return render_kubeconfig(
            KubeconfigSpec(
                cluster=grant.cluster,
                server=cluster.server,
                ca_pem=cluster.trust.ca_pem,
                user=user,
                token=token.token,
                context=context,
                namespace=grant.namespace,
                trust=cluster.trust,
            )
        )

    async def _deliver(self, grant: Grant, content: str) -> str:
        if self.on_provision_step is not None:
            self.on_provision_step("before_delivery")
        return await self.notifier.deliver_kubeconfig(
            grant, grant.kubeconfig_filename, content.encode()
        )

    async def _deliver_again(self, grant: Grant, content: str) -> None:
        """Deliver a renewed kubeconfig and record its file, so the end deletes it too."""
        file_id = await self._deliver(grant, content)
        if not file_id:
            return
        await self.store.update(
            grant.id,
            lambda g: (
                None
                if file_id in g.later_files
                else Change(g.model_copy(update={"later_files": (*g.later_files, file_id)}))
            ),
        )

    async def _activate(
        self, grant: Grant, delivery: str, objects: tuple[ClusterObject, ...]
    ) -> Grant | None:
        now = self.clock()

        def decide(g: Grant, offboarded: frozenset[str]) -> Change | None:
            if g.state != State.PROVISIONING:
                return None
            blocked = self._blocked(g, offboarded, now)
            if blocked is not None:
                return blocked
            active = g.moved(State.ACTIVE, SYSTEM, now).model_copy(
                update={"delivered_file": delivery, "objects": objects}
            )
            return Change(active, schedule=self._expiry_jobs(active))

        # The file is already in the user's DM: wait out a Redis blip rather
        # than fail the job and have a retry send it again.
        activated = await self.store.update_checked(grant.id, decide, patience=self.record_patience)
        if activated is not None and activated.state != State.ACTIVE:
            activated = None  # ended here: offboarded while the file was on its way
        if activated is None:
            current = await self.store.get(grant.id)
            if current is not None and current.delivered_file == delivery:
                return current  # our write landed; only its reply was lost
            # Revoked (or failed) while we worked: take back what we made.
            await self._cleanup(grant.id, grant.cluster, objects)
            return await self.store.get(grant.id)
        return activated

    def _expiry_jobs(self, g: Grant) -> list[Job]:
        assert g.expires_at is not None
        jobs = [_job(expire_job(g.id), g.expires_at)]
        remind_at = g.expires_at - self.policy.defaults.reminder_before
        if remind_at > self.clock():
            jobs.append(_job(remind_job(g.id), remind_at))
        return jobs

    async def _fail(self, grant: Grant, reason: str) -> Grant | None:
        """Mark failed and undo whatever was made; cleanup is a durable job first."""
        now = self.clock()
        log.warning("grant %s failed: %s", grant.id, reason, extra={"grant_id": grant.id})
        failed = await self.store.update(
            grant.id,
            lambda g: (
                None
                if g.ended
                else Change(
                    g.moved(State.FAILED, SYSTEM, now, reason).model_copy(
                        update={"failure": reason}
                    ),
                    schedule=[self._cleanup_safety_net(g, now)],
                    cancel=[expire_job(g.id), remind_job(g.id)],
                )
            ),
        )
        await self._cleanup(grant.id, grant.cluster)
        return failed or await self.store.get(grant.id)

    # -- ending a grant -------------------------------------------------------
    async def revoke(
        self, grant_id: str, actor: str, reason: str = "", *, operator: bool = False
    ) -> Grant:
        """End a grant (or cancel a pending request). ``operator``: the CLI, already trusted.

        An extension request is only ever cancelled or (approved, not yet
        applied) revoked on its own: it has no objects, and revoking it never
        touches the grant it extends. Once applied it has ended.
        """
        grant = await self.get(grant_id)
        if not operator:
            await self.require_owner_or_admin(grant, actor, "revoke")
        if grant.state == State.PENDING:
            return await self._cancel(grant_id, actor, reason) or await self.get(grant_id)
        return await self._end(grant_id, State.REVOKED, actor, reason) or await self.get(grant_id)

    async def _end(
        self, grant_id: str, target: State, actor: str, reason: str, *, running: str = ""
    ) -> Grant | None:
        """Move a live grant to ``target`` and remove its objects.

        The state changes first, together with a cleanup job, so the user sees
        the truth at once and a crash before the deletes finish leaves a job
        that finishes them. That job waits one lease, so it does not race the
        inline cleanup that normally cancels it. ``running``: the job calling
        us, which finishes by itself and must not be cancelled under its feet.
        """
        ended = await self._end_state(grant_id, target, actor, reason, running=running)
        if ended is not None and ended.kind == "access":
            await self._cleanup(ended.id, ended.cluster, ended.objects)
        return ended

    async def _end_state(
        self, grant_id: str, target: State, actor: str, reason: str, *, running: str = ""
    ) -> Grant | None:
        now = self.clock()

        def decide(g: Grant) -> Change | None:
            if g.state not in LIVE:
                return None
            if target == State.EXPIRED and g.state != State.ACTIVE:
                return None
            if g.kind == "extend":
                # Its objects are its parent's: there is nothing of its own to remove.
                return Change(g.moved(target, actor, now, reason), cancel=[provision_job(g.id)])
            jobs = [expire_job(g.id), remind_job(g.id), provision_job(g.id)]
            return Change(
                g.moved(target, actor, now, reason),
                schedule=[self._cleanup_safety_net(g, now)],
                cancel=[j for j in jobs if j != running],
            )

        return await self.store.update(grant_id, decide)

    def _cleanup_safety_net(self, g: Grant, now: datetime) -> Job:
        return _job(cleanup_job(g.id), now + self.cleanup_grace, cluster=g.cluster)

    async def _cleanup(
        self, grant_id: str, cluster_name: str, objects: tuple[ClusterObject, ...] | None = None
    ) -> list[str]:
        """Delete an ended grant's objects, then prove on the cluster that access is gone.

        Never raises for the cluster: a refused or failed delete is logged and
        left to the verification, whose failed receipt raises the alert; the
        cleanup job (scheduled when the grant ended) then runs again until a
        receipt verifies. Slack hears of it only after the store has the receipt.
        """
        deleted: list[str] = []
        try:
            deleted = await retrying(
                f"revoke {grant_id}",
                lambda: self._revoke(grant_id, cluster_name, objects),
                self.backoff,
            )
        except ClusterError as exc:
            log.error("revoking %s on %s failed: %s", grant_id, cluster_name, exc,
                      extra={"grant_id": grant_id})  # fmt: skip
        if await self._receipt(grant_id, cluster_name, again=bool(deleted)):
            await self.scheduler.cancel(cleanup_job(grant_id))
        else:
            # Verification failed: make sure the durable retry exists, whoever ended it.
            await self.scheduler.schedule(
                _job(cleanup_job(grant_id), self.clock() + self.cleanup_grace, cluster=cluster_name)
            )
        return deleted

    async def _receipt(self, grant_id: str, cluster_name: str, *, again: bool = False) -> bool:
        """Verify an ended grant's access is gone and record the receipt; True when verified.

        One receipt per end: a failed one at most once (the alert), then the
        verified one (the fact the webhook reports as ``verified``). A grant
        already verified only has its time moved when ``again`` (objects were
        found and deleted since: a provisioning attempt that raced the end).
        """
        grant = await self.store.get(grant_id)
        if grant is None or grant.kind != "access" or not grant.ended:
            return True  # nothing of an ended grant to prove (never a live one's job)
        if grant.receipt is not None and grant.receipt.verified:
            if again:
                await self._mark_gone(grant_id, self.clock(), again=True)
            return True
        checks = await self._check_gone(grant, cluster_name)
        verified = all(c.gone for c in checks)
        at = self.clock()
        receipt = Receipt(verified=verified, at=at, checks=tuple(str(c) for c in checks))
        event = "verified" if verified else "verification_failed"
        text = receipt_summary(grant, receipt)

        def decide(g: Grant) -> Change | None:
            if g.receipt is not None and (g.receipt.verified or not verified):
                return None  # recorded already: one failed receipt, one verified
            update: dict[str, object] = {"receipt": receipt}
            if verified:
                update["objects_gone_at"] = at
            return Change(g.model_copy(update=update).noted(event, SYSTEM, at, text))

        await self.store.update(grant_id, decide)
        if not verified:
            log.error("grant %s: access NOT verified gone on %s: %s", grant_id, cluster_name,
                      "; ".join(str(c) for c in checks if not c.gone),
                      extra={"grant_id": grant_id})  # fmt: skip
        return verified

    async def _check_gone(self, grant: Grant, cluster_name: str) -> list[k8s_grants.GoneCheck]:
        """The checks of a receipt; a cluster that does not answer is a failed check."""
        cluster = self.clusters[cluster_name]
        sa_ns = self.policy.clusters[grant.cluster].namespace
        sa_name = names.service_account_name(grant.handle, grant.id)
        sa_user = f"system:serviceaccount:{sa_ns}:{sa_name}"
        refs = None
        if grant.objects is not None:
            refs = [k8s_grants.ObjectRef(o.kind, o.namespace, o.name, o.uid) for o in grant.objects]
        try:
            rules = (await k8s_rbac.cluster_role_rules(cluster, [grant.cluster_role])).get(
                grant.cluster_role
            )
        except ClusterError:
            rules = None  # unreadable role: the fallback question still tells
        where = grant.namespace if grant.scope == "namespace" else None
        reviews = k8s_grants.representative_reviews(rules, where)
        try:
            return await k8s_grants.verify_gone(cluster, grant.id, sa_user, refs, reviews)
        except ClusterError as exc:
            return [k8s_grants.GoneCheck(f"cluster {cluster_name}", False, f"no answer ({exc})")]

    async def _mark_gone(self, grant_id: str, at: datetime, *, again: bool = False) -> None:
        """Record that an ended grant's objects were deleted (a fact the webhook reports).

        ``again``: objects were found and deleted after an earlier confirmation
        (a provisioning attempt that raced the end): the later time is the truth.
        """
        await self.store.update(
            grant_id,
            lambda g: (
                Change(g.model_copy(update={"objects_gone_at": at}))
                if g.ended and g.kind == "access" and (g.objects_gone_at is None or again)
                else None
            ),
        )

    async def _revoke(
        self, grant_id: str, cluster_name: str, objects: tuple[ClusterObject, ...] | None
    ) -> list[str]:
        """By recorded UID when the grant knows its objects, else by label."""
        cluster = self.clusters[cluster_name]
        if objects is not None:
            refs = [k8s_grants.ObjectRef(o.kind, o.namespace, o.name, o.uid) for o in objects]
            return await k8s_grants.revoke_objects(cluster, refs)
        return await k8s_grants.revoke(cluster, grant_id)

    async def _job_cleanup(self, job: Job) -> None:
        grant_id = job.id.split(":", 1)[1]
        grant = await self.store.get(grant_id)
        if grant is not None and grant.kind != "access":
            return  # an extension request owns no objects; never touch its parent's
        cluster = job.data.get("cluster") or (grant.cluster if grant else None)
        # The reconciler asks by label: it saw objects the recorded UIDs may not cover.
        objects = None if grant is None or job.data.get("by") == "label" else grant.objects
        if cluster is None:
            return
        if grant is None:
            await self._revoke(grant_id, cluster, objects)
            return
        deleted: list[str] = []
        try:
            deleted = await self._revoke(grant_id, cluster, objects)
        except ClusterError as exc:
            log.error("cleanup of %s on %s failed: %s", grant_id, cluster, exc,
                      extra={"grant_id": grant_id})  # fmt: skip
        if not await self._receipt(grant_id, cluster, again=bool(deleted)):
            # Scheduled afresh (the scheduler keeps a job moved while it ran), not
            # failed: a failure count would give up one day; this runs until verified.
            await self.scheduler.schedule(
                _job(job.id, self.clock() + self.cleanup_grace, **job.data)
            )

    async def _job_expire(self, job: Job) -> None:
        grant_id = job.id.split(":", 1)[1]
        grant = await self.store.get(grant_id)
        if grant is None or grant.state != State.ACTIVE or grant.expires_at is None:
            return
        early = (grant.expires_at - self.clock()).total_seconds()
        if early > 0:
            current = await self.scheduler.get(job.id)
            if current is not None and current.due != job.due:
                return  # extended while we were claimed: the moved job will fire
            # Claimed a hair early (rounding, a replica's clock): never drop an
            # expiry on the floor, run again when it is due.
            raise RetryLater(early, "claimed before the grant's expiry")
        await self._end(grant_id, State.EXPIRED, SYSTEM, "expired", running=job.id)

    async def _job_remind(self, job: Job) -> None:
        grant = await self.store.get(job.id.split(":", 1)[1])
        if grant is not None and grant.state == State.ACTIVE:
            await self.notifier.remind(grant)

    async def _job_timeout(self, job: Job) -> None:
        now = self.clock()
        await self.store.update(
            job.id.split(":", 1)[1],
            lambda g: (
                Change(g.moved(State.TIMED_OUT, SYSTEM, now, "nobody decided in time"))
                if g.state == State.PENDING and g.pending_until <= now
                else None
            ),
        )

    # -- extension ------------------------------------------------------------
    async def extend(self, grant_id: str, user: str, by: timedelta) -> Grant:
        """Extend an active grant: at once for auto-approved roles, else via approval.

        Returns the grant when extended directly, or the pending extension
        request. The request is ``user``'s own (they asked; they can never
        approve it, nor can the grant's owner) and carries nothing of its
        parent's objects or delivery.
        """
        grant = await self.get(grant_id)
        await self.require_owner_or_admin(grant, user, "extend")
        if grant.kind != "access":
            raise RequestRejected(f"{grant_id} is an extension request; extend the grant itself")
        if grant.state != State.ACTIVE or grant.expires_at is None:
            raise RequestRejected(f"grant {grant_id} is {grant.state}; only active grants extend")
        recheck_request(self.policy, _decided(grant))
        role = self.policy.roles[grant.role]
        now = self.clock()
        try:
            new_expiry(grant.expires_at, by, now, role.max_duration)
        except ExtensionRejected as exc:
            raise RequestRejected(str(exc)) from exc
        if role.approvals == 0:
            return await self._apply_extension(grant_id, by, user, "policy (auto-approved)")
        request = Grant(
            id=new_id(),
            kind="extend",
            state=State.PENDING,
            requester=user,
            handle=await self.directory.handle_of(user),
            role=grant.role,
            cluster=grant.cluster,
            namespace=grant.namespace,
            scope=grant.scope,
            cluster_role=grant.cluster_role,
            duration_s=int(by.total_seconds()),
            reason=f"extend {grant.id} (of {grant.requester}) by {format_duration(by)}: "
            f"{grant.reason}",
            approvals_required=role.approvals,
            created_at=now,
            pending_until=now + self.policy.defaults.pending_ttl,
            extends=grant.id,
        )
        request = await self._create_pending(request)
        await self._post_card(request)
        return await self.get(request.id)

    async def apply_approved_extension(self, request: Grant) -> Grant | None:
        """Apply an approved extension request to its grant, once; the request then ends."""
        if request.kind != "extend" or request.extends is None:
            return None
        if request.state != State.APPROVED:
            return None
        now = self.clock()
        offboarded = await self.store.offboarded_among([request.requester, *request.approvals])
        try:
            if request.requester in offboarded:
                raise RequestRejected(REQUESTER_OFFBOARDED)
            if not request.tally.without(offboarded).satisfied:
                raise RequestRejected(APPROVER_OFFBOARDED)
            approvers = ", ".join(request.approvals) or request.last_actor()
            updated = await self._apply_extension(
                request.extends, request.duration, request.requester, approvers, request.id
            )
        except RequestRejected as exc:
            why = str(exc)
            await self.store.update(
                request.id,
                lambda g: (
                    Change(
                        g.moved(State.FAILED, SYSTEM, now, why).model_copy(update={"failure": why})
                    )
                    if g.state == State.APPROVED
                    else None
                ),
            )
            return None
        assert updated.expires_at is not None
        done = f"applied to {updated.id}: now expires {k8s_grants.rfc3339(updated.expires_at)}"
        await self.store.update(
            request.id,
            lambda g: (
                Change(g.moved(State.APPLIED, SYSTEM, now, done))
                if g.state == State.APPROVED
                else None
            ),
        )
        return updated

    async def _apply_extension(
        self,
        grant_id: str,
        by: timedelta,
        asked_by: str,
        approved_by: str,
        request_id: str | None = None,
    ) -> Grant:
        """Extend by ``by`` as far as a fresh token lets the cluster honour it.

        The token comes first: its real expiry caps the new end (the user is
        told). Then the record moves (audited, with who asked and who
        approved), the new facts are written onto the objects, and the
        verified kubeconfig is delivered last, so the objects never undercut
        what the user is told. A crash after the record is repaired by the
        job's retry, which finds the extension recorded and finishes its work,
        and by the reconciler, which writes a live grant's facts onto its objects.

        Raises RequestRejected when the grant cannot be extended (the message
        is for the user).
        """
        now = self.clock()
        current = await self.get(grant_id)
        marker = request_id or new_id()
        if current.state != State.ACTIVE or current.expires_at is None:
            raise RequestRejected(f"grant {grant_id} is no longer active")
        # Approved under an older policy, perhaps: today's decides.
        recheck_request(self.policy, _decided(current))
        max_duration = self.policy.roles[current.role].max_duration
        if marker in current.extensions:
            # Recorded by an earlier attempt that died before delivering.
            _, content = await self._renew_credentials(current, self._spec(current), resumed=True)
            await self._write_facts(current)
            await self._deliver_again(current, content)
            return current
        try:
            wanted = new_expiry(current.expires_at, by, now, max_duration)
        except ExtensionRejected as exc:
            raise RequestRejected(str(exc)) from exc
        before = current.expires_at
        spec = replace(self._spec(current), expires_at=wanted)
        try:
            token, content = await self._renew_credentials(current, spec)
        except ClusterError as exc:
            raise RequestRejected(
                f"grant {grant_id} was not extended ({_user_reason(exc)}); "
                "your current access is unchanged"
            ) from exc
        ends = token.ends_at or wanted
        cap = token.lifetime_seconds if token.shortened else None

        def decide(g: Grant, offboarded: frozenset[str]) -> Change | None:
            if g.state != State.ACTIVE or g.expires_at != before or marker in g.extensions:
                return None
            if g.requester in offboarded or asked_by in offboarded:
                return None
            why = (
                f"extended by {format_duration(by)} to {k8s_grants.rfc3339(ends)}; "
                f"asked by {asked_by}; approved by {approved_by}"
            )
            extended = g.model_copy(
                update={
                    "expires_at": ends,
                    "extensions": (*g.extensions, marker),
                    "token_cap_s": cap,
                }
            ).noted("extended", asked_by, now, why)
            return Change(extended, schedule=self._expiry_jobs(extended))

        updated = await self.store.update_checked(grant_id, decide, also=(asked_by,))
        if updated is None:
            raise RequestRejected(f"grant {grant_id} is no longer active")
        await self._write_facts(updated)
        # The old token dies at the old end: the extension needs the fresh file.
        await self._deliver_again(updated, content)
        log.info("grant %s extended by %s", grant_id, asked_by, extra={"grant_id": grant_id})
        return updated

    async def _write_facts(self, grant: Grant) -> None:
        """Write what the record says (expiry, approvers) onto the grant's objects."""
        cluster = self.clusters[grant.cluster]
        facts = k8s_grants.facts(self._spec(grant))
        await retrying(
            f"annotate {grant.id}",
            lambda: k8s_grants.annotate(cluster, grant.id, facts),
            self.backoff,
        )

    async def _renew_credentials(
        self, grant: Grant, spec: k8s_grants.GrantSpec, *, resumed: bool = False
    ) -> tuple[k8s_grants.IssuedToken, str]:
        """A fresh token for ``spec.expires_at`` and its kubeconfig, verified.

        Raises RequestRejected when the token's real expiry would not move the
        grant's end at all (unless ``resumed``: finishing an extension already
        recorded), ClusterError when the cluster fails us.
        """
        assert grant.expires_at is not None
        cluster = self.clusters[grant.cluster]
        token = await retrying(
            f"token {grant.id}",
            lambda: k8s_grants.issue_token(cluster, spec, self.clock()),
            self.backoff,
        )
        ends = token.ends_at or spec.expires_at
        if ends <= grant.expires_at and not resumed:
            raise RequestRejected(
                f"cluster {grant.cluster} caps tokens at "
                f"{format_duration(timedelta(seconds=token.lifetime_seconds))}; "
                f"grant {grant.id} cannot be extended beyond its current end yet"
            )
        return token, await self._verified_kubeconfig(grant, spec, token)

    # -- offboarding ----------------------------------------------------------
    async def resolve_user(self, *, email: str | None = None, user_id: str | None = None) -> str:
        """The Slack user ID for an email or ID; UnknownUser if nobody has it.

        A user the directory has forgotten but who still holds grants here is
        known: offboarding must be able to reach them.
        """
        if user_id:
            if await self.directory.user_exists(user_id) or await self.store.by_user(user_id):
                return user_id
            raise UnknownUser(f"no Slack user with id {user_id!r}")
        if email:
            found = await self.directory.user_for_email(email)
            if found:
                return found
        raise UnknownUser(f"no Slack user with email {email!r}")

    async def offboard(
        self,
        user: str,
        actor: str,
        reason: str = "",
        *,
        progress: Callable[[Grant, str], object] | None = None,
    ) -> OffboardResult:
        """Block the user, end everything they hold or asked for, and remove their objects.

        Each call makes progress and reports the truth: ``pending`` names every
        grant whose objects may still exist (a cluster did not answer); the
        durable cleanup jobs keep at it meanwhile. Repeating a finished call
        returns the same answer without touching the clusters again.
        ``progress`` hears about each grant as it is ended (the CLI prints it).
        """
        now = self.clock()
        await self.store.mark_offboarded(Offboarding(user=user, at=now, by=actor, reason=reason))
        record = await self.store.offboarding(user)
        since = record.at if record is not None else now
        why = reason or "offboarded"
        for g in await self.store.by_user(user):
            if g.state == State.PENDING:
                await self._cancel(g.id, actor, why)
            elif g.state in LIVE:
                result = await self._end_state(g.id, State.REVOKED, actor, why)
                if progress is not None and g.kind == "access":
                    progress(g, "revoked" if result is not None else "already ended")
        await self._withdraw_approvals(user)
        pending, verified = await self._sweep(user)
        grants = await self.store.by_user(user)

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

    async def _withdraw_approvals(self, user: str) -> None:
        """An offboarded person's approvals on pending requests stop counting (and showing)."""
        for g in await self.store.by_state(State.PENDING):
            if user in g.approvals:
                await self.store.update(
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
        by_cluster: dict[str, list[Grant]] = {}
        for g in await self.store.by_user(user):
            if g.kind == "access" and (g.may_have_objects or g.objects_gone_at is not None):
                by_cluster.setdefault(g.cluster, []).append(g)
        pending: list[PendingCleanup] = []
        verified: dict[str, datetime] = {}

        async def one(cluster: str, grants: list[Grant]) -> None:
            open_ = [g for g in grants if g.may_have_objects]
            if not open_:
                verified[cluster] = max(g.objects_gone_at for g in grants if g.objects_gone_at)
                return
            try:
                at = await self._confirm_gone(cluster, user, {g.id for g in grants})
            except ClusterError as exc:
                log.warning("offboarding %s: cluster %s not clean yet: %s", user, cluster, exc)
                pending.extend(PendingCleanup(g.id, cluster) for g in open_)
                for g in open_:
                    if (await self.get(g.id)).ended:
                        await self._receipt(g.id, cluster)  # the failed receipt: an alert
                return
            # Gone as far as a listing shows; the receipts prove it grant by grant.
            for g in open_:
                if not await self._receipt(g.id, cluster, again=True):
                    pending.append(PendingCleanup(g.id, cluster))
            if any(p.cluster == cluster for p in pending):
                return
            done = await self.store.many(g.id for g in grants)
            verified[cluster] = max(
                (g.objects_gone_at for g in done if g.objects_gone_at), default=at
            )

        await asyncio.gather(*(one(c, gs) for c, gs in sorted(by_cluster.items())))
        pending.sort(key=lambda p: (p.cluster, p.grant))
        return pending, verified

    async def _confirm_gone(self, cluster_name: str, user: str, grant_ids: set[str]) -> datetime:
        """Delete every object of these grants (or naming ``user``), then look again.

        One attempt, no backoff: the caller (an HR system) retries, and the
        cleanup jobs retry durably. Raises ClusterError while anything remains.
        """
        cluster = self.clusters[cluster_name]

        async def mine() -> dict[str, list[k8s_grants.ObjectRef]]:
            found: dict[str, list[k8s_grants.ObjectRef]] = {}
            for o in await k8s_grants.list_managed(cluster):
                if o.grant_id in grant_ids or o.requester == user:
                    found.setdefault(o.grant_id, []).append(o.ref)
            return found

        found = await mine()
        for current in await self.store.many(found):
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
        return self.clock()

    async def reenable(self, user: str, actor: str) -> bool:
        await self.require_admin(actor, "re-enable an offboarded user")
        return await self.store.reenable(user)


def _decided(grant: Grant) -> ResolvedRequest:
    """What was decided for ``grant``, in the shape the policy checks."""
    return ResolvedRequest(
        requester=grant.requester,
        role=grant.role,
        cluster=grant.cluster,
        namespace=grant.namespace,
        duration=grant.duration,
        reason=grant.reason,
        scope=grant.scope,
        cluster_role=grant.cluster_role,
        approvals_required=grant.approvals_required,
    )


def _records(refs: tuple[k8s_grants.ObjectRef, ...]) -> tuple[ClusterObject, ...]:
    return tuple(ClusterObject(kind=r.kind, namespace=r.namespace, name=r.name, uid=r.uid)
                 for r in refs)  # fmt: skip


def _ceil_second(at: datetime) -> datetime:
    whole = at.replace(microsecond=0)
    return whole if whole == at else whole + timedelta(seconds=1)


def _user_reason(exc: BaseException) -> str:
    """A failure reason a requester can read; never the raw exception repr."""
    return str(exc) or exc.__class__.__name__
