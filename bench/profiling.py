"""Where the time goes: py-spy samples a process (every thread) while a benchmark runs.

py-spy attaches to a running process by pid, so the same tool profiles this process (the
in-process workflow benchmarks), ``accessbot serve`` and a report subprocess, without
changing their code, and it sees the Kubernetes client's worker threads as well as the
event loop. Sampling is non-blocking (``--nonblocking``), so the profiled numbers stay
close to unprofiled ones; ``bench.run --profile`` still reports them as profiled.

py-spy is a development tool, not a dependency: without it ``--profile`` says so and the
benchmarks run unprofiled.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

RATE = 250  # samples per second
TOP = 15
_LINE_NO = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


@dataclass
class Profile:
    """A finished profile: the raw collapsed stacks and a readable summary."""

    raw: Path
    summary: str


@contextmanager
def sampling(pid: int, out: Path, *, enabled: bool) -> Iterator[list[Profile]]:
    """Sample ``pid`` while the block runs; the yielded list holds the Profile afterwards."""
    found: list[Profile] = []
    exe = py_spy() if enabled else None
    if exe is None:
        yield found
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = out.with_suffix(".raw.txt")
    cmd = [exe, "record", "--pid", str(pid), "--format", "raw", "--output", str(raw)]
    cmd += ["--rate", str(RATE), "--nonblocking"]
    spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.3)  # attached before the measured work starts
    try:
        yield found
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()
    if raw.exists():
        text = summarize(raw.read_text())
        out.write_text(text)
        found.append(Profile(raw, text))


def summarize(collapsed: str, top: int = TOP) -> str:
    """Shares of the samples per thread kind, per function of ours, inclusive and self."""
    threads: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_LINE_NO.sub(")", f) for f in stack.split(";")]
        total += count
        threads[_thread_kind(frames)] += count
        ours[_innermost_ours(frames)] += count
        for frame in set(frames) - _boilerplate(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    if total == 0:
        return "no samples (the process was idle or py-spy could not attach)\n"
    sections = [
        ("by thread", threads.most_common()),
        (
            "by our innermost function (bot/, k8s/), with the library code it calls",
            ours.most_common(top),
        ),
        ("inclusive (a function and everything it calls)", inclusive.most_common(top)),
        ("self (a function's own code)", own.most_common(top)),
    ]
    lines = [f"{total} samples of running threads at {RATE}/s (py-spy, non-blocking)"]
    for title, rows in sections:
        lines += ["", f"{title}:", *(f"  {_pct(n, total)}  {name}" for name, n in rows)]
    return "\n".join(lines) + "\n"


_OURS = re.compile(r"\((bot/(?!cli\.py|__main__\.py)|k8s/)[^)]*\)$")
_K8S_API = re.compile(r"\(kubernetes/client/api/[^)]*\)$")
_BOILERPLATE = re.compile(
    r"\((<frozen runpy>|threading\.py|concurrent/futures/thread\.py|asyncio/(runners|events|"
    r"base_events)\.py|bot/__main__\.py|bot/cli\.py)\)$"
)


def _innermost_ours(frames: list[str]) -> str:
    """Our innermost frame; else the Kubernetes API call or the event-loop callback."""
    found = next((f for f in reversed(frames) if _OURS.search(f)), None)
    if found is not None:
        return found
    api = next((f for f in frames if _K8S_API.search(f)), None)
    if api is not None:
        return f"Kubernetes client in the pool: {api}"
    boiler = _boilerplate(frames)
    outer = next((f for f in frames if f not in boiler), frames[-1])
    return f"not under our code: {outer}"


def _boilerplate(frames: list[str]) -> set[str]:
    """Frames on nearly every stack (interpreter start, event loop, thread start)."""
    return {f for f in frames if _BOILERPLATE.search(f)}


def _thread_kind(frames: list[str]) -> str:
    if "_worker (concurrent/futures/thread.py)" in frames:
        return "thread pool (Kubernetes client calls, report decoding)"
    return "main thread (event loop)"


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:5.1f}%"
