"""The Helm chart as helm renders it: lint, schema, RBAC derived from the policy,
hardening, and every manifest judged by the real apiserver (server-side dry run)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from bot.policy import parse_policy
from tests.deploy.chart import (
    CHART,
    SERVICE_MONITOR_CRD,
    VALUES_ALL,
    VALUES_EXTERNAL,
    bind_rules,
    documents,
    kinds,
    kubectl,
    one,
    run_helm,
    template,
    wait_for_crd,
)
from tests.support.cluster import TestCluster, ensure_namespaces

CASES = {"default": [], "all": [VALUES_ALL], "external": [VALUES_EXTERNAL]}


def render(
    testenv_bin: Path, helm_home: Path, case: str, *sets: str, policy: str | None = None
) -> list[dict[str, Any]]:
    policy_file = None
    if policy is not None:
        policy_file = helm_home / f"policy-{uuid.uuid4().hex}.yaml"
        policy_file.write_text(policy)
    return documents(
        template(testenv_bin, helm_home, values=CASES[case], sets=sets, policy=policy_file)
    )


CURATED = ("accessbot-edit", "accessbot-view")
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
}  # fmt: skip


def bot_role(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The bot's own ClusterRole (the others are the curated grant roles)."""
    [role] = [
        d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] not in CURATED
    ]
    return role


def policy_of(docs: list[dict[str, Any]]) -> str:
    text: str = one(docs, "ConfigMap")["data"]["policy.yaml"]
    return text


def values_policy(path: Path | None) -> str:
    source = path or CHART / "values.yaml"
    text: str = yaml.safe_load(source.read_text())["policy"]
    return text


# -- lint and schema -----------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_lint_strict(testenv_bin: Path, helm_home: Path, case: str) -> None:
    args = ["lint", "--strict", str(CHART)]
    for path in CASES[case]:
        args += ["-f", str(path)]
    out = run_helm(testenv_bin, helm_home, *args)
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("--set-string=replicaCount=two", ["/replicaCount", "got string, want integer"]),
        ("--set=policy.roles.view.scope=global", ["/policy", "want string"]),
        ("--set=replicas=3", ["replicas", "additional properties"]),
        ("--set=networkPolicy.kubeApiPorts[0]=https", ["/networkPolicy/kubeApiPorts/0"]),
        ("--set=logFormat=xml", ["/logFormat", "json", "console"]),
    ],
)
def test_schema_rejects_wrong_values_with_a_clear_message(
    testenv_bin: Path, helm_home: Path, flag: str, expected: list[str]
) -> None:
    out = run_helm(testenv_bin, helm_home, "template", "ab", str(CHART), flag, check=False)
    assert out.returncode != 0
    assert "values don't meet the specifications of the schema" in out.stderr
    for words in expected:
        assert words in out.stderr, out.stderr


@pytest.mark.parametrize(
    ("sets", "policy", "message"),
    [
        (["redis.url=redis://r:6379/0"], None, "give only one of redis.url, redis.existingSecret"),
        (["redis.bundled.enabled=false"], None, "set redis.url (a managed Redis)"),
        (["redis.bundled.enabled=false", "redis.url=http://r"], None, "redis.url must start"),
        ([], "roles: [x", "policy: not valid YAML"),
        ([], "roles: {}", "policy: needs a `clusters:` mapping"),
        ([], "clusters: {a: {in_cluster: true}}\nroles: [view]", "policy: needs a `roles:`"),
        ([], "clusters: {a: {in_cluster: true}}\nroles: {v: {scope: namespace}}",
         "policy: roles.v.cluster_role must be the name of a ClusterRole"),
        ([], "clusters: {a: {in_cluster: true}}\nroles: {v: {cluster_role: view, clusters: a}}",
         "policy: roles.v.clusters must be a list"),
        # Every namespace role says where it may be granted (no implicit "anywhere").
        ([], "clusters: {a: {in_cluster: true}}\n"
             "roles: {v: {cluster_role: view, scope: namespace}}",
         "policy: roles.v (scope: namespace) needs `namespaces:`"),
        ([], "clusters: {a: {in_cluster: true}}\n"
             "roles: {v: {cluster_role: view, scope: namespace, namespaces: []}}",
         "policy: roles.v (scope: namespace) needs `namespaces:`"),
        ([], "clusters: {a: {in_cluster: true}}\n"
             "roles: {v: {cluster_role: view, scope: namespace, namespaces: team-*}}",
         "policy: roles.v (scope: namespace) needs `namespaces:`"),
        ([], "clusters: {a: {in_cluster: true}}\nprotected_namespaces: infra-*\n"
             "roles: {v: {cluster_role: view, scope: cluster}}",
         "policy: protected_namespaces must be a list of namespace patterns"),
    ],
)  # fmt: skip
def test_values_that_cannot_work_fail_with_a_clear_message(
    testenv_bin: Path, helm_home: Path, sets: list[str], policy: str | None, message: str
) -> None:
    with pytest.raises(AssertionError) as failed:
        render(testenv_bin, helm_home, "default", *sets, policy=policy)
    assert message in str(failed.value)


