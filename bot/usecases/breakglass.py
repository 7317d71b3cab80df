"""Break-glass access: taken at once by its requester, revoked unless ratified in time.

A role with ``break_glass: {ratify_within, approvals}`` (:mod:`bot.policy_rules`) may be
taken without approval (``/access breakglass``): the grant is stored already approved,
so its next step is provisioning, and its card (with a Ratify button) goes to the
approvals channel while the audit channel records it. Once active, its next step is
the ratification deadline (:mod:`bot.agenda`, ``RATIFY``: activation + ``ratify_within``)
until ``approvals`` of the people who may approve the role (never the requester, never
someone offboarded) have ratified it; at the deadline an unratified grant is revoked,
with its receipt like every end. A ratified grant lives on to its normal expiry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from bot.agenda import ratify_deadline
from bot.durations import format_duration
from bot.errors import Rejected
from bot.lifecycle import State
from bot.models import BreakGlass, Grant
from bot.policy import AccessRequestSpec, may_approve
from bot.policy_breakglass import resolve_break_glass
from bot.store import Change
from bot.usecases.authorization import OFFBOARDED, Acted, Authorization, Refused
from bot.usecases.deps import SYSTEM, Deps
from bot.usecases.ending import Ending
from bot.usecases.requests import Requests

__all__ = ["BreakGlassAccess", "Ratification", "Ratified"]

TAKEN = "break-glass: taken without approval, to be ratified"


class Ratified(StrEnum):
    """What a Ratify click did."""

    RATIFIED = "ratified"  # this ratification completed the count: the grant lives on
    RECORDED = "recorded"  # counted; more are needed
    ALREADY_COUNTED = "already_counted"
    ALREADY_RATIFIED = "already_ratified"
    TOO_LATE = "too_late"  # the grant ended, or its deadline passed


# What a Ratify click did, and the grant as it now stands.
Ratification = Acted[Ratified]


@dataclass(frozen=True)
class BreakGlassAccess:
    """Take, ratify and, at the deadline, revoke break-glass grants."""

    deps: Deps
    authz: Authorization
    requests: Requests
    ending: Ending

    async def take(self, spec: AccessRequestSpec) -> Grant:
        """Grant ``spec`` at once (no approval); raises RequestRejected for a role without
        ``break_glass`` or a request the rules refuse, NotAllowed (audited) when offboarded."""
        deps = self.deps
        await self.authz.require_enabled(spec.requester, "break glass")
        resolved = resolve_break_glass(deps.policy, spec)
        config = deps.policy.roles[resolved.role].break_glass
        assert config is not None  # resolve_break_glass refuses a role without it
        now = deps.clock()
        grant = await self.requests.draft(resolved, now)
        glass = BreakGlass(
            ratify_within_s=int(config.ratify_within.total_seconds()),
            approvals_required=config.approvals,
        )
        # No approval is needed to take it (its ratifications are counted in ``glass``).
        update = {"break_glass": glass, "approvals_required": 0}
        grant = grant.model_copy(update=update)
        # Its next step: provision, at once.
        grant = await self.requests.create(grant.moved(State.APPROVED, spec.requester, now, TAKEN))
        return await self.requests.announced(grant)  # the loud card, with its Ratify button

    async def why_not_ratifier(self, grant: Grant, user: str) -> str | None:
        """Why ``user`` may not ratify ``grant`` now, or None when they may."""
        if await self.deps.store.offboarding(user) is not None:
            return OFFBOARDED
        if user == grant.requester:
            return "you cannot ratify your own break-glass access"
        groups = await self.deps.directory.groups_of(user)
        if not may_approve(self.deps.policy, grant.role, user, groups, grant.requester):
            return f"you are not an approver for role {grant.role}, so you cannot ratify it"
        return None

    async def ratify(self, grant_id: str, user: str) -> Ratification:
        """Count ``user``'s ratification. Raises Rejected for a grant that is not
        break-glass, NotAllowed (audited) for someone who may not ratify it."""
        grant = await self.deps.grant(grant_id)
        if grant.break_glass is None:
            raise Rejected(f"{grant_id} is not a break-glass grant: there is nothing to ratify")
        why = await self.why_not_ratifier(grant, user)
        if why is not None:
            raise await self.authz.refuse(user, "ratify", grant, why)
        verdict, updated = await self.authz.act(
            grant, user, "ratify", lambda g, off, now: _ratification(g, user, off, now)
        )
        return Ratification(verdict or Ratified.TOO_LATE, updated)

    async def on_deadline(self, grant: Grant) -> None:
        """The ratify step: revoke an active break-glass grant nobody ratified in time
        (the check and the state change are one transaction), then remove its objects."""
        now = self.deps.clock()
        glass = grant.break_glass
        window = format_duration(glass.ratify_within) if glass else "its window"
        why = f"break-glass access not ratified within {window}"

        def decide(g: Grant) -> Change | None:
            deadline = ratify_deadline(g)
            if g.state != State.ACTIVE or deadline is None or deadline > now:
                return None
            return Change(g.moved(State.REVOKED, SYSTEM, now, why))  # next step: cleanup

        ended = await self.deps.store.update(grant.id, decide)
        if ended is not None:
            await self.ending.cleanup(ended.id, ended.cluster, ended.objects)


def _ratification(
    g: Grant, user: str, offboarded: frozenset[str], now: datetime
) -> tuple[Ratified | Refused, Change | None]:
    """What ``user``'s ratification does to ``g``, pure."""
    glass = g.break_glass
    if glass is None:
        return Ratified.TOO_LATE, None
    if glass.ratified_at is not None:
        return Ratified.ALREADY_RATIFIED, None
    deadline = ratify_deadline(g)
    if not g.live or (deadline is not None and now > deadline):
        return Ratified.TOO_LATE, None
    if user in offboarded:
        return Refused(OFFBOARDED), None
    if user in glass.ratified_by:
        return Ratified.ALREADY_COUNTED, None
    # Ratifications of people offboarded since no longer count.
    given = (*(u for u in glass.ratified_by if u not in offboarded), user)
    done = len(given) >= glass.approvals_required
    glass = glass.model_copy(update={"ratified_by": given, "ratified_at": now if done else None})
    note = f"ratification {len(given)} of {glass.approvals_required}"
    change = g.model_copy(update={"break_glass": glass}).noted("ratified", user, now, note)
    return (Ratified.RATIFIED if done else Ratified.RECORDED), Change(change)
