"""One of our cluster reports, alone in a process, so its peak RSS can be measured.

    python -m bench.report_proc {nodes,helm,noop} --kubeconfig K --context C --out FILE

Times the report as the bot runs it (list, build, render the same text kubectl or helm
prints) and prints ``{"seconds": ..., "rows": ...}``; the text goes to ``--out``. ``noop``
imports and connects the same way but runs no report: the interpreter's baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from k8s.clients import ClusterClient, ClusterRegistry, ClusterTarget
from k8s.helm import helm_report
from k8s.nodes import nodes_report


async def _report(kind: str, client: ClusterClient) -> tuple[str, int]:
    if kind == "nodes":
        nodes = await nodes_report(client)
        return nodes.render_table(), nodes.total
    if kind == "helm":
        helm = await helm_report(client)
        return helm.render_helm_ls(), len(helm.rows_like_helm_ls())
    return "", 0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["nodes", "helm", "noop"])
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--context", required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    target = ClusterTarget(name="bench", context=args.context, kubeconfig=args.kubeconfig)
    registry = ClusterRegistry({"bench": target})
    try:
        started = time.perf_counter()
        text, rows = asyncio.run(_report(args.kind, registry["bench"]))
        seconds = time.perf_counter() - started
    finally:
        registry.close()
    args.out.write_text(text)
    print(json.dumps({"seconds": seconds, "rows": rows}))


if __name__ == "__main__":
    main()
