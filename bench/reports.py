"""5. Reports on a big cluster: ours next to ``kubectl get nodes -o wide`` and ``helm ls -A``.

A dedicated apiserver gets N Node objects and R Helm releases x V revisions. Nodes are
created through the API with their status in the create request (the apiserver keeps a
Node's status on create, as it does for a kubelet registering); Helm releases are
written as Helm stores them (Secrets of type helm.sh/release.v1, labels owner, name,
status, version, data.release = base64(gzip(JSON))), cloned from a release the real
``helm install`` made, with a manifest padded to a realistic size. Then ``helm ls``
must list exactly the releases made, and our helm text must equal its output.

Each tool runs as a child process, measured with ``wait4`` (wall time and peak RSS, as
``/usr/bin/time -v`` would). Our report runs the same way (``bench/report_proc.py``) and
also times itself: the report inside a running bot costs the in-process time only, the
interpreter start-up and imports are paid once when the bot starts.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import gzip
import json
import os
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    BenchResult,
    ChildRun,
    Env,
    Table,
    Target,
    admin_ssl,
    median,
    python_cmd,
    python_env,
    rounded,
    run_measured,
)
from bench.profiling import sampling
from k8s.helm import decode_release
from tests.support.cluster import REPO, TestCluster

NAME = "reports"
TITLE = "5. Reports: ours vs kubectl and helm"
SEED_CHART = REPO / "tests" / "cluster" / "charts" / "cfg"
SEED_NS = "bench-helm-seed"
CREATE_CONCURRENCY = 32


@dataclass(frozen=True)
class Params:
    nodes: int
    releases: int
    revisions: int
    namespaces: int
    manifest_kb: int  # uncompressed manifest per revision
    repeats: int


FULL = Params(nodes=5000, releases=1000, revisions=10, namespaces=20, manifest_kb=48, repeats=3)
QUICK = Params(nodes=40, releases=12, revisions=3, namespaces=3, manifest_kb=4, repeats=1)


@dataclass(frozen=True)
class Measured:
    tool: ChildRun
    ours: ChildRun
    ours_inside_s: float


async def run(env: Env) -> BenchResult:
    p = env.scaled(FULL, QUICK)
    cluster = (await env.clusters("reports"))["reports"]
    secret_bytes = await _populate(cluster, p)
    tz_env = python_env(TZ="UTC")
    await asyncio.to_thread(_sanity_check, cluster, p, tz_env, env.root)
    runs: dict[str, list[Measured]] = {"nodes": [], "helm": []}
    baseline: list[ChildRun] = []
    for _ in range(p.repeats):
        for kind in runs:
            runs[kind].append(await asyncio.to_thread(_measure, cluster, kind, tz_env, env.root))
        baseline.append(await asyncio.to_thread(_ours, cluster, "noop", tz_env, env.root))
    if env.profile:
        await asyncio.to_thread(_profile_ours, env, cluster, tz_env)
    return _result(p, runs, baseline, secret_bytes)


# ----- the data ------------------------------------------------------------------------------


async def _populate(cluster: TestCluster, p: Params) -> int:
    """Nodes and Helm release Secrets on the apiserver; returns the mean Secret size."""
    template = await asyncio.to_thread(_seed_release, cluster)
    connector = aiohttp.TCPConnector(ssl=admin_ssl(cluster), limit=CREATE_CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector, base_url=cluster.server) as http:
        await _create_all(http, "/api/v1/nodes", (_node(i) for i in range(p.nodes)))
        namespaces = [f"bench-helm-{i:02d}" for i in range(p.namespaces)]
        await _create_all(http, "/api/v1/namespaces", (_namespace(ns) for ns in namespaces))
        secrets = [
            _release_secret(template, namespaces[r % p.namespaces], r, v, p)
            for r in range(p.releases)
            for v in range(1, p.revisions + 1)
        ]
        by_ns = [(f"/api/v1/namespaces/{s['metadata']['namespace']}/secrets", s) for s in secrets]
        await _post_each(http, by_ns)
    return sum(len(json.dumps(s)) for s in secrets) // max(1, len(secrets))


async def _create_all(
    http: aiohttp.ClientSession, path: str, bodies: Iterable[dict[str, Any]]
) -> None:
    await _post_each(http, [(path, b) for b in bodies])


async def _post_each(http: aiohttp.ClientSession, posts: list[tuple[str, dict[str, Any]]]) -> None:
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def post(path: str, body: dict[str, Any]) -> None:
        async with gate, http.post(path, json=body) as resp:
            if resp.status not in (201, 409):
                raise RuntimeError(f"POST {path}: {resp.status} {await resp.text()}")

    await asyncio.gather(*(post(path, body) for path, body in posts))


def _namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _node(i: int) -> dict[str, Any]:
    """Mostly healthy workers; some control planes, NotReady, pressured, cordoned nodes."""
    name = f"node-{i:05d}"
    role = "control-plane" if i % 50 == 0 else "worker"
    conditions = [
        {"type": "Ready", "status": "False" if i % 97 == 5 else "True", "reason": "KubeletReady"},
        {
            "type": "MemoryPressure",
            "status": "True" if i % 131 == 7 else "False",
            "reason": "KubeletHasSufficientMemory",
        },
        {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure"},
    ]
    addresses = [{"type": "InternalIP", "address": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"}]
    if i % 10 == 0:
        addresses.append({"type": "ExternalIP", "address": f"203.0.{i // 256 % 256}.{i % 256}"})
    spec: dict[str, Any] = {}
    if i % 200 == 3:
        spec = {
            "unschedulable": True,
            "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}],
        }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {f"node-role.kubernetes.io/{role}": ""}},
        "spec": spec,
        "status": {
            "conditions": conditions,
            "addresses": addresses,
            "nodeInfo": {
                "kubeletVersion": "v1.37.2",
                "osImage": "Ubuntu 24.04.2 LTS",
                "kernelVersion": "6.8.0-1021-aws",
                "containerRuntimeVersion": "containerd://2.0.5",
                "architecture": "amd64",
                "operatingSystem": "linux",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kubeProxyVersion": "",
            },
        },
    }


def _seed_release(cluster: TestCluster) -> dict[str, Any]:
    """A release body exactly as the real helm stored it; uninstalled again afterwards."""
    cluster.helm("install", "seed", str(SEED_CHART), "-n", SEED_NS, "--create-namespace")
    secret = cluster.kubectl(
        "get", "secret", "-n", SEED_NS, "sh.helm.release.v1.seed.v1", "-o", "json"
    )
    cluster.helm("uninstall", "seed", "-n", SEED_NS)
    return decode_release(json.loads(secret.stdout)["data"]["release"])


def _release_secret(
    template: dict[str, Any], ns: str, r: int, version: int, p: Params
) -> dict[str, Any]:
    name = f"app-{r:04d}"
    newest = version == p.revisions
    status = ("failed" if r % 53 == 0 else "deployed") if newest else "superseded"
    when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=r, minutes=version)
    release = copy.deepcopy(template)
    release.update(name=name, namespace=ns, version=version, manifest=_manifest(name, p))
    release["info"].update(
        status=status,
        first_deployed=(when - timedelta(minutes=version - 1)).isoformat().replace("+00:00", "Z"),
        last_deployed=when.isoformat().replace("+00:00", "Z"),
        description="Install complete" if version == 1 else "Upgrade complete",
    )
    stored = base64.b64encode(gzip.compress(json.dumps(release).encode()))  # what helm keeps
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "helm.sh/release.v1",
        "metadata": {
            "name": f"sh.helm.release.v1.{name}.v{version}",
            "namespace": ns,
            "labels": {"owner": "helm", "name": name, "status": status, "version": str(version)},
        },
        "data": {"release": base64.b64encode(stored).decode()},  # the API's own base64
    }


def _manifest(name: str, p: Params) -> str:
    """Rendered YAML of the size of a real chart's, varied so gzip cannot cheat much."""
    doc = (
        "---\n# Source: app/templates/deployment-{i}.yaml\napiVersion: apps/v1\nkind: Deployment\n"
        "metadata:\n  name: {name}-{i}\n  labels:\n    app.kubernetes.io/name: {name}\n"
        "    app.kubernetes.io/instance: {name}-{i}\n    helm.sh/chart: app-1.{i}.0\n"
        "spec:\n  replicas: {r}\n  template:\n    spec:\n      containers:\n"
        "        - name: {name}\n          image: registry.example/{name}:{i}.{r}.7\n"
        "          env:\n            - name: CHECKSUM\n              value: {sum}\n"
    )
    parts: list[str] = []
    size = 0
    while size < p.manifest_kb * 1024:
        checksum = base64.b32encode(os.urandom(20)).decode().lower()
        parts.append(doc.format(i=len(parts), name=name, r=len(parts) % 5 + 1, sum=checksum))
        size += len(parts[-1])
    return "".join(parts)


