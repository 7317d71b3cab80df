"""`helm install` into the real apiserver, then the bot's own k8s code as the chart's
ServiceAccount: every role of the policy works, anything outside it is refused by the
apiserver's RBAC authorizer (escalation prevention proven, not assumed).

No pod runs here (no kubelet): the test mints a token for the chart's ServiceAccount
through the TokenRequest API, exactly what the kubelet would mount into the pod.
"""

from __future__ import annotations

import base64
import datetime as dt
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from bot.policy import Policy, RoleConfig, namespace_allowed, parse_policy
from k8s import grants
from k8s.clients import ClusterClient, ClusterRegistry, ClusterTarget, status_of
from k8s.errors import ClusterError
from k8s.helm import helm_report
from k8s.nodes import nodes_report
from tests.deploy.chart import (
    CHART,
    SERVICE_MONITOR_CRD,
    VALUES_ALL,
    helm_env,
    kubectl,
    value_args,
    wait_for_crd,
)
from tests.support.cluster import TestCluster, ensure_namespaces

pytestmark = pytest.mark.cluster

NODE = "deploy-test-node"


@dataclass
class Release:
    name: str
    namespace: str
    policy: Policy
    users_namespace: str
    service_account: str
    kubeconfig: Path  # authenticates as the chart's ServiceAccount
    helm_report: bool
    notes: str


CASES = {
    # Exactly the chart's defaults, except that the shared test apiserver already has
    # an accessbot-users namespace made by other tests, which helm would refuse to adopt.
    "default": {"values": [], "sets": ["rbac.createUsersNamespace=false"], "helm_report": False},
    "all": {"values": [VALUES_ALL], "sets": [], "helm_report": True},
}


