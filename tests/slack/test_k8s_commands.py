"""``/k8s nodes`` and ``/k8s helm`` over signed HTTP against a real apiserver and real helm."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import pytest
from kubernetes import client

from tests.slack.support import SlackBed, slack_bed
from tests.support.cluster import TestCluster

pytestmark = pytest.mark.cluster

PREFIX = "slk-node-"
LABEL = "accessbot-test=slack"
CHARTS = Path(__file__).resolve().parents[1] / "cluster" / "charts"
NS = "slk-helm"


def _create_nodes(cluster: TestCluster, specs: dict[str, tuple[bool, bool]]) -> None:
    """name -> (ready, cordoned); statuses set by hand (no kubelet runs)."""
    api = client.CoreV1Api(cluster.api_client())
    try:
        for name, (ready, cordoned) in specs.items():
            body = client.V1Node(
                metadata=client.V1ObjectMeta(name=name, labels={"accessbot-test": "slack"}),
                spec=client.V1NodeSpec(unschedulable=cordoned or None),
            )
            created = api.create_node(body=body)
            status = "True" if ready else "False"
            created.status = client.V1NodeStatus(
                conditions=[
                    client.V1NodeCondition(
                        type="Ready",
                        status=status,
                        reason="KubeletReady" if ready else "KubeletDown",
                    )
                ]
            )
            api.replace_node_status(name, created)
    finally:
        api.api_client.close()


def _delete_nodes(cluster: TestCluster) -> None:
    api = client.CoreV1Api(cluster.api_client())
    try:
        api.delete_collection_node(label_selector=LABEL)
    finally:
        api.api_client.close()


@pytest.fixture
def nodes(cluster_b: TestCluster) -> Iterator[list[str]]:
    specs = {
        f"{PREFIX}ok": (True, False),
        f"{PREFIX}down": (False, False),
        f"{PREFIX}cordoned": (True, True),
    }
    _delete_nodes(cluster_b)
    _create_nodes(cluster_b, specs)
    yield list(specs)
    _delete_nodes(cluster_b)


def _code_blocks(params: dict) -> str:
    texts = [
        b["text"]["text"]
        for b in params.get("blocks") or []
        if b.get("type") == "section" and b.get("text", {}).get("text", "").startswith("```")
    ]
    return "\n".join(unescape(t.strip("`").strip("\n")) for t in texts)


async def test_nodes_report_problems_first_then_the_table(
    bed: SlackBed, nodes: list[str], cluster_b: TestCluster
) -> None:
    reply = await bed.command("nodes -c b", "U0BOB", command="/k8s")
    assert reply.status == 200
    assert reply.text == ""
    answer = await bed.wait_response("Nodes on b")
    blocks = answer.params["blocks"]
    kinds = [
        "problems" if "problem(s)" in json.dumps(b) else "table" if "```" in json.dumps(b) else ""
        for b in blocks
    ]
    assert kinds.index("problems") < kinds.index("table")
    problems = json.dumps(blocks)
    assert f"{PREFIX}down: NotReady" in problems
    assert f"{PREFIX}cordoned: cordoned" in problems

    table = _code_blocks(answer.params)
    kubectl = cluster_b.kubectl("get", "nodes", "-o", "wide", "-l", LABEL).stdout
    # Same rows and columns as kubectl (other tests' nodes may exist too).
    ours = [line.split()[:3] for line in table.splitlines() if line.startswith(PREFIX)]
    theirs = [line.split()[:3] for line in kubectl.splitlines() if line.startswith(PREFIX)]
    assert ours == theirs
    assert table.splitlines()[0].split()[:3] == ["NAME", "STATUS", "ROLES"]


async def test_long_node_table_becomes_a_file(bed: SlackBed, cluster_b: TestCluster) -> None:
    specs = {
        f"{PREFIX}{i:03d}-with-a-long-name-for-width": (i % 50 != 0, False) for i in range(330)
    }
    _delete_nodes(cluster_b)
    await asyncio.to_thread(_create_nodes, cluster_b, specs)
    try:
        await bed.command("nodes -c b", "U0BOB", command="/k8s")
        answer = await bed.wait_response("Nodes on b")
        assert "in the file" in json.dumps(answer.params)
        (upload,) = [f for f in bed.emu.uploaded_files if f.filename == "nodes-b.txt"]
        assert upload.channel_id == bed.emu.dm_channel("U0BOB")
        content = (upload.content or b"").decode()
        assert all(name in content for name in specs)
    finally:
        _delete_nodes(cluster_b)


@pytest.fixture
def releases(cluster_b: TestCluster) -> Iterator[None]:
    cluster_b.kubectl("create", "namespace", NS, check=False)
    plain = str(CHARTS / "plain")
    try:
        cluster_b.helm("install", "web", plain, "-n", NS)
        bad = cluster_b.helm(
            "install", "db", plain, "-n", NS, "--set", "name=Bad_Name", check=False
        )
        assert bad.returncode != 0
        yield
    finally:
        cluster_b.kubectl("delete", "secret", "-n", NS, "-l", "owner=helm", check=False)
        cluster_b.kubectl("delete", "configmap", "-n", NS, "--all", check=False)


async def test_helm_report_failed_first(bed: SlackBed, releases: None) -> None:
    await bed.command(f"helm -c b -n {NS}", "U0BOB", command="/k8s")
    answer = await bed.wait_response("Helm releases on b")
    text = json.dumps(answer.params)
    assert f"{NS}/db: failed" in text
    table = _code_blocks(answer.params).splitlines()
    assert table[0].split()[:2] == ["NAME", "NAMESPACE"]
    assert [line.split()[0] for line in table[1:]] == ["db", "web"]  # failed first


async def test_report_mistakes_are_answered_at_once(bed: SlackBed) -> None:
    unknown = (await bed.command("nodes -c nowhere", "U0BOB", command="/k8s")).json()
    assert "unknown cluster 'nowhere'" in json.dumps(unknown)
    both = (await bed.command("helm -n x -A", "U0BOB", command="/k8s")).json()
    assert "not both" in json.dumps(both)
    assert "/k8s helm" in json.dumps(both)
    usage = (await bed.command("", "U0BOB", command="/k8s")).json()
    assert "/k8s nodes" in json.dumps(usage)


async def test_reports_can_be_limited_to_approvers(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> None:
    async with slack_bed(
        redis_url, {"a": cluster, "b": cluster_b}, tmp_path, report_access="approvers"
    ) as bed:
        await bed.command("nodes -c a", "U0BOB", command="/k8s")
        await bed.wait_response("limited to admins and approvers")
        await bed.command("nodes -c a", "U0PL1", command="/k8s")  # in @platform-leads
        await bed.wait_response("Nodes on a")


def _create_zone_outage(cluster: TestCluster, down: int, up: int) -> list[str]:
    """``down`` nodes lost as the node controller marks them (Ready=Unknown,
    unreachable taints), ``up`` Ready ones, and a few odd problems."""
    api = client.CoreV1Api(cluster.api_client())
    names = []
    lost = client.V1NodeCondition(
        type="Ready",
        status="Unknown",
        reason="NodeStatusUnknown",
        message="Kubelet stopped posting node status.",
    )
    unreachable = [
        client.V1Taint(key="node.kubernetes.io/unreachable", effect=effect)
        for effect in ("NoSchedule", "NoExecute")
    ]
    try:
        for i in range(down + up):
            name = f"{PREFIX}zone-{'b' if i < down else 'a'}-{i:03d}"
            names.append(name)
            spec = client.V1NodeSpec(taints=unreachable if i < down else None)
            meta = client.V1ObjectMeta(name=name, labels={"accessbot-test": "slack"})
            created = api.create_node(body=client.V1Node(metadata=meta, spec=spec))
            if i < down:
                conditions = [lost]
            elif i % 8 == 0:
                # Distinct problems, each its own line, with hostile text in them.
                message = f"disk {i} \x1b]0;owned\x07 is full " + "x" * 150
                conditions = [
                    client.V1NodeCondition(type="Ready", status="True", reason="KubeletReady"),
                    client.V1NodeCondition(
                        type="DiskPressure", status="True", reason="Disk", message=message
                    ),
                ]
            else:
                conditions = [
                    client.V1NodeCondition(type="Ready", status="True", reason="KubeletReady")
                ]
            created.status = client.V1NodeStatus(conditions=conditions)
            api.replace_node_status(name, created)
    finally:
        api.api_client.close()
    return names


async def test_zone_outage_loses_no_problem(bed: SlackBed, cluster_b: TestCluster) -> None:
    _delete_nodes(cluster_b)
    names = await asyncio.to_thread(_create_zone_outage, cluster_b, 160, 40)
    try:
        await bed.command("nodes -c b", "U0BOB", command="/k8s")
        answer = await bed.wait_response("Nodes on b", timeout=120)
        blocks = answer.params["blocks"]
        texts = [b["text"]["text"] for b in blocks if b.get("type") == "section"]
        joined = "\n".join(unescape(t) for t in texts)
        # Identical problems are one line with the first names.
        assert (
            "160 nodes: NotReady, status unknown (NodeStatusUnknown: Kubelet stopped posting "
            f"node status.): {PREFIX}zone-b-000, {PREFIX}zone-b-001, {PREFIX}zone-b-002 "
            "and 157 more"
        ) in joined
        # 160 lost, 5 disks, and the 40 new nodes' not-ready taint that only a
        # node controller (absent here) would lift.
        assert ":warning: *205 problem(s)*" in texts
        # The distinct ones are all there, whole, escaped: none cut between blocks.
        for i in range(160, 200, 8):
            line = (
                f"• {PREFIX}zone-a-{i:03d}: DiskPressure (Disk: disk {i} ^[]0;owned\\x07 "
                f"is full {'x' * 150})"
            )
            assert sum(line in unescape(t).split("\n") for t in texts) == 1
        assert "\x1b" not in json.dumps(answer.params, ensure_ascii=False)
        for block in blocks:
            assert len(block.get("text", {}).get("text", "")) <= 3000
        assert len(blocks) <= 50
        # "and 157 more" is not the end of it: the file has every problem, one per
        # line, and the table exactly as kubectl prints it.
        assert "one line each, are in the file `nodes-b.txt`" in json.dumps(blocks)
        (upload,) = [f for f in bed.emu.uploaded_files if f.filename == "nodes-b.txt"]
        content = (upload.content or b"").decode()
        for name in names[:160]:
            assert f"{name}: NotReady, status unknown (NodeStatusUnknown: " in content
        assert content.count("\n" + PREFIX) == 205 + 200  # problem lines + table rows
        kubectl = cluster_b.kubectl("get", "nodes", "-o", "wide").stdout
        table = content[content.index("\nNAME ") + 1 :]
        # The same rows as kubectl (AGE may have ticked in between).
        assert [line.split()[:3] for line in table.splitlines()] == [
            line.split()[:3] for line in kubectl.splitlines()
        ]
    finally:
        _delete_nodes(cluster_b)


async def test_helm_namespace_that_is_not_a_dns_label_is_refused(bed: SlackBed) -> None:
    """An encoded '/' never reaches a URL: the command is refused in its own reply."""
    reply = await bed.command("helm -c b -n a%2Fb", "U0BOB", command="/k8s")
    assert reply.status == 200
    text = json.dumps(reply.json())
    assert "invalid namespace" in text
    assert "Traceback" not in text
    assert not bed.responses(), "a report ran for a namespace that is not a DNS label"


async def test_hostile_node_cells_reach_only_the_file(
    bed: SlackBed, cluster_b: TestCluster
) -> None:
    _delete_nodes(cluster_b)
    api = client.CoreV1Api(cluster_b.api_client())
    name = f"{PREFIX}hostile"
    try:
        meta = client.V1ObjectMeta(name=name, labels={"accessbot-test": "slack"})
        created = api.create_node(body=client.V1Node(metadata=meta))
        info = client.V1NodeSystemInfo(
            architecture="amd64", boot_id="", container_runtime_version="c\x9bd",
            kernel_version="k", kube_proxy_version="", kubelet_version="v1",
            machine_id="", operating_system="linux", system_uuid="",
            os_image="\x1b]0;owned\x07Ubuntu 24.04.1 LTS",
        )  # fmt: skip
        created.status = client.V1NodeStatus(node_info=info)
        api.replace_node_status(name, created)
        await bed.command("nodes -c b", "U0BOB", command="/k8s")
        answer = await bed.wait_response("Nodes on b", timeout=60)
        posted = json.dumps(answer.params, ensure_ascii=False)
        # Slack gets no control character at all; the file has kubectl's exact bytes.
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", posted)
        (upload,) = [f for f in bed.emu.uploaded_files if f.filename == "nodes-b.txt"]
        content = upload.content or b""
        assert b"^[]0;owned\x07Ubuntu 24.04.1 LTS" in content
        assert b"\x1b" not in content
    finally:
        api.api_client.close()
        _delete_nodes(cluster_b)


NS_MANY = "slk-helm-many"


def _failed_release(i: int) -> dict[str, object]:
    """A failed release's Secret as helm writes it, each with its own long reason."""
    body = {
        "name": f"r{i:03d}",
        "namespace": NS_MANY,
        "version": 1,
        "info": {
            "status": "failed",
            "last_deployed": "2026-11-29T10:00:00Z",
            "description": f"Upgrade r{i:03d} failed: timed out waiting for the condition "
            + "y" * 200,
        },
        "chart": {"metadata": {"name": "plain", "version": "2.3.4", "appVersion": "1.0"}},
    }
    data = base64.b64encode(gzip.compress(json.dumps(body).encode())).decode()
    labels = {"owner": "helm", "name": f"r{i:03d}", "status": "failed", "version": "1"}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "helm.sh/release.v1",
        "metadata": {"name": f"sh.helm.release.v1.r{i:03d}.v1", "namespace": NS_MANY,
                     "labels": labels},
        "stringData": {"release": data},
    }  # fmt: skip


