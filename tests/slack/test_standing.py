"""``/k8s standing`` and ``accessbot standing`` against a real apiserver, Slack emulated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

import k8s.standing
from bot.lifecycle import State
from k8s.clients import ClusterRegistry, ClusterTarget
from k8s.list_stream import each_item
from k8s.standing import standing_report
from tests.slack.support import APPROVALS, POLICY, SlackBed
from tests.support.cluster import REPO, TestCluster, combined_kubeconfig, ensure_namespaces

pytestmark = pytest.mark.cluster

NS = "std-team"
ROOT_USER = "std-root-user"
DEVS = "std-devs"
LEGACY_SA = "std-legacy"
TOKEN_SECRET = "std-legacy-token"
SECRET_VALUE = "std-never-read-by-the-report"
# What each seeded object reads as in the report, riskiest first.
EXPECTED = [
    f"full control: User {ROOT_USER} via ClusterRoleBinding std-root (ClusterRole cluster-admin)",
    f"can keep or widen access: Group {DEVS} via RoleBinding {NS}/std-devs-edit (ClusterRole edit)",
    f"never-expiring token: ServiceAccount {NS}/{LEGACY_SA} via Secret {NS}/{TOKEN_SECRET}",
]


def _rbac_subject(kind: str, name: str) -> client.RbacV1Subject:
    return client.RbacV1Subject(kind=kind, name=name, api_group="rbac.authorization.k8s.io")


def _seed(cluster: TestCluster) -> None:
    api = cluster.api_client()
    rbac, core = client.RbacAuthorizationV1Api(api), client.CoreV1Api(api)
    try:
        rbac.create_cluster_role_binding(
            client.V1ClusterRoleBinding(
                metadata=client.V1ObjectMeta(name="std-root"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="cluster-admin"
                ),
                subjects=[_rbac_subject("User", ROOT_USER)],
            )
        )
        rbac.create_namespaced_role_binding(
            NS,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="std-devs-edit"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="edit"
                ),
                subjects=[_rbac_subject("Group", DEVS)],
            ),
        )
        core.create_namespaced_service_account(
            NS, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=LEGACY_SA))
        )
        core.create_namespaced_secret(
            NS,
            client.V1Secret(
                metadata=client.V1ObjectMeta(
                    name=TOKEN_SECRET,
                    annotations={"kubernetes.io/service-account.name": LEGACY_SA},
                ),
                type="kubernetes.io/service-account-token",
                # What the report must never fetch: Secret data.
                string_data={"token": SECRET_VALUE},
            ),
        )
    finally:
        api.close()


def _unseed(cluster: TestCluster) -> None:
    cluster.kubectl("delete", "clusterrolebinding", "std-root", "--ignore-not-found")
    for kind, name in [
        ("rolebinding", "std-devs-edit"),
        ("secret", TOKEN_SECRET),
        ("serviceaccount", LEGACY_SA),
    ]:
        cluster.kubectl("delete", kind, name, "-n", NS, "--ignore-not-found")


@pytest.fixture
def seeded(cluster: TestCluster) -> Iterator[None]:
    ensure_namespaces(cluster, NS, "team-a", "accessbot-users")
    _unseed(cluster)
    _seed(cluster)
    try:
        yield
    finally:
        _unseed(cluster)


def _in_order(text: str, needles: list[str]) -> list[int]:
    at = [text.find(n) for n in needles]
    assert all(i >= 0 for i in at), [n for n, i in zip(needles, at, strict=True) if i < 0]
    return at


async def _grant_binding(bed: SlackBed, cluster: TestCluster) -> tuple[str, str]:
    """One real AccessBot grant (edit in team-a): its RoleBinding and ServiceAccount names."""
    await bed.command("request edit -n team-a -d 1h standing test", "U0ALICE")
    grant = await bed.only_grant("U0ALICE")
    await bed.emu.wait_for(
        "chat.postMessage",
        timeout=30,
        predicate=lambda c: (
            c.ok and c.params.get("channel") == APPROVALS and grant.id in json.dumps(c.params)
        ),
    )
    card = bed.card_for(grant.id)
    await bed.click("access_approve", grant.id, "U0LEAD", card, APPROVALS)
    await bed.wait_grant(grant.id, State.ACTIVE)
    rbac = client.RbacAuthorizationV1Api(cluster.api_client())
    try:
        (binding,) = rbac.list_namespaced_role_binding(
            "team-a", label_selector=f"accessbot.io/grant-id={grant.id}"
        ).items
    finally:
        rbac.api_client.close()
    return str(binding.metadata.name), str(binding.subjects[0].name)


async def test_standing_lists_what_accessbot_did_not_grant_riskiest_first(
    bed: SlackBed, cluster: TestCluster, seeded: None
) -> None:
    binding, sa = await _grant_binding(bed, cluster)

    await bed.command("standing -c a", "U0ADMIN", command="/k8s")
    answer = await bed.wait_response("Standing privilege on a", timeout=60)
    blocks = answer.params["blocks"]
    shown = json.dumps(blocks)
    # Counts come first, then the entries, riskiest first.
    first_entry = next(i for i, b in enumerate(blocks) if EXPECTED[0] in json.dumps(b))
    counts = next(i for i, b in enumerate(blocks) if "full control" in json.dumps(b))
    assert counts < first_entry
    at = _in_order(shown, EXPECTED)
    assert at == sorted(at)
    assert "system:masters" in shown  # the certificate note
    assert binding not in shown
    assert sa not in shown

    # Kubernetes' own bootstrap bindings are counted in the chat and listed in the file.
    (upload,) = [f for f in bed.emu.uploaded_files if f.filename == "standing-a.txt"]
    assert upload.channel_id == bed.emu.dm_channel("U0ADMIN")
    content = (upload.content or b"").decode()
    at = _in_order(content, EXPECTED)
    assert at == sorted(at)
    assert content.index("Built into Kubernetes") > at[-1]
    masters = "Group system:masters via ClusterRoleBinding cluster-admin (ClusterRole "
    assert masters in content
    assert binding not in content
    assert sa not in content


async def test_standing_is_for_admins_only(bed: SlackBed, seeded: None) -> None:
    # U0PL1 approves edit: enough for /k8s nodes under any setting, not for this.
    for user in ("U0PL1", "U0BOB"):
        await bed.command("standing -c a", user, command="/k8s")
        refused = await bed.wait_response("AccessBot admins can see standing privilege")
        assert ROOT_USER not in json.dumps(refused.params)
    assert not [f for f in bed.emu.uploaded_files if f.filename.startswith("standing-")]
    refusals = [
        e["actor"]
        for e in await bed.core.store.audit_tail(500)
        if e["event"] == "refused" and "standing" in json.dumps(e)
    ]
    assert sorted(refusals) == ["U0BOB", "U0PL1"]  # audited
    usage = (await bed.command("standing -c nowhere", "U0ADMIN", command="/k8s")).json()
    assert "unknown cluster 'nowhere'" in json.dumps(usage)
    extra = (await bed.command("standing -c a extra", "U0ADMIN", command="/k8s")).json()
    assert "/k8s standing [-c CLUSTER]" in json.dumps(extra)


def test_cli_prints_the_same_report(
    cluster: TestCluster, cluster_b: TestCluster, seeded: None, tmp_path: Path
) -> None:
    kubeconfig = combined_kubeconfig(tmp_path / "kubeconfig", {"a": cluster, "b": cluster_b})
    (tmp_path / "policy.yaml").write_text(POLICY)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ACCESSBOT_"))}
    run = subprocess.run(
        [sys.executable, "-m", "bot", "standing", "-c", "a"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, "PYTHONPATH": str(REPO), "KUBECONFIG": str(kubeconfig)},
        cwd=tmp_path,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    at = _in_order(run.stdout, EXPECTED)
    assert at == sorted(at)
    assert run.stdout.index("full control") < at[0]  # counts first
    assert "system:masters" in run.stdout
    unknown = subprocess.run(
        [sys.executable, "-m", "bot", "standing", "-c", "nowhere"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, "PYTHONPATH": str(REPO), "KUBECONFIG": str(kubeconfig)},
        cwd=tmp_path,
        check=False,
    )
    assert unknown.returncode == 2
    assert "unknown cluster 'nowhere'" in unknown.stderr
    assert "Traceback" not in unknown.stderr


async def test_token_secrets_are_read_as_metadata_only(
    cluster: TestCluster, seeded: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the apiserver sends the report for Secrets holds no data, only metadata."""
    core = client.CoreV1Api(cluster.api_client())
    try:
        stored = core.read_namespaced_secret(TOKEN_SECRET, NS)
    finally:
        core.api_client.close()
    assert stored.data  # the Secret has data to leak
    seen: list[dict[str, Any]] = []

    async def spy(*args: Any, handle: Callable[[dict[str, Any]], None], **kw: Any) -> None:
        def keep(item: dict[str, Any]) -> None:
            seen.append(item)
            handle(item)

        await each_item(*args, handle=keep, **kw)

    monkeypatch.setattr(k8s.standing, "each_item", spy)
    registry = ClusterRegistry(
        {"t": ClusterTarget(name="t", context="admin", kubeconfig=str(cluster.kubeconfig))}
    )
    try:
        report = await standing_report(registry["t"])
    finally:
        registry.close()
    assert EXPECTED[2] in report.render_text()
    ours = [i for i in seen if i["metadata"]["name"] == TOKEN_SECRET]
    assert len(ours) == 1
    for item in seen:
        assert set(item) <= {"kind", "apiVersion", "metadata"}, item
    assert SECRET_VALUE not in json.dumps(seen)
