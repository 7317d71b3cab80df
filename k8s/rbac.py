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
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

from k8s.errors import NotFound

if TYPE_CHECKING:
    from k8s.clients import ClusterClient

__all__ = [
    "BLOCKING_RISKS",
    "CLUSTER_SCOPE",
    "RISKS",
    "RISK_MEANINGS",
    "Allowance",
    "AllowanceCache",
    "Risk",
    "RiskCache",
    "Rule",
    "allowance_of",
    "analyse",
    "cluster_role_rules",
    "describe",
    "effective_rules",
    "flag_meaning",
    "ordered",
    "rules_from_api",
    "rules_text",
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


# --- what a role allows, in words ---------------------------------------------------

# A display flag next to the risks: a ClusterRoleBinding reaches every namespace,
# present and future, and the cluster-wide objects.
CLUSTER_SCOPE: Final = "cluster-scope"
CLUSTER_SCOPE_MEANING: Final = (
    "bound cluster-wide: applies in every namespace, including ones created later"
)

_READ_VERBS = frozenset(_READ)
_WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})

# Display names of common resources (Kind-like, plural). Anything else is shown
# by its resource name, with its API group when it is not a core/apps one.
_DISPLAY: Final[Mapping[str, str]] = {
    "pods": "Pods",
    "pods/log": "Pod logs",
    "pods/exec": "Pod exec",
    "pods/attach": "Pod attach",
    "pods/portforward": "Pod port-forward",
    "pods/proxy": "Pod proxy",
    "pods/status": "Pod status",
    "pods/eviction": "Pod evictions",
    "pods/ephemeralcontainers": "Pod ephemeral containers",
    "services": "Services",
    "services/proxy": "Service proxy",
    "configmaps": "ConfigMaps",
    "secrets": "Secrets",
    "serviceaccounts": "ServiceAccounts",
    "serviceaccounts/token": "ServiceAccount tokens",
    "persistentvolumeclaims": "PersistentVolumeClaims",
    "persistentvolumes": "PersistentVolumes",
    "endpoints": "Endpoints",
    "events": "Events",
    "namespaces": "Namespaces",
    "nodes": "Nodes",
    "nodes/proxy": "Node proxy",
    "replicationcontrollers": "ReplicationControllers",
    "resourcequotas": "ResourceQuotas",
    "limitranges": "LimitRanges",
    "deployments": "Deployments",
    "replicasets": "ReplicaSets",
    "statefulsets": "StatefulSets",
    "daemonsets": "DaemonSets",
    "controllerrevisions": "ControllerRevisions",
    "jobs": "Jobs",
    "cronjobs": "CronJobs",
    "ingresses": "Ingresses",
    "networkpolicies": "NetworkPolicies",
    "horizontalpodautoscalers": "HorizontalPodAutoscalers",
    "poddisruptionbudgets": "PodDisruptionBudgets",
    "roles": "Roles",
    "rolebindings": "RoleBindings",
    "clusterroles": "ClusterRoles",
    "clusterrolebindings": "ClusterRoleBindings",
    "endpointslices": "EndpointSlices",
    "leases": "Leases",
    "customresourcedefinitions": "CustomResourceDefinitions",
    "storageclasses": "StorageClasses",
    "certificatesigningrequests": "CertificateSigningRequests",
    "bindings": "Bindings",
    "resourceclaims": "ResourceClaims",
    "resourceclaimtemplates": "ResourceClaimTemplates",
}
# Subresources that are part of their object for a reader: shown as the object.
_FOLDED = frozenset({"status", "scale"})
_KNOWN_GROUPS = frozenset(
    {
        _CORE,
        _APPS,
        _BATCH,
        _EXT,
        _RBAC,
        "networking.k8s.io",
        "autoscaling",
        "policy",
        "discovery.k8s.io",
        "coordination.k8s.io",
        "storage.k8s.io",
        "apiextensions.k8s.io",
        _CERTS,
        _AUTHN,
        "authorization.k8s.io",
        "events.k8s.io",
        "resource.k8s.io",
    }
)


