"""The manual procedure AccessBot automates, replayed by hand on the real apiserver.

If this passes, the test bed is a real cluster: RBAC is enforced, TokenRequest
works, and deleting a ServiceAccount revokes its tokens.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kubernetes import client

from k8s.kubeconfig import KubeconfigSpec, render_kubeconfig
from tests.support.cluster import TestCluster
from tests.support.patience import PATIENCE

pytestmark = pytest.mark.cluster


def test_sa_token_kubeconfig_then_revocation(cluster: TestCluster, tmp_path: Path) -> None:
    api = cluster.api_client()
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    ns, name = "testbed", "manual-admin"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    core.create_namespaced_service_account(
        ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
    )
    rbac.create_cluster_role_binding(
        client.V1ClusterRoleBinding(
            metadata=client.V1ObjectMeta(name=f"{name}-binding"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="cluster-admin"
            ),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=name, namespace=ns)],
        )
    )
    token = core.create_namespaced_service_account_token(
        name,
        ns,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
        ),
    ).status.token
    kubeconfig = tmp_path / "manual.kubeconfig"
    kubeconfig.write_text(
        render_kubeconfig(
            KubeconfigSpec(
                cluster="testbed",
                server=cluster.server,
                ca_pem=cluster.ca_pem,
                user=name,
                token=token,
                context="testbed-admin",
            )
        )
    )

    nodes = cluster.kubectl("get", "nodes", kubeconfig=kubeconfig)
    assert nodes.returncode == 0
    whoami = cluster.kubectl(
        "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}", kubeconfig=kubeconfig
    )
    assert whoami.stdout == f"system:serviceaccount:{ns}:{name}"

    core.delete_namespaced_service_account(name, ns)
    deleted_at = time.monotonic()
    while True:
        probe = cluster.kubectl("get", "nodes", kubeconfig=kubeconfig, check=False)
        if probe.returncode != 0:
            break
        assert time.monotonic() - deleted_at < PATIENCE, "token still honoured after SA deletion"
        time.sleep(0.25)
    lag = time.monotonic() - deleted_at
    assert "Unauthorized" in probe.stderr or "must be logged in" in probe.stderr, probe.stderr
    print(f"\nUnauthorized {lag:.2f} s after ServiceAccount deletion")
    rbac.delete_cluster_role_binding(f"{name}-binding")
