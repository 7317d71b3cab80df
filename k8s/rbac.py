"""Which escape paths a ClusterRole opens: RBAC rules in, a set of risk names out.

A grant is meant to end when AccessBot revokes it. Some permissions let its holder
make access that outlives the grant (a year-long token for another ServiceAccount,
a binding to an identity they keep, a Pod running as any ServiceAccount) or reach
far beyond the role (impersonation, nodes/proxy). This module names those paths.

The analysis (``analyse``) is pure. ``cluster_role_rules`` reads a ClusterRole from
a cluster and resolves ``aggregationRule`` label selectors itself, because a
cluster without a controller-manager never fills an aggregated role's ``rules``.

Matching follows the RBAC authorizer exactly (kubernetes
``pkg/apis/rbac/v1/evaluation_helpers.go``): ``*`` matches any verb, group or
resource (subresources included), ``*/sub`` matches that subresource of any
resource, and ``resourceNames`` restricts a rule to requests that carry a name,
which a ``create`` of a new object never does (a ``list`` may, through a
``metadata.name`` field selector).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from k8s.clients import ClusterClient

__all__ = [
    "BLOCKING_RISKS",
    "RISKS",
    "RISK_MEANINGS",
    "Risk",
    "RiskCache",
    "Rule",
    "analyse",
    "cluster_role_rules",
    "effective_rules",
    "ordered",
    "rules_from_api",
]

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
RISKS: Final[tuple[Risk, ...]] = (
    "token-minting",
    "impersonation",
    "escalation",
    "rbac-write",
    "pod-create",
    "exec",
    "secrets-read",
    "node-proxy",
    "wildcard",
)

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

_CORE, _RBAC, _APPS, _BATCH, _EXT = "", "rbac.authorization.k8s.io", "apps", "batch", "extensions"
_AUTHN, _CERTS = "authentication.k8s.io", "certificates.k8s.io"


@dataclass(frozen=True)
class Rule:
    """One PolicyRule of a (Cluster)Role; non-resource rules carry no resources."""

    verbs: tuple[str, ...]
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        verbs: Iterable[str],
        api_groups: Iterable[str] = (),
        resources: Iterable[str] = (),
        resource_names: Iterable[str] = (),
        non_resource_urls: Iterable[str] = (),
    ) -> Rule:
        return cls(
            tuple(verbs),
            tuple(api_groups),
            tuple(resources),
            tuple(resource_names),
            tuple(non_resource_urls),
        )


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
    "token-minting": _probes(["create"], [_CORE], ["serviceaccounts/token"]),
    # Impersonating a ServiceAccount is checked in its namespace; users, groups,
    # uids and extras have none, so only a ClusterRoleBinding allows those.
    "impersonation": _probes(["impersonate"], [_CORE], ["serviceaccounts"])
    + _probes(["impersonate"], [_CORE], ["users", "groups"], cluster_wide=True)
    + _probes(["impersonate"], [_AUTHN], ["uids", "userextras/scopes"], cluster_wide=True),
    # A RoleBinding that grants bind on clusterroles lets its holder create
    # RoleBindings to any ClusterRole in that namespace, so this is namespaced.
    "escalation": _probes(["escalate", "bind"], [_RBAC], ["roles"])
    + _probes(["bind"], [_RBAC], ["clusterroles"])
    + _probes(["escalate"], [_RBAC], ["clusterroles"], cluster_wide=True),
    "rbac-write": _probes(_WRITE, [_RBAC], ["roles", "rolebindings"])
    + _probes(_WRITE, [_RBAC], ["clusterroles", "clusterrolebindings"], cluster_wide=True),
    # Creating any Pod-making object runs code as any ServiceAccount of the namespace;
    # updating one swaps its image or serviceAccountName (a Pod's image is mutable).
    "pod-create": _probes(_WRITE, [_CORE], ["pods", "replicationcontrollers"])
    + _probes(_WRITE, [_APPS], ["deployments", "replicasets", "statefulsets", "daemonsets"])
    + _probes(_WRITE, [_EXT], ["deployments", "replicasets", "daemonsets"])
    + _probes(_WRITE, [_BATCH], ["jobs", "cronjobs"]),
    # An ephemeral container runs inside an existing Pod, with its ServiceAccount.
    "exec": _probes(["create", "get"], [_CORE], ["pods/exec", "pods/attach", "pods/portforward"])
    + _probes(["update", "patch"], [_CORE], ["pods/ephemeralcontainers"]),
    "secrets-read": _probes(_READ, [_CORE], ["secrets"]),
    # The kubelet authorizes its exec/run/logs endpoints as nodes/proxy.
    "node-proxy": _probes(_ANY, [_CORE], ["nodes/proxy"], cluster_wide=True),
}


def _token_secrets(rules: Sequence[Rule], probes: _Filter) -> bool:
    # A Secret of type kubernetes.io/service-account-token that names a
    # ServiceAccount is filled by the token controller with a token that never
    # expires; whoever can read it back holds that ServiceAccount for good.
    return _any(rules, probes(_probes(["create"], [_CORE], ["secrets"]))) and _any(
        rules, probes(_probes(_READ, [_CORE], ["secrets"]))
    )


def _csr_approval(rules: Sequence[Rule], probes: _Filter) -> bool:
    # Approving one's own CertificateSigningRequest for kube-apiserver-client mints a
    # client certificate for any user name: a credential nobody can revoke.
    approval = _probes(
        ["update", "patch"], [_CERTS], ["certificatesigningrequests/approval"], cluster_wide=True
    )
    signers = _probes(["approve"], [_CERTS], ["signers"], cluster_wide=True)
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


# --- reading ClusterRoles from a cluster -----------------------------------------


def _field(rule: Any, camel: str, *snakes: str) -> tuple[str, ...]:
    if isinstance(rule, dict):
        value = rule.get(camel, next((rule[s] for s in snakes if s in rule), None))
    else:
        value = next((getattr(rule, s) for s in snakes if hasattr(rule, s)), None)
    return tuple(value or ())


def rules_from_api(rules: Iterable[Any] | None) -> list[Rule]:
    """Convert ``V1PolicyRule`` objects (or their JSON dict form) into ``Rule``."""
    return [
        Rule(
            verbs=_field(rule, "verbs", "verbs"),
            api_groups=_field(rule, "apiGroups", "api_groups"),
            resources=_field(rule, "resources", "resources"),
            resource_names=_field(rule, "resourceNames", "resource_names"),
            # Older generated clients spell nonResourceURLs "non_resource_ur_ls".
            non_resource_urls=_field(
                rule, "nonResourceURLs", "non_resource_urls", "non_resource_ur_ls"
            ),
        )
        for rule in rules or ()
    ]


def _selector_matches(selector: Any, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector against labels (matchLabels and matchExpressions).

    An empty selector matches everything, as in Kubernetes' LabelSelectorAsSelector.
    """
    for key, value in (getattr(selector, "match_labels", None) or {}).items():
        if labels.get(key) != value:
            return False
    for expr in getattr(selector, "match_expressions", None) or ():
        values = set(expr.values or ())
        present = expr.key in labels
        op = expr.operator
        if op == "In" and not (present and labels[expr.key] in values):
            return False
        if op == "NotIn" and present and labels[expr.key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def effective_rules(name: str, roles: Mapping[str, Any]) -> list[Rule] | None:
    """A ClusterRole's rules with its ``aggregationRule`` resolved, or None if missing.

    ``roles`` maps names to ``V1ClusterRole``. For an aggregated role the result is
    its own ``rules`` (what a controller-manager filled in, possibly nothing) plus
    the rules of every role its selectors pick, recursively: the same set once the
    aggregation controller has run, and the right set on a cluster where it never
    does.
    """
    role = roles.get(name)
    if role is None:
        return None
    seen: set[str] = set()
    out: list[Rule] = []

    def visit(current: Any) -> None:
        if current.metadata.name in seen:
            return
        seen.add(current.metadata.name)
        for rule in rules_from_api(current.rules):
            if rule not in out:
                out.append(rule)
        aggregation = current.aggregation_rule
        for selector in (aggregation.cluster_role_selectors or ()) if aggregation else ():
            for other_name in sorted(roles):
                other = roles[other_name]
                if _selector_matches(selector, other.metadata.labels or {}):
                    visit(other)

    visit(role)
    return out


async def cluster_role_rules(
    cluster: ClusterClient, names: Iterable[str]
) -> dict[str, list[Rule] | None]:
    """Effective rules of the named ClusterRoles on ``cluster`` (None: no such role).

    One list call reads every ClusterRole, since aggregation may pull in any of
    them. Raises ``ClusterError`` when the cluster does not answer.
    """
    listing = await cluster.call(cluster.rbac.list_cluster_role)
    roles: dict[str, Any] = {str(r.metadata.name): r for r in listing.items if r.metadata}
    return {name: effective_rules(name, roles) for name in names}


@dataclass
class RiskCache:
    """Risks per (cluster, ClusterRole, scope), read at most once per ``ttl_seconds``.

    ClusterRoles change rarely (an upgrade, a new CRD's aggregate-to-edit role), so
    a short-lived cache is enough for showing risks next to every request.
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
