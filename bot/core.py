"""The composition root of the access workflow: one place wires store, scheduler,
clusters and workflow together, for ``serve``, the CLI and the tests alike."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis

from bot.policy import Policy
from bot.ports import Directory, Notifier
from bot.reconciler import Reconciler
from bot.retry import Backoff
from bot.scheduler import Scheduler
from bot.store import Store
from bot.workflow import Workflow
from k8s.clients import ClusterRegistry, ClusterTarget

log = logging.getLogger(__name__)


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
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        """Run the scheduler worker and the reconciler in the background."""
        self._stop.clear()
        self._tasks = [
            asyncio.create_task(self.scheduler.run(self._stop), name="scheduler"),
            asyncio.create_task(self.reconciler.run(self._stop), name="reconciler"),
        ]

    async def stop(self) -> None:
        """Stop taking work; running jobs finish or hand their leases back."""
        self._stop.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def close(self) -> None:
        await self.stop()
        self.clusters.close()
        await self.redis.aclose()


async def build_core(
    policy: Policy,
    redis_url: str,
    *,
    notifier: Notifier,
    directory: Directory,
    kubeconfig: str | None = None,
    clusters: ClusterRegistry | None = None,
    reconcile_interval: float = 60.0,
    backoff: Backoff | None = None,
    scheduler_options: dict[str, Any] | None = None,
) -> Core:
    redis = Redis.from_url(redis_url, decode_responses=True)
    registry = clusters or ClusterRegistry(cluster_targets(policy, kubeconfig))
    scheduler = Scheduler(redis, **(scheduler_options or {}))
    store = Store(redis, scheduler)
    await store.migrate()
    workflow = Workflow(
        policy=policy,
        store=store,
        scheduler=scheduler,
        clusters=registry,
        notifier=notifier,
        directory=directory,
        backoff=backoff or Backoff(),
        delivery_claim_seconds=2 * scheduler.lease_seconds,
        record_patience=scheduler.lease_seconds,
        cleanup_grace=timedelta(seconds=scheduler.lease_seconds),
    )
    workflow.register_jobs()
    store.on_change.append(notifier.grant_changed)
    reconciler = Reconciler(store, scheduler, registry, interval=reconcile_interval)
    return Core(policy, redis, registry, scheduler, store, workflow, reconciler)
