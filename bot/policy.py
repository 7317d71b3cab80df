"""The access policy and the pure decisions on it: what may be requested, who may approve.

Everything here is synchronous and free of I/O, so every access decision can be
tested exhaustively without Slack, Redis or a cluster. Slack usergroup membership
is resolved by the caller and passed in. This module holds the approval decisions;
the policy file is described by ``bot.policy_schema`` and read by
``bot.policy_file``, and requests are checked by ``bot.policy_requests``. Their
public names are re-exported here, so ``bot.policy`` is the one import for callers.

Design decisions:

* Admins are break-glass approvers: they may approve a request for any role
  (never their own). A role with ``approvals > 0`` and no ``approvers`` is
  therefore valid as long as the policy has admins; it is an error only when
  nobody at all could approve it.
* When every possible approver of a role (its approvers plus the admins) is a
  plain user ID, ``approvals`` may not exceed their number, because such a role
  could never be approved. Usergroups can grow, so they are not counted.
* A request for a role that has since disappeared from the policy can still be
  decided by admins only, so a policy edit never strands a pending request; but
  nothing is ever created or extended against a policy that no longer allows it
  (``recheck_request``): approving such a request ends it as failed, saying why.
* Some namespaces are never grantable (``protected_patterns``): whoever can write
  in a cluster's users' namespace can mint tokens for every grant's
  ServiceAccount, and ``kube-system`` holds the controllers' ServiceAccounts. A
  ``scope: namespace`` role must therefore say where it applies; even ``"*"``
  never matches a protected namespace.
* A request is checked field by field (``bot.policy_requests``):
  ``RequestRejected.problems`` says what is wrong with each field at fault.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Literal

from bot.policy_checks import reason_optional
from bot.policy_file import PolicyError, load_policy, parse_policy
from bot.policy_protected import ALWAYS_PROTECTED, protected_namespace, protected_patterns
from bot.policy_requests import (
    MAX_REASON_LENGTH,
    AccessRequestSpec,
    RequestField,
    RequestRejected,
    ResolvedRequest,
    namespace_allowed,
    recheck_request,
    requestable_clusters,
    resolve_request,
    role_clusters,
    roles_on,
)
from bot.policy_schema import (
    DEFAULT_NAMESPACE,
    ROLE_NAME_RULE,
    ClusterConfig,
    Defaults,
    Policy,
    RoleConfig,
    Scope,
    is_role_name,
)
from k8s.names import DNS_LABEL_RULE, is_dns_label

__all__ = [
    "ALWAYS_PROTECTED",
    "DEFAULT_NAMESPACE",
    "DNS_LABEL_RULE",
    "MAX_REASON_LENGTH",
    "ROLE_NAME_RULE",
    "AccessRequestSpec",
    "ClusterConfig",
    "Defaults",
    "Policy",
    "PolicyError",
    "RequestField",
    "RequestRejected",
    "ResolvedRequest",
    "RoleConfig",
    "Scope",
    "approvers_of",
    "is_admin",
    "is_dns_label",
    "is_role_name",
    "load_policy",
    "may_approve",
    "namespace_allowed",
    "needs_approval",
    "parse_policy",
    "protected_namespace",
    "protected_patterns",
    "reason_optional",
    "recheck_request",
    "requestable_clusters",
    "resolve_request",
    "role_clusters",
    "roles_on",
]

# --- approval decisions -------------------------------------------------------------


def _split(principals: Iterable[str]) -> tuple[frozenset[str], frozenset[str]]:
    users = frozenset(p for p in principals if not p.startswith("@"))
    groups = frozenset(p[1:] for p in principals if p.startswith("@"))
    return users, groups


def _normalise_groups(user_groups: Collection[str]) -> frozenset[str]:
    # Callers may pass handles with or without "@"; Slack handles are lowercase.
    return frozenset(g.removeprefix("@").lower() for g in user_groups)


def approvers_of(
    policy: Policy, role: str, *, include_admins: bool = True
) -> tuple[frozenset[str], frozenset[str]]:
    """(user IDs, usergroup handles without "@") who may approve requests for ``role``.

    Admins are included by default because they may approve anything; pass
    ``include_admins=False`` for just the role's named approvers (e.g. to mention
    them on an approval card). An unknown role has no approvers of its own.
    """
    config = policy.roles.get(role)
    principals = list(config.approvers) if config is not None else []
    if include_admins:
        principals.extend(policy.admins)
    return _split(principals)


def _member(
    users: frozenset[str], groups: frozenset[str], user_id: str, user_groups: Collection[str]
) -> bool:
    return user_id in users or not groups.isdisjoint(_normalise_groups(user_groups))


def may_approve(
    policy: Policy, role: str, user_id: str, user_groups: Collection[str], requester: str
) -> bool:
    """Whether ``user_id`` (member of ``user_groups``) may approve ``requester``'s request.

    The requester never counts, whichever way they would otherwise qualify.
    """
    if user_id == requester:
        return False
    users, groups = approvers_of(policy, role)
    return _member(users, groups, user_id, user_groups)


def is_admin(policy: Policy, user_id: str, user_groups: Collection[str]) -> bool:
    """Admins may revoke any grant and list everything (and approve any role)."""
    users, groups = _split(policy.admins)
    return _member(users, groups, user_id, user_groups)


def needs_approval(resolved: ResolvedRequest) -> bool:
    """``approvals: 0`` roles are granted without anyone approving."""
    return resolved.approvals_required > 0


# -- who may run the cluster reports ------------------------------------------------------


def may_run_reports(
    policy: Policy,
    access: Literal["everyone", "approvers"],
    user: str,
    groups: frozenset[str],
) -> bool:
    """Whether ``user`` (a member of the usergroup handles ``groups``) may run ``/k8s nodes``
    and ``/k8s helm``.

    ``access`` is the ``reports`` key (``Policy.reports``): ``"everyone"`` lets any
    workspace member run them, because node and release status is operational
    information, not a secret, and the person who needs it mid-incident often holds
    no access yet; ``"approvers"`` keeps them to admins and the approvers of any
    role. ``/k8s standing`` is for admins only whatever this says (it maps who to
    attack), which ``Workflow.require_admin`` enforces.
    """
    if access == "everyone":
        return True
    if is_admin(policy, user, groups):
        return True
    for role in policy.roles:
        users, handles = approvers_of(policy, role, include_admins=False)
        if user in users or not handles.isdisjoint(groups):
            return True
    return False