async def test_many_helm_problems_lose_none(
    bed: SlackBed, cluster_b: TestCluster, tmp_path: Path
) -> None:
    """The zone-outage rule for /k8s helm: whole lines in chat, every problem and the
    exact table in the file whenever the chat leaves anything out."""
    releases = 80
    manifest = tmp_path / "releases.json"
    items = [_failed_release(i) for i in range(releases)]
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    cluster_b.kubectl("create", "namespace", NS_MANY, check=False)
    try:
        await asyncio.to_thread(cluster_b.kubectl, "create", "-f", str(manifest))
        await bed.command(f"helm -c b -n {NS_MANY}", "U0BOB", command="/k8s")
        answer = await bed.wait_response("Helm releases on b", timeout=120)
        blocks = answer.params["blocks"]
        assert len(blocks) <= 50
        texts = [b["text"]["text"] for b in blocks if b.get("type") == "section"]
        assert all(len(t) <= 3000 for t in texts)
        assert "helm-b.txt" in json.dumps(blocks)
        (upload,) = [f for f in bed.emu.uploaded_files if f.filename == "helm-b.txt"]
        assert upload.channel_id == bed.emu.dm_channel("U0BOB")
        content = (upload.content or b"").decode()
        lines = content.split("\n")
        # Every problem on its own line, whole.
        for i in range(releases):
            name = f"r{i:03d}"
            (line,) = [x for x in lines if x.startswith(f"{NS_MANY}/{name}: failed")]
            assert re.fullmatch(
                f"{NS_MANY}/{name}: failed for [0-9dhms]+ \\(revision 1\\): Upgrade {name} "
                f"failed: timed out waiting for the condition {'y' * 200}; way out: helm "
                f"rollback {name} -n {NS_MANY} \\(previous revision\\), or fix and helm upgrade",
                line,
            ), line
        # What the chat shows is whole lines of the file, never a line cut between blocks.
        shown = [
            unescape(x).removeprefix("• ")
            for t in texts
            for x in t.split("\n")
            if unescape(x).startswith(f"• {NS_MANY}/")
        ]
        assert shown
        assert all(x in lines for x in shown), [x for x in shown if x not in lines][:2]
        # Some are only in the file, and the chat says so.
        assert f"and {releases - len(shown)} more problem line(s) in the file" in json.dumps(blocks)
        # Then the table exactly as helm ls prints it (all failed: helm's order is ours).
        helm_ls = await asyncio.to_thread(cluster_b.helm, "ls", "-n", NS_MANY, "--max", "0")
        assert content.endswith(helm_ls.stdout)
    finally:
        cluster_b.kubectl("delete", "secret", "-n", NS_MANY, "-l", "owner=helm", check=False)
