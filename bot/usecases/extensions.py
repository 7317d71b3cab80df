"""Extensions: more time on an active grant, at once for auto-approved roles, else by approval.

An extension request is a grant record of its own (kind ``extend``) that goes
through the same approval as a request; once approved, the ``extend`` step
applies it to the grant it extends, with a fresh token and kubeconfig.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import timedelta

from bot.durations import format_duration
from bot.extension_rules import check_extension_limit, check_extension_rules
from bot.lifecycle import ExtensionRejected, State, new_expiry
from bot.models import Grant, new_id
from bot.policy import RequestRejected, recheck_request
from bot.retry import retrying
from bot.store import Change
from bot.usecases.authorization import APPROVER_OFFBOARDED, REQUESTER_OFFBOARDED
from bot.usecases.credentials import deliver, grant_spec, verified_kubeconfig
from bot.usecases.deps import SYSTEM, Deps, user_reason
from bot.usecases.requests import Requests
from k8s import grants as k8s_grants
from k8s.errors import ClusterError

log = logging.getLogger(__name__)

# Tries of one extension while others of the same grant keep committing first.
EXTEND_ATTEMPTS = 5


@dataclass(frozen=True)
class Extensions:
    """Extending grants; extension requests go through ``requests`` like any request."""

    deps: Deps
    requests: Requests

    async def extend(self, grant_id: str, user: str, by: timedelta) -> Grant:
        """Extend an active grant: at once for auto-approved roles, else via approval.

        Returns the grant when extended directly, or the pending extension
        request. The request is ``user``'s own (they asked; they can never
        approve it, nor can the grant's owner) and carries nothing of its
        parent's objects or delivery.
        """
        deps = self.deps
        grant = await deps.grant(grant_id)
        await self.requests.authz.require_owner_or_admin(grant, user, "extend")
        if grant.kind != "access":
            raise RequestRejected(f"{grant_id} is an extension request; extend the grant itself")
        if grant.state != State.ACTIVE or grant.expires_at is None:
            raise RequestRejected(f"grant {grant_id} is {grant.state}; only active grants extend")
        recheck_request(deps.policy, grant.decided)
        role = deps.policy.roles[grant.role]
        now = deps.clock()
        try:
            check_extension_rules(grant, role, grant.role, now)
            new_expiry(grant.expires_at, by, now, role.max_duration)
        except ExtensionRejected as exc:
            raise RequestRejected(str(exc)) from exc
        if role.approvals == 0:
            return await self._extend_grant(grant_id, by, user, "policy (auto-approved)")
        request = Grant(
            id=new_id(),
            kind="extend",
            state=State.PENDING,
            requester=user,
            handle=await deps.directory.handle_of(user),
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
            pending_until=now + deps.policy.defaults.pending_ttl,
            extends=grant.id,
        )
        return await self.requests.announced(await self.requests.create_pending(request))

    async def apply_approved_extension(self, request: Grant) -> Grant | None:
        """Apply an approved extension request to its grant, once; the request then ends."""
        if request.kind != "extend" or request.extends is None:
            return None
        if request.state != State.APPROVED:
            return None
        store = self.deps.store
        now = self.deps.clock()
        offboarded = await store.offboarded_among([request.requester, *request.approvals])
        try:
            if request.requester in offboarded:
                raise RequestRejected(REQUESTER_OFFBOARDED)
            if not request.tally.without(offboarded).satisfied:
                raise RequestRejected(APPROVER_OFFBOARDED)
            approvers = ", ".join(request.approvals) or request.last_actor()
            updated = await self._extend_grant(
                request.extends, request.duration, request.requester, approvers, request.id
            )
        except RequestRejected as exc:
            why = str(exc)
            await store.update(
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
        await store.update(
            request.id,
            lambda g: (
                Change(g.moved(State.APPLIED, SYSTEM, now, done))
                if g.state == State.APPROVED
                else None
            ),
        )
        return updated

    async def _extend_grant(
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
        step's retry, which finds the extension recorded and finishes its work,
        and by the reconciler, which writes a live grant's facts onto its objects.

        Raises RequestRejected when the grant cannot be extended (the message
        is for the user).
        """
        marker = request_id or new_id()
        # Another extension of the same grant may commit while this one mints its
        # token: then this one is judged again from the new end (its limits too).
        for _ in range(EXTEND_ATTEMPTS):
            updated = await self._extend_once(grant_id, by, asked_by, approved_by, marker)
            if updated is not None:
                break
        else:
            raise RequestRejected(f"grant {grant_id} was not extended: it kept changing; try again")
        log.info("grant %s extended by %s", grant_id, asked_by, extra={"grant_id": grant_id})
        return updated

    async def _extend_once(
        self, grant_id: str, by: timedelta, asked_by: str, approved_by: str, marker: str
    ) -> Grant | None:
        """One try at ``_extend_grant``: the extended grant, or None when another
        extension moved its end meanwhile (judge again). Raises RequestRejected."""
        deps = self.deps
        now = deps.clock()
        current = await deps.grant(grant_id)
        if current.state != State.ACTIVE or current.expires_at is None:
            raise RequestRejected(f"grant {grant_id} is no longer active")
        # Approved under an older policy, perhaps: today's decides.
        recheck_request(deps.policy, current.decided)
        max_duration = deps.policy.roles[current.role].max_duration
        if marker in current.extensions:
            # Recorded by an earlier attempt that died before delivering.
            _, content = await self._renew_credentials(
                current, grant_spec(deps, current), resumed=True
            )
            await self._write_facts(current)
            await self._deliver_again(current, content)
            return current
        try:
            # Asked in time; applied only while the role's count allows (extend_after
            # was checked when asked).
            check_extension_limit(current, deps.policy.roles[current.role], current.role)
            wanted = new_expiry(current.expires_at, by, now, max_duration)
        except ExtensionRejected as exc:
            raise RequestRejected(str(exc)) from exc
        before = current.expires_at
        spec = replace(grant_spec(deps, current), expires_at=wanted)
        try:
            token, content = await self._renew_credentials(current, spec)
        except ClusterError as exc:
            raise RequestRejected(
                f"grant {grant_id} was not extended ({user_reason(exc)}); "
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
            return Change(extended)  # the agenda moves its reminder and expiry

        updated = await deps.store.update_checked(grant_id, decide, also=(asked_by,))
        if updated is not None:
            await self._write_facts(updated)
            # The old token dies at the old end: the extension needs the fresh file.
            await self._deliver_again(updated, content)
            return updated
        fresh = await deps.grant(grant_id)
        if fresh.state != State.ACTIVE:
            raise RequestRejected(f"grant {grant_id} is no longer active")
        if fresh.expires_at == before:
            raise RequestRejected(
                f"grant {grant_id} was not extended: someone involved was offboarded"
            )
        return None  # another extension moved the end meanwhile: judge again

    async def _write_facts(self, grant: Grant) -> None:
        """Write what the record says (expiry, approvers) onto the grant's objects."""
        cluster = self.deps.clusters[grant.cluster]
        facts = k8s_grants.facts(grant_spec(self.deps, grant))
        await retrying(
            f"annotate {grant.id}",
            lambda: k8s_grants.annotate(cluster, grant.id, facts),
            self.deps.backoff,
        )

    async def _renew_credentials(
        self, grant: Grant, spec: k8s_grants.GrantSpec, *, resumed: bool = False
    ) -> tuple[k8s_grants.IssuedToken, str]:
        """A fresh token for ``spec.expires_at`` and its kubeconfig, verified.

        Raises RequestRejected when the token's real expiry would not move the
        grant's end at all (unless ``resumed``: finishing an extension already
        recorded), ClusterError when the cluster fails us.
        """
        deps = self.deps
        assert grant.expires_at is not None
        cluster = deps.clusters[grant.cluster]
        token = await retrying(
            f"token {grant.id}",
            lambda: k8s_grants.issue_token(cluster, spec, deps.clock()),
            deps.backoff,
        )
        ends = token.ends_at or spec.expires_at
        if ends <= grant.expires_at and not resumed:
            raise RequestRejected(
                f"cluster {grant.cluster} caps tokens at "
                f"{format_duration(timedelta(seconds=token.lifetime_seconds))}; "
                f"grant {grant.id} cannot be extended beyond its current end yet"
            )
        return token, await verified_kubeconfig(deps, grant, spec, token)

    async def _deliver_again(self, grant: Grant, content: str) -> None:
        """Deliver a renewed kubeconfig and record its file, so the end deletes it too."""
        file_id = await deliver(self.deps, grant, content)
        if not file_id:
            return
        await self.deps.store.update(
            grant.id,
            lambda g: (
                None
                if file_id in g.later_files
                else Change(g.model_copy(update={"later_files": (*g.later_files, file_id)}))
            ),
        )
