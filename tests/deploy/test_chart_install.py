"""`helm install` into the real apiserver, then the bot's own k8s code as the chart's
ServiceAccount: every role of the policy works, anything outside it is refused by the
apiserver's RBAC authorizer (escalation prevention proven, not assumed).

No pod runs here (no kubelet): the test mints a token for the chart's ServiceAccount
through the TokenRequest API, exactly what the kubelet would mount into the pod.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from bot.lifecycle import State
from bot.policy import (
    AccessRequestSpec,
    Policy,
    RoleConfig,
    namespace_allowed,
    parse_policy,
    protected_namespace,
)
from k8s import grants, names
from k8s.clients import ClusterClient, ClusterRegistry, ClusterTarget, status_of
from k8s.errors import ClusterError
from k8s.helm import helm_report
from k8s.kubeconfig import KubeconfigSpec, render_kubeconfig
from k8s.nodes import nodes_report
from k8s.standing import standing_report
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
from tests.support.harness import default_directory, wait_for_grant, workflow_harness

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
    fullname: str  # the chart's object names, e.g. the bot's ClusterRole


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
    bindable = sorted(r.cluster_role for r in policy.roles.values())[0]
    wait_until_guarded(cluster, kubeconfig, bindable)
    yield Release(
        name,
        namespace,
        policy,
        users_ns,
        sa,
        kubeconfig,
        bool(case["helm_report"]),
        notes,
        deployment.metadata.name,
    )
    helm(cluster, home, "uninstall", name, "--namespace", namespace)


def wait_until_guarded(
    cluster: TestCluster, kubeconfig: Path, bindable: str, timeout: float = 60
) -> None:
    """The apiserver loads a new ValidatingAdmissionPolicy from its informer, a moment
    after `helm install` returns: wait until it refuses (a server-side dry run of) an
    unlabelled binding of a role the bot may bind, as it must from then on."""
    probe = yaml.safe_dump(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "guard-probe"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": bindable,
            },
            "subjects": [
                {"kind": "User", "name": "nobody", "apiGroup": "rbac.authorization.k8s.io"}
            ],
        }
    )
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        out = kubectl(cluster.bin_dir, kubeconfig, "create", "--dry-run=server", "-f", "-",
                      stdin=probe, check=False, timeout=30)  # fmt: skip
        last = out.stderr or out.stdout
        if "ValidatingAdmissionPolicy" in last:
            return
        time.sleep(0.2)
    raise AssertionError(f"the chart's admission policy is not enforced after {timeout}s: {last}")


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
        await grants.annotate_objects(bot, token.objects, {names.EXPIRES_AT: grants.rfc3339(later)})
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
        ("create", "subjectaccessreviews"),  # the revocation receipt's question
        # Annotations only: the admission policy refuses any other change.
        ("patch", "rolebindings", "-n", "some-team"),
        ("patch", "serviceaccounts", "-n", users),
        # Read-only, for the risk analysis of the catalog.
        ("get", "clusterroles/admin"),
        ("list", "clusterroles"),
        # Read-only, for /k8s standing.
        ("list", "roles", "-A"),
        ("list", "rolebindings", "-A"),
        *[("bind", f"clusterroles/{r.cluster_role}") for r in local_roles(release).values()],
    ]
    denied = [
        ("create", "serviceaccounts", "-n", "default"),
        ("create", "serviceaccounts", "--subresource=token", "-n", "kube-system"),
        ("bind", "clusterroles/cluster-admin"),
        ("escalate", "clusterroles"),
        ("create", "clusterroles"),
        ("update", "clusterrolebindings"),
        ("update", "clusterroles"),
        ("patch", "clusterroles"),
        ("patch", "serviceaccounts", "-n", "default"),
        ("impersonate", "users"),
        ("impersonate", "serviceaccounts"),
        ("delete", "validatingadmissionpolicies.admissionregistration.k8s.io"),
        ("update", "validatingadmissionpolicybindings.admissionregistration.k8s.io"),
        ("create", "pods", "-n", users),
        ("get", "configmaps", "-n", release.namespace),
        ("delete", "namespaces"),
        ("create", "roles", "-n", "some-team"),
        ("update", "roles", "-n", "some-team"),
    ]
    secrets = [("list", "secrets", "-A"), ("get", "secrets", "-n", "kube-system")]
    for args in allowed + (secrets if release.helm_report else []):
        assert can_i(cluster, release, *args), f"bot should be allowed: {args}"
    for args in denied + ([] if release.helm_report else secrets):
        assert not can_i(cluster, release, *args), f"bot must be denied: {args}"


async def test_the_receipt_checks_run_as_the_bot(release: Release, bot: ClusterClient) -> None:
    """The chart lets the bot verify an end: read its objects back, ask a SubjectAccessReview."""
    users = release.users_namespace
    sa = grants.ObjectRef("ServiceAccount", users, "nobody-gone", "uid-of-nothing")
    rb = grants.ObjectRef("RoleBinding", "some-team", "accessbot-nobody-gone", "uid-x")
    checks = await grants.verify_gone(
        bot,
        "gone",
        f"system:serviceaccount:{users}:nobody-gone",
        [sa, rb],
        [grants.Review("get", "pods", "", "some-team")],
    )
    assert [(c.gone, c.answer) for c in checks] == [
        (True, "404"),
        (True, "404"),
        (True, "not allowed"),
    ]


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

    # /k8s standing: RBAC read-only always; token Secrets only where the release allows
    # listing Secrets (values-all enables rbac.standingReport, the default does not).
    standing = await standing_report(bot)
    assert "Group system:masters" in standing.render_text()
    if release.helm_report:
        assert standing.gaps == ()
    else:
        assert [g for g in standing.gaps if "may not list Secrets" in g]


def test_notes_tell_the_operator_what_the_bot_may_do(release: Release) -> None:
    roles = ", ".join(sorted({r.cluster_role for r in local_roles(release).values()}))
    assert f"bind only these ClusterRoles: {roles}" in release.notes
    assert f"grant ServiceAccounts in: {release.users_namespace}" in release.notes
    assert f"kubectl -n {release.namespace} exec deploy/" in release.notes
    assert f"ValidatingAdmissionPolicy {release.fullname}-guard" in release.notes
    listed = release.notes.split("never in a protected one:")[1].split("\n   - ")[0]
    protected = listed.replace(",", " ").split()
    for ns in ("kube-system", "kube-public", release.namespace, release.users_namespace):
        assert ns in protected


# -- the escalation replay: the apiserver itself refuses, as the chart's ServiceAccount --
#
# A compromised bot holds its ServiceAccount token and nothing else. Each attempt below
# is made with the real kubectl and that token; each is a well-formed grant object
# except for exactly one thing, so each proves one rule of the chart's
# ValidatingAdmissionPolicy (or of its RBAC, where RBAC is what refuses).

MANAGED = {"app.kubernetes.io/managed-by": "accessbot", "accessbot.io/grant-id": "esc0001"}
GUARD = "ValidatingAdmissionPolicy"
PROTECTED = "AccessBot may not bind in a protected namespace"
ONE_SUBJECT = "must have exactly one subject, a ServiceAccount of its own"
CLUSTER_CATALOG = "may reference only a ClusterRole of the\npolicy's cluster-wide roles"
NS_CATALOG = "namespace roles, in a namespace their patterns allow"
NOT_OURS = "AccessBot may change or delete only objects it made"
UNLABELLED = "AccessBot may create or keep only objects labelled"
ANNOTATIONS_ONLY = "AccessBot may change only the annotations of its objects"
SA_NAMESPACE = "AccessBot may manage ServiceAccounts and request their tokens only"
NOT_HELD = "is attempting to grant RBAC permissions not currently held"


@dataclass(frozen=True)
class Catalog:
    """Concrete names for one release: a namespace role, where it may and may not go."""

    ns_role: str  # a ClusterRole the policy grants per namespace
    allowed_ns: str  # a namespace its patterns allow
    outside_ns: str  # an ordinary namespace no pattern of it allows
    grantee: dict[str, str]  # a ServiceAccount subject in the users' namespace


def catalog_of(release: Release, cluster: TestCluster) -> Catalog:
    roles = local_roles(release)
    cluster_wide = {r.cluster_role for r in roles.values() if r.scope == "cluster"}
    ns_role = next(
        r for r in roles.values() if r.scope == "namespace" and r.cluster_role not in cluster_wide
    )
    allowed = target_namespace(ns_role)
    assert allowed
    outside = "esc-outside"
    assert not any(
        namespace_allowed(r.namespaces, outside)
        for r in roles.values()
        if r.cluster_role == ns_role.cluster_role
    )
    ensure_namespaces(cluster, allowed, outside)
    grantee = {
        "kind": "ServiceAccount",
        "name": "esc-grantee",
        "namespace": release.users_namespace,
    }
    return Catalog(ns_role.cluster_role, allowed, outside, grantee)


def binding(
    kind: str,
    name: str,
    role: str,
    subjects: list[dict[str, str]],
    namespace: str | None = None,
    labels: dict[str, str] | None = None,
) -> str:
    meta: dict[str, object] = {"name": name, "labels": MANAGED if labels is None else labels}
    if namespace:
        meta["namespace"] = namespace
    return yaml.safe_dump(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": kind,
            "metadata": meta,
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": subjects,
        }
    )


def as_bot(cluster: TestCluster, release: Release, *args: str, stdin: str | None = None
           ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return kubectl(cluster.bin_dir, release.kubeconfig, *args, stdin=stdin, check=False, timeout=30)


def as_admin(cluster: TestCluster, *args: str, stdin: str | None = None
             ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return kubectl(cluster.bin_dir, cluster.kubeconfig, *args, stdin=stdin, timeout=30)


def assert_refused(out: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """The apiserver said no, with these words; returns its message for the record."""
    assert out.returncode != 0, f"the apiserver allowed it:\n{out.stdout}"
    message = " ".join(out.stderr.split())
    for fragment in fragments:
        assert " ".join(fragment.split()) in message, message
    return message


def absent(cluster: TestCluster, kind: str, name: str, namespace: str | None = None) -> bool:
    args = ["get", kind, name, "--ignore-not-found", "-o", "name"]
    if namespace:
        args += ["-n", namespace]
    return as_admin(cluster, *args).stdout.strip() == ""


ESCALATIONS = [
    "issue-edit-in-kube-system-to-the-bot",
    "catalog-role-in-kube-system",
    "into-the-users-namespace",
    "into-the-bots-own-namespace",
    "to-the-bots-own-service-account",
    "to-a-second-subject",
    "cluster-wide-to-a-group",
    "cluster-wide-with-a-namespace-role",
    "outside-the-roles-patterns",
    "a-role-outside-the-catalog",
    "unlabelled-binding",
]


@pytest.mark.parametrize("attempt", ESCALATIONS)
def test_a_forged_binding_is_refused_by_the_apiserver(
    release: Release, cluster: TestCluster, attempt: str
) -> None:
    cat = catalog_of(release, cluster)
    bot_sa = {"kind": "ServiceAccount", "name": release.service_account,
              "namespace": release.namespace}  # fmt: skip
    name = f"esc-{attempt}"[:60]
    rb = partial(binding, "RoleBinding", name)
    crb = partial(binding, "ClusterRoleBinding", name)
    cases: dict[str, tuple[list[str], str | None, tuple[str, ...], tuple[str, str | None]]] = {
        # The step from the issue, verbatim: RBAC refuses unless the policy names `edit`,
        # and then the guard does (an unlabelled binding, in a protected namespace).
        "issue-edit-in-kube-system-to-the-bot": (
            [
                "create",
                "rolebinding",
                name,
                "-n",
                "kube-system",
                "--clusterrole=edit",
                f"--serviceaccount={release.namespace}:{release.service_account}",
            ],
            None,
            (),
            ("rolebinding", "kube-system"),
        ),
        "catalog-role-in-kube-system": (
            [],
            rb(cat.ns_role, [cat.grantee], "kube-system"),
            (GUARD, PROTECTED),
            ("rolebinding", "kube-system"),
        ),
        "into-the-users-namespace": (
            [],
            rb(cat.ns_role, [cat.grantee], release.users_namespace),
            (GUARD, PROTECTED),
            ("rolebinding", release.users_namespace),
        ),
        "into-the-bots-own-namespace": (
            [],
            rb(cat.ns_role, [cat.grantee], release.namespace),
            (GUARD, PROTECTED),
            ("rolebinding", release.namespace),
        ),
        "to-the-bots-own-service-account": (
            [],
            rb(cat.ns_role, [bot_sa], cat.allowed_ns),
            (GUARD, ONE_SUBJECT),
            ("rolebinding", cat.allowed_ns),
        ),
        "to-a-second-subject": (
            [],
            rb(
                cat.ns_role,
                [
                    cat.grantee,
                    {"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"},
                ],
                cat.allowed_ns,
            ),
            (GUARD, ONE_SUBJECT),
            ("rolebinding", cat.allowed_ns),
        ),
        "cluster-wide-to-a-group": (
            [],
            crb(
                cat.ns_role,
                [
                    {
                        "kind": "Group",
                        "name": "system:authenticated",
                        "apiGroup": "rbac.authorization.k8s.io",
                    }
                ],
            ),
            (GUARD, ONE_SUBJECT),
            ("clusterrolebinding", None),
        ),
        "cluster-wide-with-a-namespace-role": (
            [],
            crb(cat.ns_role, [cat.grantee]),
            (GUARD, CLUSTER_CATALOG),
            ("clusterrolebinding", None),
        ),
        "outside-the-roles-patterns": (
            [],
            rb(cat.ns_role, [cat.grantee], cat.outside_ns),
            (GUARD, NS_CATALOG),
            ("rolebinding", cat.outside_ns),
        ),
        "a-role-outside-the-catalog": (
            [],
            rb("cluster-admin", [cat.grantee], cat.allowed_ns),
            (NOT_HELD,),
            ("rolebinding", cat.allowed_ns),
        ),
        "unlabelled-binding": (
            [],
            rb(cat.ns_role, [cat.grantee], cat.allowed_ns, labels={}),
            (GUARD, UNLABELLED),
            ("rolebinding", cat.allowed_ns),
        ),
    }
    args, manifest, fragments, (kind, ns) = cases[attempt]
    try:
        out = as_bot(cluster, release, *(args or ["create", "-f", "-"]), stdin=manifest)
        message = assert_refused(out, "forbidden", *fragments)
        print(f"{release.name} {attempt}: {message}")
        assert absent(cluster, kind, name, ns)
    finally:  # a binding that got through must not outlive the failed test
        as_admin(cluster, "delete", kind, name, "--ignore-not-found",
                 *(["-n", ns] if ns else []))  # fmt: skip


def test_the_well_formed_binding_itself_is_allowed(release: Release, cluster: TestCluster) -> None:
    """The forged bindings above differ from this one in one point each: it must pass,
    or the refusals prove nothing."""
    cat = catalog_of(release, cluster)
    manifest = binding("RoleBinding", "esc-control", cat.ns_role, [cat.grantee], cat.allowed_ns)
    as_bot(cluster, release, "create", "-f", "-", stdin=manifest).check_returncode()
    out = as_bot(cluster, release, "delete", "rolebinding", "esc-control", "-n", cat.allowed_ns)
    assert out.returncode == 0, out.stderr


def test_objects_it_never_made_are_out_of_its_reach(release: Release, cluster: TestCluster) -> None:
    cat = catalog_of(release, cluster)
    users = release.users_namespace
    foreign = f"esc-foreign-{release.name}"
    # Bindings of a role the bot may bind: RBAC alone would let it touch them.
    as_admin(cluster, "create", "clusterrolebinding", foreign, f"--clusterrole={cat.ns_role}",
             "--user=someone")  # fmt: skip
    as_admin(cluster, "create", "rolebinding", foreign, "-n", cat.allowed_ns,
             f"--clusterrole={cat.ns_role}", "--user=someone")  # fmt: skip
    as_admin(cluster, "create", "serviceaccount", foreign, "-n", users)
    try:
        messages = [
            # Delete a ClusterRoleBinding (or RoleBinding, ServiceAccount) it never made.
            assert_refused(
                as_bot(cluster, release, "delete", "clusterrolebinding", foreign), GUARD, NOT_OURS
            ),
            assert_refused(
                as_bot(cluster, release, "delete", "rolebinding", foreign, "-n", cat.allowed_ns),
                GUARD,
                NOT_OURS,
            ),
            assert_refused(
                as_bot(cluster, release, "delete", "serviceaccount", foreign, "-n", users),
                GUARD,
                NOT_OURS,
            ),
            # Forge the label onto it, to delete it next.
            assert_refused(
                as_bot(
                    cluster,
                    release,
                    "label",
                    "clusterrolebinding",
                    foreign,
                    "app.kubernetes.io/managed-by=accessbot",
                ),
                GUARD,
                NOT_OURS,
            ),
            # Its own ClusterRole: neither escalate it directly nor by impersonating the
            # controller that aggregates ClusterRoles.
            assert_refused(
                as_bot(
                    cluster,
                    release,
                    "patch",
                    "clusterrole",
                    release.fullname,
                    "--type=json",
                    "-p",
                    '[{"op":"add","path":"/rules/0/verbs/-","value":"*"}]',
                ),
                'cannot patch resource "clusterroles"',
            ),
            assert_refused(
                as_bot(
                    cluster,
                    release,
                    "--as=system:serviceaccount:kube-system:clusterrole-aggregation-controller",
                    "get",
                    "clusterroles",
                ),
                "cannot impersonate",
            ),
            # ServiceAccounts and tokens outside the users' namespace.
            assert_refused(
                as_bot(cluster, release, "create", "serviceaccount", "esc-sa", "-n", "default"),
                'cannot create resource "serviceaccounts"',
            ),
            assert_refused(
                as_bot(cluster, release, "create", "token", "default", "-n", "kube-system"),
                'cannot create resource "serviceaccounts/token"',
            ),
            # An unlabelled ServiceAccount where it may make them.
            assert_refused(
                as_bot(cluster, release, "create", "serviceaccount", "esc-sa", "-n", users),
                GUARD,
                UNLABELLED,
            ),
        ]
        for message in messages:
            print(f"{release.name}: {message}")
        assert not absent(cluster, "clusterrolebinding", foreign)
        assert not absent(cluster, "rolebinding", foreign, cat.allowed_ns)
        assert not absent(cluster, "serviceaccount", foreign, users)
        labels = as_admin(cluster, "get", "clusterrolebinding", foreign, "-o",
                          "jsonpath={.metadata.labels}").stdout  # fmt: skip
        assert "accessbot" not in labels
    finally:
        as_admin(cluster, "delete", "clusterrolebinding", foreign, "--ignore-not-found")
        as_admin(cluster, "delete", "rolebinding", foreign, "-n", cat.allowed_ns,
                 "--ignore-not-found")  # fmt: skip
        as_admin(cluster, "delete", "serviceaccount", foreign, "-n", users, "--ignore-not-found")


async def test_a_grant_works_end_to_end_and_only_its_annotations_may_change(
    release: Release, bot: ClusterClient, cluster: TestCluster
) -> None:
    """Approve → provision as the chart's ServiceAccount → kubeconfig → `kubectl get pods`;
    then the bot may annotate its binding but not re-point it."""
    cat = catalog_of(release, cluster)
    role_name = next(n for n, r in local_roles(release).items() if r.cluster_role == cat.ns_role)
    spec = spec_for(release, role_name, cat.ns_role, "namespace", cat.allowed_ns)
    token = await grants.provision(bot, spec)
    try:
        path = release.kubeconfig.with_name(f"{spec.grant_id}.kubeconfig")
        path.write_text(
            render_kubeconfig(
                KubeconfigSpec(
                    cluster="local",
                    server=cluster.server,
                    ca_pem=cluster.ca_pem,
                    user="deploy@local",
                    token=token.token,
                    context="local-view",
                    namespace=cat.allowed_ns,
                )
            )
        )
        pods = kubectl(cluster.bin_dir, path, "get", "pods", check=False, timeout=30)
        assert pods.returncode == 0, pods.stderr
        assert "No resources found" in pods.stderr
        if cat.ns_role.startswith("accessbot-"):  # a curated role: never Secrets
            secrets = kubectl(cluster.bin_dir, path, "get", "secrets", check=False, timeout=30)
            assert_refused(secrets, 'cannot list resource "secrets"')

        # Tokens no longer than the longest max_duration of the roles here.
        longest = max(
            600, *(int(r.max_duration.total_seconds()) for r in local_roles(release).values())
        )
        users = release.users_namespace
        minted = as_bot(cluster, release, "create", "token", spec.sa_name, "-n", users,
                        f"--duration={longest}s")  # fmt: skip
        assert minted.returncode == 0, minted.stderr
        too_long = as_bot(cluster, release, "create", "token", spec.sa_name, "-n", users,
                          f"--duration={longest + 1}s")  # fmt: skip
        print(f"{release.name}: {assert_refused(too_long, GUARD, f'at most {longest} seconds')}")

        name, ns = spec.binding_name, cat.allowed_ns
        annotated = as_bot(cluster, release, "annotate", "rolebinding", name, "-n", ns,
                           "accessbot.io/note=extended")  # fmt: skip
        assert annotated.returncode == 0, annotated.stderr
        annotated = as_bot(cluster, release, "annotate", "serviceaccount", spec.sa_name, "-n",
                           release.users_namespace, "accessbot.io/note=extended")  # fmt: skip
        assert annotated.returncode == 0, annotated.stderr
        other = {**cat.grantee, "name": "esc-other"}
        repoint = json.dumps([{"op": "replace", "path": "/subjects/0", "value": other}])
        refusals = [
            assert_refused(
                as_bot(
                    cluster,
                    release,
                    "patch",
                    "rolebinding",
                    name,
                    "-n",
                    ns,
                    "--type=json",
                    "-p",
                    repoint,
                ),
                GUARD,
                ANNOTATIONS_ONLY,
            ),
            assert_refused(
                as_bot(
                    cluster,
                    release,
                    "label",
                    "--overwrite",
                    "rolebinding",
                    name,
                    "-n",
                    ns,
                    "accessbot.io/grant-id=other",
                ),
                GUARD,
                ANNOTATIONS_ONLY,
            ),
            assert_refused(
                as_bot(
                    cluster,
                    release,
                    "label",
                    "rolebinding",
                    name,
                    "-n",
                    ns,
                    "app.kubernetes.io/managed-by-",
                ),
                GUARD,
                UNLABELLED,
            ),
        ]
        for message in refusals:
            print(f"{release.name}: {message}")
    finally:
        deleted = await grants.revoke(bot, spec.grant_id)
    assert len(deleted) == 2, deleted


async def test_approve_delivers_a_kubeconfig_that_works_with_the_chart_as_the_bot(
    release: Release, cluster: TestCluster, redis_url: str, tmp_path: Path
) -> None:
    """The issue's acceptance path through the bot's own workflow, with nothing but the
    chart's ServiceAccount token to reach the cluster: request → approve → kubeconfig →
    `kubectl get pods`; then revoke, and the kubeconfig stops working."""
    core_api = client.CoreV1Api(cluster.api_client())
    text = core_api.read_namespaced_config_map(release.fullname, release.namespace)
    doc = yaml.safe_load(text.data["policy.yaml"])
    local = [n for n, c in doc["clusters"].items() if c.get("in_cluster")]
    # The installed policy, with its in-cluster cluster reached through the bot's token
    # (the pod's in-cluster config) and roles kept to what is offered here.
    doc["clusters"] = {n: {"context": "bot", "namespace": release.users_namespace} for n in local}
    doc["roles"] = {
        name: role for name, role in doc["roles"].items()
        if not role.get("clusters") or set(role["clusters"]) & set(local)
    }  # fmt: skip
    for role in doc["roles"].values():
        if role.get("clusters"):
            role["clusters"] = [c for c in role["clusters"] if c in local]
    name, _ = next(
        (n, r) for n, r in doc["roles"].items() if r["scope"] == "namespace" and r["approvals"]
    )
    namespace = target_namespace(parse_policy(yaml.safe_dump(doc)).roles[name])
    assert namespace
    ensure_namespaces(cluster, namespace)
    directory = default_directory()
    for handle in doc.get("admins", []):
        if handle.startswith("@"):
            directory.groups.setdefault(handle[1:], set()).add("U0APPROVER")
    doc["admins"] = [*doc.get("admins", []), "U0APPROVER"]
    async with workflow_harness(
        redis_url,
        {},
        tmp_path,
        policy_text=yaml.safe_dump(doc),
        directory=directory,
        kubeconfig=release.kubeconfig,
    ) as h:
        spec = AccessRequestSpec(requester="U0ALICE", role=name, cluster=local[0],
                                 namespace=namespace, duration=None, reason="deploy")  # fmt: skip
        grant = await h.workflow.submit(spec)
        assert grant.state == State.PENDING
        await h.workflow.approve(grant.id, "U0APPROVER")
        active = await h.wait_state(grant.id, State.ACTIVE, State.FAILED)
        assert active.state == State.ACTIVE, active.failure
        (delivery,) = h.notifier.delivered_to(grant.id)
        path = tmp_path / "issued.kubeconfig"
        path.write_bytes(delivery.content)
        pods = kubectl(cluster.bin_dir, path, "get", "pods", "-n", namespace, check=False,
                       timeout=30)  # fmt: skip
        assert pods.returncode == 0, pods.stderr

        await h.workflow.revoke(grant.id, "U0ALICE")
        gone = await wait_for_grant(h.core, grant.id, lambda g: g.objects_gone_at is not None, 60)
        assert gone.state == State.REVOKED
    deadline = time.monotonic() + 30  # the apiserver caches token checks for ~10 s
    while True:
        after = kubectl(cluster.bin_dir, path, "get", "pods", "-n", namespace, check=False,
                        timeout=30)  # fmt: skip
        if after.returncode != 0:
            break
        assert time.monotonic() < deadline, "the revoked kubeconfig still works"
        time.sleep(0.5)


# A policy of its own: the `protected_namespaces` patterns and `namespaces` globs, judged
# by the apiserver's CEL engine (server-side dry runs as the chart's ServiceAccount).
GLOB_POLICY = """\
approvals_channel: C0APPROVALS
admins: [U0ADMIN]
protected_namespaces: ["infra-*", "mon?", "sec-[!x]"]
clusters:
  here: {in_cluster: true, namespace: glob-grants}
