"""The nodes report against a real apiserver, compared with the real kubectl."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
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
    # AGE is the apiserver's, computed when each request arrives; a second may
    # tick between kubectl's request and ours, so retry the rare run where a
    # boundary falls between them.
    for _ in range(5):
        out = cluster.kubectl("get", "nodes", "-o", "wide").stdout
        ours = {(await nodes_report(cc)).render_table()}
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


# -- hostile cells, compared byte for byte with the real kubectl -----------------------

HOSTILE_PREFIX = "rpt-hostile-"
# What a kubelet (or anyone allowed to write node status) can put in the cells
# kubectl prints. Names, labels and so roles are validated by the apiserver
# and cannot carry any of this (see the unit tests for our side of them).
HOSTILE_VALUES = [
    "\x1b]0;owned\x07Ubuntu 24.04.1 LTS",  # ESC and BEL: an OSC title sequence
    "Ubuntu 24.04 \u2013 LTS",  # en dash: 3 bytes, 1 rune
    "\u4e2d\u6587\u64cd\u4f5c\u7cfb\u7edf",  # CJK: wide, 3 bytes each
    "\U0001f427 Linux \U0001f469\u200d\U0001f4bb",  # emoji, ZWJ sequence
    "Ube\u0301ntu\u20dd",  # combining marks
    "c1\x9b31mred\x85next\u202eevil",  # C1 CSI, NEL, bidi override
    "del\x7fete\x00nul\x01\x02\x07bel",  # DEL, NUL, other C0
    "tab\there",  # a tab: the tabwriter starts a new cell
    "vtab\vhere",  # so does a vertical tab
    "two\nlines",  # cut at the line break, marked "..."
    "carriage\rreturn",
    "form\ffeed",
    "\x1b" * 30,  # 30 bytes, printed as 60 runes: wider than its column
    "\ufeffbom \u00e9\u00e8 \u0645\u0631\u062d\u0628\u0627",
]
# nodeInfo fields and addresses that reach a column of -o wide.
HOSTILE_FIELDS = [
    "kubeletVersion",
    "osImage",
    "kernelVersion",
    "architecture",
    "containerRuntimeVersion",
    "InternalIP",
    "ExternalIP",
]


def hostile_status(i: int) -> dict[str, Any]:
    """Node i gets a different hostile value in every field (a Latin square)."""
    values = {
        field: HOSTILE_VALUES[(i + k) % len(HOSTILE_VALUES)]
        for k, field in enumerate(HOSTILE_FIELDS)
    }
    info_fields = {k: v for k, v in values.items() if k not in ("InternalIP", "ExternalIP")}
    return {
        "conditions": [ready("False", "Kubelet\x1bStopped", values["osImage"])],
        "addresses": [
            {"type": "InternalIP", "address": values["InternalIP"]},
            {"type": "ExternalIP", "address": values["ExternalIP"]},
        ],
        "nodeInfo": node_info(**info_fields),
    }


def create_nodes(cluster: TestCluster, statuses: dict[str, dict[str, Any]]) -> None:
    api = client.CoreV1Api(cluster.api_client())
    try:
        for name, status in statuses.items():
            created = api.create_node(body=client.V1Node(metadata=client.V1ObjectMeta(name=name)))
            created.status = client.V1NodeStatus.from_dict(status)
            api.replace_node_status(name, created)
    finally:
        api.api_client.close()


def delete_nodes(cluster: TestCluster, names: list[str]) -> None:
    api = client.CoreV1Api(cluster.api_client())
    try:
        for name in names:
            api.delete_node(name, _request_timeout=10)
    finally:
        api.api_client.close()


@pytest.fixture(scope="module")
def hostile_nodes(cluster: TestCluster) -> Iterator[list[str]]:
    """Every hostile value in every column, plus enough plain nodes for 100-row flushes."""
    statuses = {f"{HOSTILE_PREFIX}{i:03d}": hostile_status(i) for i in range(len(HOSTILE_VALUES))}
    # Plain nodes sorting between them push some hostile rows past row 100, where
    # kubectl's tabwriter has flushed and only remembers the widths seen so far.
    filler = {
        f"{HOSTILE_PREFIX}{i:03d}-plain": {"conditions": [ready()], "nodeInfo": node_info()}
        for i in range(110)
    }
    late = {
        f"{HOSTILE_PREFIX}{200 + i:03d}-late": hostile_status(i) for i in range(len(HOSTILE_VALUES))
    }
    everything = {**statuses, **filler, **late}
    try:
        create_nodes(cluster, everything)
        yield sorted(everything)
    finally:
        delete_nodes(cluster, list(everything))


def kubectl_bytes(cluster: TestCluster, *args: str, env: dict[str, str] | None = None) -> bytes:
    """kubectl's stdout as bytes: text mode would turn a '\\r' into a newline."""
    cmd = [str(cluster.bin_dir / "kubectl"), f"--kubeconfig={cluster.kubeconfig}", *args]
    full_env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    full_env.update(env or {})
    proc = subprocess.run(cmd, capture_output=True, check=True, timeout=120, env=full_env)
    return proc.stdout


