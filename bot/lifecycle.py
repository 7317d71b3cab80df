"""The life of an access request and its grant, as a pure state machine.

Keeping the rules here (rather than scattered over Slack handlers, the scheduler
and the store) means a late button click, a retried webhook or a racing expiry
job cannot move a request somewhere it must not go: they all ask ``transition``.

    pending ──▶ approved ──▶ provisioning ──▶ active ──▶ expired
       │           │              │             │
       ├▶ denied   └──────────────┴─────────────┴──▶ revoked
       ├▶ cancelled            (an extension request: approved ──▶ applied)
       └▶ timed_out            (any non-terminal state ──▶ failed)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from bot.durations import format_duration
from bot.errors import Rejected
from bot.policy import RoleConfig

__all__ = [
    "ALLOWED_TRANSITIONS",
    "LIVE",
    "TERMINAL",
    "ExtensionRejected",
    "IllegalTransition",
    "State",
    "Tally",
    "Transition",
    "can_transition",
    "extension_needs_approval",
    "is_terminal",
    "new_expiry",
    "room_to_extend",
    "transition",
]


class State(StrEnum):
    """Where a request/grant is; values are what the store and audit log record."""

    PENDING = "pending"
    APPROVED = "approved"
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"
    DENIED = "denied"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    FAILED = "failed"
    # An extension request whose extension now lives on the grant it extended:
    # it ends there, so it can never be revoked (or cleaned up) into its parent.
    APPLIED = "applied"


TERMINAL: frozenset[State] = frozenset(
    {
        State.EXPIRED,
        State.REVOKED,
        State.DENIED,
        State.CANCELLED,
        State.TIMED_OUT,
        State.FAILED,
        State.APPLIED,
    }
)
# States in which access exists or is about to: these must be revoked on offboarding.
LIVE: frozenset[State] = frozenset({State.APPROVED, State.PROVISIONING, State.ACTIVE})

ALLOWED_TRANSITIONS: Mapping[State, frozenset[State]] = {
    State.PENDING: frozenset(
        {State.APPROVED, State.DENIED, State.CANCELLED, State.TIMED_OUT, State.FAILED}
    ),
    # A grant can be revoked before its credentials exist (e.g. offboarding right
    # after approval), so revoked is reachable from every live state.
    State.APPROVED: frozenset({State.PROVISIONING, State.FAILED, State.REVOKED, State.APPLIED}),
    State.PROVISIONING: frozenset({State.ACTIVE, State.FAILED, State.REVOKED}),
    State.ACTIVE: frozenset({State.EXPIRED, State.REVOKED, State.FAILED}),
    **{state: frozenset() for state in TERMINAL},
}


class IllegalTransition(ValueError):
    """A state change the lifecycle forbids (usually a stale click or a race)."""

    def __init__(self, current: State, target: State) -> None:
        self.current = current
        self.target = target
        super().__init__(f"cannot go from {current} to {target}")


class ExtensionRejected(Rejected):
    """An extension that would exceed what the role allows."""


@dataclass(frozen=True)
class Transition:
    """One recorded state change; ``at`` is always timezone-aware UTC."""

    from_state: State
    to_state: State
    actor: str
    at: datetime
    reason: str = ""


def is_terminal(state: State) -> bool:
    """Terminal states are final: nothing may happen to such a request again."""
    return state in TERMINAL


def can_transition(current: State, target: State) -> bool:
    """Whether ``current -> target`` is allowed (staying put never is)."""
    return target in ALLOWED_TRANSITIONS[current]


def _require_aware(name: str, moment: datetime) -> datetime:
    # Naive datetimes would be interpreted in the host's local zone somewhere
    # downstream; refusing them here keeps every stored timestamp unambiguous.
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def transition(
    current: State, target: State, actor: str, at: datetime, reason: str = ""
) -> Transition:
    """Validate and record ``current -> target``; raises ``IllegalTransition``.

    ``actor`` is a Slack user ID or a system name such as ``scheduler``.
    """
    if not can_transition(current, target):
        raise IllegalTransition(current, target)
    if not actor:
        raise ValueError("a transition needs an actor (a user ID or a system name)")
    return Transition(current, target, actor, _require_aware("at", at), reason)


@dataclass(frozen=True)
class Tally:
    """Approvals collected so far for one request.

    Duplicates are folded away on construction so a double click, a retried
    delivery or a re-read from storage can never count one person twice.
    """

    required: int
    approvers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.required < 0:
            raise ValueError(f"required approvals cannot be negative ({self.required})")
        object.__setattr__(self, "approvers", tuple(dict.fromkeys(self.approvers)))

    def add(self, user_id: str) -> Tally:
        """The tally with ``user_id``'s approval counted (at most once)."""
        if user_id in self.approvers:
            return self
        return Tally(self.required, (*self.approvers, user_id))

    def without(self, users: frozenset[str] | set[str]) -> Tally:
        """The tally with these users' approvals no longer counted (e.g. offboarded)."""
        return Tally(self.required, tuple(a for a in self.approvers if a not in users))

    def __contains__(self, user_id: object) -> bool:
        return user_id in self.approvers

    @property
    def satisfied(self) -> bool:
        return len(self.approvers) >= self.required

    @property
    def remaining(self) -> int:
        return max(0, self.required - len(self.approvers))


def extension_needs_approval(role_cfg: RoleConfig) -> bool:
    """Extensions follow the role's own rule: auto-approved roles extend freely."""
    return role_cfg.approvals > 0


def room_to_extend(current_expiry: datetime, now: datetime, max_duration: timedelta) -> timedelta:
    """How much longer a grant ending at ``current_expiry`` may be extended at ``now``.

    Whole seconds (a fraction is not something anyone can type), zero when there
    is no room. The role's ``max_duration`` caps the time remaining from ``now``,
    not the total lifetime (see :func:`new_expiry`, which enforces it).
    """
    current_expiry = _require_aware("current_expiry", current_expiry)
    now = _require_aware("now", now)
    room = max_duration - (current_expiry - now)
    return max(timedelta(0), timedelta(seconds=int(room.total_seconds())))


def new_expiry(
    current_expiry: datetime, extend_by: timedelta, now: datetime, max_duration: timedelta
) -> datetime:
    """Expiry after extending by ``extend_by``.

    The cap is on time remaining from ``now``, not on total lifetime: a role's
    ``max_duration`` bounds how long anyone holds access without asking again,
    so repeated extensions are fine but never stack beyond that window.
    """
    current_expiry = _require_aware("current_expiry", current_expiry)
    now = _require_aware("now", now)
    if extend_by <= timedelta(0):
        raise ExtensionRejected("an extension must be longer than zero")
    if current_expiry <= now:
        raise ExtensionRejected("the grant has already expired; request access again")
    proposed = current_expiry + extend_by
    if proposed - now > max_duration:
        room = room_to_extend(current_expiry, now, max_duration)
        raise ExtensionRejected(_too_long(current_expiry - now, extend_by, max_duration, room))
    return proposed


def _too_long(
    left: timedelta, extend_by: timedelta, max_duration: timedelta, room: timedelta
) -> str:
    message = (
        f"extending by {format_duration(extend_by)} would leave "
        f"{format_duration(left + extend_by)} of access, above the role's "
        f"{format_duration(max_duration)} maximum"
    )
    if room <= timedelta(0):
        return f"{message}; no extension is possible yet"
    return f"{message}; extend by at most {format_duration(room)}"
