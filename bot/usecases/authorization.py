"""Who may do what, asked of the store and the directory now: the checks every use case runs.

A refusal is audited (it changes nothing else) and raised as :class:`bot.errors.NotAllowed`
with a sentence for the person. An offboarded user holds no authority at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from bot.audit import refusal_entry
from bot.errors import NotAllowed
from bot.models import Grant
from bot.policy import is_admin, may_approve
from bot.store import Change
from bot.usecases.deps import Deps, rule_on

V = TypeVar("V")
OutcomeT = TypeVar("OutcomeT")

OFFBOARDED = "you were offboarded; an admin must re-enable you before you can use AccessBot"
REQUESTER_OFFBOARDED = "the requester was offboarded"
APPROVER_OFFBOARDED = "an approval came from someone since offboarded and no longer counts"


@dataclass(frozen=True)
class Refused:
    """A pure rule's refusal of someone's act; ``why`` is for them, and audited."""

    why: str


@dataclass(frozen=True)
class Acted(Generic[OutcomeT]):
    """What a person's act did (``outcome``: the use case's own enum) and the grant as
    it now stands."""

    outcome: OutcomeT
    grant: Grant


# A person's act on a grant (an approval, a ratification), decided purely from the
# record, who among those involved is offboarded, and the time.
Act = Callable[[Grant, frozenset[str], datetime], tuple[V | Refused, Change | None]]


@dataclass(frozen=True)
class Authorization:
    """The authorization checks, each asked of the store and the directory at call time."""

    deps: Deps

    async def is_admin(self, user: str) -> bool:
        """Whether ``user`` holds admin rights now (an offboarded admin holds none)."""
        if await self.deps.store.offboarding(user) is not None:
            return False
        return is_admin(self.deps.policy, user, await self.deps.directory.groups_of(user))

    async def may_decide(self, grant: Grant, user: str) -> bool:
        """Whether ``user`` may approve or deny ``grant`` (see ``why_not_decider``)."""
        return await self.why_not_decider(grant, user) is None

    async def why_not_decider(self, grant: Grant, user: str) -> str | None:
        """Why ``user`` may not approve or deny ``grant``, or None when they may."""
        store = self.deps.store
        if await store.offboarding(user) is not None:
            return OFFBOARDED
        if user == grant.requester:
            return "you cannot approve or deny your own request"
        if grant.kind == "extend" and grant.extends:
            parent = await store.get(grant.extends)
            if parent is not None and parent.requester == user:
                return "you cannot approve or deny an extension of your own grant"
        groups = await self.deps.directory.groups_of(user)
        if not may_approve(self.deps.policy, grant.role, user, groups, grant.requester):
            return f"you are not an approver for role {grant.role}"
        return None

    async def require_enabled(self, user: str, action: str, grant: Grant | None = None) -> None:
        """Raise an audited NotAllowed if ``user`` was offboarded: they may do nothing."""
        if await self.deps.store.offboarding(user) is not None:
            raise await self.refuse(user, action, grant, OFFBOARDED)

    async def require_admin(self, user: str, action: str) -> None:
        """Raise an audited NotAllowed unless ``user`` is an admin now (never when offboarded)."""
        await self.require_enabled(user, action)
        if not await self.is_admin(user):
            raise await self.refuse(user, action, None, f"only AccessBot admins can {action}")

    async def require_decider(self, grant: Grant, user: str, action: str) -> None:
        """Raise an audited NotAllowed unless ``user`` may approve or deny ``grant``."""
        why = await self.why_not_decider(grant, user)
        if why is not None:
            raise await self.refuse(user, action, grant, why)

    async def require_owner_or_admin(self, grant: Grant, user: str, action: str) -> None:
        """Raise an audited NotAllowed unless ``user`` owns ``grant`` or is an admin."""
        await self.require_enabled(user, action, grant)
        if user != grant.requester and not await self.is_admin(user):
            why = f"only the grant's owner or an admin can {action} it"
            raise await self.refuse(user, action, grant, why)

    async def refuse(self, actor: str, action: str, grant: Grant | None, why: str) -> NotAllowed:
        """Audit a refused attempt (it changes nothing) and return the error to raise."""
        entry = refusal_entry(actor, action, grant, why, self.deps.clock().isoformat())
        await self.deps.store.audit_event(entry)
        return NotAllowed(why)

    async def act(
        self, grant: Grant, user: str, action: str, rule: Act[V]
    ) -> tuple[V | None, Grant]:
        """Apply ``user``'s act in one store transaction that also reads whether they
        are offboarded. Raises NotAllowed (audited) when ``rule`` refuses. Returns the
        rule's verdict (None: no such record) and the grant as it now stands."""
        now = self.deps.clock()
        verdict, updated = await rule_on(
            self.deps.store, grant.id, lambda g, offboarded: rule(g, offboarded, now), also=(user,)
        )
        if isinstance(verdict, Refused):
            raise await self.refuse(user, action, grant, verdict.why)
        return verdict, updated or await self.deps.grant(grant.id)
