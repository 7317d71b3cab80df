"""The chart's curated grant ClusterRoles, as tests outside the chart need them.

Rendered from helm-chart/accessbot/templates/clusterroles.yaml with the real `helm`,
so `accessbot check` and the risk analysis are tested on exactly what the chart ships,
without installing the chart.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.cluster import TestCluster

CHART = Path(__file__).resolve().parents[2] / "helm-chart" / "accessbot"


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


def chart_curated_roles(helm: Callable[..., Any]) -> list[dict[str, Any]]:
    """The curated ClusterRoles exactly as the chart renders them (name and rules)."""
    rendered = helm("template", "accessbot", str(CHART), "--namespace", "accessbot").stdout
    return [
        {"name": d["metadata"]["name"], "rules": d.get("rules") or []}
        for d in yaml.safe_load_all(rendered)
        if d
        and d.get("kind") == "ClusterRole"
        and (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "grant-role"
    ]


@contextlib.contextmanager
def curated_roles(cluster: TestCluster) -> Iterator[list[str]]:
    """Create the chart's curated ClusterRoles for the duration of the block.

    They are removed afterwards: a chart installed later in the same session
    must be able to own them (Helm refuses to adopt objects it did not make).
    """
    api = cluster.api_client()
    roles = chart_curated_roles(cluster.helm)
    for role in roles:
        apply_cluster_role(api, role["name"], role["rules"])
    try:
        yield [r["name"] for r in roles]
    finally:
        rbac = client.RbacAuthorizationV1Api(api)
        for role in roles:
            with contextlib.suppress(ApiException):
                rbac.delete_cluster_role(role["name"])