# -- what each values file renders ------------------------------------------------------


def test_default_values_render_a_complete_install(testenv_bin: Path, helm_home: Path) -> None:
    docs = render(testenv_bin, helm_home, "default")
    assert kinds(docs) == sorted(
        [
            "ClusterRole", "ClusterRole", "ClusterRole", "ClusterRoleBinding", "ConfigMap",
            "Deployment", "Namespace", "NetworkPolicy", "NetworkPolicy", "PodDisruptionBudget",
            "Role", "RoleBinding", "Secret", "Secret", "Service", "Service", "ServiceAccount",
            "StatefulSet", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
        ]
    )  # fmt: skip
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "accessbot"
        assert labels["app.kubernetes.io/instance"] == "ab"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"]["namespace"] in {"accessbot", "accessbot-users"}
    users_ns = one(docs, "Namespace")
    assert users_ns["metadata"]["name"] == "accessbot-users"
    assert users_ns["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # The bundled Redis: one replica, a volume, a password the bot's URL carries.
    redis = one(docs, "StatefulSet")
    assert redis["spec"]["replicas"] == 1
    assert redis["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"] == {
        "storage": "1Gi"
    }
    env = {
        e["name"]: e
        for e in one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["REDIS_URL"]["value"] == (
        "redis://:$(REDIS_PASSWORD)@ab-accessbot-redis.accessbot.svc:6379/0"
    )
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "ab-accessbot-redis"


def test_all_options_render_every_optional_object(testenv_bin: Path, helm_home: Path) -> None:
    docs = render(testenv_bin, helm_home, "all")
    assert kinds(docs) == sorted(
        [
            "ClusterRole", "ClusterRole", "ClusterRole", "ClusterRoleBinding", "ConfigMap",
            "Deployment", "Ingress", "Namespace", "NetworkPolicy", "PodDisruptionBudget", "Role",
            "RoleBinding", "Secret", "Service", "ServiceAccount", "ServiceMonitor",
            "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
        ]
    )  # fmt: skip
    secret = one(docs, "Secret")
    assert sorted(secret["data"]) == [
        "ACCESSBOT_OFFBOARD_SECRET", "REDIS_URL", "SLACK_APP_TOKEN", "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
    ]  # fmt: skip
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "accessbot-bot"
    container = pod["containers"][0]
    assert container["image"] == "registry.example.com/platform/accessbot:0.1.0"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBECONFIG"] == "/etc/accessbot/kubeconfig/config"
    assert env["SLACK_API_URL"] == "https://slack-proxy.example.com/api/"
    assert env["HTTPS_PROXY"] == "http://proxy.example.com:3128"
    # From the chart's Secret, since the URL may carry a password.
    assert env["REDIS_URL"] is None
    redis_url = next(e for e in container["env"] if e["name"] == "REDIS_URL")
    assert redis_url["valueFrom"]["secretKeyRef"] == {"name": "accessbot-all", "key": "REDIS_URL"}
    ingress = one(docs, "Ingress")
    paths = ingress["spec"]["rules"][0]["http"]["paths"]
    # Only what Slack and the HR system call; /metrics and the probes stay inside.
    assert [(p["path"], p["pathType"]) for p in paths] == [
        ("/slack/events", "Exact"),
        ("/hooks/offboard", "Exact"),
    ]
    assert ingress["spec"]["tls"][0]["hosts"] == ["accessbot.example.com"]
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "15s", "scrapeTimeout": "5s"}
    ]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["name"] == "http"
    egress = one(docs, "NetworkPolicy")["spec"]["egress"]
    assert {"port": 6380, "protocol": "TCP"} in [
        p for rule in egress for p in rule.get("ports", [])
    ]