roles:
  view: {cluster_role: view, scope: namespace, namespaces: ["t-*", "mon?", "infra-x", "web",
         "sec-?", "u-[a-c]*"], max_duration: 1h}
  edit: {cluster_role: edit, scope: namespace, namespaces: ["t-?"], max_duration: 1h}
"""


@pytest.mark.parametrize(
    ("role", "namespace", "refusal"),
    [
        ("view", "t-anything", None),
        ("view", "web", None),
        ("edit", "t-a", None),
        ("edit", "t-ab", NS_CATALOG),  # `?` is one character
        ("view", "webx", NS_CATALOG),  # anchored: no prefix match
        ("view", "xweb", NS_CATALOG),
        ("view", "mon1", PROTECTED),  # a role's pattern never wins over a protected one
        ("view", "infra-x", PROTECTED),
        ("view", "glob-grants", PROTECTED),
        ("view", "kube-node-lease", PROTECTED),
        ("view", "glob-accessbot", PROTECTED),
        ("admin", "t-a", NOT_HELD),
    ],
)  # fmt: skip
def test_namespace_patterns_are_enforced_by_the_apiserver(
    glob_release: Path, cluster: TestCluster, role: str, namespace: str, refusal: str | None
) -> None:
    ensure_namespaces(cluster, namespace)
    grantee = {"kind": "ServiceAccount", "name": "g", "namespace": "glob-grants"}
    manifest = binding("RoleBinding", "glob-probe", role, [grantee], namespace)
    out = kubectl(cluster.bin_dir, glob_release, "create", "--dry-run=server", "-f", "-",
                  stdin=manifest, check=False, timeout=30)  # fmt: skip
    if refusal is None:
        assert out.returncode == 0, out.stderr
    else:
        assert_refused(out, refusal)


# Names at the edges of each glob form: the apiserver's CEL must decide each one as
# the bot's own fnmatch-based rules do (a second layer that disagreed would either let
# a compromised bot through or refuse the bot's real grants).
GLOB_PROBES = [
    "t-x", "tt-x", "t", "web", "web-1", "mon", "mon1", "mon12", "infra-x", "infra",
    "sec-x", "sec-a", "sec-1", "sec-xx", "u-a", "u-c9", "u-d", "u-0", "xu-a",
]  # fmt: skip


def test_the_guard_and_the_bot_agree_on_every_glob(
    glob_release: Path, cluster: TestCluster
) -> None:
    # The bot refuses GLOB_POLICY itself (its view role lists the protected infra-x by
    # name); the rule is the same without that entry.
    patterns = yaml.safe_load(GLOB_POLICY)["roles"]["view"]["namespaces"]
    loadable = GLOB_POLICY.replace('"infra-x", ', "")
    policy = parse_policy(loadable, bot_namespace="glob-accessbot")
    ensure_namespaces(cluster, *GLOB_PROBES)
    grantee = {"kind": "ServiceAccount", "name": "g", "namespace": "glob-grants"}
    disagreements = []
    decided = set()
    for namespace in GLOB_PROBES:
        bot_allows = namespace_allowed(patterns, namespace) and (
            protected_namespace(policy, "here", namespace) is None
        )
        decided.add(bot_allows)
        manifest = binding("RoleBinding", "glob-agree", "view", [grantee], namespace)
        out = kubectl(cluster.bin_dir, glob_release, "create", "--dry-run=server", "-f", "-",
                      stdin=manifest, check=False, timeout=30)  # fmt: skip
        if (out.returncode == 0) != bot_allows:
            disagreements.append((namespace, bot_allows, out.stderr.strip()))
    assert disagreements == []
    assert decided == {True, False}


@pytest.fixture(scope="module")
def glob_release(cluster: TestCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Install with GLOB_POLICY (the built-in view/edit: the curated roles belong to the
    other releases of this module); yields a kubeconfig of the chart's ServiceAccount."""
    home = tmp_path_factory.mktemp("helm-glob")
    policy = home / "policy.yaml"
    policy.write_text(GLOB_POLICY)
    helm(
        cluster, home, "install", "glob", str(CHART), "--namespace", "glob-accessbot",
        "--create-namespace", "--set-file", f"policy={policy}",
        "--set", "rbac.curatedRoles.create=false",
    )  # fmt: skip
    kubeconfig = token_kubeconfig(cluster, "glob-accessbot", "glob-accessbot", home / "bot")
    wait_until_guarded(cluster, kubeconfig, "view")
    yield kubeconfig
    helm(cluster, home, "uninstall", "glob", "--namespace", "glob-accessbot")


