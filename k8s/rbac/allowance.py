"""What a role allows, in words: summaries, flags, and the per-cluster cache of them.

``describe`` turns effective rules into short clauses for a request card;
``Allowance`` bundles them with the risks (:mod:`k8s.rbac.risks`);
``AllowanceCache`` recomputes one only when its ClusterRole changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from k8s.errors import NotFound
from k8s.rbac.risks import _READ, BLOCKING_RISKS, RISK_MEANINGS, Risk, analyse, ordered
from k8s.rbac.rules import (
    G,
    Rule,
    aggregated_roles,
    cluster_roles,
    effective_rules,
)

if TYPE_CHECKING:
    from k8s.clients import ClusterClient

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
        G.CORE,
        G.APPS,
        G.BATCH,
        G.EXT,
        G.RBAC,
        "networking.k8s.io",
        "autoscaling",
        "policy",
        "discovery.k8s.io",
        "coordination.k8s.io",
        "storage.k8s.io",
        "apiextensions.k8s.io",
        G.CERTS,
        G.AUTHN,
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
    reached = aggregated_roles(name, roles)
    return tuple(sorted((r.metadata.name, str(r.metadata.resource_version or "")) for r in reached))


@dataclass
class AllowanceCache:
    """``Allowance`` per (cluster, ClusterRole, scope), recomputed when the role changes.

    Checked on every use: one GET of the ClusterRole; its ``resourceVersion`` must
    match the cached one. An aggregated role (``aggregationRule``) is checked
    against the ``resourceVersion`` of every role its selectors reach (one list),
    because a new ``aggregate-to-edit`` role changes it without touching it on a
    cluster whose controller-manager does not write aggregated rules back.
    Takes no parameters; entries live as long as the cache (one per role and
    scope the policy names, so a bounded number).
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
            roles = await cluster_roles(cluster)
            roles[cluster_role] = top
        fingerprint = _fingerprint(cluster_role, roles)
        if hit is not None and hit[0] == fingerprint:
            return hit[1]
        rules = effective_rules(cluster_role, roles)
        value = allowance_of(cluster.name, cluster_role, rules, namespaced=namespaced)
        self._entries[key] = (fingerprint, value)
        return value