def test_external_secrets_and_remote_clusters_only(testenv_bin: Path, helm_home: Path) -> None:
    docs = render(testenv_bin, helm_home, "external")
    # No in_cluster cluster: the bot needs nothing from this cluster, and gets nothing.
    assert kinds(docs) == sorted(
        ["ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Service",
         "ServiceAccount"]
    )  # fmt: skip
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    assert container["image"].endswith("@sha256:" + "0123456789abcdef" * 4)
    assert container["envFrom"] == [{"secretRef": {"name": "accessbot-slack"}}]
    redis_url = next(e for e in container["env"] if e["name"] == "REDIS_URL")
    assert redis_url["valueFrom"]["secretKeyRef"] == {"name": "accessbot-redis", "key": "url"}
    assert "checksum/secret" not in pod.get("annotations", {})


def test_existing_slack_secret_with_a_redis_url(testenv_bin: Path, helm_home: Path) -> None:
    docs = render(
        testenv_bin, helm_home, "default",
        "slack.existingSecret=slack", "slack.botToken=xoxb-ignored",
        "redis.bundled.enabled=false", "redis.url=redis://:pw@redis:6379/0",
    )  # fmt: skip
    # The chart's Secret keeps only the Redis URL; the Slack secrets come from "slack".
    assert sorted(one(docs, "Secret")["data"]) == ["REDIS_URL"]
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "slack"}}]
    redis_url = next(e for e in container["env"] if e["name"] == "REDIS_URL")
    assert redis_url["valueFrom"]["secretKeyRef"] == {"name": "ab-accessbot", "key": "REDIS_URL"}