# -- what the guard keeps closed beyond labels, subjects and roleRef ------------------


def _own_binding(release: Release, cluster: TestCluster, name: str) -> str:
    """A well-formed grant binding, made as the bot; returns its namespace."""
    cat = catalog_of(release, cluster)
    manifest = binding("RoleBinding", name, cat.ns_role, [cat.grantee], cat.allowed_ns)
    as_admin(cluster, "delete", "rolebinding", name, "-n", cat.allowed_ns, "--ignore-not-found")
    as_bot(cluster, release, "create", "-f", "-", stdin=manifest).check_returncode()
    return cat.allowed_ns


def test_a_finalizer_cannot_keep_a_revoked_binding_in_force(
    release: Release, cluster: TestCluster
) -> None:
    """A terminating binding still authorizes: a finalizer would make "deleted" a lie."""
    ns = _own_binding(release, cluster, "esc-finalizer")
    patch = json.dumps({"metadata": {"finalizers": ["example.com/keep"]}})
    try:
        out = as_bot(cluster, release, "patch", "rolebinding", "esc-finalizer", "-n", ns,
                     "--type=merge", "-p", patch)  # fmt: skip
        assert out.returncode != 0, out.stdout
        assert "finalizers" in out.stderr
    finally:
        as_admin(cluster, "patch", "rolebinding", "esc-finalizer", "-n", ns, "--type=merge",
                 "-p", '{"metadata":{"finalizers":null}}')  # fmt: skip
        as_admin(cluster, "delete", "rolebinding", "esc-finalizer", "-n", ns, "--ignore-not-found")


