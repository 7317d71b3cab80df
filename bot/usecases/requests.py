"""Requests and decisions: submit a request, post its card, approve, deny, cancel, time out.

Each decision is made by pure code inside one store transaction that also reads
who is offboarded, so a late click, a double click or an offboarding a moment
ago cannot slip a change through; the answer is a :class:`Decision`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from redis.exceptions import RedisError

from bot.lifecycle import LIVE, State
from bot.models import Grant, MessageRef, new_grant
from bot.policy import AccessRequestSpec, ResolvedRequest, may_approve, resolve_request
from bot.scheduler import Defer
from bot.start_times import StartRequest, check_start, resolve_start
from bot.store import Change, RequesterOffboarded
from bot.usecases.authorization import (
    OFFBOARDED,
    REQUESTER_OFFBOARDED,
    Acted,
    Authorization,
    Refused,
)
from bot.usecases.deps import SYSTEM, Deps

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    APPROVED = "approved"  # this approval completed the tally
    RECORDED = "recorded"  # counted; more approvals needed
    ALREADY_COUNTED = "already_counted"
    DENIED = "denied"
    ALREADY_DECIDED = "already_decided"


# What an approve or deny click did, and the grant as it now stands.
Decision = Acted[Outcome]


@dataclass(frozen=True)
class Requests:
    """Requests from submission to decision; ``authz`` says who may decide."""

    deps: Deps
    authz: Authorization

    # -- queries -------------------------------------------------------------
    async def list_grants(self, user: str, *, everyone: bool = False) -> list[Grant]:
        """A user's live and pending grants; admins may ask for everyone's."""
        shown = (State.PENDING, *LIVE)
        store = self.deps.store
        if everyone:
            await self.authz.require_admin(user, "list everyone's grants")
            return await store.by_state(*shown)
        await self.authz.require_enabled(user, "list")
        return [g for g in await store.by_user(user) if g.state in shown]

    async def awaiting(self, user: str) -> list[Grant]:
        """Pending requests this user could approve now."""
        await self.authz.require_enabled(user, "list requests awaiting approval")
        groups = await self.deps.directory.groups_of(user)
        candidates = [
            g
            for g in await self.deps.store.by_state(State.PENDING)
            if user not in g.approvals
            and may_approve(self.deps.policy, g.role, user, groups, g.requester)
        ]
        parents = {
            p.id: p for p in await self.deps.store.many(g.extends for g in candidates if g.extends)
        }
        return [
            g
            for g in candidates
            if g.extends is None or getattr(parents.get(g.extends), "requester", None) != user
        ]

    # -- request -------------------------------------------------------------
    async def draft(self, resolved: ResolvedRequest, now: datetime) -> Grant:
        """A new pending record for ``resolved`` (not stored): the requester's handle,
        its pending deadline, and whether its cluster is trusted insecurely (the card
        warns)."""
        deps = self.deps
        grant = new_grant(
            resolved,
            handle=await deps.directory.handle_of(resolved.requester),
            now=now,
            pending_ttl=deps.policy.defaults.pending_ttl,
        )
        insecure = deps.clusters[grant.cluster].trust.insecure
        return grant.model_copy(update={"tls_insecure": insecure}) if insecure else grant

    async def submit(self, spec: AccessRequestSpec, start: StartRequest | None = None) -> Grant:
        """Validate and store a request; post its card or approve it at once.

        Raises NotAllowed (audited) for an offboarded requester, also when the
        offboarding lands while this request is on its way (the store checks
        inside the transaction that creates the record).
        """
        deps = self.deps
        await self.authz.require_enabled(spec.requester, "request")
        resolved = resolve_request(deps.policy, spec)
        now = deps.clock()
        grant = await self.draft(resolved, now)
        if start is not None:  # scheduled access (bot.start_times): approved now, made then
            starts_at = check_start(
                resolve_start(start, now), now, deps.policy.defaults.max_schedule_ahead
            )
            grant = grant.model_copy(update={"starts_at": starts_at})
        if resolved.approvals_required == 0:
            grant = grant.moved(State.APPROVED, SYSTEM, now, "auto-approved by policy")
            return await self.create(grant)  # its next step: provision
        return await self.announced(await self.create_pending(grant))

    async def create_pending(self, grant: Grant) -> Grant:
        """Store a pending request. Its next step is the card's safety net (bot.agenda):
        if we die before the card is posted and recorded, it posts the card later
        instead of leaving approvers unaware; then its timeout."""
        return await self.create(grant)

    async def create(self, grant: Grant) -> Grant:
        """Store a new record; raises an audited NotAllowed for an offboarded requester."""
        try:
            return await self.deps.store.create(grant)
        except RequesterOffboarded:
            raise await self.authz.refuse(grant.requester, "request", None, OFFBOARDED) from None

    async def announced(self, grant: Grant) -> Grant:
        """Post the card of a just-stored record; return the record as it is now.

        The record is committed, so the request exists whatever happens next: a
        Redis failure while recording the card or reading back (say, a failover)
        returns ``grant`` as stored instead of raising. Raising would tell the
        requester to try again, and the retry would make a second request. A
        pending request's card step (bot.agenda) posts the card if none was
        recorded.
        """
        try:
            await self.post_card(grant)
            return await self.deps.grant(grant.id)
        except RedisError as exc:
            log.warning(
                "request %s is stored; recording its card failed: %r", grant.id, exc,
                extra={"grant_id": grant.id},
            )  # fmt: skip
            return grant

    async def post_card(self, grant: Grant) -> None:
        """Post the approval card and record where it is (which ends the card step)."""
        card = await self.deps.notifier.post_card(grant)
        if card is not None:
            await self._set_card(grant.id, card)

    async def _set_card(self, grant_id: str, card: MessageRef) -> None:
        await self.deps.store.update(
            grant_id,
            lambda g: Change(g.model_copy(update={"card": card})),
        )

    async def on_card(self, grant: Grant) -> None:
        """The card step: post the card of a pending request that has none (the safety
        net fired); when Slack took none, try again one ``card_retry`` later."""
        await self.post_card(grant)
        current = await self.deps.store.get(grant.id)
        if current is not None and current.state == State.PENDING and current.card is None:
            raise Defer(self.deps.card_retry.total_seconds(), "the card was not posted")

    async def on_timeout(self, grant: Grant) -> None:
        """The timeout step: end a request nobody decided before its deadline."""
        now = self.deps.clock()
        await self.deps.store.update(
            grant.id,
            lambda g: (
                Change(g.moved(State.TIMED_OUT, SYSTEM, now, "nobody decided in time"))
                if g.state == State.PENDING and g.pending_until <= now
                else None
            ),
        )

    # -- decisions ------------------------------------------------------------
    async def approve(self, grant_id: str, approver: str) -> Decision:
        """Count ``approver``'s approval; the Decision says what it did.

        Raises NotAllowed (audited) when ``approver`` may not decide, or when
        they or the requester are offboarded (read in the same transaction).
        """
        grant = await self.deps.grant(grant_id)
        await self.authz.require_decider(grant, approver, "approve")
        verdict, updated = await self.authz.act(
            grant, approver, "approve", lambda g, off, now: approval_rule(g, approver, off, now)
        )
        return Decision(verdict or Outcome.ALREADY_DECIDED, updated)

    async def deny(self, grant_id: str, user: str, reason: str = "") -> Decision:
        grant = await self.deps.grant(grant_id)
        await self.authz.require_decider(grant, user, "deny")
        now = self.deps.clock()

        def decide(g: Grant) -> Change | None:
            if g.state != State.PENDING:
                return None
            denied = g.moved(State.DENIED, user, now, reason).model_copy(update={"denied_by": user})
            return Change(denied)

        updated = await self.deps.store.update(grant_id, decide)
        if updated is None:
            return Decision(Outcome.ALREADY_DECIDED, await self.deps.grant(grant_id))
        return Decision(Outcome.DENIED, updated)

    async def cancel(self, grant_id: str, user: str, reason: str = "") -> Grant | None:
        grant = await self.deps.grant(grant_id)
        await self.authz.require_enabled(user, "cancel", grant)
        if user != grant.requester and not await self.authz.is_admin(user):
            raise await self.authz.refuse(
                user, "cancel", grant, "only the requester or an admin can cancel a request"
            )
        return await self.cancel_pending(grant_id, user, reason)

    async def cancel_pending(self, grant_id: str, actor: str, reason: str) -> Grant | None:
        """Cancel a request still pending (no authorization check); None when it was not."""
        now = self.deps.clock()
        return await self.deps.store.update(
            grant_id,
            lambda g: (
                Change(g.moved(State.CANCELLED, actor, now, reason))
                if g.state == State.PENDING
                else None
            ),
        )


def approval_rule(
    g: Grant, approver: str, offboarded: frozenset[str], now: datetime
) -> tuple[Outcome | Refused, Change | None]:
    """What ``approver``'s approval does to ``g``: the outcome and the change, pure."""
    # Offboarding is read in this same transaction: an approver or a
    # requester offboarded a moment ago cannot slip an approval through.
    if g.state != State.PENDING:
        return Outcome.ALREADY_DECIDED, None
    if approver in offboarded or g.requester in offboarded:
        return Refused(OFFBOARDED if approver in offboarded else REQUESTER_OFFBOARDED), None
    if approver in g.approvals:
        return Outcome.ALREADY_COUNTED, None
    # Approvals of people offboarded since no longer count (or show).
    tally = g.tally.without(offboarded).add(approver)
    g = g.model_copy(update={"approvals": tally.approvers})
    if not tally.satisfied:
        # Audited as its own event: each approval is answerable from the stream.
        counted = f"approval {len(tally.approvers)} of {g.approvals_required}"
        return Outcome.RECORDED, Change(g.noted("approval", approver, now, counted))
    return Outcome.APPROVED, _approved(g, approver, now)


def _approved(g: Grant, approver: str, now: datetime) -> Change:
    # Its next step: provision (for an extension request: extend, which applies it).
    return Change(g.moved(State.APPROVED, approver, now))
