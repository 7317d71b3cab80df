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
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from bot.durations import Duration

__all__ = ["BreakGlassConfig", "ReasonRule", "reason_problem"]


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


def reason_problem(rule: ReasonRule | None, reason: str) -> str | None:
    """Why ``reason`` (stripped) does not satisfy a role's ``rule``, or None when it does.

    An empty reason is the ``required`` rule's business, not the pattern's.
    """
    if rule is None or rule.pattern is None or not reason:
        return None
    if re.search(rule.pattern, reason) is not None:
        return None
    hint = f" ({rule.hint})" if rule.hint else ""
    return f"The reason must match {rule.pattern}{hint}"
