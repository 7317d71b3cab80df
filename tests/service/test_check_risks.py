"""`accessbot check` lists each role's escape paths and fails on unaccepted ones."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from tests.service.test_cli import accessbot
from tests.support.cluster import REPO, TestCluster, combined_kubeconfig, ensure_namespaces
from tests.support.curated_roles import curated_roles

pytestmark = pytest.mark.cluster

HEAD = """
approvals_channel: C0APPROVALS
admins: ["U0ADMIN"]
clusters:
  a: {context: a}
roles:
"""


def run_check(
    tmp_path: Path,
    redis_url: str,
    cluster: TestCluster,
    roles: str,
    *,
    kubeconfig: Path | None = None,
) -> tuple[int, str]:
    ensure_namespaces(cluster, "accessbot-users")
    if kubeconfig is None:
        kubeconfig = combined_kubeconfig(tmp_path / "kubeconfig", {"a": cluster})
    (tmp_path / "policy.yaml").write_text(HEAD + roles)
    env = {
        "REDIS_URL": redis_url,
        "KUBECONFIG": str(kubeconfig),
        "SLACK_BOT_TOKEN": "xoxb-t",
        "SLACK_SIGNING_SECRET": "s",
    }
    with curated_roles(cluster):
        r = accessbot("check", env=env, cwd=tmp_path)
    assert "Traceback" not in r.stdout + r.stderr
    return r.returncode, r.stdout


def test_built_in_edit_without_accepts_risks_fails_naming_the_paths(
    tmp_path: Path, redis_url: str, cluster: TestCluster
) -> None:
    code, out = run_check(tmp_path, redis_url, cluster, """
  edit: {cluster_role: edit, scope: namespace, namespaces: ["team-*"], max_duration: 4h}
""")  # fmt: skip
    assert code == 1, out
    line = next(ln for ln in out.splitlines() if "role edit on a" in ln)
    assert line.startswith("✗")
    for risk in ("token-minting", "impersonation", "pod-create", "exec", "secrets-read"):
        assert risk in line
    assert "not accepted: token-minting: can mint credentials" in out
    assert "impersonation: can act as another user" in out
    assert "1 problem(s)" in out


def test_accepting_exactly_the_blocking_risks_passes(
    tmp_path: Path, redis_url: str, cluster: TestCluster
) -> None:
    code, out = run_check(tmp_path, redis_url, cluster, """
  edit: {cluster_role: edit, scope: namespace, namespaces: ["team-*"], max_duration: 4h,
         accepts_risks: [token-minting, impersonation]}
  only-one: {cluster_role: edit, scope: namespace, namespaces: ["team-*"], max_duration: 4h,
             accepts_risks: [token-minting]}
""")  # fmt: skip
    assert code == 1, out
    assert "✓ role edit on a: ClusterRole edit: token-minting, impersonation, pod-create, " \
        "exec, secrets-read (accepted: token-minting, impersonation)" in out  # fmt: skip
    failing = [ln for ln in out.splitlines() if ln.startswith("✗")]
    assert len(failing) == 1
    assert "role only-one on a" in failing[0]
    assert "not accepted: impersonation:" in out
    assert "not accepted: token-minting" not in out


def test_curated_roles_and_view_pass(tmp_path: Path, redis_url: str, cluster: TestCluster) -> None:
    code, out = run_check(tmp_path, redis_url, cluster, """
  view: {cluster_role: accessbot-view, scope: namespace, namespaces: ["team-*"], max_duration: 8h,
         approvals: 0}
  edit: {cluster_role: accessbot-edit, scope: namespace, namespaces: ["team-*"], max_duration: 4h}
  builtin-view: {cluster_role: view, scope: namespace, namespaces: ["*"], max_duration: 8h}
""")  # fmt: skip
    assert code == 0, out
    assert "✓ role view on a: ClusterRole accessbot-view: no escape paths" in out
    assert "✓ role edit on a: ClusterRole accessbot-edit: pod-create, exec" in out
    assert "✓ role builtin-view on a: ClusterRole view: no escape paths" in out


def test_cluster_admin_and_missing_roles(
    tmp_path: Path, redis_url: str, cluster: TestCluster
) -> None:
    code, out = run_check(tmp_path, redis_url, cluster, """
  root: {cluster_role: cluster-admin, scope: cluster, max_duration: 1h}
  ghost: {cluster_role: no-such-role, scope: namespace, namespaces: ["team-*"], max_duration: 1h}
""")  # fmt: skip
    assert code == 1, out
    root = next(ln for ln in out.splitlines() if "role root on a" in ln)
    assert root.endswith(
        "token-minting, impersonation, escalation, rbac-write, pod-create, exec, "
        "secrets-read, node-proxy, wildcard"
    )
    assert "escalation: can grant permissions it does not hold" in out
    assert "rbac-write: can write Roles or bindings" in out
    assert "✗ role ghost on a: ClusterRole no-such-role does not exist" in out
    assert "2 problem(s)" in out


def test_an_identity_that_cannot_read_cluster_roles_is_told_what_it_needs(
    tmp_path: Path, redis_url: str, cluster: TestCluster
) -> None:
    api = cluster.api_client()
    ensure_namespaces(cluster, "check-probe")
    core = client.CoreV1Api(api)
    if "blind" not in {
        s.metadata.name for s in core.list_namespaced_service_account("check-probe").items
    }:
        core.create_namespaced_service_account("check-probe", {"metadata": {"name": "blind"}})
    token = core.create_namespaced_service_account_token(
        "blind", "check-probe", {"spec": {"expirationSeconds": 600}}
    ).status.token
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"] = [{"name": "blind", "user": {"token": token}}]
    config["contexts"] = [{"name": "a", "context": {
        "cluster": config["clusters"][0]["name"], "user": "blind"}}]  # fmt: skip
    config["current-context"] = "a"
    kubeconfig = tmp_path / "blind.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    code, out = run_check(tmp_path, redis_url, cluster, """
  view: {cluster_role: accessbot-view, scope: namespace, namespaces: ["team-*"], max_duration: 8h}
""", kubeconfig=kubeconfig)  # fmt: skip
    assert code == 1, out
    assert re.search(r"cannot read ClusterRoles \(.*403.*\); the bot needs get and list", out), out


CHART_VALUES = REPO / "helm-chart" / "accessbot" / "values.yaml"


def test_the_charts_default_policy_passes(
    tmp_path: Path, redis_url: str, cluster: TestCluster
) -> None:
    """Acceptance: check on the chart's own default policy exits 0.

    The curated ClusterRoles are rendered from the chart itself and applied, and the
    policy's in-cluster cluster is reached through a kubeconfig context instead.
    """
    policy = yaml.safe_load(yaml.safe_load(CHART_VALUES.read_text())["policy"])
    for entry in policy["clusters"].values():
        entry.pop("in_cluster", None)
        entry["context"] = "a"
    ensure_namespaces(cluster, "accessbot-users")
    kubeconfig = combined_kubeconfig(tmp_path / "kubeconfig", {"a": cluster})
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    env = {"REDIS_URL": redis_url, "KUBECONFIG": str(kubeconfig),
           "SLACK_BOT_TOKEN": "xoxb-t", "SLACK_SIGNING_SECRET": "s"}  # fmt: skip
    with curated_roles(cluster) as names:
        assert set(names) >= {"accessbot-view", "accessbot-edit"}
        r = accessbot("check", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "✗" not in r.stdout
