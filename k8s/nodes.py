"""The ``/k8s nodes`` report: ``kubectl get nodes -o wide`` plus the node problems.

Rows are computed exactly like the apiserver's table printer computes them for
kubectl (``pkg/printers/internalversion/printers.go`` ``printNode`` in
Kubernetes 1.37), so the bot and a terminal agree cell for cell.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes.client import V1Node, V1NodeCondition, V1ObjectMeta

from k8s.clients import ClusterClient
from k8s.table import KUBECTL_CHUNK_ROWS, Problem, kubectl_table

HEADER = (
    "NAME",
    "STATUS",
    "ROLES",
    "AGE",
    "VERSION",
    "INTERNAL-IP",
    "EXTERNAL-IP",
    "OS-IMAGE",
    "KERNEL-VERSION",
    "CONTAINER-RUNTIME",
)

ROLE_LABEL_PREFIX = "node-role.kubernetes.io/"
ROLE_LABEL = "kubernetes.io/role"
PRESSURE_CONDITIONS = ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")
# Taints Kubernetes keeps in step with a condition (TaintNodesByCondition and the
# node lifecycle controller). One restating a problem already listed is noise;
# one without its problem (say, not-ready on a Ready node) still blocks
# scheduling, so it is listed.
CONDITION_TAINTS = {
    "node.kubernetes.io/not-ready": "Ready",
    "node.kubernetes.io/unreachable": "Ready",
    "node.kubernetes.io/memory-pressure": "MemoryPressure",
    "node.kubernetes.io/disk-pressure": "DiskPressure",
    "node.kubernetes.io/pid-pressure": "PIDPressure",
    "node.kubernetes.io/network-unavailable": "NetworkUnavailable",
    "node.kubernetes.io/unschedulable": "Unschedulable",
}
NONE = "<none>"
UNKNOWN = "<unknown>"


@dataclass(frozen=True)
class NodeRow:
    """One line of ``kubectl get nodes -o wide``."""

    name: str
    status: str
    roles: str
    age: str
    version: str
    internal_ip: str
    external_ip: str
    os_image: str
    kernel_version: str
    container_runtime: str

    def as_tuple(self) -> tuple[str, ...]:
        return (
            self.name,
            self.status,
            self.roles,
            self.age,
            self.version,
            self.internal_ip,
            self.external_ip,
            self.os_image,
            self.kernel_version,
            self.container_runtime,
        )

    @property
    def ready(self) -> bool:
        return self.status.split(",")[0] == "Ready"


@dataclass(frozen=True)
class NodesReport:
    """All nodes of a cluster as rows sorted by name, and what is wrong with them."""

    rows: tuple[NodeRow, ...]
    problem_list: tuple[Problem, ...]

    @property
    def problems(self) -> tuple[str, ...]:
        """Every problem as one line, ``"<node>: <what is wrong>"``, in row order."""
        return tuple(p.line for p in self.problem_list)

    @property
    def total(self) -> int:
        return len(self.rows)

    @property
    def ready(self) -> int:
        return sum(1 for row in self.rows if row.ready)

    def render_table(self, *, chunk_rows: int = KUBECTL_CHUNK_ROWS) -> str:
        """The table exactly as ``kubectl get nodes -o wide`` prints it ("" if no nodes).

        ``chunk_rows`` is kubectl's ``--chunk-size`` (default 500): kubectl prints
        each chunk of the list as its own table (see :mod:`k8s.table`).
        """
        return kubectl_table(HEADER, (row.as_tuple() for row in self.rows), chunk_rows=chunk_rows)


# -- kubectl's short human duration ---------------------------------------------


def human_duration(seconds: float) -> str:
    """Port of ``k8s.io/apimachinery/pkg/util/duration.HumanDuration``.

    Two to three significant figures: "90s", "5m30s", "45m", "3h5m", "20h",
    "2d3h", "30d", "2y100d", "9y". Go truncates towards zero at every step,
    which ``int()`` reproduces; up to 2 s in the future counts as now, to
    tolerate clock skew between the client and the apiserver.
    """
    secs = int(seconds)
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 60 * 2:
        return f"{secs}s"
    minutes = secs // 60
    if minutes < 10:
        return _two_units(minutes, "m", secs % 60, "s")
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return _two_units(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return _two_units(hours // 24, "d", hours % 24, "h")
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        return _two_units(hours // 24 // 365, "y", (hours // 24) % 365, "d")
    return f"{hours // 24 // 365}y"


def _two_units(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big}{big_unit}" if small == 0 else f"{big}{big_unit}{small}{small_unit}"


def age(created: datetime | None, now: datetime) -> str:
    """AGE column: time since creation, "<unknown>" without a timestamp."""
    if created is None:
        return UNKNOWN
    return human_duration((now - created).total_seconds())


# -- one row ----------------------------------------------------------------------


def _meta(node: V1Node) -> V1ObjectMeta:
    return node.metadata or V1ObjectMeta()


def _name(node: V1Node) -> str:
    return _meta(node).name or ""


def _conditions(node: V1Node) -> dict[str, V1NodeCondition]:
    status = node.status
    return {c.type: c for c in (status.conditions or [])} if status else {}


def node_status(node: V1Node) -> str:
    """STATUS: Ready / NotReady / Unknown, plus ",SchedulingDisabled" when cordoned."""
    ready = _conditions(node).get("Ready")
    # Only the Ready condition decides; "Unknown" when the kubelet never reported it.
    parts = ["Unknown" if ready is None else "Ready" if ready.status == "True" else "NotReady"]
    if node.spec is not None and node.spec.unschedulable:
        parts.append("SchedulingDisabled")
    return ",".join(parts)


def node_roles(labels: dict[str, str] | None) -> str:
    """ROLES from ``node-role.kubernetes.io/<role>`` keys and ``kubernetes.io/role`` values."""
    roles: set[str] = set()
    for key, value in (labels or {}).items():
        if key.startswith(ROLE_LABEL_PREFIX):
            if role := key.removeprefix(ROLE_LABEL_PREFIX):
                roles.add(role)
        elif key == ROLE_LABEL and value:
            roles.add(value)
    return ",".join(sorted(roles)) or NONE


def first_address(node: V1Node, kind: str) -> str:
    """The first address of one type (InternalIP/ExternalIP), "<none>" if there is none."""
    addresses = (node.status.addresses if node.status else None) or []
    return next((a.address for a in addresses if a.type == kind), NONE)


def node_row(node: V1Node, now: datetime) -> NodeRow:
    """One row exactly as ``kubectl get nodes -o wide`` shows it at time ``now``."""
    meta = _meta(node)
    info = node.status.node_info if node.status else None
    kernel = (info.kernel_version if info else "") or UNKNOWN
    # kubectl 1.37 appends the architecture to the kernel version.
    if info is not None and info.architecture:
        kernel += f" ({info.architecture})"
    return NodeRow(
        name=_name(node),
        status=node_status(node),
        roles=node_roles(meta.labels),
        age=age(meta.creation_timestamp, now),
        version=(info.kubelet_version if info else "") or "",
        internal_ip=first_address(node, "InternalIP"),
        external_ip=first_address(node, "ExternalIP"),
        os_image=(info.os_image if info else "") or UNKNOWN,
        kernel_version=kernel,
        container_runtime=(info.container_runtime_version if info else "") or UNKNOWN,
    )


# -- problems -------------------------------------------------------------------


def _because(cond: V1NodeCondition) -> str:
    """ " (Reason: message)" from a condition, whichever parts it has."""
    detail = ": ".join(part for part in (cond.reason, cond.message) if part)
    return f" ({detail})" if detail else ""


def _taint_text(key: str, value: str | None, effect: str) -> str:
    # kubectl describe's spelling: key=value:effect, or key:effect without a value.
    return f"{key}={value}:{effect}" if value else f"{key}:{effect}"


def node_problems(node: V1Node) -> list[str]:
    """What needs a human's attention on one node, one line per problem."""
    return [p.line for p in node_problem_list(node)]


