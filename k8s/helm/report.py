"""The ``/k8s helm`` report: the latest revision of every Helm 3 release.

Helm 3 keeps one Secret per release revision (type ``helm.sh/release.v1``,
labels ``owner=helm``, ``name``, ``status``, ``version``) whose ``release``
value is base64(gzip(JSON)). ``helm ls`` decodes every revision of every
release and only then keeps the newest; we pick the newest revision from the
labels and decode that body alone, which is what makes the report fast on
clusters with long release histories.

Rows match ``helm ls`` column for column (Helm 3.22 ``cmd/helm/list.go``);
:meth:`HelmReport.rows_like_helm_ls` also filters and sorts like it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from k8s.clients import ClusterClient
from k8s.errors import InvalidNamespace
from k8s.helm.fetch import (
    fetched_rows,
    live_rows,
    newest_revisions,
)
from k8s.helm.rows import (
    HELM_LS_STATES,
    KNOWN_STATES,
    PENDING_STATES,
    ReleaseRow,
)
from k8s.human_duration import human_duration
from k8s.names import DNS1123_LABEL
from k8s.paging import DEFAULT_PAGE_SIZE
from k8s.table import Problem, helm_table

HEADER = ("NAME", "NAMESPACE", "REVISION", "UPDATED", "STATUS", "CHART", "APP VERSION")


def check_namespace(namespace: str) -> str:
    """``namespace`` unchanged when it is a DNS-1123 label; raises :class:`InvalidNamespace`.

    Kubernetes namespace names are DNS labels (1-63 of ``a-z0-9-``, alphanumeric
    at both ends); anything else, an encoded ``/`` above all, would change the
    path the bot requests instead of naming a namespace.
    """
    if not DNS1123_LABEL.fullmatch(namespace):
        raise InvalidNamespace(
            f"{namespace!r} is not a namespace name: namespaces are 1-63 lowercase "
            "letters, digits and '-', starting and ending with a letter or digit"
        )
    return namespace


# -- the report ------------------------------------------------------------------------


def chat_order(row: ReleaseRow) -> tuple[int, str, str]:
    """Releases in trouble first, then by namespace and name."""
    return (0 if row.in_trouble else 1, row.namespace, row.name)


def way_out(row: ReleaseRow) -> str:
    """The usual way out of a release's state, as the helm (or kubectl) command to run.

    From Helm's own behaviour: an interrupted install leaves ``pending-install``
    (uninstall, then install again); an interrupted upgrade or rollback leaves
    ``pending-*`` and a failed one ``failed`` (``helm rollback`` to the previous
    revision); an interrupted uninstall leaves ``uninstalling`` (running the
    uninstall again finishes it).
    """
    ref = f"{row.name} -n {row.namespace}"
    if row.error is not None:
        return f"inspect the Secret: kubectl get secret {row.secret or '?'} -n {row.namespace}"
    if row.status == "uninstalling":
        return f"finish the uninstall: helm uninstall {ref}"
    if row.status == "pending-install":
        return f"helm uninstall {ref}, then install again"
    if row.status in PENDING_STATES or row.status == "failed":
        return f"helm rollback {ref} (previous revision), or fix and helm upgrade"
    return f"see helm history {ref}"


def problem_subject(row: ReleaseRow) -> str:
    return f"{row.namespace}/{row.name}"


def problem_detail(row: ReleaseRow, now: datetime) -> str:
    """What is wrong with a release, without its name: status, for how long, way out."""
    since = ""
    if row.since is not None:
        since = f" for {human_duration((now - row.since).total_seconds())}"
    if row.error is not None:
        what = f"{row.error} (revision {row.revision}, status {row.status}{since})"
    else:
        detail = f": {row.description}" if row.description else ""
        what = f"{row.status}{since} (revision {row.revision}){detail}"
    return f"{what}; way out: {way_out(row)}"


def problem_text(row: ReleaseRow, now: datetime | None = None) -> str:
    """One problem line, cluster-quoted text made inert (see :func:`k8s.table.safe_line`)."""
    return Problem(problem_subject(row), problem_detail(row, now or datetime.now(UTC))).line


@dataclass(frozen=True)
class HelmReport:
    """Every release at its newest revision, in chat order, with what is wrong."""

    rows: tuple[ReleaseRow, ...]
    namespace: str | None = None
    # The moment "for how long" is measured to.
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[ReleaseRow],
        namespace: str | None = None,
        now: datetime | None = None,
    ) -> HelmReport:
        return cls(
            rows=tuple(sorted(rows, key=chat_order)),
            namespace=namespace,
            now=now or datetime.now(UTC),
        )

    @property
    def problems(self) -> tuple[str, ...]:
        """One line per release in trouble: ``ns/name: status for 3h (revision N)...``."""
        return tuple(p.line for p in self.problem_list)

    @property
    def problem_list(self) -> tuple[Problem, ...]:
        """The same problems, subject and detail apart, for grouping."""
        return tuple(
            Problem(problem_subject(row), problem_detail(row, self.now))
            for row in self.rows
            if row.in_trouble
        )

    def render_table(self) -> str:
        """All releases, troubled ones first, laid out like ``helm ls``."""
        return helm_table(HEADER, (row.as_tuple() for row in self.rows))

    def rows_like_helm_ls(self, *, all_states: bool = False) -> list[ReleaseRow]:
        """The rows ``helm ls`` (``-a`` with ``all_states``) would print, in its order.

        Deployed and failed only (``-a``: every state helm knows); sorted by
        name. Helm silently skips bodies it cannot decode, so corrupt rows are
        left out (helm would show an older readable revision instead, which we
        deliberately never decode). Helm's
        order among equal names from different namespaces is map order, i.e.
        random; we break the tie by namespace. No ``--max`` cut: compare with
        ``helm ls --max 0`` beyond 256 releases.
        """
        states = KNOWN_STATES if all_states else HELM_LS_STATES
        shown = [r for r in self.rows if r.error is None and r.status in states]
        return sorted(shown, key=lambda r: (r.name, r.namespace))

    def render_helm_ls(self, *, all_states: bool = False) -> str:
        """Exactly the text of ``helm ls`` (``-A`` or ``-n NS``; ``-a``) for these releases."""
        rows = self.rows_like_helm_ls(all_states=all_states)
        return helm_table(HEADER, (row.as_tuple() for row in rows))


async def helm_report(
    client: ClusterClient,
    namespace: str | None = None,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    now: datetime | None = None,
) -> HelmReport:
    """Every release of one namespace (all when None) at its newest revision.

    Strategy C above: metadata list, live list, GETs for whatever is missing.
    A revision written between the lists is simply not seen yet: the result
    is the metadata list's snapshot, as fresh as one ``helm ls`` would be.
    ``now`` fixes "for how long" in tests. Raises :class:`InvalidNamespace`
    for a namespace that is not a DNS label, :class:`ClusterError` otherwise.
    """
    if namespace is not None:
        check_namespace(namespace)
    refs = await newest_revisions(client, namespace, page_size=page_size)
    wanted = {(ref.namespace, ref.secret): ref for ref in refs}
    rows = await live_rows(client, namespace, wanted, page_size=page_size)
    rows += await fetched_rows(client, list(wanted.values()))
    return HelmReport.from_rows(rows, namespace=namespace, now=now)
