"""The access workflow: the one entry point the Slack app, the webhook and the CLI call.

A thin facade over :mod:`bot.usecases`, where each concept has its module
(requests and decisions, provisioning, ending, extensions, offboarding,
authorization). Rules live in pure code (:mod:`bot.policy`, :mod:`bot.lifecycle`);
the use cases sequence I/O around them: decide with pure code inside one store
transaction (which also files the grant's next step, :mod:`bot.agenda`), then
do the slow work, which is idempotent and backed by that durable step so that a
crash anywhere resumes rather than repeats. :meth:`Workflow.register_steps` gives
each step kind its one handler.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from bot.agenda import StepKind
from bot.models import Grant
from bot.narrowing import NarrowingAsk
from bot.policy import AccessRequestSpec
from bot.ports import Directory, Notifier
from bot.retention import forget
from bot.start_times import StartRequest
from bot.steps import StepHandler, StepRunner
from bot.usecases.authorization import (
    APPROVER_OFFBOARDED,
    OFFBOARDED,
    REQUESTER_OFFBOARDED,
    Authorization,
)
from bot.usecases.breakglass import BreakGlassAccess, Ratification, Ratified
from bot.usecases.deps import SYSTEM, Deps
from bot.usecases.ending import Ending, Revocation
from bot.usecases.extensions import Extensions
from bot.usecases.narrowing import Narrowing
from bot.usecases.nudges import Nudges
from bot.usecases.offboarding import Offboarding, OffboardResult, PendingCleanup, Progress
from bot.usecases.offers import ExtensionOffer, Offers
from bot.usecases.provisioning import Provisioning
from bot.usecases.receipts import Receipts
from bot.usecases.requests import Decision, Outcome, Requests

__all__ = [
    "APPROVER_OFFBOARDED",
    "OFFBOARDED",
    "REQUESTER_OFFBOARDED",
    "SYSTEM",
    "Decision",
    "Deps",
    "ExtensionOffer",
    "OffboardResult",
    "Outcome",
    "PendingCleanup",
    "Ratification",
    "Ratified",
    "Revocation",
    "Workflow",
]


# Test seams: set on the facade, they rebuild the use cases around a new Deps.
_SEAMS = frozenset({"clock", "card_retry", "on_provision_step"})


class Workflow:
    """Every use case behind one object, built from one :class:`~bot.usecases.deps.Deps`.

    :param deps: the stores, ports, clock and tunables every use case shares
      (documented on :class:`~bot.usecases.deps.Deps`, with units and defaults).

    ``notifier`` and ``directory`` are the ports the adapters share. ``clock``,
    ``card_retry`` and ``on_provision_step`` may be set after construction (test
    seams); setting one rebuilds the use cases around a new ``Deps``, and the
    registered step handlers follow (they look the use cases up when a step runs).
    """

    deps: Deps
    notifier: Notifier
    directory: Directory
    clock: Callable[[], datetime]
    card_retry: timedelta
    on_provision_step: Callable[[str], object] | None

    def __init__(self, deps: Deps) -> None:
        self._use(deps)

    def __setattr__(self, name: str, value: object) -> None:
        if name in _SEAMS:
            changes: dict[str, Any] = {name: value}
            self._use(replace(self.deps, **changes))
        else:
            super().__setattr__(name, value)

    def _use(self, deps: Deps) -> None:
        shown = {n: getattr(deps, n) for n in ("notifier", "directory", *_SEAMS)}
        vars(self).update(shown, deps=deps)
        self.authz = Authorization(deps)
        self.requests = Requests(deps, self.authz)
        self.receipts = Receipts(deps)
        self.ending = Ending(deps, self.authz, self.requests, self.receipts)
        self.provisioning = Provisioning(deps, self.ending)
        self.extensions = Extensions(deps, self.requests)
        self.narrowing = Narrowing(deps, self.authz)
        self.offers = Offers(deps, self.requests, self.extensions)
        self.offboarding = Offboarding(deps, self.authz, self.requests, self.ending, self.receipts)
        self.break_glass = BreakGlassAccess(deps, self.authz, self.requests, self.ending)
        self.nudges = Nudges(deps)

    # -- steps ----------------------------------------------------------------
    def register_steps(self, runner: StepRunner) -> None:
        """Give ``runner`` the one handler of each agenda step kind, and the sweep (each
        looks the use cases up when it runs, so the test seams take effect)."""
        handlers: dict[StepKind, StepHandler] = {
            StepKind.CARD: lambda g: self.requests.on_card(g),
            StepKind.TIMEOUT: lambda g: self.requests.on_timeout(g),
            StepKind.PROVISION: self._on_provision,
            StepKind.EXTEND: self._on_extend,
            StepKind.REMIND: lambda g: self.ending.on_remind(g),
            StepKind.EXPIRE: lambda g: self.ending.on_expire(g),
            StepKind.CLEANUP: lambda g: self.ending.on_cleanup(g),
            StepKind.RATIFY: lambda g: self.break_glass.on_deadline(g),
            StepKind.REMIND_APPROVERS: lambda g: self.nudges.on_remind_approvers(g),
            StepKind.ESCALATE: lambda g: self.nudges.on_escalate(g),
            StepKind.FORGET: self._on_forget,
        }
        for kind, handler in handlers.items():
            runner.register(kind, handler)
        runner.sweep = lambda grant_id, cluster, g: self.ending.sweep(grant_id, cluster, g)

    async def _on_provision(self, grant: Grant) -> None:
        await self.provisioning.provision(grant.id)

    async def _on_extend(self, grant: Grant) -> None:
        await self.extensions.apply_approved_extension(grant)

    async def _on_forget(self, grant: Grant) -> None:
        await forget(self.deps.store, grant.id, self.deps.clock())

    # -- queries and authorization ---------------------------------------------
    async def get(self, grant_id: str) -> Grant:
        """The stored grant; raises UnknownGrant."""
        return await self.deps.grant(grant_id)

    async def is_admin(self, user: str) -> bool:
        return await self.authz.is_admin(user)

    async def may_decide(self, grant: Grant, user: str) -> bool:
        return await self.authz.may_decide(grant, user)

    async def require_enabled(self, user: str, action: str, grant: Grant | None = None) -> None:
        await self.authz.require_enabled(user, action, grant)

    async def require_admin(self, user: str, action: str) -> None:
        await self.authz.require_admin(user, action)

    async def require_decider(self, grant: Grant, user: str, action: str) -> None:
        await self.authz.require_decider(grant, user, action)

    async def require_owner_or_admin(self, grant: Grant, user: str, action: str) -> None:
        await self.authz.require_owner_or_admin(grant, user, action)

    async def list_grants(self, user: str, *, everyone: bool = False) -> list[Grant]:
        return await self.requests.list_grants(user, everyone=everyone)

    async def awaiting(self, user: str) -> list[Grant]:
        return await self.requests.awaiting(user)

    # -- use cases --------------------------------------------------------------
    async def submit(self, spec: AccessRequestSpec, start: StartRequest | None = None) -> Grant:
        return await self.requests.submit(spec, start)

    async def approve(self, grant_id: str, approver: str) -> Decision:
        return await self.requests.approve(grant_id, approver)

    async def request(
        self, spec: AccessRequestSpec, start: StartRequest | None = None
    ) -> Grant | ExtensionOffer:
        """``submit``, or an offer to extend the live grant ``spec`` duplicates (a
        request for later, with a ``start``, is always submitted)."""
        return await self.offers.request(spec, start)

    async def take_offer(self, grant_id: str, user: str) -> Grant:
        return await self.offers.take(grant_id, user)

    async def decline_offer(self, grant_id: str, user: str) -> Grant:
        return await self.offers.decline(grant_id, user)

    async def check_narrower(self, grant_id: str, approver: str) -> Grant:
        return await self.narrowing.check(grant_id, approver)

    async def approve_narrowed(self, grant_id: str, approver: str, ask: NarrowingAsk) -> Decision:
        return await self.narrowing.approve_narrowed(grant_id, approver, ask)

    async def deny(self, grant_id: str, user: str, reason: str = "") -> Decision:
        return await self.requests.deny(grant_id, user, reason)

    async def cancel(self, grant_id: str, user: str, reason: str = "") -> Grant | None:
        return await self.requests.cancel(grant_id, user, reason)

    async def take_break_glass(self, spec: AccessRequestSpec) -> Grant:
        return await self.break_glass.take(spec)

    async def ratify(self, grant_id: str, user: str) -> Ratification:
        return await self.break_glass.ratify(grant_id, user)

    async def provision(self, grant_id: str) -> Grant | None:
        return await self.provisioning.provision(grant_id)

    async def revoke(
        self, grant_id: str, actor: str, reason: str = "", *, operator: bool = False
    ) -> Revocation:
        return await self.ending.revoke(grant_id, actor, reason, operator=operator)

    async def extend(self, grant_id: str, user: str, by: timedelta) -> Grant:
        return await self.extensions.extend(grant_id, user, by)

    async def apply_approved_extension(self, request: Grant) -> Grant | None:
        return await self.extensions.apply_approved_extension(request)

    async def resolve_user(self, *, email: str | None = None, user_id: str | None = None) -> str:
        return await self.offboarding.resolve_user(email=email, user_id=user_id)

    async def offboard(
        self, user: str, actor: str, reason: str = "", *, progress: Progress | None = None
    ) -> OffboardResult:
        return await self.offboarding.offboard(user, actor, reason, progress=progress)

    async def reenable(self, user: str, actor: str) -> bool:
        return await self.offboarding.reenable(user, actor)