def helm(cluster: TestCluster, home: Path, *args: str) -> str:
    proc = subprocess.run(
        [str(cluster.bin_dir / "helm"), f"--kubeconfig={cluster.kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=helm_env(home),
    )
    assert proc.returncode == 0, f"helm {' '.join(args)}:\n{proc.stderr}"
    return proc.stdout


def token_kubeconfig(cluster: TestCluster, namespace: str, sa: str, path: Path) -> Path:
    """A kubeconfig whose user is a fresh TokenRequest token of ``sa`` (minted as admin)."""
    core = client.CoreV1Api(cluster.api_client())
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    token = core.create_namespaced_service_account_token(sa, namespace, request).status.token
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": cluster.server,
                    "certificate-authority-data": base64.b64encode(cluster.ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": "bot", "user": {"token": token}}],
        "contexts": [{"name": "bot", "context": {"cluster": "local", "user": "bot"}}],
        "current-context": "bot",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module", params=sorted(CASES))
def release(
    request: pytest.FixtureRequest,
    cluster: TestCluster,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Release]:
    case = CASES[request.param]
    home = tmp_path_factory.mktemp("helm-home")
    name, namespace = f"install-{request.param}", f"accessbot-{request.param}"
    ensure_namespaces(cluster, "accessbot-users")
    if case["values"]:
        kubectl(cluster.bin_dir, cluster.kubeconfig, "apply", "-f", "-", stdin=SERVICE_MONITOR_CRD)
        wait_for_crd(cluster, "servicemonitors.monitoring.coreos.com")
    out = helm(
        cluster,
        home,
        "install", name, str(CHART), "--namespace", namespace, "--create-namespace",
        *value_args(case["values"], case["sets"]),
    )  # fmt: skip
    notes = out[out.index("NOTES:") :]
    core = client.CoreV1Api(cluster.api_client())
    apps = client.AppsV1Api(cluster.api_client())
    # What the pods would run as, read back from the installed objects.
    deployment = apps.list_namespaced_deployment(namespace).items[0]
    sa = deployment.spec.template.spec.service_account_name
    config_map = core.read_namespaced_config_map(deployment.metadata.name, namespace)
    policy = parse_policy(config_map.data["policy.yaml"], "installed ConfigMap")
    [users_ns] = {c.namespace for c in policy.clusters.values() if c.in_cluster}
    kubeconfig = token_kubeconfig(cluster, namespace, sa, home / "bot.kubeconfig")
    yield Release(
        name, namespace, policy, users_ns, sa, kubeconfig, bool(case["helm_report"]), notes
    )
    helm(cluster, home, "uninstall", name, "--namespace", namespace)


@pytest.fixture
def bot(release: Release) -> Iterator[ClusterClient]:
    """The bot's k8s client, authenticated as the chart's ServiceAccount."""
    registry = ClusterRegistry(
        {
            "local": ClusterTarget(
                name="local",
                context="bot",
                kubeconfig=str(release.kubeconfig),
                sa_namespace=release.users_namespace,
            )
        }
    )
    yield registry["local"]
    registry.close()


def target_namespace(role: RoleConfig) -> str | None:
    """A namespace the role allows (made concrete from its first pattern)."""
    if role.scope == "cluster":
        return None
    pattern = role.namespaces[0]
    name = pattern.replace("*", "deploy").replace("?", "x")
    assert namespace_allowed(role.namespaces, name)
    return name


def spec_for(release: Release, role_name: str, cluster_role: str, scope: str, ns: str | None
             ) -> grants.GrantSpec:  # fmt: skip
    return grants.GrantSpec(
        grant_id=f"d{uuid.uuid4().hex[:12]}",
        requester="U0DEPLOY",
        handle="Deploy Tester",
        role=role_name,
        cluster_role=cluster_role,
        scope=scope,  # type: ignore[arg-type]
        namespace=ns,
        sa_namespace=release.users_namespace,
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=20),
        approved_by=("U0LEAD",),
    )


def local_roles(release: Release) -> dict[str, RoleConfig]:
    local = {n for n, c in release.policy.clusters.items() if c.in_cluster}
    return {
        name: role
        for name, role in release.policy.roles.items()
        if role.clusters is None or local.intersection(role.clusters)
    }


def can_i(cluster: TestCluster, release: Release, *args: str) -> bool:
    out = kubectl(
        cluster.bin_dir, release.kubeconfig, "auth", "can-i", *args, check=False, timeout=30
    )
    assert out.stdout.strip() in {"yes", "no"}, out.stderr
    return out.stdout.strip() == "yes"


# -- the tests -----------------------------------------------------------------------------


async def test_every_policy_role_provisions_verifies_and_revokes(
    release: Release, bot: ClusterClient, cluster: TestCluster
) -> None:
    roles = local_roles(release)
    assert len(roles) >= 2
    assert {r.scope for r in roles.values()} >= {"namespace"}
    specs = []
    for name, role in roles.items():
        ns = target_namespace(role)
        if ns:
            ensure_namespaces(cluster, ns)
        specs.append(spec_for(release, name, role.cluster_role, role.scope, ns))

    for spec in specs:
        token = await grants.provision(bot, spec)
        verified = await grants.verify(bot, spec, token)
        assert verified.username == spec.sa_user
        assert verified.rules > 0
        # An extension (or a capped token) moves the objects' own expiry.
        later = spec.expires_at + dt.timedelta(hours=1)
        await grants.set_expiry(bot, token.objects, later)
        moved = [o for o in await grants.list_managed(bot) if o.grant_id == spec.grant_id]
        assert [o.expires_at for o in moved] == [later.replace(microsecond=0)] * 2

    managed = await grants.list_managed(bot)
    ours = {o.grant_id for o in managed}
    assert {s.grant_id for s in specs} <= ours
    # The chart's own objects are Helm's, never mistaken for a grant (the reconciler
    # deletes what it lists).
    assert not [o for o in managed if o.name.startswith(release.service_account)]
    for spec in specs:
        kind = "ClusterRoleBinding" if spec.scope == "cluster" else "RoleBinding"
        mine = sorted(o.kind for o in managed if o.grant_id == spec.grant_id)
        assert mine == sorted([kind, "ServiceAccount"])

    for spec in specs:
        deleted = await grants.revoke(bot, spec.grant_id)
        assert len(deleted) == 2, deleted
    left = {o.grant_id for o in await grants.list_managed(bot)}
    assert not left & {s.grant_id for s in specs}


@pytest.mark.parametrize(
    ("cluster_role", "scope"),
    [("cluster-admin", "cluster"), ("cluster-admin", "namespace"), ("system:node", "cluster")],
)
async def test_binding_a_role_outside_the_policy_is_forbidden_by_the_apiserver(
    release: Release, bot: ClusterClient, cluster: TestCluster, cluster_role: str, scope: str
) -> None:
    bindable = {r.cluster_role for r in local_roles(release).values()}
    assert cluster_role not in bindable
    ns = "deploy-escalation" if scope == "namespace" else None
    if ns:
        ensure_namespaces(cluster, ns)
    spec = spec_for(release, "smuggled", cluster_role, scope, ns)

    with pytest.raises(ClusterError) as refused:
        await grants.provision(bot, spec)
    assert status_of(refused.value) == 403
    assert "403" in str(refused.value)

    rbac = client.RbacAuthorizationV1Api(cluster.api_client())
    read = (
        partial(rbac.read_namespaced_role_binding, spec.binding_name, ns)
        if ns
        else partial(rbac.read_cluster_role_binding, spec.binding_name)
    )
    with pytest.raises(client.ApiException) as missing:
        read()
    assert missing.value.status == 404
    # The ServiceAccount made before the refused binding is cleaned up as usual.
    assert await grants.revoke(bot, spec.grant_id) == [
        f"ServiceAccount {release.users_namespace}/{spec.sa_name}"
    ]


async def test_patch_cannot_widen_a_binding_to_a_role_outside_the_policy(
    release: Release, bot: ClusterClient, cluster: TestCluster
) -> None:
    """The bot may patch bindings (to move expires-at), but the apiserver's bind check
    on update means it cannot add anyone to a binding of a role it may not bind."""
    rbac = client.RbacAuthorizationV1Api(cluster.api_client())
    name = f"someone-elses-admin-{uuid.uuid4().hex[:6]}"
    rbac.create_cluster_role_binding(
        client.V1ClusterRoleBinding(
            metadata=client.V1ObjectMeta(name=name),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="cluster-admin"
            ),
            subjects=[client.RbacV1Subject(kind="User", name="root-of-all")],
        )
    )
    try:
        widened = {
            "subjects": [
                {"kind": "User", "name": "root-of-all"},
                {"kind": "ServiceAccount", "name": "evil", "namespace": release.users_namespace},
            ]
        }
        with pytest.raises(ClusterError) as refused:
            await bot.call(bot.rbac.patch_cluster_role_binding, name, widened)
        assert status_of(refused.value) == 403
        subjects = rbac.read_cluster_role_binding(name).subjects
        assert [s.name for s in subjects] == ["root-of-all"]
    finally:
        rbac.delete_cluster_role_binding(name)