@pytest.mark.parametrize("case", ["default", "all"])
def test_deployment_is_hardened_and_probed(testenv_bin: Path, helm_home: Path, case: str) -> None:
    deployment = one(render(testenv_bin, helm_home, case), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's user
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["args"] == ["serve"]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["resources"]["limits"]["memory"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ACCESSBOT_POLICY"] == "/etc/accessbot/policy.yaml"
    assert env["ACCESSBOT_HTTP_PORT"] == "8080"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/accessbot/policy.yaml"]["readOnly"] is True
    assert "/tmp" in mounts  # the only writable place
    pdb = one(render(testenv_bin, helm_home, case), "PodDisruptionBudget")
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


def test_policy_change_rolls_the_pods(testenv_bin: Path, helm_home: Path) -> None:
    def checksums(*sets: str, policy: str | None = None) -> dict[str, str]:
        pod = one(render(testenv_bin, helm_home, "default", *sets, policy=policy), "Deployment")
        annotations: dict[str, str] = pod["spec"]["template"]["metadata"]["annotations"]
        return {k: v for k, v in annotations.items() if k.startswith("checksum/")}

    base = checksums()
    assert set(base) == {"checksum/policy", "checksum/secret"}
    assert checksums() == base  # stable: an unchanged upgrade restarts nothing
    edited = values_policy(None).replace("max_duration: 8h", "max_duration: 6h")
    changed = checksums(policy=edited)
    assert changed["checksum/policy"] != base["checksum/policy"]
    assert changed["checksum/secret"] == base["checksum/secret"]
    rotated = checksums("slack.botToken=xoxb-new")
    assert rotated["checksum/secret"] != base["checksum/secret"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_policy_configmap_is_a_valid_policy_verbatim(
    testenv_bin: Path, helm_home: Path, case: str
) -> None:
    rendered = policy_of(render(testenv_bin, helm_home, case))
    source = values_policy(CASES[case][0] if CASES[case] else None)
    assert rendered.strip() == source.strip()  # comments and all
    parse_policy(rendered, "ConfigMap policy.yaml")  # the bot accepts it


# -- RBAC ------------------------------------------------------------------------------


def local_cluster_roles(policy_text: str) -> list[str]:
    """What the bind rule must name, computed independently of the chart."""
    policy = parse_policy(policy_text)
    local = {name for name, c in policy.clusters.items() if c.in_cluster}
    return sorted(
        {
            r.cluster_role
            for r in policy.roles.values()
            if r.clusters is None or local.intersection(r.clusters)
        }
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("default", ["accessbot-edit", "accessbot-view"]),
        # cluster-admin is in this catalog, but only for the remote cluster.
        ("all", ["accessbot-view", "admin", "edit", "system:aggregate-to-view", "view"]),
    ],
)
def test_bind_rule_names_exactly_the_policy_cluster_roles(
    testenv_bin: Path, helm_home: Path, case: str, expected: list[str]
) -> None:
    docs = render(testenv_bin, helm_home, case)
    assert local_cluster_roles(policy_of(docs)) == expected
    [rule] = bind_rules(bot_role(docs))
    assert rule == {
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["clusterroles"],
        "verbs": ["bind"],
        "resourceNames": expected,
    }
    # Nothing the bot holds grants more than the listed verbs; `patch` only where the
    # admission policy narrows it to annotations.
    for doc in docs:
        if doc["kind"] not in {"Role", "ClusterRole"} or doc["metadata"]["name"] in CURATED:
            continue
        for r in doc["rules"]:
            assert "*" not in r["verbs"] + r["resources"] + r["apiGroups"]
            assert not {"escalate", "impersonate", "update", "deletecollection"} & set(r["verbs"])
            if "patch" in r["verbs"]:
                assert set(r["resources"]) <= {
                    "rolebindings", "clusterrolebindings", "serviceaccounts"
                }, r  # fmt: skip


def test_no_bind_rule_at_all_when_no_role_is_available_here(
    testenv_bin: Path, helm_home: Path
) -> None:
    policy = (
        "approvals_channel: C0APPROVALS\nadmins: [U0ADMIN]\n"
        "clusters: {here: {in_cluster: true}, there: {context: there}}\n"
        "roles: {ops: {cluster_role: cluster-admin, scope: cluster, max_duration: 1h,"
        " clusters: [there]}}\n"
    )
    docs = render(testenv_bin, helm_home, "default", policy=policy)
    cluster_role = bot_role(docs)
    # An empty resourceNames would mean every ClusterRole: the rule must be absent.
    assert bind_rules(cluster_role) == []
    assert all(r.get("resourceNames", None) != [] for r in cluster_role["rules"])


@pytest.mark.parametrize("case", ["default", "all"])
def test_service_accounts_only_in_the_users_namespace(
    testenv_bin: Path, helm_home: Path, case: str
) -> None:
    docs = render(testenv_bin, helm_home, case)
    users_ns = {"default": "accessbot-users", "all": "access-grants"}[case]
    role = one(docs, "Role")
    assert role["metadata"]["namespace"] == users_ns
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["serviceaccounts"],
         "verbs": ["create", "get", "list", "delete", "patch"]},
        {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
    ]  # fmt: skip
    binding = one(docs, "RoleBinding")
    sa = one(docs, "ServiceAccount")["metadata"]
    assert binding["metadata"]["namespace"] == users_ns
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["name"], "namespace": sa["namespace"]}
    ]
    cluster_resources = {res for r in bot_role(docs)["rules"] for res in r["resources"]}
    assert "serviceaccounts" not in cluster_resources
    assert "serviceaccounts/token" not in cluster_resources


