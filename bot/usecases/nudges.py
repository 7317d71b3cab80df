"""Nudges: a pending request's approvers are reminded of it, then the role's
``escalate_to`` are told it is still waiting.

The agenda (:mod:`bot.agenda`) files each once the card is posted: the reminder
``defaults.remind_approvers_after`` after the request (``StepKind.REMIND_APPROVERS``), the
escalation the role's ``escalate_after`` after it (``StepKind.ESCALATE``, only for a role
with ``escalate_to``). Each is recorded on the grant (``approvers_reminded_at``,
``escalated_at``, and an audited event) in the same transaction that checks the request
is still pending, and only then posted: a retried step, a second replica or a restart
finds it recorded and posts nothing, so a crash between the two costs that one post,
never a second one.

Who is named: user IDs as they are; a usergroup as a whole when none of its members
is left out, else its remaining members one by one. Left out are the requester (never
pinged about their own request, whichever group they are in), for an extension request
the grant's holder too, anyone offboarded (read in the transaction) and, for the
reminder, approvers who already approved.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from bot.lifecycle import State
from bot.models import Grant
from bot.nudge_rules import Nudge, NudgeKind, Targets, targets, waited_text
from bot.policy import approvers_of
from bot.store import Change
from bot.usecases.deps import SYSTEM, Deps, rule_on

__all__ = ["Nudges"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Nudges:
    """The two nudge steps; ``deps`` as every use case."""

    deps: Deps

    async def on_remind_approvers(self, grant: Grant) -> None:
        """The REMIND_APPROVERS step: name the approvers who have not approved yet (the
        admins when the role names none) in the card's thread, once."""
        users, groups = approvers_of(self.deps.policy, grant.role, include_admins=False)
        if not users and not groups:
            users, groups = approvers_of(self.deps.policy, grant.role)
        await self._nudge(grant, "remind", users, groups)

    async def on_escalate(self, grant: Grant) -> None:
        """The ESCALATE step: tell the role's ``escalate_to`` in the card's thread, once."""
        role = self.deps.policy.roles.get(grant.role)
        principals = role.escalate_to if role is not None else []
        users = [p for p in principals if not p.startswith("@")]
        groups = [p.removeprefix("@").lower() for p in principals if p.startswith("@")]
        await self._nudge(grant, "escalate", users, groups)

    async def _nudge(
        self, grant: Grant, kind: NudgeKind, users: Iterable[str], handles: Iterable[str]
    ) -> None:
        members = {h: await self._members(h) for h in sorted(handles)}
        everyone = sorted({*users, *(m for ms in members.values() for m in ms)})
        # An extension request: the grant's holder may not approve it either.
        parent = await self.deps.store.get(grant.extends) if grant.extends else None
        holder = frozenset({parent.requester}) if parent is not None else frozenset()
        now = self.deps.clock()
        field = "approvers_reminded_at" if kind == "remind" else "escalated_at"

        def rule(g: Grant, offboarded: frozenset[str]) -> tuple[Targets | None, Change | None]:
            if g.state != State.PENDING or getattr(g, field) is not None:
                return None, None  # decided meanwhile, or done already: never twice
            left_out = offboarded | holder | {g.requester}
            if kind == "remind":
                left_out |= set(g.approvals)
            who = targets(users, members, frozenset(left_out))
            waited = waited_text(now - g.created_at)
            said = ", ".join([*who.users, *(f"@{h}" for h in who.groups)]) or "nobody left"
            event = "approvers_reminded" if kind == "remind" else "escalated"
            noted = g.noted(event, SYSTEM, now, f"waiting {waited}; named: {said}")
            return who, Change(noted.model_copy(update={field: now}))

        who, updated = await rule_on(self.deps.store, grant.id, rule, also=everyone)
        if who is None or updated is None:
            return
        nudge = Nudge(kind, who, now - updated.created_at, now)
        await self.deps.notifier.nudge(updated, nudge)

    async def _members(self, handle: str) -> frozenset[str]:
        try:
            return await self.deps.directory.members_of(handle)
        except Exception:  # the directory fails closed: the group is not named
            log.warning("members of @%s unknown; not naming the group", handle, exc_info=True)
            return frozenset()