def test_the_service_account_has_nothing_beyond_what_the_bot_calls(
    release: Release, cluster: TestCluster
) -> None:
    users = release.users_namespace
    allowed = [
        ("create", "serviceaccounts", "-n", users),
        ("delete", "serviceaccounts", "-n", users),
        ("create", "serviceaccounts", "--subresource=token", "-n", users),
        ("create", "rolebindings", "-n", "some-team"),
        ("patch", "rolebindings", "-n", "some-team"),  # the expires-at annotation
        ("patch", "serviceaccounts", "-n", users),
        ("delete", "clusterrolebindings"),
        ("list", "clusterrolebindings"),
        ("get", "namespaces"),
        ("list", "nodes"),
        ("create", "selfsubjectrulesreviews"),
        *[("bind", f"clusterroles/{r.cluster_role}") for r in local_roles(release).values()],
    ]
    denied = [
        ("create", "serviceaccounts", "-n", "default"),
        ("create", "serviceaccounts", "--subresource=token", "-n", "kube-system"),
        ("bind", "clusterroles/cluster-admin"),
        ("escalate", "clusterroles"),
        ("create", "clusterroles"),
        ("update", "clusterrolebindings"),
        ("patch", "serviceaccounts", "-n", "default"),
        ("impersonate", "users"),
        ("create", "pods", "-n", users),
        ("get", "configmaps", "-n", release.namespace),
        ("delete", "namespaces"),
    ]
    secrets = [("list", "secrets", "-A"), ("get", "secrets", "-n", "kube-system")]
    for args in allowed + (secrets if release.helm_report else []):
        assert can_i(cluster, release, *args), f"bot should be allowed: {args}"
    for args in denied + ([] if release.helm_report else secrets):
        assert not can_i(cluster, release, *args), f"bot must be denied: {args}"


async def test_reports_run_as_the_bot(
    release: Release, bot: ClusterClient, cluster: TestCluster
) -> None:
    core = client.CoreV1Api(cluster.api_client())
    core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=NODE)))
    try:
        nodes = await nodes_report(bot)
    finally:
        core.delete_node(NODE)
    assert NODE in [row.name for row in nodes.rows]

    if release.helm_report:
        report = await helm_report(bot)  # all namespaces, like helm ls -A
        mine = [r for r in report.rows if r.name == release.name]
        assert [(r.namespace, r.status, r.chart) for r in mine] == [
            (release.namespace, "deployed", "accessbot-0.1.0")
        ]
        scoped = await helm_report(bot, release.namespace)
        assert [r.name for r in scoped.rows] == [release.name]
    else:
        with pytest.raises(ClusterError) as refused:
            await helm_report(bot)
        assert status_of(refused.value) == 403


def test_notes_tell_the_operator_what_the_bot_may_do(release: Release) -> None:
    roles = ", ".join(sorted({r.cluster_role for r in local_roles(release).values()}))
    assert f"bind only these ClusterRoles: {roles}" in release.notes
    assert f"grant ServiceAccounts in: {release.users_namespace}" in release.notes
    assert f"kubectl -n {release.namespace} exec deploy/" in release.notes
