"""What every benchmark shares: the real servers, statistics, tables, results, measurement.

A benchmark module exposes ``TITLE`` and ``async def run(env: Env) -> BenchResult``; the
runner (``bench/run.py``) gives every benchmark the same :class:`Env`, which starts the
servers it is asked for on first use (redis-server, kube-apiservers with etcd) and stops
them at the end. Everything listens on 127.0.0.1 or a unix socket only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import platform
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import redis.asyncio as aioredis

from bot.core import Core, build_core
from bot.lifecycle import State
from bot.logs import setup_logging
from bot.models import Grant
from bot.policy import AccessRequestSpec, parse_policy
from bot.redis_server import RedisProcess
from bot.scheduler import LagObserver
from tests.support.cluster import TestCluster, start_cluster, testenv_bin_dir
from tests.support.doubles import RecordingNotifier
from tests.support.harness import POLICY, default_directory, prepare_clusters, wipe_managed

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
MB = 1024 * 1024

# The clusters of tests/support/harness.py POLICY (contexts "a" and "b").
WORKFLOW_CLUSTERS = ("a", "b")


# ----- statistics -------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of unsorted values; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Iterable[float]) -> float:
    return percentile([v for v in values if not math.isnan(v)], 0.5)


@dataclass(frozen=True)
class Dist:
    """A latency distribution in milliseconds."""

    n: int
    p50: float
    p99: float
    max: float

    @classmethod
    def of(cls, values_ms: Sequence[float]) -> Dist:
        return cls(
            n=len(values_ms),
            p50=percentile(values_ms, 0.50),
            p99=percentile(values_ms, 0.99),
            max=max(values_ms, default=math.nan),
        )

    @classmethod
    def seconds(cls, values_s: Iterable[float]) -> Dist:
        return cls.of([v * 1000 for v in values_s])

    def row(self) -> dict[str, Any]:
        return {"n": self.n, "p50_ms": ms(self.p50), "p99_ms": ms(self.p99), "max_ms": ms(self.max)}


def ms(value: float) -> float | None:
    """Milliseconds rounded for a table; None (shown as "-") when not measured."""
    return None if math.isnan(value) else round(value, 1)


def rounded(value: float, digits: int = 2) -> float | None:
    return None if math.isnan(value) else round(value, digits)


def median_of_runs(runs: Sequence[Dist]) -> dict[str, Any]:
    """Median p50 / p99 / max over repeated runs, and all samples counted."""
    return {
        "n": sum(r.n for r in runs),
        "p50_ms": ms(median(r.p50 for r in runs)),
        "p99_ms": ms(median(r.p99 for r in runs)),
        "max_ms": ms(max((r.max for r in runs), default=math.nan)),
    }


# ----- results ----------------------------------------------------------------------------


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[dict[str, Any]]

    def markdown(self) -> str:
        head = "| " + " | ".join(self.columns) + " |"
        rule = "|" + "|".join("---" for _ in self.columns) + "|"
        body = [
            "| " + " | ".join(_cell(row.get(c)) for c in self.columns) + " |" for row in self.rows
        ]
        return "\n".join([f"**{self.title}**", "", head, rule, *body])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}" if abs(value) >= 0.01 or value == 0 else f"{value:.2g}"
    return str(value)


@dataclass(frozen=True)
class Target:
    """One target of the issue: ``measured`` must stay below ``limit``."""

    what: str
    limit: float
    measured: float | None
    unit: str

    @property
    def met(self) -> bool | None:
        if self.measured is None or math.isnan(self.measured):
            return None
        return self.measured < self.limit

    def row(self, benchmark: str) -> dict[str, Any]:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[self.met]
        return {
            "benchmark": benchmark,
            "target": f"{self.what} < {self.limit:g} {self.unit}",
            "measured": f"{self.measured:g} {self.unit}" if self.met is not None else "-",
            "result": verdict,
        }


@dataclass
class BenchResult:
    name: str
    title: str
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    def markdown(self) -> str:
        parts = [f"### {self.title}"]
        if self.error:
            parts.append(f"FAILED: {self.error}")
        parts += [t.markdown() for t in self.tables]
        parts += [f"- {note}" for note in self.notes]
        return "\n\n".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "seconds": round(self.seconds, 1),
            "error": self.error,
            "targets": [{**t.row(self.name), "met": t.met} for t in self.targets],
            "tables": [{"title": t.title, "rows": t.rows} for t in self.tables],
            "notes": self.notes,
            "data": self.data,
        }


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")


# ----- the machine ------------------------------------------------------------------------


def machine_info(bin_dir: Path | None) -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis": _version(["redis-server", "--version"]),
        "kube-apiserver, etcd, kubectl": _kubernetes_version(),
        "helm": _version([str(bin_dir / "helm"), "version", "--short"]) if bin_dir else "",
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _kubernetes_version() -> str:
    """The version tests/testenv builds the apiserver and kubectl from (they report none)."""
    for line in (REPO / "tests" / "testenv" / "go.mod").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "k8s.io/kubernetes":
            return f"built from k8s.io/kubernetes {parts[1]}"
    return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.stdout or out.stderr else ""


# ----- the servers ------------------------------------------------------------------------


class Env:
    """The real servers, started on first use, shared by every benchmark of one run."""

    def __init__(self, root: Path, *, quick: bool, profile: bool, results_dir: Path) -> None:
        self.root = root
        self.quick = quick
        self.profile = profile
        self.results_dir = results_dir
        self._redis: RedisProcess | None = None
        self._bin_dir: Path | None = None
        self._clusters: dict[str, TestCluster] = {}
        self._kubeconfig: Path | None = None

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = testenv_bin_dir()
        return self._bin_dir

    async def redis_url(self) -> str:
        """A Redis emptied for the caller: every benchmark starts from nothing."""
        if self._redis is None:
            self._redis = RedisProcess(self.root / "redis", appendonly=False).start()
        r = aioredis.from_url(self._redis.url)
        try:
            await r.flushall()
        finally:
            await r.aclose()
        return self._redis.url

    async def clusters(self, *names: str) -> dict[str, TestCluster]:
        """Named apiservers, starting the missing ones in parallel."""
        missing = [n for n in names if n not in self._clusters]
        started = await asyncio.gather(
            *(
                asyncio.to_thread(start_cluster, n, self.root / f"cluster-{n}", self.bin_dir)
                for n in missing
            ),
            return_exceptions=True,
        )
        failed = [s for s in started if isinstance(s, BaseException)]
        # Keep the ones that did start, so that close() stops them.
        self._clusters.update(
            (n, c) for n, c in zip(missing, started, strict=True) if isinstance(c, TestCluster)
        )
        if failed:
            raise failed[0]
        return {n: self._clusters[n] for n in names}

    async def workflow_kubeconfig(self) -> Path:
        """Clusters a and b with the harness namespaces, in one kubeconfig."""
        clusters = await self.clusters(*WORKFLOW_CLUSTERS)
        if self._kubeconfig is None:
            self._kubeconfig = await asyncio.to_thread(prepare_clusters, clusters, self.root)
        return self._kubeconfig

    def server_pids(self, *clusters: str) -> dict[str, int]:
        """redis-server and the named clusters' etcd and kube-apiserver, by display name."""
        pids = {"redis-server": self._redis.pid} if self._redis and self._redis.pid else {}
        for name in clusters:
            pids.update(cluster_pids(self._clusters[name]))
        return pids

    def close(self) -> None:
        for c in self._clusters.values():
            c.stop()
        self._clusters.clear()
        if self._redis is not None:
            self._redis.stop()
            self._redis = None

    def scaled(self, full: T, quick: T) -> T:
        return quick if self.quick else full


