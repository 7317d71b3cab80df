"""Escape paths of real ClusterRoles, read from the real apiserver and checked by it."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from k8s import grants, rbac
from k8s.clients import ClusterClient, ClusterRegistry, ClusterTarget
from k8s.kubeconfig import KubeconfigSpec, render_kubeconfig
from tests.support.cluster import TestCluster, ensure_namespaces
from tests.support.curated_roles import apply_cluster_role, curated_roles

pytestmark = pytest.mark.cluster
NS = "risk-team"
SA_NS = "accessbot-users"

# Measured on the test apiserver (v1.37 bootstrap roles); the risks a RoleBinding
# ("namespaced") and a ClusterRoleBinding open.
EDIT = ["token-minting", "impersonation", "pod-create", "exec", "secrets-read"]
ADMIN = ["token-minting", "impersonation", "rbac-write", "pod-create", "exec", "secrets-read"]
CLUSTER_ADMIN = ["token-minting", "impersonation", "escalation", "rbac-write", "pod-create",
                 "exec", "secrets-read", "node-proxy", "wildcard"]  # fmt: skip
MEASURED: dict[tuple[str, bool], list[str]] = {
    ("view", True): [],
    ("view", False): [],
    ("edit", True): EDIT,
    ("edit", False): EDIT,
    ("admin", True): ADMIN,
    ("admin", False): ADMIN,
    ("cluster-admin", True): [r for r in CLUSTER_ADMIN if r != "node-proxy"],
    ("cluster-admin", False): CLUSTER_ADMIN,
    ("accessbot-view", True): [],
    ("accessbot-edit", True): ["pod-create", "exec"],
}


@pytest.fixture
def kc(cluster: TestCluster) -> Iterator[ClusterClient]:
    ensure_namespaces(cluster, SA_NS, NS)
    registry = ClusterRegistry(
        {"t": ClusterTarget(name="t", context="admin", kubeconfig=str(cluster.kubeconfig))}
    )
    with curated_roles(cluster):
        yield registry["t"]
    registry.close()


async def test_built_in_and_curated_roles(kc: ClusterClient) -> None:
    found = await rbac.cluster_role_rules(kc, sorted({name for name, _ in MEASURED}))
    measured = {
        (name, namespaced): rbac.ordered(rbac.analyse(found[name] or [], namespaced=namespaced))
        for name, namespaced in MEASURED
    }
    assert measured == MEASURED


async def test_missing_cluster_role_is_none(kc: ClusterClient) -> None:
    assert (await rbac.cluster_role_rules(kc, ["no-such-role"])) == {"no-such-role": None}
    assert await rbac.RiskCache().risks(kc, "no-such-role", namespaced=True) is None


async def test_unfilled_aggregated_role_is_read_through_its_selectors(
    kc: ClusterClient, cluster: TestCluster
) -> None:
    """As on a cluster without a controller-manager: rules empty, selectors followed."""
    name = "risk-test-unfilled-edit"
    apply_cluster_role(
        cluster.api_client(),
        name,
        None,
        aggregate_labels={"rbac.authorization.k8s.io/aggregate-to-edit": "true"},
    )
    stored = client.RbacAuthorizationV1Api(cluster.api_client()).read_cluster_role(name)
    assert not stored.rules  # the test apiserver aggregates nothing itself
    found = await rbac.cluster_role_rules(kc, [name, "edit"])
    assert found[name]
    assert rbac.analyse(found[name] or []) == rbac.analyse(found["edit"] or [])
    assert rbac.ordered(rbac.analyse(found[name] or [], namespaced=True)) == EDIT


async def test_cache_reads_once_per_role(kc: ClusterClient, cluster: TestCluster) -> None:
    cache = rbac.RiskCache(ttl_seconds=3600)
    name = "risk-test-cached"
    apply_cluster_role(cluster.api_client(), name, [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}])  # fmt: skip
    assert await cache.risks(kc, name, namespaced=True) == {"secrets-read"}
    apply_cluster_role(cluster.api_client(), name, [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}])  # fmt: skip
    assert await cache.risks(kc, name, namespaced=True) == {"secrets-read"}
    assert await rbac.RiskCache().risks(kc, name, namespaced=True) == frozenset()


# One request per risk, as the apiserver authorizes it (verb, group, resource,
# subresource, name); the analysis must agree with the authorizer on each.
REQUESTS = {
    "token-minting": ("create", "", "serviceaccounts", "token", "default"),
    "impersonation": ("impersonate", "", "serviceaccounts", "", "default"),
    "escalation": ("bind", "rbac.authorization.k8s.io", "clusterroles", "", "cluster-admin"),
    "rbac-write": ("create", "rbac.authorization.k8s.io", "rolebindings", "", ""),
    "pod-create": ("create", "", "pods", "", ""),
    "exec": ("create", "", "pods", "exec", "web-0"),
    "secrets-read": ("get", "", "secrets", "", "db-password"),
}


@pytest.mark.parametrize(
    "role", ["view", "edit", "admin", "cluster-admin", "accessbot-view", "accessbot-edit"]
)
async def test_analysis_agrees_with_the_apiserver(
    kc: ClusterClient, cluster: TestCluster, role: str
) -> None:
    api = cluster.api_client()
    core, rbac_api = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    sa = f"probe-{role.replace('-', '')}"
    if sa not in {s.metadata.name for s in core.list_namespaced_service_account(NS).items}:
        core.create_namespaced_service_account(NS, {"metadata": {"name": sa}})
        rbac_api.create_namespaced_role_binding(NS, {
            "metadata": {"name": sa},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": NS}],
        })  # fmt: skip
    found = (await rbac.cluster_role_rules(kc, [role]))[role]
    analysed = rbac.analyse(found or [], namespaced=True)
    user = f"system:serviceaccount:{NS}:{sa}"
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{NS}", "system:authenticated"]
    authz = client.AuthorizationV1Api(api)
    for risk, (verb, group, resource, sub, name) in REQUESTS.items():
        review = authz.create_subject_access_review({
            "spec": {"user": user, "groups": groups, "resourceAttributes": {
                "namespace": NS, "verb": verb, "group": group, "resource": resource,
                "subresource": sub, "name": name}},
        })  # fmt: skip
        assert review.status.allowed == (risk in analysed), (role, risk)


async def test_an_edit_grant_leaves_a_token_behind_and_accessbot_edit_does_not(
    kc: ClusterClient, cluster: TestCluster, tmp_path: Path
) -> None:
    """The issue's scenario, end to end: why check fails on the built-in edit."""
    api = cluster.api_client()
    core = client.CoreV1Api(api)
    if "app-deployer" not in {
        s.metadata.name for s in core.list_namespaced_service_account(NS).items
    }:
        core.create_namespaced_service_account(NS, {"metadata": {"name": "app-deployer"}})
    outcomes: dict[str, bool] = {}
    for role in ("edit", "accessbot-edit"):
        spec = grants.GrantSpec(
            grant_id=f"risk{role.replace('-', '')}"[:20],
            requester="U0MALLORY",
            handle="mallory",
            role=role,
            cluster_role=role,
            scope="namespace",
            namespace=NS,
            sa_namespace=SA_NS,
            expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30),
        )
        token = await grants.provision(kc, spec)
        path = tmp_path / f"{role}.kubeconfig"
        path.write_text(_kubeconfig(kc, spec.sa_name, token.token))
        minted = cluster.kubectl(
            "create", "token", "app-deployer", "-n", NS, "--duration=8760h",
            kubeconfig=path, check=False,
        )  # fmt: skip
        await grants.revoke(kc, spec.grant_id)
        outcomes[role] = minted.returncode == 0
        if minted.returncode == 0:
            # The grant is gone; the token minted with it still works.
            leftover = tmp_path / "leftover.kubeconfig"
            leftover.write_text(_kubeconfig(kc, "app-deployer", minted.stdout.strip()))
            who = await _whoami_eventually(cluster, leftover)
            assert who == f"system:serviceaccount:{NS}:app-deployer"
        else:
            assert "forbidden" in minted.stderr.lower()
    assert outcomes == {"edit": True, "accessbot-edit": False}


