"""6. Memory of ``accessbot serve``: resident set idle, and under the load of benchmark 1.

Read from /proc/PID/status of the serve process: VmRSS (resident now), sampled every
100 ms during the load, and VmHWM (the kernel's high-water mark of resident memory
since the process started), which no sampling interval can miss.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from bench.ack import KINDS
from bench.common import BenchResult, Dist, Env, Table, Target, proc_status, rounded
from bench.serve_bed import REQUESTER, serve_bed

NAME = "rss"
TITLE = "6. RSS of accessbot serve"
TARGET_MB = 150.0


@dataclass(frozen=True)
class Params:
    settle_s: float  # after readiness, before the idle reading
    rate: float
    duration_s: float


FULL = Params(settle_s=5.0, rate=200.0, duration_s=15.0)
QUICK = Params(settle_s=0.5, rate=100.0, duration_s=1.0)


async def run(env: Env) -> BenchResult:
    p = env.scaled(FULL, QUICK)
    async with serve_bed(env) as bed:
        await asyncio.sleep(p.settle_s)
        idle = proc_status(bed.pid)["VmRSS"]
        click = await bed.stale_click(REQUESTER)
        after_approval = proc_status(bed.pid)["VmRSS"]
        samples: list[float] = []
        sampler = asyncio.create_task(_sample(bed.pid, samples))
        try:
            load, _ = await bed.load(
                env.root, rate=p.rate, duration=p.duration_s, kinds=KINDS, click=click
            )
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        status = proc_status(bed.pid)
    latencies = [v for kind in KINDS for v in load.latencies_ms[kind]]
    peak = max(status["VmHWM"], max(samples, default=0.0))
    rows = [
        {"state": "idle, after start-up", "RSS MB": rounded(idle, 1)},
        {
            "state": "after one approval (Kubernetes client in use)",
            "RSS MB": rounded(after_approval, 1),
        },
        {
            "state": f"under load ({p.rate:g} req/s mixed, {p.duration_s:g} s): peak sampled",
            "RSS MB": rounded(max(samples, default=float("nan")), 1),
        },
        {"state": "after the load", "RSS MB": rounded(status["VmRSS"], 1)},
        {"state": "high-water mark since start (VmHWM)", "RSS MB": rounded(status["VmHWM"], 1)},
    ]
    ack = Dist.of(latencies)
    return BenchResult(
        name=NAME,
        title=TITLE,
        tables=[Table("Resident memory of the serve process", ["state", "RSS MB"], rows)],
        targets=[Target("serve RSS under load (VmHWM)", TARGET_MB, rounded(peak, 1), "MB")],
        notes=[
            f"During the load: {ack.n} requests answered, ack p99 {ack.row()['p99_ms']} ms, "
            f"{sum(load.errors.values())} errors."
        ],
        data={"params": p.__dict__, "rows": rows, "samples_mb": [round(s, 1) for s in samples]},
    )


async def _sample(pid: int, into: list[float]) -> None:
    while True:
        into.append(proc_status(pid)["VmRSS"])
        await asyncio.sleep(0.1)