def product_logging(path: Path) -> None:
    """Log as ``accessbot serve`` does (JSON, INFO, redaction), into a file, not the table."""
    setup_logging("json", "INFO")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(path.open("w"))  # one run per file; closed when the process ends


# ----- the workflow in this process ---------------------------------------------------------


@asynccontextmanager
async def workflow_core(
    env: Env, *, on_lag: LagObserver | None = None, start: bool = True
) -> AsyncIterator[Core]:
    """The real workflow on clusters a and b with ``accessbot serve``'s defaults.

    Scheduler and reconciler run with the product's settings (30 s leases, 0.1 s poll,
    concurrency 64, a reconcile pass every 60 s); Slack is the tests' RecordingNotifier
    and StaticDirectory, which cost next to nothing.
    """
    kubeconfig = await env.workflow_kubeconfig()
    core = await build_core(
        parse_policy(POLICY),
        await env.redis_url(),
        notifier=RecordingNotifier(),
        directory=default_directory(),
        kubeconfig=str(kubeconfig),
        scheduler_options={"on_lag": on_lag} if on_lag else None,
    )
    await wipe_managed(core)
    if start:
        core.start()
    try:
        yield core
    finally:
        await core.close()


def view_request(requester: str, cluster: str, reason: str) -> AccessRequestSpec:
    """An auto-approved request (harness role ``view``): submit leads straight to objects."""
    return AccessRequestSpec(
        requester=requester,
        role="view",
        cluster=cluster,
        namespace="team-a" if cluster == "a" else "team-b",
        duration=timedelta(hours=1),
        reason=reason,
    )


