"""Build the real workflow (real Redis, real apiservers) with recording ports."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.core import Core, build_core
from bot.models import Grant
from bot.policy import parse_policy
from bot.redis_conn import RedisTarget
from bot.retry import Backoff
from bot.scheduler import Job
from k8s import grants as k8s_grants
from tests.support.cluster import TestCluster, combined_kubeconfig, ensure_namespaces
from tests.support.doubles import RecordingNotifier, StaticDirectory
from tests.support.patience import PATIENCE


def policy_yaml(
    *,
    edit_clusters: tuple[str, ...] = (),
    cluster_admin_clusters: tuple[str, ...] = (),
    reminder_before: str = "10m",
) -> str:
    """The test policy: clusters ``a`` and ``b``; roles ``view`` (no approval),
    ``edit`` (one of U0LEAD/@platform-leads) and ``cluster-admin`` (two of
    U0LEAD/U0BOSS/@sre), each on every cluster unless ``*_clusters`` names some;
    ``reminder_before`` is a policy duration (``10m``, ``10s``)."""

    def only_on(clusters: tuple[str, ...]) -> str:
        return f", clusters: [{', '.join(clusters)}]" if clusters else ""

    view_role = (
        "{cluster_role: view, scope: namespace, max_duration: 8h, approvals: 0,\n"
        '          namespaces: ["team-*"]}'
    )
    edit_role = (
        "{cluster_role: edit, scope: namespace, max_duration: 4h, approvals: 1,\n"
        '          approvers: ["U0LEAD", "@platform-leads"], namespaces: ["team-*"],\n'
        f"          accepts_risks: [token-minting, impersonation]{only_on(edit_clusters)}}}"
    )
    admin_role = (
        "{cluster_role: cluster-admin, scope: cluster, max_duration: 1h,\n"
        '                  approvals: 2, approvers: ["U0LEAD", "U0BOSS", "@sre"],\n'
        "                  accepts_risks: [token-minting, impersonation, escalation, "
        f"rbac-write]{only_on(cluster_admin_clusters)}}}"
    )
    return (
        '\napprovals_channel: C0APPROVALS\naudit_channel: C0AUDIT\nadmins: ["U0ADMIN"]\n'
        "clusters:\n  a: {context: a}\n  b: {context: b}\n"
        f"roles:\n  view:  {view_role}\n  edit:  {edit_role}\n  cluster-admin: {admin_role}\n"
        f"defaults: {{duration: 1h, pending_ttl: 24h, reminder_before: {reminder_before}}}\n"
    )


POLICY = policy_yaml()

NAMESPACES = ("accessbot-users", "team-a", "team-b")

# Fast enough for tests, slow enough that a crashed worker's lease is visible.
FAST_SCHEDULER = {"lease_seconds": 2.0, "poll_seconds": 0.05, "backoff_base_seconds": 0.2}
FAST_BACKOFF = Backoff(attempts=3, base=0.05, cap=0.2)


@dataclass
class Harness:
    core: Core
    notifier: RecordingNotifier
    directory: StaticDirectory
    kubeconfig: Path

    @property
    def workflow(self) -> Any:
        return self.core.workflow

    async def wait_state(self, grant_id: str, *states: str, timeout: float = PATIENCE) -> Grant:
        return await wait_for_grant(self.core, grant_id, lambda g: g.state in states, timeout)


async def wait_for_grant(
    core: Core, grant_id: str, ok: Callable[[Grant], bool], timeout: float
) -> Grant:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        grant = await core.store.get(grant_id)
        if grant is not None and ok(grant):
            return grant
        if loop.time() > deadline:
            raise AssertionError(f"grant {grant_id} did not get there in {timeout}s: {grant}")
        await asyncio.sleep(0.05)


# bot.scheduler.Scheduler's default key prefix; build_core keeps it.
SCHEDULER_PREFIX = "ab:sched"


# How long one step of a test bed's tear-down may take (serve bounds its own shutdown).
TEARDOWN_STEP_SECONDS = 60.0


async def bounded_teardown(what: str, step: Awaitable[Any]) -> None:
    """Await one tear-down ``step`` for at most TEARDOWN_STEP_SECONDS.

    ``accessbot serve`` bounds its shutdown (SHUTDOWN_BUDGET); a test bed does the same,
    so one stuck step cannot hold the suite for pytest's whole timeout. A step that runs
    over is reported on the real stderr (past pytest's capture) with every asyncio
    task's stack, so the hang can be read in CI's output.
    """
    try:
        await asyncio.wait_for(step, TEARDOWN_STEP_SECONDS)
    except TimeoutError:
        out = sys.__stderr__
        if out is None:
            return
        print(f"\n=== test bed tear-down: {what} ran over {TEARDOWN_STEP_SECONDS:g}s", file=out)
        for task in asyncio.all_tasks():
            task.print_stack(limit=12, file=out)


async def scheduler_idle(core: Core) -> bool:
    """Whether the scheduler has nothing left to do about what happened so far.

    Idle: no job is due (by the scheduler's own clock, wall time), none is claimed by
    any worker, none runs in this process, and none waits to be retried after a
    failure. Jobs due later (an expiry, a reminder, a cleanup safety net) may remain;
    a test that says something about them reads them (:func:`pending_jobs`).
    """
    if core.scheduler.running_count:
        return False
    p = SCHEDULER_PREFIX
    # One transaction: a claim moves an entry from due to leases atomically, and two
    # separate reads could miss it in between (leases read before, due after).
    async with core.redis.pipeline(transaction=True) as pipe:
        pipe.zcard(f"{p}:leases")
        pipe.zcount(f"{p}:due", "-inf", time.time() * 1000)
        claimed, due = await pipe.execute()
    if claimed or due:
        return False
    return not any(job.attempts for job in (await pending_jobs(core)).values())


async def pending_jobs(core: Core) -> dict[str, Job]:
    """Every due-index entry the scheduler holds (waiting or running), by grant id."""
    raw: dict[str, str] = await core.redis.hgetall(f"{SCHEDULER_PREFIX}:jobs")  # type: ignore[misc]
    return {job_id: Job.from_payload(payload) for job_id, payload in raw.items()}


async def until_step_done(core: Core, grant_id: str, kind: str, timeout: float = PATIENCE) -> None:
    """Return once the grant's next step is no longer ``kind`` (bot.agenda.StepKind value)
    and no worker holds its entry: that step's handler has run to its end."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        entry = await core.scheduler.get(grant_id)
        leased = await core.redis.zscore(f"{SCHEDULER_PREFIX}:leases", grant_id)
        if (entry is None or entry.kind != kind) and leased is None:
            return
        assert loop.time() < deadline, f"step {kind} of {grant_id} still held after {timeout}s"
        await asyncio.sleep(0.05)


async def scheduled_steps(core: Core, grant_id: str) -> dict[str, float]:
    """The grant's due-index entry and the steps the agenda gives after it, each as if the
    one before ran on time: step kind -> due (epoch seconds). An active grant shows its
    reminder (when one is owed) and its expiry."""
    entry = await core.scheduler.get(grant_id)
    grant = await core.store.get(grant_id)
    if entry is None or grant is None or core.store.plan is None:
        return {}
    steps = {entry.kind: entry.due}
    if entry.kind == "remind" and grant.expires_at is not None:
        done = grant.model_copy(update={"reminded_for": grant.expires_at})
        after = core.store.plan(done, done.expires_at or grant.expires_at)
        if after is not None:
            steps[after.kind.value] = after.due.timestamp()
    return steps


async def settled(
    core: Core, also: Callable[[], bool] = lambda: True, timeout: float = PATIENCE
) -> None:
    """Return once the bot has finished everything it started: the barrier before a
    "nothing bad happened" assertion.

    Outside the call a test awaits, the workflow acts only through scheduler jobs
    (provisioning, cleanup, cards, retries): once none is due, claimed, running or
    retrying, whatever the test's actions set in motion has run to its end, and an
    assertion that something did *not* happen can no longer pass merely because it
    has not happened *yet*. Every change committed so far has been told too (the
    outbox is empty: :mod:`bot.outbox`). ``also``: more work that must be over (Slack deliveries
    still being handled, see tests/slack/support.py), checked in the same pass.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    # Slack work first: a delivery being handled may still schedule jobs; the outbox
    # last: a step's change is told after it commits.
    while not (also() and await scheduler_idle(core) and not await core.outbox.untold()):
        assert loop.time() < deadline, f"the bot still busy after {timeout}s"
        await asyncio.sleep(0.05)


async def wipe_managed(core: Core) -> None:
    """Start each test from clusters without objects left by earlier tests."""
    for c in core.clusters:
        for grant_id in {o.grant_id for o in await k8s_grants.list_managed(c)}:
            await k8s_grants.revoke(c, grant_id)


def prepare_clusters(clusters: dict[str, TestCluster], tmp: Path) -> Path:
    for c in clusters.values():
        ensure_namespaces(c, *NAMESPACES)
    return combined_kubeconfig(tmp / "kubeconfig", clusters)


def default_directory() -> StaticDirectory:
    return StaticDirectory(
        groups={"platform-leads": {"U0PL1", "U0PL2"}, "sre": {"U0SRE1"}},
        emails={"alice@example.com": "U0ALICE", "bob@example.com": "U0BOB"},
        handles={"U0ALICE": "alice", "U0BOB": "bob.smith"},
    )


@asynccontextmanager
async def workflow_harness(
    redis_url: RedisTarget,
    clusters: dict[str, TestCluster],
    tmp: Path,
    *,
    policy_text: str = POLICY,
    notifier: RecordingNotifier | None = None,
    directory: StaticDirectory | None = None,
    start: bool = True,
    reconcile_interval: float = 3600.0,
    setup: Callable[[Core], Awaitable[None]] | None = None,
    kubeconfig: Path | None = None,
    scheduler_options: dict[str, Any] | None = None,
) -> AsyncIterator[Harness]:
    """The real workflow; ``kubeconfig`` overrides the one made from ``clusters``;
    ``scheduler_options`` override ``FAST_SCHEDULER``'s."""
    kubeconfig = kubeconfig or prepare_clusters(clusters, tmp)
    notifier = notifier or RecordingNotifier()
    directory = directory or default_directory()
    core = await build_core(
        parse_policy(policy_text),
        redis_url,
        notifier=notifier,
        directory=directory,
        kubeconfig=str(kubeconfig),
        reconcile_interval=reconcile_interval,
        backoff=FAST_BACKOFF,
        scheduler_options={**FAST_SCHEDULER, **(scheduler_options or {})},
    )
    await wipe_managed(core)
    if setup is not None:
        await setup(core)
    if start:
        core.start()
    try:
        yield Harness(core, notifier, directory, kubeconfig)
    finally:
        await bounded_teardown("close the core", core.close())
