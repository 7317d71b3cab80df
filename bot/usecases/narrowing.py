"""Approve with changes: an approver shortens a pending request (or keeps its one
namespace) and approves it in the same transaction (rules: :mod:`bot.narrowing`).

The same authorization as Approve, asked when the form is opened and again here:
offboarded people hold no authority, a requester never approves their own request.
The narrowing is an audited ``narrowed`` event on the record; the requester hears
what changed and by whom (the notifier reads that event), and the card shows the
narrowed values, which later approvals approve.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.lifecycle import State
from bot.models import Grant
from bot.narrowing import NarrowingAsk, narrow
from bot.policy import Policy, RequestRejected
from bot.store import Change
from bot.usecases.authorization import OFFBOARDED, REQUESTER_OFFBOARDED, Authorization, Refused
from bot.usecases.deps import Deps
from bot.usecases.requests import Decision, Outcome, approval_rule

ACTION = "approve with changes"


@dataclass(frozen=True)
class Narrowing:
    """``approve_narrowed``; ``authz`` says who may decide."""

    deps: Deps
    authz: Authorization

    async def check(self, grant_id: str, approver: str) -> Grant:
        """The pending request ``approver`` may narrow; raises an audited NotAllowed."""
        grant = await self.deps.grant(grant_id)
        await self.authz.require_decider(grant, approver, ACTION)
        return grant

    async def approve_narrowed(self, grant_id: str, approver: str, ask: NarrowingAsk) -> Decision:
        """Narrow the request as ``ask`` says and count ``approver``'s approval.

        Raises NotAllowed (audited) when ``approver`` may not decide, RequestRejected
        when ``ask`` is wider than the request as it stands (nothing changes then).
        """
        grant = await self.check(grant_id, approver)
        policy = self.deps.policy

        def rule(
            g: Grant, offboarded: frozenset[str], now: datetime
        ) -> tuple[Outcome | RequestRejected | Refused, Change | None]:
            return _narrowed_approval(policy, g, approver, ask, offboarded, now)

        verdict, updated = await self.authz.act(grant, approver, ACTION, rule)
        if isinstance(verdict, RequestRejected):
            raise verdict
        outcome = verdict if isinstance(verdict, Outcome) else Outcome.ALREADY_DECIDED
        return Decision(outcome, updated)


def _narrowed_approval(
    policy: Policy,
    g: Grant,
    approver: str,
    ask: NarrowingAsk,
    offboarded: frozenset[str],
    now: datetime,
) -> tuple[Outcome | RequestRejected | Refused, Change | None]:
    """Pure: the narrowing and the approval, judged on the record as it stands."""
    if g.state != State.PENDING:
        return Outcome.ALREADY_DECIDED, None
    if approver in offboarded or g.requester in offboarded:
        return Refused(OFFBOARDED if approver in offboarded else REQUESTER_OFFBOARDED), None
    try:
        narrowed = narrow(policy, g, ask)
    except RequestRejected as exc:
        return exc, None
    if narrowed.changes:
        why = "approved with changes: " + "; ".join(narrowed.changes)
        g = narrowed.applied_to(g).noted("narrowed", approver, now, why)
    if approver in g.approvals:  # approved before: only the narrowing is new
        return Outcome.ALREADY_COUNTED, (Change(g) if narrowed.changes else None)
    return approval_rule(g, approver, offboarded, now)
