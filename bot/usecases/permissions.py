"""What a role allows: the permission summaries shown on approval cards, the request
form and ``/access roles``.

A summary is read from the cluster (the ClusterRole, aggregated roles resolved)
by :class:`k8s.rbac.AllowanceCache` and kept per (cluster, ClusterRole, scope);
every new check asks the cluster whether the role changed. Checks of the same
role run once: a second caller joins the read under way.

The analysis types an adapter renders (``Allowance``, the risk names and their
meanings) are re-exported here, so adapters reach them through ``bot`` and never
import ``k8s``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from bot.errors import ClusterError
from bot.policy import RoleConfig
from bot.ports import Permissions
from k8s.clients import ClusterRegistry
from k8s.rbac import (
    BLOCKING_RISKS,
    CLUSTER_SCOPE,
    Allowance,
    AllowanceCache,
    flag_meaning,
    rules_text,
)

__all__ = [
    "BLOCKING_RISKS",
    "CHECK_LIMIT_SECONDS",
    "CLUSTER_SCOPE",
    "PERMISSIONS_CHECKING",
    "Allowance",
    "PermissionChecks",
    "Permissions",
    "flag_meaning",
    "rules_text",
]

log = logging.getLogger(__name__)

PERMISSIONS_CHECKING: Final = None

# Past this, a permission check that still has no answer is reported as failed.
CHECK_LIMIT_SECONDS = 60.0


class PermissionChecks:
    """Reads what ClusterRoles allow on the policy's clusters, one read per role at a time.

    Parameters:
        clusters: the cluster connections to read from; None until
            :meth:`use_clusters` (a check then answers that there is no
            cluster connection). Default None.
        limit_seconds: how long a check may take before it is reported as
            failed, in seconds. Default :data:`CHECK_LIMIT_SECONDS` (60).
    """

    def __init__(
        self,
        clusters: ClusterRegistry | None = None,
        *,
        limit_seconds: float = CHECK_LIMIT_SECONDS,
    ) -> None:
        self._clusters = clusters
        self._limit_seconds = limit_seconds
        self._allowances = AllowanceCache()
        self._checks: dict[tuple[str, str, bool], asyncio.Task[Permissions]] = {}

    def use_clusters(self, clusters: ClusterRegistry) -> None:
        """Read roles' permissions from these clusters from now on."""
        self._clusters = clusters

    def check(
        self, cluster: str, cluster_role: str, *, namespaced: bool
    ) -> asyncio.Task[Permissions]:
        """What ``cluster_role`` allows on ``cluster``, read now (or joining a read under way).

        ``namespaced``: bound by a RoleBinding (True) or cluster-wide. The task
        never raises: a problem is returned as words (a ``str``).
        """
        key = (cluster, cluster_role, namespaced)
        task = self._checks.get(key)
        if task is None or task.done():
            task = asyncio.create_task(self._read(*key))
            self._checks[key] = task
        return task

    def check_role(self, cluster: str, role: RoleConfig) -> asyncio.Task[Permissions]:
        """:meth:`check` for a policy role: its ClusterRole, bound as its ``scope`` says."""
        return self.check(cluster, role.cluster_role, namespaced=role.scope == "namespace")

    def known(self, cluster: str, cluster_role: str, *, namespaced: bool) -> Permissions:
        """The latest permissions known, without waiting (PERMISSIONS_CHECKING: none yet)."""
        task = self._checks.get((cluster, cluster_role, namespaced))
        if task is not None and task.done():
            return task.result()
        return self._allowances.peek(cluster, cluster_role, namespaced=namespaced)

    async def _read(self, cluster: str, cluster_role: str, namespaced: bool) -> Permissions:
        if self._clusters is None:
            return "AccessBot has no cluster connection here"
        try:
            async with asyncio.timeout(self._limit_seconds):
                return await self._allowances.allowance(
                    self._clusters[cluster], cluster_role, namespaced=namespaced
                )
        except ClusterError as exc:
            return str(exc)
        except TimeoutError:
            return f"cluster {cluster} did not answer within {self._limit_seconds:.0f}s"
        except Exception as exc:  # never let a card go without an answer
            log.exception("checking ClusterRole %s on %s failed", cluster_role, cluster)
            return f"unexpected error ({exc.__class__.__name__})"
