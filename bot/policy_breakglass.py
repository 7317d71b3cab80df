"""Break-glass requests against the policy: the request rules, plus the role's
``break_glass`` key (:mod:`bot.policy_rules`). Pure: no I/O."""

from __future__ import annotations

from bot.policy_requests import (
    AccessRequestSpec,
    RequestRejected,
    ResolvedRequest,
    resolve_request,
)
from bot.policy_rules import BreakGlassConfig
from bot.policy_schema import Policy

__all__ = ["break_glass_of", "recheck_break_glass", "resolve_break_glass"]


def break_glass_of(policy: Policy, role: str) -> BreakGlassConfig | None:
    """The role's ``break_glass`` key (None: an unknown role, or one without it)."""
    config = policy.roles.get(role)
    return None if config is None else config.break_glass


def resolve_break_glass(policy: Policy, spec: AccessRequestSpec) -> ResolvedRequest:
    """``resolve_request`` for ``/access breakglass``: every request rule (protected
    namespaces, ``max_duration``, the reason rules), and a role with ``break_glass``.
    Raises ``RequestRejected`` (a role without it: a problem of the ``role`` field)."""
    if spec.role in policy.roles and break_glass_of(policy, spec.role) is None:
        usable = ", ".join(r for r in policy.roles if break_glass_of(policy, r)) or "none"
        raise RequestRejected(
            f"role {spec.role} has no break-glass access; ask with /access request "
            f"(roles with break-glass: {usable})",
            {"role": f"Role {spec.role} has no break-glass access."},
        )
    return resolve_request(policy, spec)


def recheck_break_glass(policy: Policy, role: str) -> None:
    """At provisioning: the role still has ``break_glass`` (else the grant fails)."""
    if break_glass_of(policy, role) is None:
        raise RequestRejected(
            f"the policy changed since this was requested: role {role} no longer has "
            "break-glass access; request it with /access request"
        )
