"""The chart's curated grant ClusterRoles, as tests outside the chart need them.

Same rules as helm-chart/accessbot/templates/clusterroles.yaml (the built-in view and
edit without Secrets, ServiceAccount writes and tokens, impersonation or RBAC writes),
so `accessbot check` and the risk analysis can be tested without installing the chart.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

READ = ["get", "list", "watch"]
WRITE = ["create", "update", "patch", "delete", "deletecollection"]

_VIEW_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "verbs": READ, "resources": [
        "pods", "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts",
        "services", "services/status", "endpoints", "persistentvolumeclaims",
        "persistentvolumeclaims/status", "configmaps", "limitranges", "resourcequotas",
        "bindings", "pods/status", "resourcequotas/status", "namespaces/status",
        "replicationcontrollers/status", "pods/log", "namespaces"]},
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": READ},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": READ},
    {"apiGroups": ["apps"], "verbs": READ, "resources": [
        "controllerrevisions", "statefulsets", "statefulsets/status", "statefulsets/scale",
        "daemonsets", "daemonsets/status", "deployments", "deployments/status",
        "deployments/scale", "replicasets", "replicasets/status", "replicasets/scale"]},
    {"apiGroups": ["autoscaling"], "verbs": READ,
     "resources": ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]},
    {"apiGroups": ["batch"], "verbs": READ,
     "resources": ["jobs", "cronjobs", "cronjobs/status", "jobs/status"]},
    {"apiGroups": ["policy"], "verbs": READ,
     "resources": ["poddisruptionbudgets", "poddisruptionbudgets/status"]},
    {"apiGroups": ["networking.k8s.io"], "verbs": READ,
     "resources": ["networkpolicies", "ingresses", "ingresses/status"]},
]  # fmt: skip

_EDIT_EXTRA: list[dict[str, Any]] = [
    {"apiGroups": [""], "verbs": READ, "resources": [
        "pods/attach", "pods/proxy", "pods/exec", "pods/portforward", "services/proxy"]},
    {"apiGroups": [""], "verbs": WRITE, "resources": [
        "pods", "pods/attach", "pods/proxy", "pods/exec", "pods/portforward",
        "replicationcontrollers", "replicationcontrollers/scale", "services",
        "services/proxy", "persistentvolumeclaims", "configmaps", "events"]},
    {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
    {"apiGroups": ["apps"], "verbs": WRITE, "resources": [
        "statefulsets", "statefulsets/scale", "daemonsets", "deployments", "deployments/scale",
        "deployments/rollback", "replicasets", "replicasets/scale"]},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": WRITE},
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": WRITE},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": WRITE},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies", "ingresses"],
     "verbs": WRITE},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": READ + WRITE},
]  # fmt: skip

CURATED: dict[str, list[dict[str, Any]]] = {
    "accessbot-view": _VIEW_RULES,
    "accessbot-edit": _VIEW_RULES + _EDIT_EXTRA,
}


def apply_cluster_role(
    api: client.ApiClient,
    name: str,
    rules: list[dict[str, Any]] | None,
    *,
    aggregate_labels: dict[str, str] | None = None,
) -> None:
    """Create or replace a ClusterRole; ``aggregate_labels`` makes it aggregated."""
    body: dict[str, Any] = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": rules or [],
    }
    if aggregate_labels is not None:
        body["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": aggregate_labels}]}
    rbac = client.RbacAuthorizationV1Api(api)
    try:
        rbac.create_cluster_role(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        current = rbac.read_cluster_role(name)
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        rbac.replace_cluster_role(name, body)


def apply_curated(api: client.ApiClient) -> None:
    for name, rules in CURATED.items():
        apply_cluster_role(api, name, rules)
