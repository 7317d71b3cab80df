"""1. Ack latency: signed slash commands and button clicks at fixed rates against ``serve``.

Commands are ``/access list`` (ack, then a Redis read and an ephemeral answer on the
response_url); clicks are Approve on a request that is already approved (ack, then the
workflow finds nothing to do and says so on the response_url). Both are open-loop runs
from a separate process (bench/loadgen.py); latency is due time to full HTTP answer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from bench.common import BenchResult, CpuMeter, Dist, Env, Table, Target, median_of_runs
from bench.loadgen import Click, LoadResult
from bench.profiling import sampling
from bench.serve_bed import REQUESTER, ServeBed, serve_bed

NAME = "ack"
TITLE = "1. Ack latency under load (accessbot serve, HTTP mode)"
KINDS = ("command", "click")
LABELS = {"command": "slash command /access list", "click": "button click (Approve)"}
TARGET_MS = 100.0


@dataclass(frozen=True)
class Params:
    rates: tuple[float, ...]
    duration_s: float
    repeats: int


FULL = Params(rates=(50.0, 200.0), duration_s=10.0, repeats=3)
QUICK = Params(rates=(50.0, 200.0), duration_s=1.0, repeats=1)


@dataclass
class Series:
    """Repeated runs of one kind at one rate."""

    kind: str
    rate: float
    runs: list[Dist]
    sent: int = 0
    errors: int = 0
    follow_ups: int = 0
    over_3s: int = 0
    max_lateness_ms: float = 0.0

    def add(self, result: LoadResult, follow_ups: int) -> None:
        latencies = result.latencies_ms[self.kind]
        self.runs.append(Dist.of(latencies))
        self.sent += result.sent
        self.errors += sum(result.errors.values())
        self.follow_ups += follow_ups
        self.over_3s += sum(1 for v in latencies if v >= 3000)
        self.max_lateness_ms = max(self.max_lateness_ms, result.max_send_lateness_ms)

    def row(self) -> dict[str, Any]:
        return {
            "request": LABELS[self.kind],
            "rate/s": f"{self.rate:g}",
            **median_of_runs(self.runs),
            "errors": self.errors,
            "over 3 s": self.over_3s,
            "follow-ups": f"{self.follow_ups}/{self.sent}",
        }


async def run(env: Env) -> BenchResult:
    p = env.scaled(FULL, QUICK)
    async with serve_bed(env) as bed:
        click = await bed.stale_click(REQUESTER)
        await bed.load(env.root, rate=20, duration=1, kinds=KINDS, click=click)  # warm-up
        profile_to = env.results_dir / f"{NAME}.profile.txt"
        pids = {
            "accessbot serve": bed.pid,
            "bench (Slack emulator)": os.getpid(),
            **env.server_pids("a"),
        }
        with sampling(bed.pid, profile_to, enabled=env.profile), CpuMeter(pids) as cpu:
            series = await _measure(bed, env, p, click)
    result = _result(p, series)
    result.tables.append(cpu.table("all measured runs (load generator: in the machine row)"))
    return result


async def _measure(bed: ServeBed, env: Env, p: Params, click: Click) -> list[Series]:
    series = []
    for rate in p.rates:
        for kind in KINDS:
            s = Series(kind, rate, [])
            for _ in range(p.repeats):
                result, follow_ups = await bed.load(
                    env.root, rate=rate, duration=p.duration_s, kinds=[kind], click=click
                )
                s.add(result, follow_ups)
            series.append(s)
    return series


def _result(p: Params, series: list[Series]) -> BenchResult:
    top = max(p.rates)
    targets = [
        Target(f"ack p99 at {top:g} req/s, {LABELS[s.kind]}", TARGET_MS, s.row()["p99_ms"], "ms")
        for s in series
        if s.rate == top
    ]
    return BenchResult(
        name=NAME,
        title=TITLE,
        tables=[
            Table(
                f"Ack latency, open loop, {p.duration_s:g} s per run, median of {p.repeats} runs",
                [
                    "request",
                    "rate/s",
                    "n",
                    "p50_ms",
                    "p99_ms",
                    "max_ms",
                    "errors",
                    "over 3 s",
                    "follow-ups",
                ],
                [s.row() for s in series],
            )
        ],
        targets=targets,
        notes=[
            "Latency runs from each request's due time (open loop) to its full HTTP answer; "
            "n counts every answered request of all runs. 'follow-ups' are the bot's answers "
            "on response_url after the ack.",
            "Max generator lateness: "
            + ", ".join(f"{s.kind}@{s.rate:g} {s.max_lateness_ms:.0f} ms" for s in series),
        ],
        data={
            "params": p.__dict__,
            "series": [{**s.row(), "runs": [r.row() for r in s.runs]} for s in series],
        },
    )