def node_problem_list(node: V1Node) -> list[Problem]:
    """What needs a human's attention on one node, one :class:`Problem` each."""
    name = _name(node)
    reported: list[tuple[str, str]] = []  # (problem kind, sentence)
    conditions = _conditions(node)
    ready = conditions.get("Ready")
    if ready is None:
        reported.append(("Ready", "Unknown (no Ready condition reported)"))
    elif ready.status != "True":
        # Ready=Unknown means the node controller lost contact with the kubelet.
        state = "NotReady" if ready.status == "False" else "NotReady, status unknown"
        reported.append(("Ready", f"{state}{_because(ready)}"))
    for kind in PRESSURE_CONDITIONS:
        cond = conditions.get(kind)
        if cond is not None and cond.status == "True":
            reported.append((kind, f"{kind}{_because(cond)}"))
    if node.spec is not None and node.spec.unschedulable:
        reported.append(("Unschedulable", "cordoned (SchedulingDisabled)"))
    kinds = {kind for kind, _ in reported}
    taints = [
        _taint_text(t.key, t.value, t.effect)
        for t in (node.spec.taints if node.spec else None) or []
        if CONDITION_TAINTS.get(t.key) not in kinds
    ]
    if taints:
        reported.append(("Taints", "tainted " + ", ".join(taints)))
    return [Problem(name, sentence) for _, sentence in reported]


# -- the report -----------------------------------------------------------------


def build_report(nodes: Iterable[V1Node], now: datetime) -> NodesReport:
    """Rows sorted by name (the apiserver's order, hence kubectl's) and all problems."""
    ordered = sorted(nodes, key=_name)
    return NodesReport(
        rows=tuple(node_row(n, now) for n in ordered),
        problem_list=tuple(p for n in ordered for p in node_problem_list(n)),
    )


async def list_nodes(client: ClusterClient, *, page_size: int = 500) -> list[V1Node]:
    """Every Node, fetched in pages so a huge cluster never means one huge response."""
    nodes: list[V1Node] = []
    token: str | None = None
    while True:
        page: Any = await client.call(client.core.list_node, limit=page_size, _continue=token)
        nodes.extend(page.items or [])
        token = page.metadata._continue if page.metadata else None
        if not token:
            return nodes


async def nodes_report(
    client: ClusterClient, *, page_size: int = 500, now: datetime | None = None
) -> NodesReport:
    """The nodes report of one cluster; ``now`` fixes AGE for tests."""
    nodes = await list_nodes(client, page_size=page_size)
    return build_report(nodes, now or datetime.now(UTC))