def test_owner_references_cannot_be_added(release: Release, cluster: TestCluster) -> None:
    ns = _own_binding(release, cluster, "esc-owner")
    uid = as_admin(cluster, "create", "configmap", "esc-owner-cm", "-n", ns, "-o",
                   "jsonpath={.metadata.uid}").stdout  # fmt: skip
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "esc-owner-cm", "uid": uid}
    patch = json.dumps({"metadata": {"ownerReferences": [owner]}})
    try:
        out = as_bot(cluster, release, "patch", "rolebinding", "esc-owner", "-n", ns,
                     "--type=merge", "-p", patch)  # fmt: skip
        assert out.returncode != 0, out.stdout
    finally:
        as_admin(cluster, "delete", "rolebinding", "esc-owner", "-n", ns, "--ignore-not-found")
        as_admin(cluster, "delete", "configmap", "esc-owner-cm", "-n", ns, "--ignore-not-found")


def test_the_default_service_account_is_never_bound_nor_given_a_token(
    release: Release, cluster: TestCluster
) -> None:
    """Revocation deletes the grant's own ServiceAccount; `default` would outlive it."""
    cat = catalog_of(release, cluster)
    subject = {"kind": "ServiceAccount", "name": "default", "namespace": release.users_namespace}
    manifest = binding("RoleBinding", "esc-default", cat.ns_role, [subject], cat.allowed_ns)
    out = as_bot(cluster, release, "create", "-f", "-", stdin=manifest)
    as_admin(cluster, "delete", "rolebinding", "esc-default", "-n", cat.allowed_ns,
             "--ignore-not-found")  # fmt: skip
    assert out.returncode != 0, out.stdout
    assert absent(cluster, "rolebinding", "esc-default", cat.allowed_ns)
    kubectl(
        cluster.bin_dir,
        cluster.kubeconfig,
        "create",
        "serviceaccount",
        "default",
        "-n",
        release.users_namespace,
        check=False,
        timeout=30,
    )  # no controller makes it
    token = as_bot(cluster, release, "create", "token", "default", "-n",
                   release.users_namespace, "--duration=600s")  # fmt: skip
    assert token.returncode != 0, "minted a token for the users' namespace's default SA"
    assert "default ServiceAccount" in token.stderr
