"""RBAC rules as AccessBot reads them: a ClusterRole's effective rules, aggregation resolved.

``cluster_role_rules`` reads ClusterRoles from a cluster and resolves
``aggregationRule`` label selectors itself, because a cluster without a
controller-manager never fills an aggregated role's ``rules``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from k8s.paging import list_all

if TYPE_CHECKING:
    from k8s.clients import ClusterClient


class G:
    """API group names the risk probes and display names refer to ("" is the core group)."""

    CORE = ""
    RBAC = "rbac.authorization.k8s.io"
    APPS = "apps"
    BATCH = "batch"
    EXT = "extensions"
    AUTHN = "authentication.k8s.io"
    CERTS = "certificates.k8s.io"


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


def aggregated_roles(name: str, roles: Mapping[str, Any]) -> list[Any]:
    """The role ``name`` and every role its ``aggregationRule`` reaches, recursively.

    ``roles`` maps names to ``V1ClusterRole``. Depth first, the role before what
    it aggregates, selected roles by name; each role once. Empty when ``name``
    is not in ``roles``.
    """
    seen: dict[str, Any] = {}

    def visit(current: Any) -> None:
        if current.metadata.name in seen:
            return
        seen[current.metadata.name] = current
        aggregation = current.aggregation_rule
        for selector in (aggregation.cluster_role_selectors or ()) if aggregation else ():
            for other_name in sorted(roles):
                other = roles[other_name]
                if _selector_matches(selector, other.metadata.labels or {}):
                    visit(other)

    if name in roles:
        visit(roles[name])
    return list(seen.values())


def effective_rules(name: str, roles: Mapping[str, Any]) -> list[Rule] | None:
    """A ClusterRole's rules with its ``aggregationRule`` resolved, or None if missing.

    ``roles`` maps names to ``V1ClusterRole``. For an aggregated role the result is
    its own ``rules`` (what a controller-manager filled in, possibly nothing) plus
    the rules of every role its selectors pick, recursively: the same set once the
    aggregation controller has run, and the right set on a cluster where it never
    does.
    """
    if name not in roles:
        return None
    out: list[Rule] = []
    for role in aggregated_roles(name, roles):
        out.extend(rule for rule in rules_from_api(role.rules) if rule not in out)
    return out


async def cluster_roles(cluster: ClusterClient) -> dict[str, Any]:
    """Every ClusterRole of ``cluster`` by name (``V1ClusterRole``), listed page by page."""
    listing = await list_all(cluster, cluster.rbac.list_cluster_role)
    return {str(r.metadata.name): r for r in listing if r.metadata}


async def cluster_role_rules(
    cluster: ClusterClient, names: Iterable[str]
) -> dict[str, list[Rule] | None]:
    """Effective rules of the named ClusterRoles on ``cluster`` (None: no such role).

    One list reads every ClusterRole, since aggregation may pull in any of
    them. Raises ``ClusterError`` when the cluster does not answer.
    """
    roles = await cluster_roles(cluster)
    return {name: effective_rules(name, roles) for name in names}