def _display(group: str, resource: str) -> str:
    if resource == "*":
        return "all resources" if group == "*" else f"all resources of {group or 'core'}"
    if resource.startswith("*/"):
        return f"the {resource[2:]} of every resource"
    parent, _, sub = resource.partition("/")
    if sub in _FOLDED:
        resource = parent
    name = _DISPLAY.get(resource)
    if name is not None and group in _KNOWN_GROUPS | {"*"}:
        return name
    return resource if group in _KNOWN_GROUPS | {"*"} else f"{resource}.{group}"


def _access_words(verbs: frozenset[str]) -> str:
    """How much of an object a set of verbs gives: the clause's lead words."""
    if "*" in verbs:
        return "do anything with"
    reads = verbs & _READ_VERBS
    writes = verbs & _WRITE_VERBS
    others = sorted(verbs - _READ_VERBS - _WRITE_VERBS)
    words = []
    if reads and writes:
        words.append("read and write")
    elif reads:
        words.append("read" if reads == _READ_VERBS else "/".join(sorted(reads)))
    elif writes:
        words.append(
            "write" if {"create", "update", "patch"} <= writes else "/".join(sorted(writes))
        )
    if words == ["read and write"] and others:
        words = ["read", "write"]
    words += others
    return " and ".join(words) if len(words) < 3 else ", ".join(words[:-1]) + " and " + words[-1]


def describe(rules: Iterable[Rule], *, namespaced: bool) -> list[str]:
    """What ``rules`` allow, as short clauses, widest access first.

    ``["read and write Deployments, Services", "read Pods, Pod logs", "no Secrets"]``.
    Resources with the same verbs share a clause; a ``resourceNames`` rule is shown
    with its names. With ``namespaced``, cluster-wide resources a RoleBinding cannot
    reach are still listed (the rules say so), but ``no Secrets`` is judged by the
    risk analysis. Non-resource URLs (``/healthz``) get a clause of their own.
    """
    kept = list(rules)
    verbs_of: dict[str, set[str]] = {}
    for rule in kept:
        for group in rule.api_groups or ("",):
            for resource in rule.resources:
                name = _display(group, resource)
                if rule.resource_names:
                    name += f" (only {', '.join(rule.resource_names)})"
                verbs_of.setdefault(name, set()).update(rule.verbs)
    by_words: dict[str, list[str]] = {}
    for name, verbs in verbs_of.items():
        by_words.setdefault(_access_words(frozenset(verbs)), []).append(name)

    def rank(words: str) -> tuple[int, str]:
        order = ["do anything with", "read and write", "write"]
        return (order.index(words) if words in order else 3, words)

    clauses = [
        f"{w} {', '.join(sorted(by_words[w], key=str.lower))}" for w in sorted(by_words, key=rank)
    ]
    urls = sorted({u for r in kept for u in r.non_resource_urls})
    if urls:
        clauses.append(f"non-resource URLs {', '.join(urls)}")
    if not clauses:
        return ["nothing (the role has no rules)"]
    if "secrets-read" not in analyse(kept, namespaced=namespaced):
        clauses.append("no Secrets")
    return clauses


@dataclass(frozen=True)
class Allowance:
    """What one ClusterRole allows on one cluster, bound namespaced or cluster-wide.

    ``exists`` False: the cluster has no such ClusterRole (nothing else is set).
    ``summary`` are ``describe``'s clauses, ``risks`` ``analyse``'s in contract
    order, ``rules`` the effective rules (for the full list).
    """

    cluster: str
    cluster_role: str
    namespaced: bool
    exists: bool = True
    summary: tuple[str, ...] = ()
    risks: tuple[Risk, ...] = ()
    rules: tuple[Rule, ...] = ()

    @property
    def flags(self) -> list[str]:
        """Risk names (blocking ones first, in contract order), then ``cluster-scope``."""
        risks = [r for r in self.risks if r in BLOCKING_RISKS]
        risks += [r for r in self.risks if r not in BLOCKING_RISKS]
        return [*risks, *([] if self.namespaced else [CLUSTER_SCOPE])]


def flag_meaning(flag: str) -> str:
    """What a flag of ``Allowance.flags`` means, in words."""
    if flag == CLUSTER_SCOPE:
        return CLUSTER_SCOPE_MEANING
    return next((m for r, m in RISK_MEANINGS.items() if r == flag), flag)


