"""Helpers for the deploy tests: render the chart with the real helm, read the result."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from tests.support.patience import PATIENCE

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm-chart" / "accessbot"
HERE = Path(__file__).resolve().parent
VALUES_ALL = HERE / "values-all.yaml"
VALUES_EXTERNAL = HERE / "values-external.yaml"

# A minimal CustomResourceDefinition for the Prometheus Operator's ServiceMonitor, so
# that the test apiserver (which has no such CRD) can judge the chart's ServiceMonitor.
SERVICE_MONITOR_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors,
          singular: servicemonitor}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"""


def helm_env(home: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    env.pop("KUBECONFIG", None)
    return env


def run_helm(
    bin_dir: Path, home: Path, *args: str, check: bool = True, timeout: float = PATIENCE
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(bin_dir / "helm"), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=helm_env(home),
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def value_args(
    values: Iterable[Path] = (), sets: Iterable[str] = (), policy: Path | None = None
) -> list[str]:
    args: list[str] = []
    for path in values:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    if policy is not None:
        args += ["--set-file", f"policy={policy}"]
    return args


def template(
    bin_dir: Path,
    home: Path,
    *,
    release: str = "ab",
    namespace: str = "accessbot",
    values: Iterable[Path] = (),
    sets: Iterable[str] = (),
    policy: Path | None = None,
) -> str:
    args = ["template", release, str(CHART), "--namespace", namespace]
    return run_helm(bin_dir, home, *args, *value_args(values, sets, policy)).stdout


def documents(manifest: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(manifest) if d]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def bind_rules(cluster_role: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in cluster_role["rules"] if "bind" in r["verbs"]]


def kubectl(
    bin_dir: Path,
    kubeconfig: Path,
    *args: str,
    stdin: str | None = None,
    check: bool = True,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """The real kubectl, with text on stdin (TestCluster.kubectl has no stdin)."""
    env = {**os.environ}
    env.pop("KUBECONFIG", None)
    proc = subprocess.run(
        [str(bin_dir / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"kubectl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def wait_for_crd(cluster: Any, name: str, timeout: float = PATIENCE) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = kubectl(
            cluster.bin_dir, cluster.kubeconfig, "get", "crd", name, "-o",
            "jsonpath={.status.conditions[?(@.type=='Established')].status}",
        )  # fmt: skip
        if out.stdout == "True":
            return
        time.sleep(0.2)
    raise AssertionError(f"CRD {name} not established after {timeout}s")
