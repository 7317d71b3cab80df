"""AllowanceCache on a real apiserver: recomputed exactly when a role or its sources change."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from k8s.clients import ClusterClient, ClusterRegistry, ClusterTarget
from k8s.rbac import AllowanceCache
from tests.support.cluster import TestCluster
from tests.support.curated_roles import apply_cluster_role

pytestmark = pytest.mark.cluster
TOP = "allowance-test-top"
SOURCE = "allowance-test-source"
LABEL = {"allowance-test/aggregate-to-top": "true"}


@pytest.fixture
def kc(cluster: TestCluster) -> Iterator[ClusterClient]:
    registry = ClusterRegistry(
        {"t": ClusterTarget(name="t", context="admin", kubeconfig=str(cluster.kubeconfig))}
    )
    yield registry["t"]
    registry.close()
    rbac = client.RbacAuthorizationV1Api(cluster.api_client())
    for name in (TOP, SOURCE):
        with contextlib.suppress(ApiException):
            rbac.delete_cluster_role(name)


def _labelled_source(cluster: TestCluster, rules: list[dict[str, object]]) -> None:
    rbac = client.RbacAuthorizationV1Api(cluster.api_client())
    body = {"metadata": {"name": SOURCE, "labels": LABEL}, "rules": rules}
    try:
        rbac.create_cluster_role(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        rbac.patch_cluster_role(SOURCE, {"rules": rules})


async def test_built_in_edit_and_a_missing_role(kc: ClusterClient) -> None:
    cache = AllowanceCache()
    edit = await cache.allowance(kc, "edit", namespaced=True)
    assert {"token-minting", "pod-create"} <= set(edit.flags)
    assert any("Deployments" in clause for clause in edit.summary)
    assert (await cache.allowance(kc, "edit", namespaced=False)).flags[-1] == "cluster-scope"
    missing = await cache.allowance(kc, "allowance-test-none", namespaced=True)
    assert not missing.exists


async def test_a_new_aggregated_source_changes_the_answer(
    kc: ClusterClient, cluster: TestCluster
) -> None:
    """Without a controller-manager the top role never changes; its sources do."""
    apply_cluster_role(cluster.api_client(), TOP, None, aggregate_labels=LABEL)
    cache = AllowanceCache()
    before = await cache.allowance(kc, TOP, namespaced=True)
    assert before.flags == []
    assert await cache.allowance(kc, TOP, namespaced=True) is before  # unchanged: cached
    _labelled_source(cluster, [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}])
    after = await cache.allowance(kc, TOP, namespaced=True)
    assert after.flags == ["pod-create"]
    _labelled_source(cluster, [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}])
    assert (await cache.allowance(kc, TOP, namespaced=True)).flags == []


async def test_a_changed_plain_role_changes_the_answer(
    kc: ClusterClient, cluster: TestCluster
) -> None:
    api = cluster.api_client()
    apply_cluster_role(api, TOP, [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}])
    cache = AllowanceCache()
    assert (await cache.allowance(kc, TOP, namespaced=True)).flags == ["secrets-read"]
    apply_cluster_role(
        api, TOP, [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]
    )
    changed = await cache.allowance(kc, TOP, namespaced=True)
    assert changed.flags == []
    assert changed.summary == ("get ConfigMaps", "no Secrets")
