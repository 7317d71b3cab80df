"""Checks across a whole policy that need the rules of their own modules: a role listing
a protected namespace by name (:mod:`bot.policy_protected`), a break-glass role nobody
could ratify (:mod:`bot.policy_rules`). Pure: no I/O.

They run once the file has been validated field by field and the bot's own namespace
is known (:func:`bot.policy_file.parse_policy`); checks that need only the schema's
own keys live in :mod:`bot.policy_schema`.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.policy_protected import protected_literals
from bot.policy_schema import KeyPath, Policy, RoleConfig

__all__ = ["cross_problems", "reason_optional", "unratifiable"]


def cross_problems(policy: Policy) -> list[tuple[KeyPath, str]]:
    """Every problem of every role, each with the key path it is about."""
    problems: list[tuple[KeyPath, str]] = []
    for name, role in policy.roles.items():
        problems.extend(protected_literals(policy, name, role))
        problems.extend(unratifiable(policy, name, role))
    return problems


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
