"""Which escape paths a ClusterRole opens: RBAC rules in, a set of risk names out.

A grant is meant to end when AccessBot revokes it. Some permissions let its holder
make access that outlives the grant (a year-long token for another ServiceAccount,
a binding to an identity they keep, a Pod running as any ServiceAccount) or reach
far beyond the role (impersonation, nodes/proxy). This module names those paths.

The analysis (``analyse``) is pure. Matching follows the RBAC authorizer exactly
(kubernetes ``pkg/apis/rbac/v1/evaluation_helpers.go``): ``*`` matches any verb,
group or resource (subresources included), ``*/sub`` matches that subresource of
any resource, and ``resourceNames`` restricts a rule to requests that carry a
name, which a ``create`` of a new object never does (a ``list`` may, through a
``metadata.name`` field selector).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, get_args

from k8s.rbac.rules import (
    G,
    Rule,
    cluster_role_rules,
)

if TYPE_CHECKING:
    from k8s.clients import ClusterClient

Risk = Literal[
    "token-minting",
    "impersonation",
    "escalation",
    "rbac-write",
    "pod-create",
    "exec",
    "secrets-read",
    "node-proxy",
    "wildcard",
]

# In the contract's order; it is also the order risks are shown in.
RISKS: Final[tuple[Risk, ...]] = get_args(Risk)

# Risks that let a grant's holder keep or widen access after the grant ends or act
# as someone else; ``accessbot check`` fails on them unless the role accepts them.
BLOCKING_RISKS: Final[frozenset[Risk]] = frozenset(
    {"token-minting", "impersonation", "escalation", "rbac-write"}
)

RISK_MEANINGS: Final[Mapping[Risk, str]] = {
    "token-minting": "can mint credentials for other identities (serviceaccounts/token, "
    "service-account-token Secrets, CSR approval) that outlive the grant",
    "impersonation": "can act as another user, group or ServiceAccount",
    "escalation": "can grant permissions it does not hold (escalate/bind on roles)",
    "rbac-write": "can write Roles or bindings, e.g. bind its permissions to an identity "
    "that outlives the grant",
    "pod-create": "can run Pods or workloads as any ServiceAccount of the namespace; "
    "they keep running after the grant ends",
    "exec": "can exec/attach/port-forward into Pods and use their ServiceAccounts",
    "secrets-read": "can read Secrets (credentials of others)",
    "node-proxy": "can reach the kubelet API through nodes/proxy (exec in any Pod of a node)",
    "wildcard": "has rules with '*' verbs or resources: also covers whatever is added later",
}


@dataclass(frozen=True)
class _Probe:
    """One API request; ``named`` says whether it may carry an object name.

    ``create`` of a new object carries none, so a rule limited by ``resourceNames``
    never allows it; a subresource ``create`` (``serviceaccounts/token``,
    ``pods/exec``) does, and so do ``list``/``watch`` with a ``metadata.name`` field
    selector (the apiserver's RequestInfo takes the name from it).
    ``cluster_wide`` requests have no namespace: a RoleBinding never allows them.
    """

    verb: str
    group: str
    resource: str  # "pods" or "pods/exec"
    cluster_wide: bool = False

    @property
    def named(self) -> bool:
        return self.verb not in {"create", "deletecollection"} or ("/" in self.resource)


def _allows(rule: Rule, probe: _Probe) -> bool:
    """Whether ``rule`` allows ``probe`` (RBAC's VerbMatches/APIGroupMatches/ResourceMatches)."""
    if not rule.resources:
        return False
    if "*" not in rule.verbs and probe.verb not in rule.verbs:
        return False
    if "*" not in rule.api_groups and probe.group not in rule.api_groups:
        return False
    if rule.resource_names and not probe.named:
        return False
    sub = probe.resource.partition("/")[2]
    return any(
        resource in {"*", probe.resource} or (sub != "" and resource == f"*/{sub}")
        for resource in rule.resources
    )


def _any(rules: Sequence[Rule], probes: Iterable[_Probe]) -> bool:
    return any(_allows(rule, probe) for probe in probes for rule in rules)


def _probes(
    verbs: Iterable[str],
    groups: Iterable[str],
    resources: Iterable[str],
    *,
    cluster_wide: bool = False,
) -> list[_Probe]:
    return [_Probe(v, g, r, cluster_wide) for v in verbs for g in groups for r in resources]


_WRITE = ("create", "update", "patch")
_READ = ("get", "list", "watch")
_ANY = ("get", "list", "watch", "create", "update", "patch", "delete")
_PROBES: Final[Mapping[Risk, list[_Probe]]] = {
    "token-minting": _probes(["create"], [G.CORE], ["serviceaccounts/token"]),
    # Impersonating a ServiceAccount is checked in its namespace; users, groups,
    # uids and extras have none, so only a ClusterRoleBinding allows those.
    "impersonation": _probes(["impersonate"], [G.CORE], ["serviceaccounts"])
    + _probes(["impersonate"], [G.CORE], ["users", "groups"], cluster_wide=True)
    + _probes(["impersonate"], [G.AUTHN], ["uids", "userextras/scopes"], cluster_wide=True),
    # A RoleBinding that grants bind on clusterroles lets its holder create
    # RoleBindings to any ClusterRole in that namespace, so this is namespaced.
    "escalation": _probes(["escalate", "bind"], [G.RBAC], ["roles"])
    + _probes(["bind"], [G.RBAC], ["clusterroles"])
    + _probes(["escalate"], [G.RBAC], ["clusterroles"], cluster_wide=True),
    "rbac-write": _probes(_WRITE, [G.RBAC], ["roles", "rolebindings"])
    + _probes(_WRITE, [G.RBAC], ["clusterroles", "clusterrolebindings"], cluster_wide=True),
    # Creating any Pod-making object runs code as any ServiceAccount of the namespace;
    # updating one swaps its image or serviceAccountName (a Pod's image is mutable).
    "pod-create": _probes(_WRITE, [G.CORE], ["pods", "replicationcontrollers"])
    + _probes(_WRITE, [G.APPS], ["deployments", "replicasets", "statefulsets", "daemonsets"])
    + _probes(_WRITE, [G.EXT], ["deployments", "replicasets", "daemonsets"])
    + _probes(_WRITE, [G.BATCH], ["jobs", "cronjobs"]),
    # An ephemeral container runs inside an existing Pod, with its ServiceAccount.
    "exec": _probes(["create", "get"], [G.CORE], ["pods/exec", "pods/attach", "pods/portforward"])
    + _probes(["update", "patch"], [G.CORE], ["pods/ephemeralcontainers"]),
    "secrets-read": _probes(_READ, [G.CORE], ["secrets"]),
    # The kubelet authorizes its exec/run/logs endpoints as nodes/proxy.
    "node-proxy": _probes(_ANY, [G.CORE], ["nodes/proxy"], cluster_wide=True),
}


def _token_secrets(rules: Sequence[Rule], probes: _Filter) -> bool:
    # A Secret of type kubernetes.io/service-account-token that names a
    # ServiceAccount is filled by the token controller with a token that never
    # expires; whoever can read it back holds that ServiceAccount for good.
    return _any(rules, probes(_probes(["create"], [G.CORE], ["secrets"]))) and _any(
        rules, probes(_probes(_READ, [G.CORE], ["secrets"]))
    )


def _csr_approval(rules: Sequence[Rule], probes: _Filter) -> bool:
    # Approving one's own CertificateSigningRequest for kube-apiserver-client mints a
    # client certificate for any user name: a credential nobody can revoke.
    approval = _probes(
        ["update", "patch"], [G.CERTS], ["certificatesigningrequests/approval"], cluster_wide=True
    )
    signers = _probes(["approve"], [G.CERTS], ["signers"], cluster_wide=True)
    return _any(rules, probes(approval)) and _any(rules, probes(signers))


_Filter = Callable[[list[_Probe]], list[_Probe]]


def analyse(rules: Iterable[Rule], *, namespaced: bool = False) -> frozenset[Risk]:
    """The escape paths a set of rules opens, as risk names (see ``RISK_MEANINGS``).

    ``rules`` are a ClusterRole's effective rules (aggregation already resolved).
    ``namespaced`` means the role is bound by a RoleBinding: requests without a
    namespace (nodes, ClusterRoles, impersonating users) are then out of reach.
    Non-resource rules (``nonResourceURLs``) reach no objects and open none.
    """

    def probes(candidates: list[_Probe]) -> list[_Probe]:
        return [p for p in candidates if not (namespaced and p.cluster_wide)]

    kept = [r for r in rules if r.resources]
    found: set[Risk] = {risk for risk, ps in _PROBES.items() if _any(kept, probes(ps))}
    if _token_secrets(kept, probes) or _csr_approval(kept, probes):
        found.add("token-minting")
    if any("*" in r.verbs or "*" in r.resources for r in kept):
        found.add("wildcard")
    return frozenset(found)


def ordered(risks: Iterable[Risk]) -> list[Risk]:
    """Risks in the contract's order."""
    present = set(risks)
    return [r for r in RISKS if r in present]


@dataclass
class RiskCache:
    """Risks per (cluster, ClusterRole, scope), read at most once per ``ttl_seconds``.

    ClusterRoles change rarely (an upgrade, a new CRD's aggregate-to-edit role), so
    a short-lived cache is enough for showing risks next to every request.
    ``ttl_seconds``: how long an answer is reused, in seconds of the monotonic
    clock (default 300). A failed read is not cached.
    """

    ttl_seconds: float = 300.0
    _entries: dict[tuple[str, str, bool], tuple[float, frozenset[Risk] | None]] = field(
        default_factory=dict
    )

    async def risks(
        self, cluster: ClusterClient, cluster_role: str, *, namespaced: bool
    ) -> frozenset[Risk] | None:
        """Risks of ``cluster_role`` on ``cluster``; None when the role does not exist.

        Raises ``ClusterError`` when the cluster does not answer (nothing is cached).
        """
        key = (cluster.name, cluster_role, namespaced)
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and now - hit[0] < self.ttl_seconds:
            return hit[1]
        rules = (await cluster_role_rules(cluster, [cluster_role]))[cluster_role]
        value = None if rules is None else analyse(rules, namespaced=namespaced)
        self._entries[key] = (now, value)
        return value
