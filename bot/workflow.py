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

from bot.audit import refusal_entry
from bot.durations import format_duration
from bot.lifecycle import LIVE, ExtensionRejected, State, new_expiry
from bot.models import ClusterObject, Grant, MessageRef, Offboarding, new_grant, new_id, utcnow
from bot.policy import (
    AccessRequestSpec,
    Policy,
    RequestRejected,
    is_admin,
    may_approve,
    protected_namespace,
    resolve_request,
)
from bot.ports import Directory, Notifier
from bot.retry import Backoff, retrying
from bot.scheduler import Job, RetryLater, Scheduler
from bot.store import Change, Store
from k8s import grants as k8s_grants
from k8s.clients import ClusterRegistry
from k8s.errors import ClusterError
from k8s.kubeconfig import KubeconfigSpec, kubeconfig_names, render_kubeconfig

log = logging.getLogger(__name__)

SYSTEM = "accessbot"  # the actor for changes nobody clicked


class NotAllowed(PermissionError):
    """The user may not do this; the message says why, for the user."""


class UnknownGrant(LookupError):
    pass


class UnknownUser(LookupError):
    pass


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
class OffboardResult:
    user: str
    revoked: list[str]
    cancelled: list[str]


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
        return is_admin(self.policy, user, await self.directory.groups_of(user))

    async def may_decide(self, grant: Grant, user: str) -> bool:
        groups = await self.directory.groups_of(user)
        return may_approve(self.policy, grant.role, user, groups, grant.requester)

    async def list_grants(self, user: str, *, everyone: bool = False) -> list[Grant]:
        """A user's live and pending grants; admins may ask for everyone's."""
        shown = (State.PENDING, *LIVE)
        if everyone:
            if not await self.is_admin(user):
                raise NotAllowed("only AccessBot admins can list everyone's grants")
            return await self.store.by_state(*shown)
        return [g for g in await self.store.by_user(user) if g.state in shown]

    async def awaiting(self, user: str) -> list[Grant]:
        """Pending requests this user could approve now."""
        groups = await self.directory.groups_of(user)
        return [
            g
            for g in await self.store.by_state(State.PENDING)
            if user not in g.approvals
            and may_approve(self.policy, g.role, user, groups, g.requester)
        ]

    # -- request -------------------------------------------------------------
    async def submit(self, spec: AccessRequestSpec) -> Grant:
        """Validate and store a request; post its card or approve it at once."""
        blocked = await self.store.offboarding(spec.requester)
        if blocked is not None:
            raise NotAllowed("you were offboarded; an admin must re-enable you first")
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
            return await self.store.create(grant, [_job(provision_job(grant.id), now)])
        grant = await self._create_pending(grant)
        await self._post_card(grant)
        return await self.get(grant.id)

    async def _create_pending(self, grant: Grant) -> Grant:
        # The card job is a safety net: if we die before the card is posted and
        # recorded, it posts the card later instead of leaving approvers unaware.
        return await self.store.create(
            grant,
            [
                _job(timeout_job(grant.id), grant.pending_until),
                _job(card_job(grant.id), self.clock() + self.card_retry),
            ],
        )

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
        if not await self.may_decide(grant, user):
            raise await self._refuse(user, action, grant, self._why_not_approver(grant, user))

    async def require_owner_or_admin(self, grant: Grant, user: str, action: str) -> None:
        """Raise an audited NotAllowed unless ``user`` owns ``grant`` or is an admin."""
        if user != grant.requester and not await self.is_admin(user):
            why = f"only the grant's owner or an admin can {action} it"
            raise await self._refuse(user, action, grant, why)

    async def approve(self, grant_id: str, approver: str) -> Decision:
        grant = await self.get(grant_id)
        await self.require_decider(grant, approver, "approve")
        now = self.clock()
        result: dict[str, Outcome] = {}

        def decide(g: Grant) -> Change | None:
            if g.state != State.PENDING:
                result["o"] = Outcome.ALREADY_DECIDED
                return None
            if approver in g.approvals:
                result["o"] = Outcome.ALREADY_COUNTED
                return None
            tally = g.tally.add(approver)
            g = g.model_copy(update={"approvals": tally.approvers})
            if not tally.satisfied:
                result["o"] = Outcome.RECORDED
                return Change(g)
            result["o"] = Outcome.APPROVED
            return self._approved(g, approver, now)

        updated = await self.store.update(grant_id, decide)
        return Decision(result["o"], updated or await self.get(grant_id))

    def _approved(self, g: Grant, approver: str, now: datetime) -> Change:
        # For an extension request the "provision" job applies the extension.
        return Change(
            g.moved(State.APPROVED, approver, now),
            schedule=[_job(provision_job(g.id), now)],
            cancel=[timeout_job(g.id)],
        )

    async def _refuse(self, actor: str, action: str, grant: Grant, why: str) -> NotAllowed:
        """Audit a refused attempt (it changes nothing) and return the error to raise."""
        entry = refusal_entry(actor, action, grant, why, self.clock().isoformat())
        await self.store.audit_event(entry)
        return NotAllowed(why)

    def _why_not_approver(self, grant: Grant, user: str) -> str:
        if user == grant.requester:
            return "you cannot approve or deny your own request"
        return f"you are not an approver for role {grant.role}"

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
        # Requested under an older policy, or one that now protects the namespace:
        # the rule of resolve_request holds at the moment anything is created.
        if grant.namespace is not None:
            why = protected_namespace(self.policy, grant.cluster, grant.namespace)
            if why is not None:
                return await self._fail(grant, f"{why}; AccessBot never grants access there")
        try:
            token, content = await self._make_credentials(grant)
            # The end the cluster honours is on record before anyone is told a time.
            grant = await self._record_token(grant, token)
            if grant.delivered_file:
                delivery = grant.delivered_file
            elif await self._claim_delivery(grant.id):
                delivery = await self._deliver(grant, content)
            else:
                raise RetryLater(self.delivery_claim_seconds / 2, "another attempt is delivering")
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

    async def _claim_delivery(self, grant_id: str) -> bool:
        """Become the one attempt allowed to send this grant's kubeconfig.

        A claim older than ``delivery_claim_seconds`` belongs to an attempt
        presumed dead (its process crashed before recording the delivery), so
        a crash at that exact point costs a delay, never a second file.
        """
        attempt, now = new_id(), self.clock()
        stale = timedelta(seconds=self.delivery_claim_seconds)

        def decide(g: Grant) -> Change | None:
            if g.state != State.PROVISIONING:
                return None
            if g.delivery_claimed_at is not None and now - g.delivery_claimed_at < stale:
                return None
            return Change(
                g.model_copy(update={"delivery_attempt": attempt, "delivery_claimed_at": now})
            )

        return await self.store.update(grant_id, decide) is not None

    async def _start_provisioning(self, grant_id: str) -> Grant | None:
        now = self.clock()

        def decide(g: Grant) -> Change | None:
            if g.state != State.APPROVED:
                return None
            # Whole seconds: the expires-at annotation has no fractions, and the
            # record and the objects must agree on when access ends.
            expires = _ceil_second(now + g.duration)
            return Change(
                g.moved(State.PROVISIONING, SYSTEM, now).model_copy(update={"expires_at": expires})
            )

        started = await self.store.update(grant_id, decide)
        if started is not None:
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
        content = self._kubeconfig(grant, token)
        await retrying(
            f"verify {grant.id}",
            lambda: k8s_grants.verify(cluster, spec, token, content),
            self.backoff,
        )
        return token, content

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

    async def _activate(
        self, grant: Grant, delivery: str, objects: tuple[ClusterObject, ...]
    ) -> Grant | None:
        now = self.clock()

        def decide(g: Grant) -> Change | None:
            if g.state != State.PROVISIONING:
                return None
            active = g.moved(State.ACTIVE, SYSTEM, now).model_copy(
                update={"delivered_file": delivery, "objects": objects}
            )
            return Change(active, schedule=self._expiry_jobs(active))

        # The file is already in the user's DM: wait out a Redis blip rather
        # than fail the job and have a retry send it again.
        activated = await self.store.update(grant.id, decide, patience=self.record_patience)
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
        """End a grant (or cancel a pending request). ``operator``: the CLI, already trusted."""
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
        now = self.clock()

        def decide(g: Grant) -> Change | None:
            if g.state not in LIVE:
                return None
            if target == State.EXPIRED and g.state != State.ACTIVE:
                return None
            jobs = [expire_job(g.id), remind_job(g.id), provision_job(g.id)]
            return Change(
                g.moved(target, actor, now, reason),
                schedule=[self._cleanup_safety_net(g, now)],
                cancel=[j for j in jobs if j != running],
            )

        ended = await self.store.update(grant_id, decide)
        if ended is not None:
            await self._cleanup(ended.id, ended.cluster, ended.objects)
        return ended

    def _cleanup_safety_net(self, g: Grant, now: datetime) -> Job:
        return _job(cleanup_job(g.id), now + self.cleanup_grace, cluster=g.cluster)

    async def _cleanup(
        self, grant_id: str, cluster_name: str, objects: tuple[ClusterObject, ...] | None = None
    ) -> list[str]:
        deleted = await retrying(
            f"revoke {grant_id}",
            lambda: self._revoke(grant_id, cluster_name, objects),
            self.backoff,
        )
        await self.scheduler.cancel(cleanup_job(grant_id))
        return deleted

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
        cluster = job.data.get("cluster") or (grant.cluster if grant else None)
        # The reconciler asks by label: it saw objects the recorded UIDs may not cover.
        objects = None if grant is None or job.data.get("by") == "label" else grant.objects
        if cluster is not None:
            await self._revoke(grant_id, cluster, objects)

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

        Returns the grant when extended directly, or the pending extension request.
        """
        grant = await self.get(grant_id)
        await self.require_owner_or_admin(grant, user, "extend")
        if grant.state != State.ACTIVE or grant.expires_at is None:
            raise RequestRejected(f"grant {grant_id} is {grant.state}; only active grants extend")
        role = self.policy.roles[grant.role]
        now = self.clock()
        try:
            new_expiry(grant.expires_at, by, now, role.max_duration)
        except ExtensionRejected as exc:
            raise RequestRejected(str(exc)) from exc
        if role.approvals == 0:
            return await self._apply_extension(grant_id, by, user)
        request = grant.model_copy(
            update={
                "id": new_id(),
                "kind": "extend",
                "state": State.PENDING,
                "extends": grant.id,
                "duration_s": int(by.total_seconds()),
                "approvals": (),
                "history": (),
                "card": None,
                "delivered_file": None,
                "created_at": now,
                "pending_until": now + self.policy.defaults.pending_ttl,
                "reason": f"extend {grant.id} by {int(by.total_seconds())}s: {grant.reason}",
                "version": 0,
            }
        )
        request = await self._create_pending(request)
        await self._post_card(request)
        return await self.get(request.id)

    async def apply_approved_extension(self, request: Grant) -> Grant | None:
        """Apply an approved extension request to its grant, once."""
        if request.kind != "extend" or request.extends is None:
            return None
        if request.state != State.APPROVED:
            return None
        try:
            return await self._apply_extension(
                request.extends, request.duration, request.last_actor(), request.id
            )
        except RequestRejected as exc:
            now, why = self.clock(), str(exc)
            await self.store.update(
                request.id,
                lambda g: (
                    Change(g.moved(State.FAILED, SYSTEM, now, why))
                    if g.state == State.APPROVED
                    else None
                ),
            )
            return None

    async def _apply_extension(
        self, grant_id: str, by: timedelta, actor: str, request_id: str | None = None
    ) -> Grant:
        """Extend by ``by`` as far as a fresh token lets the cluster honour it.

        The token comes first: its real expiry caps the new end (the user is
        told), then the objects' annotation, the record and its jobs follow,
        and the verified kubeconfig is delivered last.
        """
        now = self.clock()
        current = await self.get(grant_id)
        max_duration = self.policy.roles[current.role].max_duration
        marker = request_id or new_id()
        if (
            current.state != State.ACTIVE
            or current.expires_at is None
            or marker in current.extensions
        ):
            raise RequestRejected(f"grant {grant_id} is no longer active")
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

        def decide(g: Grant) -> Change | None:
            if g.state != State.ACTIVE or g.expires_at != before or marker in g.extensions:
                return None
            extended = g.model_copy(
                update={
                    "expires_at": ends,
                    "extensions": (*g.extensions, marker),
                    "token_cap_s": cap,
                }
            )
            return Change(extended, schedule=self._expiry_jobs(extended))

        updated = await self.store.update(grant_id, decide)
        if updated is None:
            raise RequestRejected(f"grant {grant_id} is no longer active")
        # The old token dies at the old end: the extension needs the fresh file.
        await self._deliver(updated, content)
        log.info("grant %s extended by %s", grant_id, actor, extra={"grant_id": grant_id})
        return updated

    async def _renew_credentials(
        self, grant: Grant, spec: k8s_grants.GrantSpec
    ) -> tuple[k8s_grants.IssuedToken, str]:
        """A fresh token for ``spec.expires_at``, its file verified, the objects re-annotated.

        Raises RequestRejected when the token's real expiry would not move the
        grant's end at all, ClusterError when the cluster fails us.
        """
        assert grant.expires_at is not None
        cluster = self.clusters[grant.cluster]
        token = await retrying(
            f"token {grant.id}",
            lambda: k8s_grants.issue_token(cluster, spec, self.clock()),
            self.backoff,
        )
        ends = token.ends_at or spec.expires_at
        if ends <= grant.expires_at:
            raise RequestRejected(
                f"cluster {grant.cluster} caps tokens at "
                f"{format_duration(timedelta(seconds=token.lifetime_seconds))}; "
                f"grant {grant.id} cannot be extended beyond its current end yet"
            )
        content = self._kubeconfig(grant, token)
        await retrying(
            f"verify {grant.id}",
            lambda: k8s_grants.verify(cluster, spec, token, content),
            self.backoff,
        )
        refs = _refs(grant.objects) if grant.objects is not None else None
        await retrying(
            f"annotate {grant.id}",
            lambda: k8s_grants.set_expiry(cluster, refs or k8s_grants.grant_refs(spec), ends),
            self.backoff,
        )
        return token, content

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
        """Revoke everything the user holds on every cluster and block new requests.

        Idempotent: a second call finds nothing live and returns empty lists.
        ``progress`` hears about each grant as it is done (the CLI prints it).
        """
        now = self.clock()
        await self.store.mark_offboarded(Offboarding(user=user, at=now, by=actor, reason=reason))
        grants = await self.store.by_user(user)
        why = reason or "offboarded"
        live = [g for g in grants if g.state in LIVE and g.kind == "access"]
        pending = [g for g in grants if g.state == State.PENDING]

        async def end(g: Grant) -> Grant | None:
            result = await self._end(g.id, State.REVOKED, actor, why)
            if progress is not None:
                progress(g, "revoked" if result is not None else "already ended")
            return result

        ended = await asyncio.gather(*(end(g) for g in live), return_exceptions=True)
        cancelled = [await self._cancel(g.id, actor, why) for g in pending]
        failures = [e for e in ended if isinstance(e, BaseException)]
        if failures:
            # States are revoked and durable cleanup jobs exist, so the objects
            # will go; but "done" would be a lie, so the caller hears about it.
            log.error("offboarding %s: %d cleanups deferred to jobs", user, len(failures))
            raise ClusterError(f"offboarding {user}: {len(failures)} cleanups still pending")
        return OffboardResult(
            user=user,
            revoked=[g.id for g, e in zip(live, ended, strict=True) if e is not None],
            cancelled=[g.id for g, c in zip(pending, cancelled, strict=True) if c is not None],
        )

    async def reenable(self, user: str, actor: str) -> bool:
        if not await self.is_admin(actor):
            raise NotAllowed("only AccessBot admins can re-enable an offboarded user")
        return await self.store.reenable(user)


def _refs(objects: tuple[ClusterObject, ...]) -> tuple[k8s_grants.ObjectRef, ...]:
    return tuple(k8s_grants.ObjectRef(o.kind, o.namespace, o.name, o.uid) for o in objects)


def _records(refs: tuple[k8s_grants.ObjectRef, ...]) -> tuple[ClusterObject, ...]:
    return tuple(ClusterObject(kind=r.kind, namespace=r.namespace, name=r.name, uid=r.uid)
                 for r in refs)  # fmt: skip


def _ceil_second(at: datetime) -> datetime:
    whole = at.replace(microsecond=0)
    return whole if whole == at else whole + timedelta(seconds=1)


def _user_reason(exc: BaseException) -> str:
    """A failure reason a requester can read; never the raw exception repr."""
    return str(exc) or exc.__class__.__name__
