"""The ``/k8s nodes`` report: ``kubectl get nodes -o wide`` plus the node problems.

The table comes from the apiserver's own printer, as kubectl's does: ``GET
/api/v1/nodes`` with ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``
answers with the columns and cells of ``-o wide`` computed by that cluster's
version (AGE included, at the apiserver's clock), and ``includeObject=Object``
puts each row's Node beside it, on which the problems are judged. The pages
are laid out by the kubectl-exact writer (:mod:`k8s.table`).

:func:`node_row` and :func:`build_report` are the same printer computed here
(``pkg/printers/internalversion/printers.go`` ``printNode`` in Kubernetes
1.37), for reports built from Node objects alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubernetes.client import ApiClient, V1Node, V1NodeCondition, V1ObjectMeta
from kubernetes.client.exceptions import ApiException

from k8s.clients import ClusterClient
from k8s.errors import BadAnswer
from k8s.human_duration import UNKNOWN, age, human_duration
from k8s.paging import DEFAULT_PAGE_SIZE, pages
from k8s.table import KUBECTL_CHUNK_ROWS, Problem, kubectl_table

__all__ = [
    "HEADER",
    "NODE_TABLE",
    "NodeRow",
    "NodesReport",
    "age",
    "build_report",
    "first_address",
    "human_duration",
    "node_problem_list",
    "node_problems",
    "node_roles",
    "node_row",
    "node_status",
    "nodes_report",
    "report_from_table",
]

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
    # The row exactly as the apiserver's printer gave it, when it did; the
    # named fields above are then read from it by column name.
    cells: tuple[str, ...] = field(default=(), compare=False)

    def as_tuple(self) -> tuple[str, ...]:
        if self.cells:
            return self.cells
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
    # The printed column names (the apiserver's, upper-cased as kubectl does).
    header: tuple[str, ...] = HEADER

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
        rows = (row.as_tuple() for row in self.rows)
        return kubectl_table(self.header, rows, chunk_rows=chunk_rows)


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


# -- the apiserver's printer ---------------------------------------------------

# The Table of meta.k8s.io/v1, what ``kubectl get`` asks for (server-side printing).
NODE_TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
NODES_PATH = "/api/v1/nodes"


def _node_table_page(
    api: ApiClient, *, limit: int, _continue: str | None, _request_timeout: Any
) -> dict[str, Any]:
    """One page of the Node Table, each row with its Node (runs in the client's pool).

    The generated ``list_node`` cannot ask for ``includeObject``, so the request
    is built with the client's own serializer (auth, host, TLS as configured).
    Raises ``ApiException`` for a non-2xx answer, like the generated methods.
    """
    query: list[tuple[str, Any]] = [("includeObject", "Object"), ("limit", limit)]
    if _continue:
        query.append(("continue", _continue))
    request = api.param_serialize(
        method="GET",
        resource_path=NODES_PATH,
        query_params=query,
        header_params={"Accept": NODE_TABLE},
        auth_settings=["BearerToken"],
    )
    resp = api.call_api(*request, _request_timeout=_request_timeout)
    resp.read()
    if not 200 <= resp.status <= 299:
        raise ApiException.from_response(http_resp=resp, body=None, data=None)
    try:
        page = json.loads(resp.data or b"")
    except ValueError as exc:
        raise BadAnswer(f"the Node Table is not JSON: {exc}") from exc
    if not isinstance(page, dict) or page.get("kind") != "Table":
        raise BadAnswer(f"asked for a Table of Nodes, got {page.get('kind')!r}")
    return page


def _cell(value: Any) -> str:
    """A cell as kubectl prints it (``fmt.Fprint`` of the decoded JSON value)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_FIELDS = dict(zip(HEADER, NodeRow.__dataclass_fields__, strict=False))


def _table_row(header: Sequence[str], cells: Sequence[Any]) -> NodeRow:
    printed = tuple(_cell(c) for c in cells[: len(header)])
    named = {_FIELDS[h]: v for h, v in zip(header, printed, strict=True) if h in _FIELDS}
    values = {f: named.get(f, "") for f in _FIELDS.values()}
    return NodeRow(**values, cells=printed)


def report_from_table(tables: Iterable[Mapping[str, Any]]) -> NodesReport:
    """Rows as the apiserver printed them (its order, hence kubectl's) and every problem.

    ``tables``: the Table pages, each row carrying its Node (``includeObject``).
    Every column is printed (``-o wide``), named in upper case as kubectl does.
    Raises :class:`~k8s.errors.BadAnswer` when a row's object is not a Node.
    """
    header: tuple[str, ...] = HEADER
    rows: list[NodeRow] = []
    objects: list[Any] = []
    for n, table in enumerate(tables):
        columns = table.get("columnDefinitions") or []
        if n == 0 or columns:
            header = tuple(str(c.get("name", "")).upper() for c in columns) or header
        for row in table.get("rows") or []:
            rows.append(_table_row(header, row.get("cells") or []))
            objects.append(row.get("object") or {})
    try:
        nodes = [V1Node.from_dict(o) or V1Node() for o in objects]
    except ValueError as exc:  # pydantic's ValidationError: not a Node as the API defines it
        raise BadAnswer(f"a Table row's object is not a Node: {exc}") from exc
    problems = tuple(p for node in nodes for p in node_problem_list(node))
    return NodesReport(rows=tuple(rows), problem_list=problems, header=header)


async def nodes_report(client: ClusterClient, *, page_size: int = DEFAULT_PAGE_SIZE) -> NodesReport:
    """The nodes report of one cluster, from its apiserver's Table, ``page_size`` rows a page.

    Raises :class:`~k8s.errors.ClusterError` (typed by the answer) when the
    cluster does not answer or refuses the list.
    """
    tables = [
        page
        async for page in pages(client, _node_table_page, client.api_client, page_size=page_size)
    ]
    return report_from_table(tables)
