"""``/k8s nodes`` and ``/k8s helm`` over signed HTTP against a real apiserver and real helm."""

from __future__ import annotations

import asyncio
import json
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
