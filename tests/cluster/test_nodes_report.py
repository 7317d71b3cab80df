"""The nodes report against a real apiserver, compared with the real kubectl."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from k8s.clients import ClusterClient, ClusterRegistry, ClusterTarget
from k8s.nodes import nodes_report
from tests.support.cluster import TestCluster

pytestmark = pytest.mark.cluster

PREFIX = "rpt-node-"


def node_info(**over: str) -> dict[str, str]:
    info = {
        "architecture": "amd64",
        "bootID": "",
        "containerRuntimeVersion": "containerd://2.1.4",
        "kernelVersion": "6.8.0-45-generic",
        "kubeProxyVersion": "",
        "kubeletVersion": "v1.37.2",
        "machineID": "",
        "operatingSystem": "linux",
        "osImage": "Ubuntu 24.04.1 LTS",
        "systemUUID": "",
    }
    info.update(over)
    return info


def ready(status: str = "True", reason: str = "KubeletReady", message: str = "") -> dict[str, str]:
    return {"type": "Ready", "status": status, "reason": reason, "message": message}


def condition(kind: str, status: str, reason: str = "") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason or f"Kubelet{kind}"}


# name -> (metadata labels, spec, status); no kubelet runs, so the status is ours.
NODES: dict[str, tuple[dict[str, str], dict[str, Any], dict[str, Any]]] = {
    "cp-1": (
        {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/etcd": "true"},
        {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]},
        {
            "conditions": [ready()],
            "addresses": [
                {"type": "Hostname", "address": "cp-1"},
                {"type": "InternalIP", "address": "10.0.0.10"},
                {"type": "InternalIP", "address": "fd00::10"},
                {"type": "ExternalIP", "address": "203.0.113.10"},
                {"type": "ExternalIP", "address": "203.0.113.11"},
            ],
            "nodeInfo": node_info(),
        },
    ),
    "worker-legacy-role": (
        {"kubernetes.io/role": "ingress", "node-role.kubernetes.io/worker": ""},
        {},
        {
            "conditions": [ready(), condition("MemoryPressure", "True")],
            "addresses": [
                {"type": "InternalDNS", "address": "w.internal"},
                {"type": "InternalIP", "address": "10.0.0.21"},
            ],
            "nodeInfo": node_info(architecture="arm64", kernelVersion="6.1.0-rpi"),
        },
    ),
    "not-ready": (
        {},
        {},
        {
            "conditions": [
                ready("False", "KubeletStopped", "kubelet stopped posting status"),
                condition("DiskPressure", "True"),
                condition("PIDPressure", "True"),
            ],
            "addresses": [{"type": "ExternalIP", "address": "198.51.100.3"}],
            "nodeInfo": node_info(osImage="", containerRuntimeVersion=""),
        },
    ),
    "no-ready-condition": (
        {"kubernetes.io/role": ""},
        {},
        {"conditions": [condition("MemoryPressure", "False")], "nodeInfo": node_info()},
    ),
    "cordoned": (
        {"node-role.kubernetes.io/worker": ""},
        {
            "unschedulable": True,
            "taints": [
                {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                {"key": "dedicated", "value": "gpu", "effect": "NoExecute"},
            ],
        },
        {"conditions": [ready()], "nodeInfo": node_info()},
    ),
    "cordoned-unknown": ({}, {"unschedulable": True}, {}),
    "empty-info": (
        {},
        {},
        {
            "conditions": [ready("Unknown", "NodeStatusUnknown")],
            "nodeInfo": node_info(
                architecture="",
                kernelVersion="",
                osImage="",
                containerRuntimeVersion="",
                kubeletVersion="",
            ),
        },
    ),
}


@pytest.fixture(scope="module")
def test_nodes(cluster: TestCluster) -> Iterator[list[str]]:
    """Create the Nodes, set their status via the status subresource, delete them after."""
    api = client.CoreV1Api(cluster.api_client())
    names = []
    try:
        for short, (labels, spec, status) in NODES.items():
            name = PREFIX + short
            names.append(name)
            body = client.V1Node(
                metadata=client.V1ObjectMeta(name=name, labels=labels),
                spec=client.V1NodeSpec(
                    unschedulable=spec.get("unschedulable"),
                    taints=[client.V1Taint(**taint) for taint in spec.get("taints", [])],
                ),
            )
            created = api.create_node(body=body)
            if status:
                created.status = client.V1NodeStatus.from_dict(status)
                api.replace_node_status(name, created)
        yield names
    finally:
        for name in names:
            api.delete_node(name, _request_timeout=10)
        api.api_client.close()


@pytest.fixture
async def cc(cluster: TestCluster) -> AsyncIterator[ClusterClient]:
    target = ClusterTarget(name="test", context="admin", kubeconfig=str(cluster.kubeconfig))
    registry = ClusterRegistry({"test": target})
    yield registry["test"]
    registry.close()


async def test_table_is_kubectl_get_nodes_wide(
    cluster: TestCluster, test_nodes: list[str], cc: ClusterClient
) -> None:
    # AGE is computed from "now" on both sides; a second may tick between
    # kubectl's request and ours, so accept our table at either end of the
    # kubectl call and retry the rare run where a boundary falls inside it.
    for _ in range(5):
        before = datetime.now(UTC)
        out = cluster.kubectl("get", "nodes", "-o", "wide").stdout
        after = datetime.now(UTC)
        ours = {(await nodes_report(cc, now=moment)).render_table() for moment in (before, after)}
        if out in ours:
            break
    assert out in ours, f"kubectl:\n{out}\nours:\n{ours}"
    assert all(name in out for name in test_nodes)


async def test_rows_and_problems(test_nodes: list[str], cc: ClusterClient) -> None:
    report = await nodes_report(cc, page_size=2)  # several pages
    rows = {r.name: r for r in report.rows if r.name.startswith(PREFIX)}
    assert [r.name for r in report.rows] == sorted(r.name for r in report.rows)
    assert set(rows) == set(test_nodes)
    cp = rows[PREFIX + "cp-1"]
    assert (cp.status, cp.roles, cp.internal_ip, cp.external_ip) == (
        "Ready",
        "control-plane,etcd",
        "10.0.0.10",
        "203.0.113.10",
    )
    assert cp.kernel_version == "6.8.0-45-generic (amd64)"
    legacy = rows[PREFIX + "worker-legacy-role"]
    assert (legacy.roles, legacy.internal_ip, legacy.external_ip) == (
        "ingress,worker",
        "10.0.0.21",
        "<none>",
    )
    assert rows[PREFIX + "not-ready"].status == "NotReady"
    assert rows[PREFIX + "no-ready-condition"].status == "Unknown"
    assert rows[PREFIX + "no-ready-condition"].roles == "<none>"
    assert rows[PREFIX + "cordoned"].status == "Ready,SchedulingDisabled"
    assert rows[PREFIX + "cordoned-unknown"].status == "Unknown,SchedulingDisabled"
    empty = rows[PREFIX + "empty-info"]
    assert empty.as_tuple()[4:] == (
        "",
        "<none>",
        "<none>",
        "<unknown>",
        "<unknown>",
        "<unknown>",
    )
    ours = [p for p in report.problems if p.startswith(PREFIX)]
    # The apiserver's TaintNodesByCondition admission taints every new Node
    # not-ready; no node controller runs here to lift it from the Ready ones.
    stale = "tainted node.kubernetes.io/not-ready:NoSchedule"
    assert ours == [
        f"{PREFIX}cordoned: cordoned (SchedulingDisabled)",
        f"{PREFIX}cordoned: tainted dedicated=gpu:NoExecute, {stale.removeprefix('tainted ')}",
        f"{PREFIX}cordoned-unknown: Unknown (no Ready condition reported)",
        f"{PREFIX}cordoned-unknown: cordoned (SchedulingDisabled)",
        f"{PREFIX}cp-1: tainted node-role.kubernetes.io/control-plane:NoSchedule, "
        "node.kubernetes.io/not-ready:NoSchedule",
        f"{PREFIX}empty-info: NotReady, status unknown (NodeStatusUnknown)",
        f"{PREFIX}no-ready-condition: Unknown (no Ready condition reported)",
        f"{PREFIX}not-ready: NotReady (KubeletStopped: kubelet stopped posting status)",
        f"{PREFIX}not-ready: DiskPressure (KubeletDiskPressure)",
        f"{PREFIX}not-ready: PIDPressure (KubeletPIDPressure)",
        f"{PREFIX}worker-legacy-role: MemoryPressure (KubeletMemoryPressure)",
        f"{PREFIX}worker-legacy-role: {stale}",
    ]
    mine = [r for r in report.rows if r.name.startswith(PREFIX)]
    assert sum(r.ready for r in mine) == 3
    assert report.total >= len(test_nodes)
