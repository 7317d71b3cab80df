"""Run AccessBot's benchmarks (issues 8 and 16) against real servers; print tables, write JSON.

    .venv/bin/python -m bench.run [--quick] [--only NAME] [--profile] [--results DIR]
                                  [--budget SECONDS]

Starts what it needs itself, on 127.0.0.1 only: redis-server, kube-apiservers with etcd
(tests/support/cluster.py), the real kubectl and helm, the Slack emulator and
``accessbot serve``. Prints one markdown table per benchmark and a summary of the issue's
targets (met or missed, with the measured number); writes bench/results/<name>.json and
bench/results/summary.{json,md}. Exits 1 when a benchmark failed or, in a full run, a
target was missed. Slack is the emulator at 100 ms per call with its per-channel limit.
``--quick`` runs everything at toy scale (< 1 min) to
show the code works; its numbers mean nothing. ``--budget`` replaces each benchmark's
wall-clock limit (the test suite's smoke run gives a busy machine plenty). ``--profile``
samples the measured process with py-spy (a dev tool, not a dependency) into
bench/results/<name>.profile.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

from bench import ack, approval, expiry, offboard, reports, rss
from bench.common import (
    RESULTS_DIR,
    BenchResult,
    Env,
    Table,
    machine_info,
    product_logging,
    write_json,
)
from bench.profiling import py_spy

# In the order. Each module has NAME, TITLE and ``async def run(env) -> BenchResult``.
BENCHMARKS: dict[str, ModuleType] = {
    m.NAME: m for m in (ack, approval, expiry, offboard, reports, rss)
}
# Wall-clock limit of a benchmark (full, quick) unless its module sets BUDGET_S: one stuck
# benchmark must not eat the whole run's budget (15 min; 1 min with --quick).
DEFAULT_BUDGET_S = (300.0, 40.0)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="toy scale, < 1 min: a smoke test")
    p.add_argument(
        "--only",
        action="append",
        choices=list(BENCHMARKS),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    p.add_argument("--profile", action="store_true", help="sample with py-spy while measuring")
    p.add_argument("--results", type=Path, default=RESULTS_DIR, help="where JSON goes")
    p.add_argument(
        "--budget",
        type=float,
        metavar="SECONDS",
        help="wall-clock limit of each benchmark, instead of its own (e.g. on a busy machine)",
    )
    return p.parse_args(argv)


async def _run_one(env: Env, module: ModuleType, budget_s: float | None) -> BenchResult:
    full, quick = getattr(module, "BUDGET_S", DEFAULT_BUDGET_S)
    budget = budget_s if budget_s is not None else quick if env.quick else full
    started = time.monotonic()
    try:
        result: BenchResult = await asyncio.wait_for(module.run(env), budget)
    except Exception as exc:
        reason = f"timed out after {budget:g} s" if isinstance(exc, TimeoutError) else repr(exc)
        result = BenchResult(name=module.NAME, title=module.TITLE, error=reason)
    result.seconds = time.monotonic() - started
    if env.quick:
        result.notes.append("--quick: toy scale; these numbers say nothing about targets.")
    return result


async def _run_all(env: Env, names: list[str], budget_s: float | None) -> list[BenchResult]:
    results = []
    for name in names:
        result = await _run_one(env, BENCHMARKS[name], budget_s)
        print(result.markdown(), end="\n\n", flush=True)
        write_json(env.results_dir / f"{name}.json", result.to_json())
        results.append(result)
    return results


def _summary(results: list[BenchResult]) -> Table:
    rows = [t.row(r.name) for r in results for t in r.targets]
    rows += [
        {"benchmark": r.name, "target": "-", "measured": "-", "result": f"ERROR: {r.error}"}
        for r in results
        if r.error
    ]
    return Table("Targets", ["benchmark", "target", "measured", "result"], rows)


def _machine_table(info: dict[str, object]) -> Table:
    return Table("Machine", ["what", "value"], [{"what": k, "value": v} for k, v in info.items()])


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the servers this run started are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    names = args.only or list(BENCHMARKS)
    if args.profile and py_spy() is None:
        print("--profile: py-spy is not installed (pip install py-spy); running unprofiled")
    args.results.mkdir(parents=True, exist_ok=True)
    product_logging(args.results / "accessbot.log")
    with tempfile.TemporaryDirectory(prefix="ab-bench-") as tmp:
        env = Env(Path(tmp), quick=args.quick, profile=args.profile, results_dir=args.results)
        try:
            info = machine_info(env.bin_dir)
            print(_machine_table(info).markdown(), end="\n\n", flush=True)
            results = asyncio.run(_run_all(env, names, args.budget))
        finally:
            env.close()
    summary = _summary(results)
    print(summary.markdown())
    doc = {"machine": info, "quick": args.quick, "profiled": args.profile}
    write_json(args.results / "summary.json", {**doc, "targets": summary.rows})
    markdown = [_machine_table(info).markdown(), *(r.markdown() for r in results)]
    (args.results / "summary.md").write_text("\n\n".join([*markdown, summary.markdown()]) + "\n")
    missed = any(t.met is False for r in results for t in r.targets)
    # A toy-scale run (--quick) shows the code works; only a full run can miss a target.
    return 1 if any(r.error for r in results) or (missed and not args.quick) else 0


if __name__ == "__main__":
    sys.exit(main())