def _kubeconfig(kc: ClusterClient, user: str, token: str) -> str:
    return render_kubeconfig(
        KubeconfigSpec(cluster="t", server=kc.server, ca_pem=kc.ca_data, user=user,
                       token=token, context="t", namespace=NS)
    )  # fmt: skip


async def _whoami_eventually(cluster: TestCluster, kubeconfig: Path) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        r = cluster.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}",
                            kubeconfig=kubeconfig, check=False)  # fmt: skip
        if r.returncode == 0 or loop.time() > deadline:
            return r.stdout.strip()
        await asyncio.sleep(0.2)


README = Path(__file__).resolve().parents[2] / "README.md"


def _table(heading: str) -> dict[str, list[str]]:
    """The first table under README's ``heading``: first cell (unquoted) -> the others."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0].split("`")[1]] = cells[1:]
    return rows


def test_readme_says_what_was_measured() -> None:
    """README's "Which roles leave access behind" and risk-name tables are the measured
    answers and the code's names, so the documentation cannot drift from what is proven."""
    stated = {
        name: cells[0] for name, cells in _table("### Which roles leave access behind").items()
    }
    as_listed = {
        "view": [],
        "edit": EDIT,
        "admin": ADMIN,
        "cluster-admin": MEASURED[("cluster-admin", True)],
        "accessbot-view": [],
        "accessbot-edit": MEASURED[("accessbot-edit", True)],
    }
    assert set(stated) == set(as_listed)
    for name, risks in as_listed.items():
        assert MEASURED[(name, True)] == risks
        text = stated[name]
        if name == "admin":
            assert text == "edit's, plus " + ", ".join(r for r in ADMIN if r not in EDIT)
        elif name == "cluster-admin":
            assert text.startswith("every risk")
            assert set(MEASURED[("cluster-admin", False)]) == set(rbac.RISKS)
        else:
            assert text == (", ".join(risks) or "none"), name
    names = _table("**Risk names**")
    assert list(names) == list(rbac.RISKS)
    blocking = {name for name, cells in names.items() if cells[-1] == "yes"}
    assert blocking == set(rbac.BLOCKING_RISKS)
    assert {cells[-1] for cells in names.values()} == {"yes", "no"}