def test_secrets_readable_only_with_the_helm_report(testenv_bin: Path, helm_home: Path) -> None:
    def secret_rules(docs: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
        return [
            (d["kind"], d["metadata"].get("namespace"))
            for d in docs
            if d["kind"] in {"Role", "ClusterRole"} and d["metadata"]["name"] not in CURATED
            for r in d["rules"]
            if "secrets" in r["resources"]
        ]

    assert secret_rules(render(testenv_bin, helm_home, "default")) == []
    assert secret_rules(render(testenv_bin, helm_home, "all")) == [("ClusterRole", None)]
    scoped = render(
        testenv_bin,
        helm_home,
        "default",
        "rbac.helmReport.enabled=true",
        "rbac.helmReport.namespaces={apps,web}",
    )
    assert secret_rules(scoped) == [("Role", "apps"), ("Role", "web")]


def test_standing_report_lists_secrets_only_when_enabled(
    testenv_bin: Path, helm_home: Path
) -> None:
    """/k8s standing: read-only RBAC always; `list` (never `get`) on Secrets only when enabled."""

    def rules(docs: list[dict[str, Any]], resource: str) -> list[list[str]]:
        return [r["verbs"] for r in bot_role(docs)["rules"] if resource in r["resources"]]

    default = render(testenv_bin, helm_home, "default")
    assert rules(default, "roles") == [["list"]]
    assert rules(default, "secrets") == []
    standing = render(testenv_bin, helm_home, "default", "rbac.standingReport.enabled=true")
    assert rules(standing, "secrets") == [["list"]]
    assert rules(standing, "roles") == [["list"]]
    # Helm's cluster-wide rule already lists; one rule, not two.
    both = render(testenv_bin, helm_home, "all")
    assert rules(both, "secrets") == [["list", "get"]]
    # Nothing here writes: the standing report is read-only.
    for verbs in rules(standing, "roles") + rules(standing, "secrets"):
        assert set(verbs) <= {"get", "list"}


def test_users_namespace_not_created_when_asked_not_to(testenv_bin: Path, helm_home: Path) -> None:
    off = render(testenv_bin, helm_home, "default", "rbac.createUsersNamespace=false")
    assert "Namespace" not in kinds(off)


def test_users_namespace_must_not_be_the_bots_own(testenv_bin: Path, helm_home: Path) -> None:
    # Grant ServiceAccounts beside the bot's: a binding "to a ServiceAccount in the users'
    # namespace" could then be a binding to the bot itself.
    with pytest.raises(AssertionError) as failed:
        template(testenv_bin, helm_home, namespace="accessbot-users")
    assert "the users' namespace must not be the release namespace (accessbot-users)" in str(
        failed.value
    )


# -- the real apiserver judges every manifest ----------------------------------------


@pytest.mark.cluster
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_manifest_accepted_by_the_apiserver(
    cluster: TestCluster, helm_home: Path, case: str
) -> None:
    ns = f"dryrun-{case}"
    ensure_namespaces(cluster, ns, "accessbot-users", "access-grants")
    kubectl(cluster.bin_dir, cluster.kubeconfig, "apply", "-f", "-", stdin=SERVICE_MONITOR_CRD)
    wait_for_crd(cluster, "servicemonitors.monitoring.coreos.com")
    manifest = template(cluster.bin_dir, helm_home, release=f"dry-{case}", namespace=ns,
                        values=CASES[case])  # fmt: skip
    docs = documents(manifest)
    out = kubectl(
        cluster.bin_dir, cluster.kubeconfig, "apply", "--dry-run=server", "-f", "-", stdin=manifest
    )
    accepted = [line for line in out.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(accepted) == len(docs), out.stdout


# -- the admission policy: what RBAC cannot say, rendered from the policy ----------------

GUARDED_POLICY = """\
approvals_channel: C0APPROVALS
admins: [U0ADMIN]
protected_namespaces: ["infra-*", "mon?", "db[!x]"]
clusters:
  here: {in_cluster: true, namespace: grants}
  there: {context: there, namespace: elsewhere}
roles:
  view: {cluster_role: accessbot-view, scope: namespace, namespaces: ["team-*", "web"],
         max_duration: 1h}
  api: {cluster_role: accessbot-view, scope: namespace, namespaces: ["api.v1"], max_duration: 1h}
  edit: {cluster_role: accessbot-edit, scope: namespace, namespaces: ["team-?"], max_duration: 1h}
  audit: {cluster_role: view, scope: cluster, max_duration: 1h}
  remote: {cluster_role: cluster-admin, scope: cluster, max_duration: 1h, clusters: [there]}
"""


def admission(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    return one(docs, "ValidatingAdmissionPolicy"), one(docs, "ValidatingAdmissionPolicyBinding")


def validation(vap: dict[str, Any], message_start: str) -> str:
    [found] = [v for v in vap["spec"]["validations"] if v["message"].startswith(message_start)]
    assert found["reason"] == "Forbidden"
    expression: str = found["expression"]
    return " ".join(expression.split())


def test_admission_policy_applies_to_the_bot_alone_and_denies(
    testenv_bin: Path, helm_home: Path
) -> None:
    vap, binding = admission(render(testenv_bin, helm_home, "default", policy=GUARDED_POLICY))
    spec = vap["spec"]
    assert spec["failurePolicy"] == "Fail"  # an error in a check refuses, never allows
    assert spec["matchConditions"] == [
        {
            "name": "is-the-bot",
            "expression": (
                'request.userInfo.username == "system:serviceaccount:accessbot:ab-accessbot"'
            ),
        }
    ]
    resources = {(tuple(r["apiGroups"]), tuple(r["resources"])): r["operations"]
                 for r in spec["matchConstraints"]["resourceRules"]}  # fmt: skip
    assert resources == {
        (("rbac.authorization.k8s.io",), ("rolebindings", "clusterrolebindings")):
            ["CREATE", "UPDATE", "DELETE"],
        (("",), ("serviceaccounts", "serviceaccounts/token")): ["CREATE", "UPDATE", "DELETE"],
    }  # fmt: skip
    assert binding["spec"] == {"policyName": vap["metadata"]["name"], "validationActions": ["Deny"]}


def test_admission_policy_carries_the_catalog_and_protected_namespaces(
    testenv_bin: Path, helm_home: Path
) -> None:
    vap, _ = admission(render(testenv_bin, helm_home, "default", policy=GUARDED_POLICY))
    variables = {v["name"]: v["expression"] for v in vap["spec"]["variables"]}
    assert variables["usersNamespaces"] == '["grants"]'  # this cluster's only
    # Every cluster's users' namespace, the other cluster's too: one rule everywhere.
    assert yaml.safe_load(variables["protectedNamespaces"]) == [
        "accessbot", "elsewhere", "grants", "kube-node-lease", "kube-public", "kube-system",
    ]  # fmt: skip
    # fnmatch globs become anchored RE2: `*` any run, `?` one character, `[!x]` a negated
    # set; everything else literal (the `.` of api.v1 included).
    protected = validation(vap, "AccessBot may not bind in a protected namespace")
    assert 'request.namespace.matches("^(?:infra-.*|mon.|db[^x])$")' in protected
    namespaced = validation(vap, "a RoleBinding made by AccessBot")
    assert (
        '(object.roleRef.name == "accessbot-edit" && request.namespace.matches("^(?:team-.)$"))'
    ) in namespaced
    assert (
        '(object.roleRef.name == "accessbot-view" && '
        'request.namespace.matches("^(?:api\\\\.v1|team-.*|web)$"))'
    ) in namespaced
    assert '"view"' not in namespaced  # a cluster-wide role is no namespace role
    cluster_wide = validation(vap, "a ClusterRoleBinding made by AccessBot")
    # cluster-admin is a role of the other cluster only.
    assert 'object.roleRef.name in ["view"]' in cluster_wide


@pytest.mark.parametrize(
    ("durations", "longest"),
    [
        (["8h", "1h"], 28800),
        ([7200, "1h"], 7200),  # whole seconds, as bot/durations.py accepts them
        (["1d2h3m4s"], 93784),
        (["5m"], 600),  # the TokenRequest API's floor
        ([" 3H "], 10800),  # spelled the way the bot tolerates
    ],
)
def test_admission_policy_caps_tokens_at_the_longest_max_duration(
    testenv_bin: Path, helm_home: Path, durations: list[object], longest: int
) -> None:
    roles = ", ".join(
        f"r{i}: {{cluster_role: view, scope: cluster, max_duration: {json.dumps(d)}}}"
        for i, d in enumerate(durations)
    )
    # A longer role of another cluster needs no token here.
    policy = (
        "approvals_channel: C0A\nadmins: [U0A]\n"
        "clusters: {here: {in_cluster: true}, there: {context: there}}\n"
        f"roles: {{{roles}, far: {{cluster_role: view, scope: cluster, max_duration: 30d,"
        " clusters: [there]}}\n"
    )
    vap, _ = admission(render(testenv_bin, helm_home, "default", policy=policy))
    cap = validation(vap, "AccessBot may request tokens of at most")
    assert cap.endswith(f"object.spec.expirationSeconds <= {longest})")


@pytest.mark.parametrize(
    ("sets", "policy"),
    [
        (["rbac.admissionPolicy.enabled=false"], None),
        # No in_cluster cluster: nothing of this cluster is the bot's to guard.
        ([], "approvals_channel: C0A\nadmins: [U0A]\nclusters: {x: {context: x}}\n"
             "roles: {v: {cluster_role: view, scope: cluster, max_duration: 1h}}\n"),
    ],
)  # fmt: skip
def test_no_admission_policy_when_off_or_nothing_to_guard(
    testenv_bin: Path, helm_home: Path, sets: list[str], policy: str | None
) -> None:
    docs = render(testenv_bin, helm_home, "default", *sets, policy=policy)
    assert not {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} & set(kinds(docs))


def test_deployment_tells_the_bot_its_own_namespace(testenv_bin: Path, helm_home: Path) -> None:
    container = one(render(testenv_bin, helm_home, "default"), "Deployment")["spec"]["template"][
        "spec"
    ]["containers"][0]
    [env] = [e for e in container["env"] if e["name"] == "ACCESSBOT_NAMESPACE"]
    assert env["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


# -- the curated grant roles ---------------------------------------------------------------

Triple = tuple[str, str, str]  # (apiGroup, resource, verb)


def triples(rules: list[dict[str, Any]]) -> set[Triple]:
    return {
        (group, resource, verb)
        for r in rules
        for group in r.get("apiGroups", [])
        for resource in r.get("resources", [])
        for verb in r["verbs"]
    }


def curated(docs: list[dict[str, Any]]) -> dict[str, set[Triple]]:
    return {name: triples(one(docs, "ClusterRole", name)["rules"]) for name in CURATED}


def test_curated_roles_hold_no_secret_token_impersonation_or_rbac(
    testenv_bin: Path, helm_home: Path
) -> None:
    roles = curated(render(testenv_bin, helm_home, "default"))
    for name, held in roles.items():
        assert not [t for t in held if t[1] == "secrets"], name
        assert not [t for t in held if t[1] == "serviceaccounts/token"], name
        assert not [t for t in held if t[2] in {"impersonate", "escalate", "bind", "*"}], name
        assert not [t for t in held if t[0] == "rbac.authorization.k8s.io"], name
        assert not [t for t in held if t[1] == "serviceaccounts" and t[2] not in READ], name
    assert {t[2] for t in roles["accessbot-view"]} == READ
    assert roles["accessbot-view"] < roles["accessbot-edit"]
    # Only made where grants are: this cluster is one of the policy's.
    external = render(testenv_bin, helm_home, "external")
    assert "ClusterRole" not in kinds(external)
    off = render(testenv_bin, helm_home, "default", "rbac.curatedRoles.create=false")
    assert [d["metadata"]["name"] for d in off if d["kind"] == "ClusterRole"] == ["ab-accessbot"]


READ = {"get", "list", "watch"}
# Served by no supported Kubernetes (removed in 1.16-1.22) but still named by the
# built-in roles.
GONE_GROUPS = {"extensions"}


@pytest.mark.cluster
def test_curated_roles_are_the_builtin_ones_minus_what_escalates(
    cluster: TestCluster, helm_home: Path
) -> None:
    """Compared with the apiserver's own view and edit (bootstrap policy of the Kubernetes
    version under test): exactly the documented difference, nothing more, nothing else."""
    rbac = client.RbacAuthorizationV1Api(cluster.api_client())

    def builtin(name: str) -> set[Triple]:
        rules = [r.to_dict() for r in rbac.read_cluster_role(name).rules or []]
        held = triples([{**r, "apiGroups": r["api_groups"]} for r in rules])
        return {t for t in held if t[0] not in GONE_GROUPS}

    roles = curated(documents(template(cluster.bin_dir, helm_home)))
    view, edit = builtin("view"), builtin("edit")
    assert view, "the test apiserver's view role is empty (aggregation did not run)"
    assert roles["accessbot-view"] == view
    assert roles["accessbot-edit"] <= edit
    left_out = edit - roles["accessbot-edit"]
    assert left_out == (
        {t for t in edit if t[1] == "secrets"}
        | {t for t in edit if t[1] == "serviceaccounts" and t[2] not in READ}
        | {("", "serviceaccounts/token", "create")}
    )