def allowance_of(
    cluster: str, cluster_role: str, rules: list[Rule] | None, *, namespaced: bool
) -> Allowance:
    """Build an ``Allowance`` from effective rules (None: no such ClusterRole)."""
    if rules is None:
        return Allowance(cluster, cluster_role, namespaced, exists=False)
    return Allowance(
        cluster,
        cluster_role,
        namespaced,
        summary=tuple(describe(rules, namespaced=namespaced)),
        risks=tuple(ordered(analyse(rules, namespaced=namespaced))),
        rules=tuple(rules),
    )


def rules_text(rules: Iterable[Rule]) -> str:
    """Every rule on its own line, as ``kubectl describe clusterrole`` groups them."""
    lines = []
    for r in rules:
        if r.non_resource_urls:
            lines.append(
                f"non-resource URLs {', '.join(r.non_resource_urls)}: {', '.join(r.verbs)}"
            )
            continue
        groups = ", ".join(g or "core" for g in r.api_groups) or "core"
        names = f" named {', '.join(r.resource_names)}" if r.resource_names else ""
        lines.append(f"{', '.join(r.resources)} ({groups}){names}: {', '.join(r.verbs)}")
    return "\n".join(lines)


Fingerprint = tuple[tuple[str, str], ...]


def _fingerprint(name: str, roles: Mapping[str, Any]) -> Fingerprint:
    """(name, resourceVersion) of the role and every role its aggregation reaches."""
    seen: dict[str, str] = {}

    def visit(current: Any) -> None:
        if current.metadata.name in seen:
            return
        seen[current.metadata.name] = str(current.metadata.resource_version or "")
        aggregation = current.aggregation_rule
        for selector in (aggregation.cluster_role_selectors or ()) if aggregation else ():
            for other in roles.values():
                if _selector_matches(selector, other.metadata.labels or {}):
                    visit(other)

    if name in roles:
        visit(roles[name])
    return tuple(sorted(seen.items()))


@dataclass
class AllowanceCache:
    """``Allowance`` per (cluster, ClusterRole, scope), recomputed when the role changes.

    Checked on every use: one GET of the ClusterRole; its ``resourceVersion`` must
    match the cached one. An aggregated role (``aggregationRule``) is checked
    against the ``resourceVersion`` of every role its selectors reach (one list),
    because a new ``aggregate-to-edit`` role changes it without touching it on a
    cluster whose controller-manager does not write aggregated rules back.
    """

    _entries: dict[tuple[str, str, bool], tuple[Fingerprint, Allowance]] = field(
        default_factory=dict
    )

    def peek(self, cluster: str, cluster_role: str, *, namespaced: bool) -> Allowance | None:
        """The last computed allowance, without asking the cluster (None: never computed)."""
        hit = self._entries.get((cluster, cluster_role, namespaced))
        return hit[1] if hit else None

    async def allowance(
        self, cluster: ClusterClient, cluster_role: str, *, namespaced: bool
    ) -> Allowance:
        """What ``cluster_role`` allows on ``cluster`` now.

        Raises ``ClusterError`` when the cluster does not answer (the cache keeps
        what it had).
        """
        key = (cluster.name, cluster_role, namespaced)
        hit = self._entries.get(key)
        try:
            top = await cluster.call(cluster.rbac.read_cluster_role, cluster_role)
        except NotFound:
            top = None
        if top is None:
            value = allowance_of(cluster.name, cluster_role, None, namespaced=namespaced)
            self._entries[key] = ((), value)
            return value
        aggregated = bool(top.aggregation_rule and top.aggregation_rule.cluster_role_selectors)
        if not aggregated:
            roles: dict[str, Any] = {cluster_role: top}
        else:
            listing = await cluster.call(cluster.rbac.list_cluster_role)
            roles = {str(r.metadata.name): r for r in listing.items if r.metadata}
            roles[cluster_role] = top
        fingerprint = _fingerprint(cluster_role, roles)
        if hit is not None and hit[0] == fingerprint:
            return hit[1]
        rules = effective_rules(cluster_role, roles)
        value = allowance_of(cluster.name, cluster_role, rules, namespaced=namespaced)
        self._entries[key] = (fingerprint, value)
        return value
