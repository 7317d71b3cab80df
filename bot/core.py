"""The composition root of the access workflow: one place wires store, scheduler,
clusters and workflow together, for ``serve``, the CLI and the tests alike."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from redis.asyncio import Redis

from bot.agenda import Timing, plan_for
from bot.migrations import migrate
from bot.models import utcnow
from bot.outbox import Outbox
from bot.policy import Policy
from bot.ports import Deduplicator, Directory, Notifier
from bot.reconciler import Reconciler
from bot.redis_conn import RedisTarget
from bot.redis_conn import redis_client as redis_client  # its home until Sentinel came
from bot.retry import Backoff
from bot.scheduler import Scheduler
from bot.steps import StepRunner
from bot.store import Store
from bot.usecases.deps import Deps
from bot.usecases.permissions import PermissionChecks
from bot.usecases.reports import Reports
from bot.workflow import Workflow
from k8s.clients import ClusterRegistry, ClusterTarget

log = logging.getLogger(__name__)

# At shutdown, how long messages still in the outbox are given to be told (what is left
# is told by another replica, or by this one when it starts again: nothing is lost).
OUTBOX_FLUSH_SECONDS = 2.0


def cluster_targets(policy: Policy, kubeconfig: str | None) -> dict[str, ClusterTarget]:
    return {
        name: ClusterTarget(
            name=name,
            context=cfg.context,
            in_cluster=cfg.in_cluster,
            kubeconfig=kubeconfig,
            server_override=cfg.server,
            sa_namespace=cfg.namespace,
        )
        for name, cfg in policy.clusters.items()
    }


@dataclass
class Core:
    policy: Policy
    redis: Redis
    clusters: ClusterRegistry
    scheduler: Scheduler
    store: Store
    workflow: Workflow
    reconciler: Reconciler
    outbox: Outbox
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _drainer: asyncio.Task[None] | None = None
    _drain_stop: asyncio.Event = field(default_factory=asyncio.Event)

    @cached_property
    def permissions(self) -> PermissionChecks:
        """What roles allow on the clusters (cards, the request form, ``/access roles``)."""
        return PermissionChecks(self.clusters)

    @cached_property
    def reports(self) -> Reports:
        """The cluster reports (``/k8s nodes``, ``/k8s helm``, ``/k8s standing``)."""
        return Reports(
            self.policy, self.clusters, self.workflow.directory, self.workflow.require_admin
        )

    @property
    def deliveries(self) -> Deduplicator:
        """Which Slack deliveries were seen already (retries, replays)."""
        return self.store

    def start(self) -> None:
        """Run the scheduler worker, the reconciler and the outbox drainer in the background."""
        self._stop.clear()
        self._tasks = [
            asyncio.create_task(self.scheduler.run(self._stop), name="scheduler"),
            asyncio.create_task(self.reconciler.run(self._stop), name="reconciler"),
        ]
        self.start_drainer()

    def start_drainer(self) -> None:
        """Tell people about committed changes (the outbox) from this process."""
        if self._drainer is None:
            self._drain_stop.clear()
            self._drainer = asyncio.create_task(self.outbox.run(self._drain_stop), name="outbox")

    async def stop(self) -> None:
        """Stop taking work; running steps finish or hand their leases back. The outbox
        drainer goes on telling what they changed (:meth:`close` stops it)."""
        self._stop.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def stop_drainer(self, flush_seconds: float = OUTBOX_FLUSH_SECONDS) -> None:
        """Give the outbox ``flush_seconds`` to tell what is committed (when this process
        drains), then stop draining; what is left is told by the next drainer."""
        if self._drainer is not None:
            if self.outbox.leading:
                await self.outbox.flush(flush_seconds)
            self._drain_stop.set()
            await asyncio.gather(self._drainer, return_exceptions=True)
            self._drainer = None

    async def close(self) -> None:
        await self.stop()
        await self.stop_drainer()
        # The notifier's own background work (a card's permissions filled in later).
        flush = getattr(self.workflow.notifier, "flush", None)
        if flush is not None:
            await flush()
        self.clusters.close()
        await self.redis.aclose()


async def build_core(
    policy: Policy,
    redis_url: RedisTarget,
    *,
    notifier: Notifier,
    directory: Directory,
    kubeconfig: str | None = None,
    clusters: ClusterRegistry | None = None,
    reconcile_interval: float = 60.0,
    backoff: Backoff | None = None,
    scheduler_options: dict[str, Any] | None = None,
) -> Core:
    """Connect to Redis (migrating its records) and the clusters, and wire the workflow.

    The scheduler and the reconciler are not started: call :meth:`Core.start`.

    :param policy: the parsed policy (:func:`bot.policy.parse_policy`).
    :param redis_url: ``redis://`` URL of the store and the scheduler's queue, or the
      :class:`bot.redis_conn.SentinelTarget` that finds it.
    :param notifier: where cards, DMs and kubeconfig files go (the Slack notifier).
    :param directory: who is who (usergroups, handles, email look-ups).
    :param kubeconfig: path of the kubeconfig naming the policy's contexts;
      default ``None``: the client's default (``$KUBECONFIG``, ``~/.kube/config``).
    :param clusters: ready cluster clients instead of ones built from ``kubeconfig``;
      default ``None``.
    :param reconcile_interval: seconds between two reconciliation passes; default 60.
    :param backoff: retries of cluster calls; default ``Backoff()`` (5 attempts,
      0.5 s doubling to 8 s, full jitter).
    :param scheduler_options: keyword arguments of :class:`bot.scheduler.Scheduler`
      (``lease_seconds``, ``poll_interval``...); default ``None``: its defaults. The
      workflow's delivery claim (two leases), patience with a delivered file and
      cleanup grace (one lease each) follow ``lease_seconds``.
    """
    redis = redis_client(redis_url)
    registry = clusters or ClusterRegistry(cluster_targets(policy, kubeconfig))
    scheduler = Scheduler(redis, **(scheduler_options or {}))
    # The agenda reads the use cases' delays and clock as they are when asked (tests tune
    # them on the Workflow after wiring); until the Workflow exists, its defaults.
    late: list[Workflow] = []

    def timing() -> Timing:
        if not late:
            return Timing(cleanup_grace=timedelta(seconds=scheduler.lease_seconds))
        return Timing(card_retry=late[0].deps.card_retry, cleanup_grace=late[0].deps.cleanup_grace)

    def clock() -> datetime:
        return late[0].deps.clock() if late else utcnow()

    store = Store(redis, scheduler, plan=plan_for(policy, timing), clock=clock,
                  audit_max_age=policy.defaults.retention)  # fmt: skip
    await migrate(store)
    deps = Deps(
        policy=policy,
        store=store,
        scheduler=scheduler,
        clusters=registry,
        notifier=notifier,
        directory=directory,
        backoff=backoff or Backoff(),
        delivery_claim_seconds=2 * scheduler.lease_seconds,
        record_patience_seconds=scheduler.lease_seconds,
        cleanup_grace=timedelta(seconds=scheduler.lease_seconds),
    )
    workflow = Workflow(deps)
    late.append(workflow)
    runner = StepRunner(store, plan_for(policy, timing), clock)
    workflow.register_steps(runner)
    runner.attach(scheduler)
    # Every change carries its message in its own transaction; the drainer tells it.
    outbox = Outbox(redis, notifier.grant_changed, lease_seconds=scheduler.lease_seconds)
    store.on_commit.append(outbox.add_to)
    reconciler = Reconciler(store, scheduler, registry, interval=reconcile_interval)
    return Core(policy, redis, registry, scheduler, store, workflow, reconciler, outbox)
