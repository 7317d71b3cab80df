"""The benchmark runner at toy scale (``--quick``), so the benchmark code cannot rot.

It runs as a child process, as an operator would run it, against its own servers. It
checks that every benchmark ran, printed its tables and wrote its JSON, never what the
numbers are: a quick run's numbers mean nothing, and on a busy machine (CI, a laptop
compiling) they are whatever the load makes them. For the same reason the run gets
``--budget`` far above what an idle machine needs: a benchmark's own time limit is a
guard against a hang, not a target.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import BENCHMARKS
from bot.redis_server import RedisProcess

# Per benchmark; an idle 2-core machine needs under 30 s for the slowest.
BUDGET_S = 300.0
RUN_TIMEOUT_S = BUDGET_S * len(BENCHMARKS) + 120.0  # + machine info, server start/stop

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(RUN_TIMEOUT_S + 60.0)]
REPO = Path(__file__).resolve().parents[2]


def test_quick_run_of_every_benchmark(
    tmp_path: Path, testenv_bin: Path, redis_process: RedisProcess
) -> None:
    env = {**os.environ, "ACCESSBOT_TESTENV_BIN": str(testenv_bin), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "bench.run", "--quick", "--results", str(tmp_path)]
    proc = subprocess.run(
        [*cmd, "--budget", str(BUDGET_S)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for name in BENCHMARKS:
        doc = json.loads((tmp_path / f"{name}.json").read_text())
        assert doc["error"] is None, doc
        assert doc["tables"], doc
        assert all(t["rows"] for t in doc["tables"]), doc
        # That each benchmark reports against a target of the issue, met or not.
        assert doc["targets"], f"{name} checks no target"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["quick"] is True
    assert {t["benchmark"] for t in summary["targets"]} == set(BENCHMARKS)
    assert "| benchmark | target | measured | result |" in proc.stdout
