"""Per-role request rules beyond where and how long: the reason a role demands
(``reason``) and break-glass access (``break_glass``). Pure: no I/O.

``reason: {required, pattern, hint}``: ``required`` (default true, as for every role
without the key) refuses an empty reason; ``pattern`` is a Python regular expression
the reason must contain a match of: it is applied with :func:`re.search`, not
``fullmatch``, so ``"[A-Z]+-[0-9]+"`` accepts a ticket anywhere in the text and
``"^[A-Z]+-[0-9]+"`` only at its start (anchor the pattern to say where); it is
compiled when the policy is loaded, so a broken one is a policy error naming the key.
``hint`` (plain words, e.g. "a ticket like OPS-123") follows the pattern in the refusal.

``break_glass: {ratify_within, approvals}``: the role's requester may take it at once
(``/access breakglass``); unless ``approvals`` (default 1) of the people who may approve
the role (never the requester) ratify it within ``ratify_within`` (default 15m) of its
activation, it is revoked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from bot.durations import Duration

if TYPE_CHECKING:
    from bot.policy_schema import KeyPath, Policy, RoleConfig

__all__ = ["BreakGlassConfig", "ReasonRule", "reason_optional", "reason_problem", "unratifiable"]


def _compiles(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None
    return pattern


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReasonRule(_Model):
    """What a role's reason must say (see the module docstring)."""

    required: bool = True
    pattern: Annotated[str, Field(min_length=1), AfterValidator(_compiles)] | None = None
    hint: Annotated[str, Field(min_length=1, max_length=200)] | None = None


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than zero")
    return value


class BreakGlassConfig(_Model):
    """Break-glass access for a role (see the module docstring)."""

    ratify_within: Annotated[Duration, AfterValidator(_positive)] = timedelta(minutes=15)
    approvals: Annotated[int, Field(ge=1)] = 1


def reason_problem(role: RoleConfig, reason: str) -> str | None:
    """Why ``reason`` (stripped) does not satisfy ``role``'s pattern, or None when it does.

    An empty reason is the ``required`` rule's business, not the pattern's.
    """
    rule = role.reason
    if rule is None or rule.pattern is None or not reason:
        return None
    if re.search(rule.pattern, reason) is not None:
        return None
    hint = f" ({rule.hint})" if rule.hint else ""
    return f"The reason must match {rule.pattern}{hint}"


def reason_optional(policy: Policy) -> bool:
    """Whether some role lets the reason be empty (``reason.required: false``): the
    request form's reason field is then optional, and the request check decides."""
    return any(r.reason is not None and not r.reason.required for r in policy.roles.values())


def unratifiable(policy: Policy, name: str, role: RoleConfig) -> Iterable[tuple[KeyPath, str]]:
    """A break-glass role nobody could ratify (no approvers, no admins), or that needs more
    ratifications than the named people who could give them."""
    if role.break_glass is None:
        return
    pool = set(role.approvers) | set(policy.admins)
    need = role.break_glass.approvals
    where = ("roles", name, "break_glass", "approvals")
    if not pool:
        yield (where, f"needs {need} ratification(s) but nobody may ratify: add approvers")
    elif all(not p.startswith("@") for p in pool) and len(pool) < need:
        yield (where, f"needs {need} ratifications but only {len(pool)} people may ratify")
