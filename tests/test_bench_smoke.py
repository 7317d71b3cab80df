"""The benchmark runner at toy scale (``--quick``), so the benchmark code cannot rot.

It runs as a child process, as an operator would run it, against its own servers; the
numbers of a quick run mean nothing and are not checked, only that every benchmark ran,
printed its tables and wrote its JSON.
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

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[1]


def test_quick_run_of_every_benchmark(
    tmp_path: Path, testenv_bin: Path, redis_process: RedisProcess
) -> None:
    env = {**os.environ, "ACCESSBOT_TESTENV_BIN": str(testenv_bin), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--results", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for name in BENCHMARKS:
        doc = json.loads((tmp_path / f"{name}.json").read_text())
        assert doc["error"] is None, doc
        assert doc["tables"], doc
        assert all(t["rows"] for t in doc["tables"]), doc
        assert doc["targets"], f"{name} checks no target"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["quick"] is True
    assert {t["benchmark"] for t in summary["targets"]} == set(BENCHMARKS)
    assert "| benchmark | target | measured | result |" in proc.stdout
