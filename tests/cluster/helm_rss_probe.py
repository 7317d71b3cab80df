"""Run one helm report in this process and print its rows and peak RSS (JSON).

Used by tests/cluster/test_helm_report.py: ``python helm_rss_probe.py KUBECONFIG NS``.
"Idle" is this process after imports, client set-up and one warm-up report
of an empty selection; the peak is the kernel's high-water mark (VmHWM),
reset just before the measured report (``/proc/self/clear_refs`` = 5).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from k8s.clients import ClusterRegistry, ClusterTarget
from k8s.helm import helm_report


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


async def main(kubeconfig: str, namespace: str) -> dict[str, object]:
    registry = ClusterRegistry(
        {"t": ClusterTarget(name="t", context="admin", kubeconfig=kubeconfig)}
    )
    try:
        cc = registry["t"]
        await helm_report(cc, "default")  # warm up: imports, connections, pool threads
        Path("/proc/self/clear_refs").write_text("5")
        idle = status_kib("VmRSS")
        report = await helm_report(cc, namespace)
        peak = status_kib("VmHWM")
    finally:
        registry.close()
    return {
        "rows": sorted([r.name, r.error] for r in report.rows),
        "problems": list(report.problems),
        "idle_kib": idle,
        "peak_kib": peak,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