async def same_as_kubectl(
    cluster: TestCluster,
    cc: ClusterClient,
    *args: str,
    chunk_rows: int = 500,
    env: dict[str, str] | None = None,
) -> tuple[bytes, bytes]:
    """kubectl's bytes and ours, retried when AGE ticked between the two requests."""
    for _ in range(5):
        theirs = kubectl_bytes(cluster, "get", "nodes", "-o", "wide", *args, env=env)
        report = await nodes_report(cc)
        ours = {report.render_table(chunk_rows=chunk_rows).encode()}
        if theirs in ours:
            return theirs, theirs
    return theirs, sorted(ours)[0]


@pytest.mark.parametrize(
    "env",
    [
        {"TZ": "UTC", "LANG": "C.UTF-8"},
        {"TZ": "Asia/Kolkata", "LANG": "ja_JP.UTF-8"},  # kubectl's widths know no locale
        {"TZ": "America/St_Johns", "LANG": "en_US.UTF-8"},
    ],
)
async def test_hostile_cells_match_kubectl_byte_for_byte(
    cluster: TestCluster, hostile_nodes: list[str], cc: ClusterClient, env: dict[str, str]
) -> None:
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    time.tzset()
    try:
        theirs, ours = await same_as_kubectl(cluster, cc, env=env)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        time.tzset()
    assert ours == theirs, "\n".join(
        f"{a!r}\n{b!r}"
        for a, b in zip(theirs.splitlines(), ours.splitlines(), strict=False)
        if a != b
    )
    # What kubectl does, and so what we do: ESC escaped, BEL kept, cut at a break.
    assert b"\x1b" not in ours
    assert b"^[]0;owned\x07Ubuntu 24.04.1 LTS" in ours
    assert b"two..." in ours
    assert b"lines" not in ours
    # One line per node, whatever its cells hold.
    lines = ours.split(b"\n")
    for name in hostile_nodes:
        assert sum(line.startswith(name.encode() + b" ") for line in lines) == 1


def mask_seconds(table: bytes) -> bytes:
    return re.sub(rb"(?<= )[0-9]{1,3}s +", lambda m: b"#" * len(m[0]), table)


@pytest.mark.parametrize("chunk", [7, 100])
async def test_hostile_cells_in_chunks_match_kubectl(
    cluster: TestCluster, hostile_nodes: list[str], cc: ClusterClient, chunk: int
) -> None:
    # kubectl prints every chunk of the list as its own table (no header, the
    # first row padded instead); 500 is the default, small sizes show the seams.
    theirs, ours = await same_as_kubectl(cluster, cc, f"--chunk-size={chunk}", chunk_rows=chunk)
    # Each chunk is a request of its own, so AGE may tick between kubectl's
    # chunks: mask the seconds (same length, so the layout is still compared).
    theirs, ours = mask_seconds(theirs), mask_seconds(ours)
    assert ours == theirs, "\n".join(
        f"{a!r}\n{b!r}"
        for a, b in zip(theirs.splitlines(), ours.splitlines(), strict=False)
        if a != b
    )
