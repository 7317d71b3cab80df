"""Protected namespaces: where nothing may ever be granted, whatever a role says. Pure.

The policy's ``protected_namespaces`` (patterns) add to what is always protected: the
control plane's namespaces, every cluster's users' namespace and the bot's own.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.policy_schema import KeyPath, Policy, RoleConfig

__all__ = ["ALWAYS_PROTECTED", "protected_literals", "protected_namespace", "protected_patterns"]

# Never grantable on any cluster: the control plane's own namespaces. kube-system
# holds the controllers' ServiceAccounts (edit there reaches cluster-admin through
# them); kube-public and kube-node-lease are written by the control plane only.
ALWAYS_PROTECTED: tuple[str, ...] = ("kube-system", "kube-public", "kube-node-lease")


def protected_patterns(policy: Policy, cluster: str) -> tuple[str, ...]:
    """Namespaces (names or globs) nothing may ever be granted in on ``cluster``.

    ``ALWAYS_PROTECTED``, every policy cluster's users' namespace (a write there
    reaches every grant's ServiceAccount; all of them, since one bot identity may
    serve several clusters), the bot's own namespace and the policy's
    ``protected_namespaces``.
    """
    # The same on every cluster today; ``cluster`` is taken so that a per-cluster
    # list needs no change at the call sites.
    own = [c.namespace for c in policy.clusters.values()]
    bot = [policy.bot_namespace] if policy.bot_namespace else []
    return tuple(dict.fromkeys([*ALWAYS_PROTECTED, *own, *bot, *policy.protected_namespaces]))


def protected_namespace(policy: Policy, cluster: str, namespace: str) -> str | None:
    """Why ``namespace`` on ``cluster`` may never be granted, or None if it may be."""
    if namespace in ALWAYS_PROTECTED:
        return f"namespace {namespace} is protected: it belongs to the Kubernetes control plane"
    users = sorted(n for n, c in policy.clusters.items() if c.namespace == namespace)
    if users:
        return (
            f"namespace {namespace} is protected: it holds the ServiceAccounts of every "
            f"AccessBot grant (cluster {', '.join(users)})"
        )
    if namespace == policy.bot_namespace:
        return f"namespace {namespace} is protected: AccessBot itself runs there"
    for pattern in policy.protected_namespaces:
        if fnmatchcase(namespace, pattern):
            return f"namespace {namespace} is protected by the policy ({pattern})"
    return None


def protected_literals(
    policy: Policy, name: str, role: RoleConfig
) -> Iterable[tuple[KeyPath, str]]:
    """Plain names (no glob) in role ``name``'s namespaces that are protected.

    Such a name can never be granted: say so when the policy is loaded rather
    than refuse every request for it later.
    """
    for index, pattern in enumerate(role.namespaces):
        if any(c in pattern for c in "*?["):
            continue
        for cluster in role.clusters or list(policy.clusters):
            why = protected_namespace(policy, cluster, pattern)
            if why is not None:
                yield (("roles", name, "namespaces", index), f"{why}; it can never be granted")
                break
