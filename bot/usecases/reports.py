"""The cluster reports: who may run them, and each cluster's nodes, Helm releases and
standing privilege as data for an adapter to render.

``/k8s nodes`` and ``/k8s helm`` are open to the workspace or to admins and
approvers, as the policy's ``reports`` key says (:func:`bot.policy.may_run_reports`);
``/k8s standing`` is for admins only, whatever that key says. Every report is
read from one cluster per call (slow: apiserver calls) and raises
:class:`bot.errors.ClusterError` (``InvalidNamespace`` included) when the
cluster does not answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from bot.errors import NotAllowed
from bot.policy import Policy, may_run_reports
from bot.ports import Directory
from k8s.clients import ClusterRegistry
from k8s.helm import helm_report
from k8s.nodes import nodes_report
from k8s.standing import CERTIFICATE_NOTE, standing_report
from k8s.table import Problem, group_problems, names_hidden

__all__ = [
    "HelmResult",
    "NodesResult",
    "ProblemList",
    "ReportAccess",
    "ReportKind",
    "Reports",
    "StandingResult",
]

# Who may run /k8s nodes and /k8s helm: the policy's ``reports`` key.
ReportAccess = Literal["everyone", "approvers"]
ReportKind = Literal["nodes", "helm", "standing"]


@dataclass(frozen=True)
class ProblemList:
    """A report's problems: ``lines`` one per object (for the file), ``grouped`` with
    identical problems as one line ("160 nodes: NotReady ...: a, b, c and 157 more",
    for the chat), and whether grouping left some objects unnamed."""

    lines: tuple[str, ...]
    grouped: tuple[str, ...]
    names_hidden: bool

    @classmethod
    def of(cls, problems: Sequence[Problem], noun: tuple[str, str]) -> ProblemList:
        return cls(
            lines=tuple(p.line for p in problems),
            grouped=tuple(group_problems(problems, noun)),
            names_hidden=names_hidden(problems),
        )


@dataclass(frozen=True)
class NodesResult:
    """``kubectl get nodes -o wide`` of one cluster: ``ready`` of ``total`` nodes, the
    problems, and the exact table."""

    cluster: str
    ready: int
    total: int
    problems: ProblemList
    table: str


@dataclass(frozen=True)
class HelmResult:
    """``helm ls`` of one cluster: ``releases`` in ``namespace`` (None: all namespaces),
    the problems, and the exact table ("" when there is no release)."""

    cluster: str
    namespace: str | None
    releases: int
    problems: ProblemList
    table: str


@dataclass(frozen=True)
class StandingResult:
    """One cluster's standing privilege: ``title``, ``counts`` per tier, the ``lines``
    to look at (riskiest first), ``gaps`` (what could not be checked), ``note`` (what
    RBAC never shows), ``builtin`` (how many bindings are Kubernetes' own, listed only
    in ``text``), and ``text``: everything, as ``accessbot standing`` prints it."""

    cluster: str
    title: str
    counts: tuple[str, ...]
    lines: tuple[str, ...]
    gaps: tuple[str, ...]
    note: str
    builtin: int
    text: str


class Reports:
    """Runs the cluster reports for the people allowed to.

    Parameters:
        policy: the policy (admins and approvers decide who may run them).
        clusters: the cluster connections the reports read.
        directory: usergroup membership, to find approvers named by usergroup.
        require_admin: ``(user, action)``: raises an audited
            :class:`bot.errors.NotAllowed` unless the user is an admin now
            (``Workflow.require_admin``).
    """

    def __init__(
        self,
        policy: Policy,
        clusters: ClusterRegistry,
        directory: Directory,
        require_admin: Callable[[str, str], Awaitable[None]],
    ) -> None:
        self._policy = policy
        self._clusters = clusters
        self._directory = directory
        self._require_admin = require_admin

    @property
    def cluster_names(self) -> list[str]:
        """The clusters a report can be run on, in policy order."""
        return self._clusters.names

    async def authorize(self, user: str, report: ReportKind, access: ReportAccess) -> None:
        """Raise :class:`NotAllowed` unless ``user`` may run ``report`` under ``access``.

        The standing report's refusal is audited (it is an admin action).
        """
        if report == "standing":
            await self._require_admin(user, "see standing privilege")
            return
        groups = frozenset() if access == "everyone" else await self._directory.groups_of(user)
        if not may_run_reports(self._policy, access, user, groups):
            raise NotAllowed("cluster reports are limited to admins and approvers")

    async def nodes(self, cluster: str) -> NodesResult:
        """The nodes of ``cluster``: problems first, then kubectl's table."""
        report = await nodes_report(self._clusters[cluster])
        return NodesResult(
            cluster=cluster,
            ready=report.ready,
            total=report.total,
            problems=ProblemList.of(report.problem_list, ("node", "nodes")),
            table=report.render_table(),
        )

    async def helm(self, cluster: str, namespace: str | None) -> HelmResult:
        """The Helm releases of ``cluster`` in ``namespace`` (None: every namespace).

        ``namespace`` must be a DNS label (else ``InvalidNamespace``).
        """
        report = await helm_report(self._clusters[cluster], namespace)
        return HelmResult(
            cluster=cluster,
            namespace=namespace,
            releases=len(report.rows),
            problems=ProblemList.of(report.problem_list, ("release", "releases")),
            table=report.render_table() if report.rows else "",
        )

    async def standing(self, cluster: str) -> StandingResult:
        """The standing privilege on ``cluster`` that AccessBot did not grant."""
        report = await standing_report(self._clusters[cluster])
        return StandingResult(
            cluster=cluster,
            title=report.title,
            counts=tuple(report.counts()),
            lines=tuple(e.line for e in report.entries),
            gaps=tuple(report.gaps),
            note=CERTIFICATE_NOTE,
            builtin=len(report.builtin),
            text=report.render_text(),
        )
