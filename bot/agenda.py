"""The agenda: what happens next to a grant, and when, read from its record alone.

Pure, synchronous, I/O-free, like :mod:`bot.lifecycle`. The store files the answer in its
due index in the same transaction as the record; the step runner (:mod:`bot.steps`) claims
a grant when its step is due, asks again here (the grant may have moved on meanwhile) and
calls the one handler of that :class:`StepKind`. Level-triggered, as Kubernetes controllers
are: nothing remembers edges ("schedule an expiry job"), every step follows from the state.

Names: :class:`bot.models.Step` is a *recorded* transition (history); a step to come is a
:class:`NextStep` of a :class:`StepKind`.

The rules (``reminder_before`` from the policy's defaults, the two delays from
:class:`Timing`):

=========================================  ===========  ====================================
grant                                      kind         due
=========================================  ===========  ====================================
pending, past ``pending_until``            TIMEOUT      ``pending_until``
pending, no card yet                       CARD         ``created_at + card_retry``
pending, approvers not yet reminded        REMIND_APPR  ``created_at + remind_approvers_after``
pending, role escalates, not yet done      ESCALATE     ``created_at + escalate_after``
pending                                    TIMEOUT      ``pending_until``
approved or provisioning (access)          PROVISION    when it was approved
... scheduled (``starts_at`` set)           PROVISION    the later of that and ``starts_at``
approved (extension request)               EXTEND       when it was approved
active break-glass, unratified, before      RATIFY       activation ``+ ratify_within``
the reminder or expiry below
active, reminder owed                      REMIND       ``expires_at - reminder_before``
active                                     EXPIRE       ``expires_at``
ended after approval, objects unconfirmed  CLEANUP      when it ended ``+ cleanup_grace``
ended, nothing left on the cluster         FORGET       when it ended ``+ retention``
anything else                              (none)
=========================================  ===========  ====================================

A reminder is owed when the expiry was set (activation, or the latest extension) more than
``reminder_before`` ahead of it, and ``reminded_for`` is not that expiry (the rule of the
schema-1 "remind" job, which was scheduled only if its time was still to come).

The approvers' reminder and the escalation each happen once (``approvers_reminded_at``,
``escalated_at``), only once the card is posted, and only when due before ``pending_until``;
the earlier of the two comes first.

"Nothing left on the cluster": never approved (no object was ever made), an extension
request, or ``objects_gone_at`` set, which only a verified receipt sets. A grant whose
cleanup is unconfirmed keeps its CLEANUP step and is never forgotten. FORGET removes the
record and every index entry naming it (:mod:`bot.retention`); existing ended records get
the step from this rule alone when they are next filed (no migration).

Adding a step: one row here (a :class:`StepKind` member and its rule in :func:`next_step`)
and one handler registered for that kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from bot.lifecycle import State
from bot.models import Grant
from bot.policy import Policy

__all__ = [
    "NextStep", "StepKind", "Timing", "activated_at", "approved_at", "expiry_set_at",
    "next_step", "plan_for", "ratify_deadline",
]  # fmt: skip


class StepKind(StrEnum):
    """What the next step does; values are what the due index and metrics record."""

    CARD = "card"  # post the approval card (the safety net of a card lost to a crash)
    TIMEOUT = "timeout"  # nobody decided in time: timed_out
    PROVISION = "provision"  # the provisioning saga: objects, token, delivery, active
    EXTEND = "extend"  # apply an approved extension request to its grant
    REMIND = "remind"  # warn the requester that access ends soon
    EXPIRE = "expire"  # end the grant at its expiry and remove its objects
    CLEANUP = "cleanup"  # remove an ended grant's objects until a receipt verifies
    RATIFY = "ratify"  # a break-glass grant nobody ratified in time: revoke it
    REMIND_APPROVERS = "remind_approvers"  # ping a pending request's approvers again
    ESCALATE = "escalate"  # tell the role's escalate_to about a request still pending
    FORGET = "forget"  # drop an ended grant from Redis after defaults.retention


@dataclass(frozen=True)
class Timing:
    """The agenda's own delays (the policy holds the rest).

    ``card_retry``: how long after a request is stored its card is posted by the
    safety net if the inline post never recorded one (default 30 s).
    ``cleanup_grace``: how long after a grant ends the safety-net cleanup runs, so it
    does not race the inline cleanup that normally makes it moot (default 30 s; the
    bot uses one scheduler lease).
    """

    card_retry: timedelta = timedelta(seconds=30)
    cleanup_grace: timedelta = timedelta(seconds=30)


@dataclass(frozen=True)
class NextStep:
    """The step to come: ``kind`` at ``due`` (timezone-aware UTC)."""

    kind: StepKind
    due: datetime


def next_step(
    grant: Grant, policy: Policy, now: datetime, timing: Timing = Timing()
) -> NextStep | None:
    """The next step of ``grant``, or None when nothing is left to do.

    ``now`` only decides between posting a missing card and timing out, once
    ``pending_until`` has passed; every due time comes from the record, so asking
    twice about the same record gives the same answer (the store relies on it to
    leave a claimed step alone while its handler writes the record).
    """
    state = grant.state
    if state == State.PENDING:
        timeout = NextStep(StepKind.TIMEOUT, grant.pending_until)
        if grant.card is not None:
            return min(_nudges(grant, policy), default=timeout, key=lambda s: s.due)
        if now >= grant.pending_until:
            return timeout
        card = grant.created_at + timing.card_retry
        return NextStep(StepKind.CARD, card) if card < grant.pending_until else timeout
    if grant.kind == "extend":
        if state == State.APPROVED:
            return NextStep(StepKind.EXTEND, approved_at(grant) or now)
        return _forget(grant, policy)
    if state in (State.APPROVED, State.PROVISIONING):
        due = approved_at(grant) or now
        if grant.starts_at is not None:  # scheduled access; the same due in both states,
            due = max(due, grant.starts_at)  # so the claimed step is left alone (see above)
        return NextStep(StepKind.PROVISION, due)
    if state == State.ACTIVE:
        if grant.expires_at is None:  # never written so; nothing could end it
            return None
        remind = grant.expires_at - policy.defaults.reminder_before
        set_at = expiry_set_at(grant)
        owed = set_at is not None and remind > set_at and grant.reminded_for != grant.expires_at
        ordinary = (
            NextStep(StepKind.REMIND, remind)
            if owed
            else NextStep(StepKind.EXPIRE, grant.expires_at)
        )
        deadline = ratify_deadline(grant)
        if deadline is not None and deadline < ordinary.due:
            return NextStep(StepKind.RATIFY, deadline)
        return ordinary
    if _needs_cleanup(grant):
        return NextStep(StepKind.CLEANUP, _ended_at(grant, now) + timing.cleanup_grace)
    return _forget(grant, policy)


def plan_for(
    policy: Policy, timing: Callable[[], Timing] = Timing
) -> Callable[[Grant, datetime], NextStep | None]:
    """``next_step`` bound to ``policy``: ``plan(grant, now)``. ``timing`` is read at each
    call (the bot's delays may be tuned after wiring, as tests do)."""

    def plan(grant: Grant, now: datetime) -> NextStep | None:
        return next_step(grant, policy, now, timing())

    return plan


def approved_at(grant: Grant) -> datetime | None:
    """When ``grant`` was last approved (its move to approved), if ever."""
    return next((s.at for s in reversed(grant.history)
                 if s.to_state == State.APPROVED and s.event is None), None)  # fmt: skip


def activated_at(grant: Grant) -> datetime | None:
    """When ``grant`` became active (its first move to active), if ever."""
    return next((s.at for s in grant.history
                 if s.to_state == State.ACTIVE and s.event is None), None)  # fmt: skip


def ratify_deadline(grant: Grant) -> datetime | None:
    """When an active break-glass grant is revoked unless ratified (None: not one, or
    ratified already): its activation plus ``ratify_within``."""
    glass = grant.break_glass
    start = activated_at(grant)
    if glass is None or glass.ratified_at is not None or start is None:
        return None
    return start + glass.ratify_within


def expiry_set_at(grant: Grant) -> datetime | None:
    """When the current expiry was set: activation, or the latest extension."""
    for step in reversed(grant.history):
        if step.event == "extended" or (step.event is None and step.to_state == State.ACTIVE):
            return step.at
    return None


def _nudges(grant: Grant, policy: Policy) -> list[NextStep]:
    """The approvers' reminder and the escalation still owed, due before the timeout."""
    role = policy.roles.get(grant.role)
    steps = []
    if grant.approvers_reminded_at is None:
        due = grant.created_at + policy.defaults.remind_approvers_after
        steps.append(NextStep(StepKind.REMIND_APPROVERS, due))
    if grant.escalated_at is None and role is not None and role.escalate_to:
        steps.append(NextStep(StepKind.ESCALATE, grant.created_at + role.escalate_after))
    return [s for s in steps if s.due < grant.pending_until]


def _needs_cleanup(grant: Grant) -> bool:
    # Ended after approval (access may have been made) and not yet confirmed gone.
    return (
        grant.kind == "access"
        and grant.ended
        and grant.objects_gone_at is None
        and approved_at(grant) is not None
    )


def _forget(grant: Grant, policy: Policy) -> NextStep | None:
    # Ended with nothing left on the cluster (a CLEANUP, checked first, owns the rest).
    if not grant.ended or grant.may_have_objects:
        return None
    return NextStep(StepKind.FORGET, _ended_at(grant, grant.created_at) + policy.defaults.retention)


def _ended_at(grant: Grant, now: datetime) -> datetime:
    return next((s.at for s in reversed(grant.history)
                 if s.event is None and s.to_state == grant.state), now)  # fmt: skip
