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
pending                                    TIMEOUT      ``pending_until``
approved or provisioning (access)          PROVISION    when it was approved
... scheduled (``starts_at`` set)           PROVISION    the later of that and ``starts_at``
approved (extension request)               EXTEND       when it was approved
active, reminder owed                      REMIND       ``expires_at - reminder_before``
active                                     EXPIRE       ``expires_at``
ended after approval, objects unconfirmed  CLEANUP      when it ended ``+ cleanup_grace``
anything else                              (none)
=========================================  ===========  ====================================

A reminder is owed when the expiry was set (activation, or the latest extension) more than
``reminder_before`` ahead of it, and ``reminded_for`` is not that expiry (the rule of the
schema-1 "remind" job, which was scheduled only if its time was still to come).

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
    "NextStep", "StepKind", "Timing", "approved_at", "expiry_set_at", "next_step", "plan_for",
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
        if grant.card is not None or now >= grant.pending_until:
            return timeout
        card = grant.created_at + timing.card_retry
        return NextStep(StepKind.CARD, card) if card < grant.pending_until else timeout
    if grant.kind == "extend":
        if state == State.APPROVED:
            return NextStep(StepKind.EXTEND, approved_at(grant) or now)
        return None
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
        if owed:
            return NextStep(StepKind.REMIND, remind)
        return NextStep(StepKind.EXPIRE, grant.expires_at)
    if _needs_cleanup(grant):
        return NextStep(StepKind.CLEANUP, _ended_at(grant, now) + timing.cleanup_grace)
    return None


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


def expiry_set_at(grant: Grant) -> datetime | None:
    """When the current expiry was set: activation, or the latest extension."""
    for step in reversed(grant.history):
        if step.event == "extended" or (step.event is None and step.to_state == State.ACTIVE):
            return step.at
    return None


def _needs_cleanup(grant: Grant) -> bool:
    # Ended after approval (access may have been made) and not yet confirmed gone.
    return (
        grant.kind == "access"
        and grant.ended
        and grant.objects_gone_at is None
        and approved_at(grant) is not None
    )


def _ended_at(grant: Grant, now: datetime) -> datetime:
    return next((s.at for s in reversed(grant.history)
                 if s.event is None and s.to_state == grant.state), now)  # fmt: skip