def _sanity_check(cluster: TestCluster, p: Params, env: dict[str, str], scratch: Path) -> None:
    """helm sees exactly our releases; kubectl our nodes; our helm text is helm's, byte for byte."""
    helm_out = _helm_ls(cluster, env, scratch)
    listed = helm_out.stdout.count("\n") - 1
    if listed != p.releases:
        raise AssertionError(f"helm ls lists {listed} releases, not {p.releases}")
    ours = _ours(cluster, "helm", env, scratch)
    if (scratch / "helm.txt").read_text() != helm_out.stdout:
        raise AssertionError("our helm report text differs from helm ls -A output")
    kubectl = _kubectl(cluster, env)
    if kubectl.stdout.count("\n") - 1 != p.nodes or json.loads(ours.stdout)["rows"] != p.releases:
        raise AssertionError("kubectl or our report do not see every node / release")


# ----- the runs -----------------------------------------------------------------------------


def _kubectl(cluster: TestCluster, env: dict[str, str]) -> ChildRun:
    cmd = [str(cluster.bin_dir / "kubectl"), f"--kubeconfig={cluster.kubeconfig}"]
    return _checked(run_measured([*cmd, "get", "nodes", "-o", "wide"], env=env))


def _helm_ls(cluster: TestCluster, env: dict[str, str], scratch: Path) -> ChildRun:
    home = scratch / "helm-home"
    helm_env = {
        **env,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    cmd = [str(cluster.bin_dir / "helm"), f"--kubeconfig={cluster.kubeconfig}"]
    return _checked(run_measured([*cmd, "ls", "-A", "--max", "0"], env=helm_env))


def _ours(cluster: TestCluster, kind: str, env: dict[str, str], scratch: Path) -> ChildRun:
    return _checked(run_measured(_ours_cmd(cluster, kind, scratch), env=env))


def _ours_cmd(cluster: TestCluster, kind: str, scratch: Path) -> list[str]:
    return python_cmd(
        "bench.report_proc",
        kind,
        "--kubeconfig",
        str(cluster.kubeconfig),
        "--context",
        cluster.context,
        "--out",
        str(scratch / f"{kind}.txt"),
    )


def _checked(run: ChildRun) -> ChildRun:
    if run.returncode != 0:
        raise RuntimeError(f"exit {run.returncode}: {run.stderr[-2000:]}")
    return run


TOOLS: dict[str, Callable[[TestCluster, dict[str, str], Path], ChildRun]] = {
    "nodes": lambda c, env, scratch: _kubectl(c, env),
    "helm": _helm_ls,
}


def _measure(cluster: TestCluster, kind: str, env: dict[str, str], scratch: Path) -> Measured:
    tool = TOOLS[kind](cluster, env, scratch)
    ours = _ours(cluster, kind, env, scratch)
    return Measured(tool, ours, json.loads(ours.stdout)["seconds"])


def _profile_ours(env: Env, cluster: TestCluster, tz_env: dict[str, str]) -> None:
    """Each of our reports under py-spy, attached as the child starts (imports included)."""
    for kind in TOOLS:
        out = env.results_dir / f"{NAME}.{kind}.profile.txt"
        cmd = _ours_cmd(cluster, kind, env.root)
        proc = subprocess.Popen(cmd, env=tz_env, cwd=REPO, stdout=subprocess.DEVNULL)
        with sampling(proc.pid, out, enabled=True):
            proc.wait(120)


# ----- the table ----------------------------------------------------------------------------

LABELS = {"nodes": "kubectl get nodes -o wide", "helm": "helm ls -A --max 0"}


def _row(kind: str, runs: list[Measured], baseline_mb: float) -> dict[str, Any]:
    tool_s = median(m.tool.wall_s for m in runs)
    inside_s = median(m.ours_inside_s for m in runs)
    process_s = median(m.ours.wall_s for m in runs)
    ours_mb = median(m.ours.max_rss_mb for m in runs)
    tool_mb = median(m.tool.max_rss_mb for m in runs)
    return {
        "report": f"{kind} vs {LABELS[kind]}",
        "tool s": rounded(tool_s, 3),
        "ours s (in bot)": rounded(inside_s, 3),
        "ratio (in bot)": rounded(inside_s / tool_s, 2),
        "ours s (own process)": rounded(process_s, 3),
        "ratio (process)": rounded(process_s / tool_s, 2),
        "tool peak RSS MB": rounded(tool_mb, 1),
        "ours peak RSS MB": rounded(ours_mb, 1),
        "ours above baseline MB": rounded(ours_mb - baseline_mb, 1),
        "RSS ratio": rounded(ours_mb / tool_mb, 2),
    }


def _result(
    p: Params, runs: dict[str, list[Measured]], baseline: list[ChildRun], secret_bytes: int
) -> BenchResult:
    baseline_mb = median(b.max_rss_mb for b in baseline)
    rows = [_row(kind, measured, baseline_mb) for kind, measured in runs.items()]
    nodes_ratio, helm_ratio = rows[0]["ratio (in bot)"], rows[1]["ratio (in bot)"]
    return BenchResult(
        name=NAME,
        title=TITLE,
        tables=[
            Table(
                f"{p.nodes:,} nodes; {p.releases:,} Helm releases x {p.revisions} revisions "
                f"(median of {p.repeats}; ratio = ours / tool, below 1 = we are faster)",
                list(rows[0]),
                rows,
            )
        ],
        targets=[
            Target("nodes report time / kubectl get nodes -o wide time", 0.5, nodes_ratio, "x"),
            Target("helm report time / helm ls -A time", 0.2, helm_ratio, "x"),
        ],
        notes=[
            f"Release Secrets average {secret_bytes / 1024:.1f} KB as JSON "
            f"(manifest {p.manifest_kb} KB before gzip). helm ls -A lists exactly the "
            f"{p.releases:,} releases, and our helm text equals its output byte for byte.",
            "Memory is peak RSS of the whole process (wait4 ru_maxrss) for every row; our "
            f"interpreter with the Kubernetes client imported and connected peaks at "
            f"{baseline_mb:.1f} MB before any report ('above baseline' subtracts that).",
            "'in bot' is the report's own time measured inside the child (list, build, render); "
            "'own process' adds interpreter start-up and imports, which a running bot does not "
            "pay per report.",
        ],
        data={
            "params": p.__dict__,
            "rows": rows,
            "baseline_rss_mb": rounded(baseline_mb, 1),
            "secret_bytes_mean": secret_bytes,
        },
    )