async def gather_limited(jobs: Iterable[Awaitable[T]], limit: int) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def one(job: Awaitable[T]) -> T:
        async with gate:
            return await job

    return list(await asyncio.gather(*(one(j) for j in jobs)))


async def provision(core: Core, specs: Sequence[AccessRequestSpec], timeout: float) -> list[Grant]:
    """Submit requests and wait until every grant is active (objects made, file delivered)."""
    submitted = await gather_limited((core.workflow.submit(s) for s in specs), limit=32)
    ids = [g.id for g in submitted]

    async def all_active() -> list[Grant] | None:
        grants = await core.store.many(ids)
        failed = [g for g in grants if g.state == State.FAILED]
        if failed:
            raise RuntimeError(f"{len(failed)} grants failed to provision: {failed[0].failure}")
        return grants if all(g.state == State.ACTIVE for g in grants) else None

    return await wait_for(all_active, timeout, f"{len(ids)} grants active", interval=0.1)


async def wait_for(
    check: Callable[[], Awaitable[T | None]], timeout: float, what: str, interval: float = 0.05
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached in {timeout:g} s")
        await asyncio.sleep(interval)


# ----- the apiserver's own request counters ----------------------------------------------


def admin_ssl(cluster: TestCluster) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cluster.pki.ca.cert))
    ctx.load_cert_chain(str(cluster.pki.admin.cert), str(cluster.pki.admin.key))
    return ctx


async def apiserver_requests(cluster: TestCluster) -> Counter[str]:
    """``apiserver_request_total`` summed by verb, from the apiserver's /metrics."""
    connector = aiohttp.TCPConnector(ssl=admin_ssl(cluster))
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.get(f"{cluster.server}/metrics") as resp,
    ):
        text = await resp.text()
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{"):
            labels, value = line.rsplit(" ", 1)
            verb = labels.split('verb="', 1)[1].split('"', 1)[0]
            counts[verb] += int(float(value))
    return counts


# ----- other processes ------------------------------------------------------------------


@dataclass(frozen=True)
class ChildRun:
    """One finished child process: wall time, peak RSS (its own rusage), output."""

    wall_s: float
    max_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def run_measured(
    cmd: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 300
) -> ChildRun:
    """Run ``cmd`` to the end under bench/timed.py: wall time and its own peak RSS."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile(suffix=".json") as result,
    ):
        launcher = [sys.executable, "-m", "bench.timed", result.name, *cmd]
        proc = subprocess.Popen(launcher, stdout=out, stderr=err, env=env, cwd=REPO)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        doc = json.loads(Path(result.name).read_text())
    code = os.waitstatus_to_exitcode(doc["status"])
    return ChildRun(doc["wall_s"], doc["max_rss_kb"] / 1024, code, stdout, stderr)


def python_env(**extra: str) -> dict[str, str]:
    """The environment for ``python -m bench.…`` children: this repo importable."""
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def python_cmd(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


# ----- who used the two cores -------------------------------------------------------------


def cluster_pids(cluster: TestCluster) -> dict[str, int]:
    """etcd and kube-apiserver of one test cluster: the processes started in its directory."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if Path(os.readlink(proc / "cwd")) == cluster.root:
                found[f"{(proc / 'comm').read_text().strip()} ({cluster.name})"] = int(proc.name)
        except OSError:
            continue
    return found


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


class CpuMeter:
    """CPU time of named processes over a block, as % of one core (the machine has N)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.rows: list[dict[str, Any]] = []

    def __enter__(self) -> CpuMeter:
        self._start = time.monotonic()
        self._cpu = {name: _cpu_seconds(pid) for name, pid in self.pids.items()}
        self._machine = _machine_busy()
        return self

    def __exit__(self, *_: object) -> None:
        wall = time.monotonic() - self._start
        for name, pid in self.pids.items():
            try:
                used = _cpu_seconds(pid) - self._cpu[name]
            except OSError:
                continue
            self.rows.append(
                {
                    "process": name,
                    "CPU s": round(used, 1),
                    "% of one core": round(100 * used / wall),
                }
            )
        busy, total = _machine_busy()
        share = (busy - self._machine[0]) / max(1, total - self._machine[1])
        cores = os.cpu_count() or 1
        self.rows.append(
            {
                "process": f"whole machine, all processes ({cores} cores)",
                "CPU s": round(share * cores * wall, 1),
                "% of one core": round(100 * share * cores),
            }
        )

    def table(self, what: str) -> Table:
        return Table(f"CPU use during {what}", ["process", "CPU s", "% of one core"], self.rows)


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a live process, in MB, from /proc/PID/status."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(rest.split()[0]) / 1024
    return found
