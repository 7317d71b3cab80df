"""The ``/k8s standing`` report: privileged access on a cluster that AccessBot did not grant.

AccessBot's grants end; everything else in RBAC stays until someone removes it.
This report lists that standing privilege, riskiest first:

* every (Cluster)RoleBinding subject (User, Group, ServiceAccount) bound to
  ``cluster-admin``, ``admin``, ``edit`` or to any role with a risk flag of
  :mod:`k8s.rbac` (the same analysis as the request cards);
* every ServiceAccount bound cluster-wide (a ClusterRoleBinding), whatever the role;
* every legacy ServiceAccount token Secret (type ``kubernetes.io/service-account-token``):
  a token that never expires.

Left out: subjects of AccessBot's own bindings, i.e. a binding labelled
``app.kubernetes.io/managed-by=accessbot`` *and* a subject that is a ServiceAccount
in the cluster's users' namespace (a label alone proves nothing: anyone who can
write bindings can set it, so any other subject of such a binding is listed).

Kubernetes' own bootstrap bindings (label ``kubernetes.io/bootstrapping=rbac-defaults``)
to its own identities (``system:`` users and groups, ServiceAccounts in
``kube-system``) are listed separately, as built into Kubernetes: they are
expected, and mixing them in would bury what matters. A person added to such a
binding (say, to ``cluster-admin``) is not a system identity and is listed with
the rest.

Secrets are read as metadata only (``PartialObjectMetadataList``): no Secret
data is ever requested.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from k8s import rbac
from k8s.clients import ClusterClient
from k8s.errors import Forbidden
from k8s.list_stream import METADATA_ONLY, each_item
from k8s.paging import DEFAULT_PAGE_SIZE, list_all
from k8s.table import safe_line

__all__ = [
    "CERTIFICATE_NOTE",
    "TIERS",
    "StandingEntry",
    "StandingReport",
    "standing_report",
]

MANAGED_LABEL = ("app.kubernetes.io/managed-by", "accessbot")
BOOTSTRAP_LABEL = ("kubernetes.io/bootstrapping", "rbac-defaults")
TOKEN_SECRET_TYPE = "kubernetes.io/service-account-token"  # noqa: S105 (a type name)
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"  # set on every token Secret
PRIVILEGED_ROLES: Final = frozenset({"cluster-admin", "admin", "edit"})

# Risk tiers, riskiest first; an entry's tier is the first that applies.
TIERS: Final[tuple[str, ...]] = (
    "full control",  # cluster-admin, or '*' rules bound cluster-wide
    "can keep or widen access",  # token-minting, impersonation, escalation, rbac-write
    "workloads and Secrets",  # admin/edit, pod-create, exec, secrets-read, node-proxy
    "never-expiring token",  # legacy ServiceAccount token Secrets
    "ServiceAccount bound cluster-wide",  # any other ClusterRoleBinding to a ServiceAccount
)
FULL, KEEP, WORKLOADS, TOKEN, BOUND = range(len(TIERS))

CERTIFICATE_NOTE = (
    "Not in this list because RBAC never shows them: identities from client "
    "certificates in the group system:masters. They pass every authorization check "
    "and cannot be revoked short of rotating the cluster CA; that is why AccessBot "
    "issues a ServiceAccount per person, which it can delete."
)


@dataclass(frozen=True)
class StandingEntry:
    """One subject's standing privilege, or one legacy token Secret.

    ``subject``: ``"User alice"``, ``"Group devs"``, ``"ServiceAccount ns/name"``;
    ``via``: the binding and its role (or the Secret); ``scope``: ``"cluster-wide"``
    or ``"namespace NS"``; ``risks``: in :data:`k8s.rbac.RISKS` order.
    """

    tier: int
    subject: str
    via: str
    scope: str
    risks: tuple[rbac.Risk, ...] = ()
    builtin: bool = False

    @property
    def line(self) -> str:
        """One inert line (names come from the cluster, so controls are escaped)."""
        risks = f" [{', '.join(self.risks)}]" if self.risks else ""
        return safe_line(f"{TIERS[self.tier]}: {self.subject} via {self.via}, {self.scope}{risks}")

    def sort_key(self) -> tuple[int, int, int, str, str]:
        return (self.tier, -len(self.risks), self.scope != "cluster-wide", self.via, self.subject)


@dataclass(frozen=True)
class StandingReport:
    """A cluster's standing privilege: ``entries`` to look at and ``builtin`` ones, both sorted.

    ``gaps`` says what could not be checked (the bot may not list Secrets, a
    role a binding names does not exist), one sentence each.
    """

    cluster: str
    entries: tuple[StandingEntry, ...]
    builtin: tuple[StandingEntry, ...]
    gaps: tuple[str, ...] = ()

    def counts(self) -> list[str]:
        """``"3 full control"``... per tier present, then the built-in count."""
        lines = [
            f"{n} {TIERS[tier]}"
            for tier in range(len(TIERS))
            if (n := sum(1 for e in self.entries if e.tier == tier))
        ]
        if self.builtin:
            lines.append(f"{len(self.builtin)} built into Kubernetes")
        return lines

    @property
    def title(self) -> str:
        return (
            f"Standing privilege on {self.cluster} that AccessBot did not grant: "
            f"{len(self.entries)}"
        )

    def render_text(self) -> str:
        """The whole report as plain text (the CLI's output and the Slack file)."""
        parts = [self.title, ""]
        parts += self.counts() or ["nothing found"]
        parts += ["", CERTIFICATE_NOTE, ""]
        parts += [safe_line(f"Not checked: {gap}") for gap in self.gaps]
        if self.gaps:
            parts.append("")
        parts += [e.line for e in self.entries]
        if self.builtin:
            parts += ["", f"Built into Kubernetes ({len(self.builtin)}):"]
            parts += [e.line for e in self.builtin]
        return "\n".join(parts) + "\n"


# -- classification (pure) -----------------------------------------------------------


def _labelled(meta: Any, label: tuple[str, str]) -> bool:
    return bool((getattr(meta, "labels", None) or {}).get(label[0]) == label[1])


def _subject_name(subject: Any, binding_ns: str | None) -> str:
    kind = str(subject.kind)
    if kind == "ServiceAccount":
        return f"ServiceAccount {subject.namespace or binding_ns or ''}/{subject.name}"
    return f"{kind} {subject.name}"


def _is_system_identity(subject: Any, binding_ns: str | None) -> bool:
    if subject.kind == "ServiceAccount":
        return (subject.namespace or binding_ns) == "kube-system"
    return str(subject.name).startswith("system:")


def _tier(role_name: str, risks: frozenset[rbac.Risk], cluster_wide: bool) -> int | None:
    if cluster_wide and (role_name == "cluster-admin" or "wildcard" in risks):
        return FULL
    if risks & rbac.BLOCKING_RISKS:
        return KEEP
    if risks or role_name in PRIVILEGED_ROLES:
        return WORKLOADS
    return None


def binding_entries(
    binding: Any,
    rules: list[rbac.Rule] | None,
    *,
    users_namespace: str,
) -> list[StandingEntry]:
    """Entries for one V1RoleBinding/V1ClusterRoleBinding whose role has ``rules``.

    ``rules`` None means the role does not exist: it allows nothing today, so
    only a privileged name (``cluster-admin``...) or a cluster-wide
    ServiceAccount makes it worth listing.
    """
    meta = binding.metadata
    ns = getattr(meta, "namespace", None)
    cluster_wide = ns is None
    ref = binding.role_ref
    # Only a ClusterRole can carry the built-in privileged names.
    role_name = str(ref.name) if ref.kind == "ClusterRole" else ""
    risks = frozenset() if rules is None else rbac.analyse(rules, namespaced=not cluster_wide)
    kind = "ClusterRoleBinding" if cluster_wide else "RoleBinding"
    where = str(meta.name) if cluster_wide else f"{ns}/{meta.name}"
    missing = ", missing" if rules is None else ""
    via = f"{kind} {where} ({ref.kind} {ref.name}{missing})"
    scope = "cluster-wide" if cluster_wide else f"namespace {ns}"
    managed = _labelled(meta, MANAGED_LABEL)
    bootstrap = _labelled(meta, BOOTSTRAP_LABEL)
    out = []
    for subject in binding.subjects or ():
        if subject.kind not in {"User", "Group", "ServiceAccount"}:
            continue
        is_sa = subject.kind == "ServiceAccount"
        if managed and is_sa and (subject.namespace or ns) == users_namespace:
            continue  # an AccessBot grant: it ends by itself
        tier = _tier(role_name, risks, cluster_wide)
        if tier is None and cluster_wide and is_sa:
            tier = BOUND
        if tier is None:
            continue
        out.append(
            StandingEntry(
                tier=tier,
                subject=_subject_name(subject, ns),
                via=via,
                scope=scope,
                risks=tuple(rbac.ordered(risks)),
                builtin=bootstrap and _is_system_identity(subject, ns),
            )
        )
    return out


def token_secret_entry(metadata: Mapping[str, Any]) -> StandingEntry:
    """The entry for one legacy token Secret, from its metadata (JSON form)."""
    ns = str(metadata.get("namespace") or "")
    annotations = metadata.get("annotations") or {}
    owner = str(annotations.get(SA_NAME_ANNOTATION) or "?")
    return StandingEntry(
        tier=TOKEN,
        subject=f"ServiceAccount {ns}/{owner}",
        via=f"Secret {ns}/{metadata.get('name')} (type {TOKEN_SECRET_TYPE})",
        scope=f"namespace {ns}",
    )


def build_report(
    cluster: str,
    entries: Iterable[StandingEntry],
    gaps: Sequence[str] = (),
) -> StandingReport:
    """Sort ``entries`` into the report (riskiest first, built-in ones apart)."""
    ordered = sorted(entries, key=StandingEntry.sort_key)
    return StandingReport(
        cluster=cluster,
        entries=tuple(e for e in ordered if not e.builtin),
        builtin=tuple(e for e in ordered if e.builtin),
        gaps=tuple(gaps),
    )


# -- reading the cluster ---------------------------------------------------------------


def _forbidden(cluster: ClusterClient, what: str, exc: Forbidden) -> Forbidden:
    """``exc`` (401 unchanged), a 403 reworded as what the chart must allow."""
    if exc.status != 403:
        return exc
    return Forbidden(
        f"cluster {cluster.name}: the bot may not {what}, which the standing "
        "report needs (see the chart's rbac.standingReport)",
        cluster=cluster.name,
        status=exc.status,
    )


async def _token_secrets(cluster: ClusterClient, page_size: int) -> list[StandingEntry]:
    """Legacy token Secrets, metadata only, page by page. Raises ClusterError."""
    found: list[StandingEntry] = []

    def keep(item: dict[str, Any]) -> None:
        meta = item.get("metadata")
        if isinstance(meta, dict):
            found.append(token_secret_entry(meta))

    await each_item(
        cluster,
        cluster.core.list_secret_for_all_namespaces,
        handle=keep,
        page_size=page_size,
        field_selector=f"type={TOKEN_SECRET_TYPE}",
        _headers=METADATA_ONLY,
    )
    return found


async def standing_report(
    cluster: ClusterClient, *, page_size: int = DEFAULT_PAGE_SIZE
) -> StandingReport:
    """Read RBAC and token Secret metadata from ``cluster`` and build the report.

    Needs ``list`` on clusterroles, roles, clusterrolebindings and rolebindings
    (all namespaces); ``list`` on secrets for the token part (without it that
    part is reported as not checked). Raises ``ClusterError`` when the cluster
    does not answer or RBAC objects may not be read.
    """
    try:
        cluster_roles = await list_all(cluster, cluster.rbac.list_cluster_role, page_size=page_size)
        roles = await list_all(
            cluster, cluster.rbac.list_role_for_all_namespaces, page_size=page_size
        )
        crbs = await list_all(cluster, cluster.rbac.list_cluster_role_binding, page_size=page_size)
        rbs = await list_all(
            cluster, cluster.rbac.list_role_binding_for_all_namespaces, page_size=page_size
        )
    except Forbidden as exc:
        raise _forbidden(cluster, "list RBAC objects", exc) from exc.__cause__
    by_name: dict[str, Any] = {str(r.metadata.name): r for r in cluster_roles if r.metadata}
    ns_rules = {
        (str(r.metadata.namespace), str(r.metadata.name)): rbac.rules_from_api(r.rules)
        for r in roles
        if r.metadata
    }
    cache: dict[str, list[rbac.Rule] | None] = {}

    def rules_of(binding: Any) -> list[rbac.Rule] | None:
        ref = binding.role_ref
        if ref.kind == "Role":
            return ns_rules.get((str(binding.metadata.namespace), str(ref.name)))
        if ref.name not in cache:
            cache[ref.name] = rbac.effective_rules(str(ref.name), by_name)
        return cache[ref.name]

    entries: list[StandingEntry] = []
    for binding in [*crbs, *rbs]:
        entries += binding_entries(binding, rules_of(binding), users_namespace=cluster.sa_namespace)
    gaps: list[str] = []
    try:
        entries += await _token_secrets(cluster, page_size)
    except Forbidden as exc:
        if exc.status != 403:
            raise
        gaps.append(
            "legacy ServiceAccount token Secrets: the bot may not list Secrets "
            "(enable the chart's rbac.standingReport)"
        )
    return build_report(cluster.name, entries, gaps)
