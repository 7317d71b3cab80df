"""Pure logic of the nodes and helm reports: no cluster, no network."""

from __future__ import annotations

import base64
import gzip
import json
import os
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes.client import (
    V1Node,
    V1NodeAddress,
    V1NodeCondition,
    V1NodeSpec,
    V1NodeStatus,
    V1NodeSystemInfo,
    V1ObjectMeta,
    V1Taint,
)

from k8s.errors import ClusterError
from k8s.helm import (
    CORRUPT,
    KNOWN_STATES,
    OVERSIZED,
    SETTLED_STATES,
    CorruptRelease,
    HelmReport,
    InvalidNamespace,
    OversizedRelease,
    ReleaseRef,
    check_namespace,
    decode_release,
    decode_release_fields,
    go_time_string,
    gunzip_bounded,
    latest_refs,
    release_fields,
    release_ref,
    row_from_secret,
)
from k8s.nodes import build_report, human_duration, node_problems, node_roles, node_row
from k8s.runewidth import east_asian_locale, string_width
from k8s.table import group_problems, helm_table, kubectl_table, safe_line

MS = 0.001
NS = 1e-9
MIN, HOUR, DAY, YEAR = 60, 3600, 86400, 365 * 86400

# -- HumanDuration ----------------------------------------------------------------
# The cases of apimachinery's own duration_test.go (TestHumanDuration and
# TestHumanDurationBoundaries, v0.37.2), in seconds.
GO_CASES = [
    (1, "1s"),
    (70, "70s"),
    (190, "3m10s"),
    (70 * MIN, "70m"),
    (47 * HOUR, "47h"),
    (49 * HOUR, "2d1h"),
    ((8 * 24 + 2) * HOUR, "8d"),
    (367 * DAY, "367d"),
    ((365 * 2 * 24 + 25) * HOUR, "2y1d"),
    ((365 * 8 * 24 + 2) * HOUR, "8y"),
    (-2, "<invalid>"),
    (-2 + NS, "0s"),
    (0, "0s"),
    (1 - MS, "0s"),
    (2 * MIN - MS, "119s"),
    (2 * MIN, "2m"),
    (2 * MIN + 1, "2m1s"),
    (10 * MIN - MS, "9m59s"),
    (10 * MIN, "10m"),
    (10 * MIN + 1, "10m"),
    (3 * HOUR - MS, "179m"),
    (3 * HOUR, "3h"),
    (3 * HOUR + MIN, "3h1m"),
    (8 * HOUR - MS, "7h59m"),
    (8 * HOUR, "8h"),
    (8 * HOUR + 59 * MIN, "8h"),
    (2 * DAY - MS, "47h"),
    (2 * DAY, "2d"),
    (2 * DAY + HOUR, "2d1h"),
    (8 * DAY - MS, "7d23h"),
    (8 * DAY, "8d"),
    (8 * DAY + 23 * HOUR, "8d"),
    (2 * YEAR - MS, "729d"),
    (2 * YEAR, "2y"),
    (2 * YEAR + 23 * HOUR, "2y"),
    (2 * YEAR + 23 * HOUR + 59 * MIN, "2y"),
    (2 * YEAR + DAY - MS, "2y"),
    (2 * YEAR + DAY, "2y1d"),
    (3 * YEAR, "3y"),
    (7 * YEAR, "7y"),
    (8 * YEAR - MS, "7y364d"),
    (8 * YEAR, "8y"),
    (8 * YEAR + 364 * DAY, "8y"),
    (9 * YEAR, "9y"),
]


@pytest.mark.parametrize(("seconds", "want"), GO_CASES)
def test_human_duration_matches_apimachinery(seconds: float, want: str) -> None:
    assert human_duration(seconds) == want


def test_human_duration_more_shapes() -> None:
    assert human_duration(45) == "45s"
    assert human_duration(5 * MIN) == "5m"
    assert human_duration(3 * HOUR + 5 * MIN) == "3h5m"
    assert human_duration(2 * DAY + 3 * HOUR) == "2d3h"
    assert human_duration(10 * DAY) == "10d"
    assert human_duration(-1.5) == "0s"  # skew tolerance


# -- nodes -----------------------------------------------------------------------------

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def info(**over: str) -> V1NodeSystemInfo:
    fields = {
        "architecture": "amd64",
        "boot_id": "",
        "container_runtime_version": "containerd://2.1.0",
        "kernel_version": "6.8.0-45-generic",
        "kube_proxy_version": "",
        "kubelet_version": "v1.37.2",
        "machine_id": "",
        "operating_system": "linux",
        "os_image": "Ubuntu 24.04.1 LTS",
        "system_uuid": "",
    }
    fields.update(over)
    return V1NodeSystemInfo(**fields)


def cond(kind: str, status: str, reason: str = "", message: str = "") -> V1NodeCondition:
    return V1NodeCondition(type=kind, status=status, reason=reason or None, message=message or None)


def node(
    name: str,
    *,
    conditions: list[V1NodeCondition] | None = None,
    labels: dict[str, str] | None = None,
    unschedulable: bool = False,
    taints: list[V1Taint] | None = None,
    addresses: list[tuple[str, str]] | None = None,
    node_info: V1NodeSystemInfo | None = None,
    created: datetime | None = NOW - timedelta(days=3, hours=4),
) -> V1Node:
    return V1Node(
        metadata=V1ObjectMeta(name=name, labels=labels, creation_timestamp=created),
        spec=V1NodeSpec(unschedulable=unschedulable or None, taints=taints),
        status=V1NodeStatus(
            conditions=conditions if conditions is not None else [cond("Ready", "True")],
            addresses=[V1NodeAddress(type=t, address=a) for t, a in addresses or []],
            node_info=node_info,
        ),
    )


def test_node_row_ready_worker() -> None:
    n = node(
        "node-1",
        labels={"node-role.kubernetes.io/worker": "", "kubernetes.io/hostname": "node-1"},
        addresses=[
            ("Hostname", "node-1"),
            ("InternalIP", "10.0.0.11"),
            ("InternalIP", "10.0.0.12"),
            ("ExternalIP", "203.0.113.7"),
        ],
        node_info=info(),
    )
    assert node_row(n, NOW).as_tuple() == (
        "node-1",
        "Ready",
        "worker",
        "3d4h",
        "v1.37.2",
        "10.0.0.11",
        "203.0.113.7",
        "Ubuntu 24.04.1 LTS",
        "6.8.0-45-generic (amd64)",
        "containerd://2.1.0",
    )


def test_node_row_statuses() -> None:
    not_ready = node("a", conditions=[cond("Ready", "False")])
    unknown_ready = node("b", conditions=[cond("Ready", "Unknown")])
    no_ready = node("c", conditions=[cond("MemoryPressure", "False")])
    cordoned = node("d", unschedulable=True)
    cordoned_unknown = node("e", conditions=[], unschedulable=True)
    assert node_row(not_ready, NOW).status == "NotReady"
    assert node_row(unknown_ready, NOW).status == "NotReady"
    assert node_row(no_ready, NOW).status == "Unknown"
    assert node_row(cordoned, NOW).status == "Ready,SchedulingDisabled"
    assert node_row(cordoned_unknown, NOW).status == "Unknown,SchedulingDisabled"


def test_node_roles_both_label_forms_sorted_and_deduplicated() -> None:
    assert node_roles(None) == "<none>"
    assert node_roles({"kubernetes.io/hostname": "x"}) == "<none>"
    labels = {
        "node-role.kubernetes.io/worker": "",
        "node-role.kubernetes.io/control-plane": "true",
        "kubernetes.io/role": "worker",
        "node-role.kubernetes.io/": "",  # no role name: ignored
    }
    assert node_roles(labels) == "control-plane,worker"
    assert node_roles({"kubernetes.io/role": "ingress"}) == "ingress"
    assert node_roles({"kubernetes.io/role": ""}) == "<none>"


def test_node_row_missing_fields() -> None:
    bare = node(
        "bare",
        node_info=info(
            architecture="", kernel_version="", os_image="", container_runtime_version=""
        ),
        created=None,
    )
    row = node_row(bare, NOW)
    assert row.as_tuple()[3:] == (
        "<unknown>",
        "v1.37.2",
        "<none>",
        "<none>",
        "<unknown>",
        "<unknown>",
        "<unknown>",
    )
    # No nodeInfo at all: empty version, like kubectl's zero-valued struct.
    assert node_row(node("none"), NOW).version == ""
    arch_only = node("arch", node_info=info(kernel_version=""))
    assert node_row(arch_only, NOW).kernel_version == "<unknown> (amd64)"


def test_node_problems() -> None:
    n = node(
        "node-3",
        conditions=[
            cond("Ready", "False", "KubeletStopped", "kubelet stopped posting status"),
            cond("MemoryPressure", "True", "KubeletHasInsufficientMemory"),
            cond("DiskPressure", "False"),
            cond("PIDPressure", "True"),
            cond("NetworkUnavailable", "True", "NoRouteCreated", "no route"),
        ],
        unschedulable=True,
        taints=[
            V1Taint(key="dedicated", value="gpu", effect="NoSchedule"),
            V1Taint(key="node.kubernetes.io/unschedulable", effect="NoSchedule"),
        ],
    )
    assert node_problems(n) == [
        "node-3: NotReady (KubeletStopped: kubelet stopped posting status)",
        "node-3: MemoryPressure (KubeletHasInsufficientMemory)",
        "node-3: PIDPressure",
        "node-3: NetworkUnavailable (NoRouteCreated: no route)",
        "node-3: cordoned (SchedulingDisabled)",
        # The unschedulable taint only restates "cordoned": left out.
        "node-3: tainted dedicated=gpu:NoSchedule",
    ]
    assert node_problems(node("fine")) == []
    # A condition taint without its condition still blocks scheduling: listed.
    stale = node("s", taints=[V1Taint(key="node.kubernetes.io/not-ready", effect="NoSchedule")])
    assert node_problems(stale) == ["s: tainted node.kubernetes.io/not-ready:NoSchedule"]
    assert node_problems(node("u", conditions=[])) == ["u: Unknown (no Ready condition reported)"]
    lost = node("l", conditions=[cond("Ready", "Unknown", "NodeStatusUnknown")])
    assert node_problems(lost) == ["l: NotReady, status unknown (NodeStatusUnknown)"]


def test_build_report_sorts_counts_and_renders() -> None:
    report = build_report(
        [
            node("b", conditions=[cond("Ready", "False")], node_info=info()),
            node("a", node_info=info()),
            node("c", unschedulable=True, node_info=info()),
        ],
        NOW,
    )
    assert [r.name for r in report.rows] == ["a", "b", "c"]
    assert (report.total, report.ready) == (3, 2)
    assert report.problems == ("b: NotReady", "c: cordoned (SchedulingDisabled)")
    lines = report.render_table().splitlines()
    assert lines[0].startswith("NAME   STATUS                     ROLES    AGE    VERSION   ")
    assert lines[3].startswith("c      Ready,SchedulingDisabled   <none>   3d4h   v1.37.2   ")
    assert build_report([], NOW).render_table() == ""


# -- tables --------------------------------------------------------------------------


def test_kubectl_table_layout() -> None:
    text = kubectl_table(("NAME", "STATUS", "AGE"), [("a", "Ready", "5m"), ("long-name", "", "1d")])
    # Column width: widest cell + 3, at least 6; the last column is not padded.
    assert text == "NAME        STATUS   AGE\na           Ready    5m\nlong-name            1d\n"
    assert kubectl_table(("A", "B"), []) == ""
    assert kubectl_table(("A", "B"), [("x\ny", "z")]) == "A      B\nx...   z\n"


def test_helm_table_layout() -> None:
    text = helm_table(("NAME", "REVISION", "APP VERSION"), [("web", "10", ""), ("a", "2", "1.0")])
    # Every cell, the last included, is padded to its column and joined by a tab.
    assert text == (
        "NAME\tREVISION\tAPP VERSION\nweb \t10      \t           \na   \t2       \t1.0        \n"
    )
    assert helm_table(("A", "BB"), []) == "A\tBB\n"


# -- helm: decoding ----------------------------------------------------------------------


def release_json(
    name: str = "web",
    namespace: str = "apps",
    version: int = 3,
    status: str = "deployed",
    last_deployed: str = "2026-11-26T01:02:03.123456789Z",
    chart: dict[str, Any] | None = None,
    description: str = "Upgrade complete",
) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "version": version,
        "info": {
            "first_deployed": "2026-11-20T00:00:00Z",
            "last_deployed": last_deployed,
            "deleted": "",
            "description": description,
            "status": status,
        },
        "chart": chart
        if chart is not None
        else {"metadata": {"name": "webapp", "version": "1.2.3", "appVersion": "4.5"}},
        "manifest": "---\n",
    }


def secret_data(body: bytes, *, compress: bool = True) -> str:
    """``data.release`` as the API returns it: base64 of Helm's base64(gzip(JSON))."""
    stored = base64.b64encode(gzip.compress(body) if compress else body)
    return base64.b64encode(stored).decode()


def release_secret(release: dict[str, Any], data: str | None = None) -> dict[str, Any]:
    name, ns, rev = release["name"], release["namespace"], release["version"]
    return {
        "metadata": {
            "name": f"sh.helm.release.v1.{name}.v{rev}",
            "namespace": ns,
            "labels": {
                "owner": "helm",
                "name": name,
                "status": release["info"]["status"],
                "version": str(rev),
            },
        },
        "type": "helm.sh/release.v1",
        "data": {"release": secret_data(json.dumps(release).encode()) if data is None else data},
    }


def test_decode_release_gzip_and_plain() -> None:
    rel = release_json()
    # Only what a row needs is read; manifest, first_deployed and the rest are skipped.
    wanted = {
        "name": "web",
        "namespace": "apps",
        "version": 3,
        "info": {
            "last_deployed": rel["info"]["last_deployed"],
            "deleted": "",
            "description": "Upgrade complete",
            "status": "deployed",
        },
        "chart": {"metadata": {"name": "webapp", "version": "1.2.3", "appVersion": "4.5"}},
    }
    assert decode_release_fields(secret_data(json.dumps(rel).encode())) == wanted
    # Releases stored before Helm compressed them are plain JSON.
    assert decode_release_fields(secret_data(json.dumps(rel).encode(), compress=False)) == wanted
    # Whole bodies, for tools and tests.
    assert decode_release(secret_data(json.dumps(rel).encode())) == rel


@pytest.mark.parametrize(
    "data",
    [
        "!!not base64!!",
        base64.b64encode(b"!!inner not base64!!").decode(),
        secret_data(b"\x1f\x8b\x08garbage-not-gzip", compress=False),
        secret_data(b"{not json"),
        secret_data(b"[1, 2]"),
        secret_data(b"\xff\xfe"),
        "",
    ],
)
def test_corrupt_bodies_become_flagged_rows(data: str) -> None:
    secret = release_secret(release_json(status="failed"), data=data)
    ref = release_ref(secret["metadata"])
    assert ref is not None
    row = row_from_secret(ref, secret)
    assert row.error == CORRUPT
    assert (row.name, row.namespace, row.revision, row.status) == ("web", "apps", 3, "failed")


def test_latest_refs_uses_labels_and_falls_back_to_secret_name() -> None:
    metas = [
        release_secret(release_json(version=v, status="superseded"))["metadata"] for v in (1, 2, 10)
    ]
    metas.append(release_secret(release_json(version=9))["metadata"])
    metas.append(release_secret(release_json(namespace="other", version=1))["metadata"])
    metas.append({"name": "sh.helm.release.v1.bare.v4", "namespace": "x", "labels": {}})
    metas.append({"name": "unrelated", "namespace": "x", "labels": {"owner": "helm"}})
    metas.append({"name": "bad", "namespace": "x", "labels": {"name": "b", "version": "x"}})
    refs = {(r.namespace, r.name): r for r in latest_refs(metas)}
    assert set(refs) == {("apps", "web"), ("other", "web"), ("x", "bare")}
    assert refs["apps", "web"].revision == 10  # numeric, not lexical, maximum
    assert refs["apps", "web"].secret == "sh.helm.release.v1.web.v10"
    assert refs["x", "bare"].revision == 4


def test_release_row_columns_like_helm_ls() -> None:
    rel = release_json()
    ref = ReleaseRef("apps", "web", 3, "deployed", "sh.helm.release.v1.web.v3")
    row = row_from_secret(ref, release_secret(rel))
    assert row.as_tuple() == (
        "web",
        "apps",
        "3",
        "2026-11-26 01:02:03.123456789 +0000 UTC",
        "deployed",
        "webapp-1.2.3",
        "4.5",
    )
    no_meta = row_from_secret(ref, release_secret(release_json(chart={"metadata": None})))
    assert (no_meta.chart, no_meta.app_version) == ("MISSING", "MISSING")
    no_app = release_json(chart={"metadata": {"name": "c", "version": "0.1.0"}})
    assert row_from_secret(ref, release_secret(no_app)).app_version == ""


# -- helm: Go's time.Time.String() ------------------------------------------------------


@pytest.fixture
def local_tz() -> Iterator[Any]:
    old = os.environ.get("TZ")

    def use(tz: str) -> None:
        os.environ["TZ"] = tz
        time.tzset()

    yield use
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_go_time_string_utc(local_tz: Any) -> None:
    local_tz("UTC")
    assert go_time_string("2026-11-26T01:02:03.123456789Z") == (
        "2026-11-26 01:02:03.123456789 +0000 UTC"
    )
    assert go_time_string("2026-11-26T01:02:03.120Z") == "2026-11-26 01:02:03.12 +0000 UTC"
    assert go_time_string("2026-11-26T01:02:03Z") == "2026-11-26 01:02:03 +0000 UTC"
    assert go_time_string("2026-11-26T01:02:03.000Z") == "2026-11-26 01:02:03 +0000 UTC"
    # Offset 0 written as +00:00 is the local zone when local is UTC.
    assert go_time_string("2026-11-26T01:02:03+00:00") == "2026-11-26 01:02:03 +0000 UTC"


def test_go_time_string_local_and_foreign_offsets(local_tz: Any) -> None:
    local_tz("Europe/Berlin")
    # Offsets the local zone has at that instant take its abbreviation...
    assert go_time_string("2026-11-26T02:02:03.5+01:00") == "2026-11-26 02:02:03.5 +0100 CET"
    assert go_time_string("2026-07-01T02:02:03+02:00") == "2026-07-01 02:02:03 +0200 CEST"
    # ...others become a nameless fixed zone, printed as the offset twice.
    assert go_time_string("2026-07-01T02:02:03+01:00") == "2026-07-01 02:02:03 +0100 +0100"
    assert go_time_string("2026-11-26T01:02:03-05:30") == "2026-11-26 01:02:03 -0530 -0530"
    # Z is always UTC, whatever the local zone.
    assert go_time_string("2026-11-26T01:02:03Z") == "2026-11-26 01:02:03 +0000 UTC"


def test_go_time_string_zero_and_odd_values(local_tz: Any) -> None:
    local_tz("UTC")
    assert go_time_string(None) == "-"
    assert go_time_string("") == "-"
    assert go_time_string("0001-01-01T00:00:00Z") == "-"
    assert go_time_string("yesterday") == "yesterday"


# -- helm: report ordering and helm-ls filtering -------------------------------------


def _row(name: str, ns: str, status: str, error: str | None = None) -> Any:
    rel = release_json(name=name, namespace=ns, status=status)
    secret = release_secret(rel, data="%%%" if error else None)
    ref = release_ref(secret["metadata"])
    assert ref is not None
    return row_from_secret(ref, secret)


def test_report_chat_order_problems_and_helm_ls_view() -> None:
    rows = [
        _row("zeta", "a", "deployed"),
        _row("alpha", "b", "deployed"),
        _row("web", "b", "failed"),
        _row("web", "a", "pending-upgrade"),
        _row("old", "a", "superseded"),
        _row("gone", "a", "uninstalled"),
        _row("broken", "c", "deployed", error=CORRUPT),
        _row("alpha", "a", "failed"),
        _row("stuck", "a", "uninstalling"),
        _row("odd", "a", "mystery-state"),
    ]
    # release_json's last_deployed is 2026-11-26T01:02:03Z.
    report = HelmReport.from_rows(rows, now=datetime(2026, 11, 26, 4, 2, 4, tzinfo=UTC))
    assert [(r.namespace, r.name) for r in report.rows] == [
        # Everything not deployed, superseded or uninstalled comes first.
        ("a", "alpha"),
        ("a", "odd"),
        ("a", "stuck"),
        ("a", "web"),
        ("b", "web"),
        ("c", "broken"),
        ("a", "gone"),
        ("a", "old"),
        ("a", "zeta"),
        ("b", "alpha"),
    ]
    rollback = "(previous revision), or fix and helm upgrade"
    assert report.problems == (
        f"a/alpha: failed for 3h (revision 3): Upgrade complete; "
        f"way out: helm rollback alpha -n a {rollback}",
        "a/odd: mystery-state for 3h (revision 3): Upgrade complete; "
        "way out: see helm history odd -n a",
        # info.deleted is empty in release_json, so no "for how long".
        "a/stuck: uninstalling (revision 3): Upgrade complete; "
        "way out: finish the uninstall: helm uninstall stuck -n a",
        f"a/web: pending-upgrade for 3h (revision 3): Upgrade complete; "
        f"way out: helm rollback web -n a {rollback}",
        f"b/web: failed for 3h (revision 3): Upgrade complete; "
        f"way out: helm rollback web -n b {rollback}",
        "c/broken: corrupt release data (revision 3, status deployed); "
        "way out: inspect the Secret: kubectl get secret sh.helm.release.v1.broken.v3 -n c",
    )
    assert [(r.name, r.namespace) for r in report.rows_like_helm_ls()] == [
        ("alpha", "a"),
        ("alpha", "b"),
        ("web", "b"),
        ("zeta", "a"),
    ]
    table = report.render_table()
    assert table.splitlines()[0].startswith("NAME  \tNAMESPACE\tREVISION\tUPDATED")
    assert len(table.splitlines()) == 11


WAYS_OUT = {
    "failed": "helm rollback x -n a (previous revision), or fix and helm upgrade",
    "pending-install": "helm uninstall x -n a, then install again",
    "pending-upgrade": "helm rollback x -n a (previous revision), or fix and helm upgrade",
    "pending-rollback": "helm rollback x -n a (previous revision), or fix and helm upgrade",
    "uninstalling": "finish the uninstall: helm uninstall x -n a",
    "unknown": "see helm history x -n a",  # helm's own Go zero value of a status
    "mystery-state": "see helm history x -n a",  # a status helm does not know at all
}


@pytest.mark.parametrize("status", sorted((KNOWN_STATES - SETTLED_STATES) | set(WAYS_OUT)))
def test_every_unsettled_status_is_a_problem_listed_first_with_its_way_out(status: str) -> None:
    """Issue 11.6, the whole kind: only deployed, superseded and uninstalled rest."""
    rows = [_row("aaa", "a", "deployed"), _row("x", "a", status), _row("old", "a", "superseded")]
    report = HelmReport.from_rows(rows, now=datetime(2026, 11, 26, 4, 2, 4, tzinfo=UTC))
    assert report.rows[0].name == "x"
    (line,) = report.problems
    assert line.startswith(f"a/x: {status}")
    assert line.endswith(f"; way out: {WAYS_OUT[status]}")


@pytest.mark.parametrize("status", ["deployed", "superseded", "uninstalled"])
def test_settled_statuses_are_no_problem(status: str) -> None:
    report = HelmReport.from_rows([_row("x", "a", status)])
    assert report.problems == ()


# -- hostile cells: our side of what the cluster tests compare with the binaries ------


def test_kubectl_cells_escape_like_kubectl() -> None:
    # The node: kubectl prints ESC as ^[ and keeps BEL; the OS-IMAGE
    # cell is then 29 runes, its column 32 wide, while the header is padded to
    # the 30 *bytes* of the raw value before the tabwriter measures runes.
    text = kubectl_table(
        ("NAME", "OS-IMAGE", "X"), [("n", "\x1b]0;owned\x07Ubuntu 24.04.1 LTS", "y")]
    )
    header, row = text.splitlines()
    assert row == "n      ^[]0;owned\x07Ubuntu 24.04.1 LTS   y"
    assert header == "NAME   OS-IMAGE" + " " * 20 + "    X"
    assert "\x1b" not in text
    # Cut at the first line break, marked "..."; a tab or vertical tab starts a cell.
    assert kubectl_table(("A", "B"), [("x\r\ny", "z")]) == "A      B\nx...   z\n"
    assert kubectl_table(("A", "B"), [("p\tq", "z")]).splitlines()[1] == "p     q     z"


def test_kubectl_width_counts_runes_after_padding_bytes() -> None:
    # An en dash is 3 bytes, 1 rune: the header pads to 20 bytes, the row has 18 runes.
    text = kubectl_table(("NAME", "OS", "K"), [("a", "Ubuntu 24.04 \u2013 LTS", "k")])
    header, row = text.splitlines()
    assert header.index("K") == row.index("k") == 7 + 20 + 3


def test_kubectl_remembers_widths_across_100_row_flushes() -> None:
    rows = [(f"n{i:03d}", "v") for i in range(150)]
    rows[120] = ("n120", "\x1b" * 10)  # 10 bytes, 20 runes, after the first flush
    lines = kubectl_table(("NAME", "VALUE"), rows).splitlines()
    assert lines[1] == "n000   v"  # the first block never saw the wide cell
    assert lines[121] == "n120   " + "^[" * 10


def test_kubectl_chunks_are_tables_of_their_own() -> None:
    rows = [("a", "1"), ("bbbbbbbbbb", "2"), ("c", "3")]
    text = kubectl_table(("NAME", "V"), rows, chunk_rows=2)
    # The second chunk prints no header; its first row is padded to its own widths.
    assert text == "NAME         V\na            1\nbbbbbbbbbb   2\nc            3\n"


def test_helm_table_hostile_cells() -> None:
    # helm escapes nothing; widths by go-runewidth: CJK 2, combining 0, controls 0,
    # ANSI sequences 0 (stripped for measuring only).
    rows = [
        ("\u4e2d\u6587", "a\u0301", "\x1b[31mred\x1b[0m"),
        ("\U0001f427", "x\x07y", "plain"),
    ]
    text = helm_table(("NAME", "N", "C"), rows, east_asian=False)
    assert text.splitlines() == [
        "NAME\tN \tC    ",
        "\u4e2d\u6587\ta\u0301 \t\x1b[31mred\x1b[0m  ",
        "\U0001f427  \tx\x07y\tplain",  # this emoji is in v0.0.9's doublewidth table
    ]


def test_helm_table_multiline_cells_spread_over_lines() -> None:
    text = helm_table(("NAME", "B"), [("one\ntwo", "x")], east_asian=False)
    # Whole-cell width 6 > column 4: uitable cuts to "o" + "...", then pads.
    assert text == "NAME\tB\no...\tx\n"
    text = helm_table(("NAME", "LONGER"), [("ab\ncd", "x")], east_asian=False)
    assert text == "NAME\tLONGER\nab  \tx     \ncd  \t      \n"


def test_east_asian_locale_like_go_runewidth() -> None:
    assert east_asian_locale({"LANG": "ja_JP.UTF-8"})
    assert not east_asian_locale({"LANG": "en_US.UTF-8"})
    assert not east_asian_locale({"LC_ALL": "C.UTF-8", "LANG": "ja_JP.UTF-8"})
    assert east_asian_locale({"RUNEWIDTH_EASTASIAN": "1"})
    assert string_width("\u00b1", east_asian=True) == 2  # ambiguous
    assert string_width("\u00b1") == 1


# -- problems: grouping and safe lines ----------------------------------------------------


def test_zone_outage_problems_group_into_one_line() -> None:
    lost = cond("Ready", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")
    taints = [
        V1Taint(key="node.kubernetes.io/unreachable", effect="NoSchedule"),
        V1Taint(key="node.kubernetes.io/unreachable", effect="NoExecute"),
    ]
    nodes = [node(f"zone-b-{i:03d}", conditions=[lost], taints=taints) for i in range(160)]
    nodes += [node(f"zone-a-{i:03d}") for i in range(40)]
    report = build_report(nodes, NOW)
    assert len(report.problems) == 160  # every node listed in full
    assert group_problems(report.problem_list, ("node", "nodes")) == [
        "160 nodes: NotReady, status unknown (NodeStatusUnknown: Kubelet stopped posting "
        "node status.): zone-b-000, zone-b-001, zone-b-002 and 157 more"
    ]


def test_problem_lines_are_inert() -> None:
    hostile = cond("Ready", "False", "Bad\x1b]0;x\x07", "two\nlines\u202e\x85")
    (line,) = node_problems(node("n", conditions=[hostile]))
    assert line == "n: NotReady (Bad^[]0;x\\x07: two\\x0alines\\u202e\\x85)"
    assert safe_line("a\u2028b\tc\x7f") == "a\\u2028b\\x09c\\x7f"


# -- helm: bounded, field-only decoding ----------------------------------------------------


def test_gzip_bomb_is_an_oversized_row_not_a_memory_spike() -> None:
    body = b'{"name":"bomb","manifest":"' + b"A" * (40 << 20) + b'"}'
    bomb = base64.b64encode(base64.b64encode(gzip.compress(body, 9))).decode()
    secret = release_secret(release_json(name="bomb"), data=bomb)
    ref = release_ref(secret["metadata"])
    assert ref is not None
    row = row_from_secret(ref, secret)
    assert row.error == OVERSIZED
    assert row.in_trouble


def test_gunzip_bounded_like_go() -> None:
    two = gzip.compress(b"ab") + gzip.compress(b"cd")
    assert gunzip_bounded(two) == b"abcd"  # members back to back, as Go reads them
    assert gunzip_bounded(gzip.compress(b"x" * 100), limit=100) == b"x" * 100
    with pytest.raises(OversizedRelease):
        gunzip_bounded(gzip.compress(b"x" * 101), limit=100)
    with pytest.raises(CorruptRelease):
        gunzip_bounded(gzip.compress(b"x" * 1000)[:-6])  # truncated
    with pytest.raises(CorruptRelease):
        gunzip_bounded(gzip.compress(b"x") + b"junk")


@pytest.mark.parametrize("padding", [0, 1 << 20], ids=["parsed", "walked"])
def test_release_fields_reads_like_go_json(padding: int) -> None:
    # Bodies up to 1 MiB are parsed by json, larger ones walked: same answers.
    pad = b" " * padding
    body = (
        b'{"NAME":"first","name":"web","Namespace":"apps","version":7,'
        b'"config":{"deep":[[[[{"a":"}]"}]]]],"s":"\\"{["},'
        b'"info":{"status":"failed","last_deployed":"2026-11-26T01:02:03Z","notes":"x"},'
        b'"chart":{"templates":[{"name":"t","data":"AAAA"}],'
        b'"metadata":{"name":"c\\u00e9","version":"1","appVersion":"\\ud800x"}}}'
    ) + pad
    fields = release_fields(body)
    assert fields["name"] == "web"  # the last duplicate wins, keys fold case
    assert fields["namespace"] == "apps"
    assert fields["version"] == 7
    assert fields["info"] == {"status": "failed", "last_deployed": "2026-11-26T01:02:03Z"}
    assert fields["chart"] == {
        "metadata": {"name": "c\u00e9", "version": "1", "appVersion": "\ufffdx"}
    }
    for bad in (
        b'{"name":1}',  # a type Go would refuse
        b'{"version":1.5}',
        b'{"name":"a"} x',
        b'{"name":"a"',
        b"[1]",
        b'{"version":true}',
        b'{"config":NaN}',
    ):
        with pytest.raises(CorruptRelease):
            release_fields(bad + pad)
    # Invalid UTF-8 reads as Go reads it: one U+FFFD per bad byte.
    assert release_fields(b'{"name":"a\xff\xfeb"}' + pad) == {"name": "a\ufffd\ufffdb"}


def test_hostile_structure_stays_cheap() -> None:
    deep = b'{"name":"x","config":' + b"[" * 3_000_000 + b"]" * 3_000_000 + b"}"
    with pytest.raises(OversizedRelease):
        release_fields(deep)
    wide = b'{"name":"x","config":[' + b"{}," * 300_000 + b'{}],"version":2}'
    assert release_fields(wide) == {"name": "x", "version": 2}


@pytest.mark.parametrize("namespace", ["a/b", "..", "a%2Fb", "UPPER", "-x", "x" * 64, ""])
def test_check_namespace_refuses_what_is_not_a_dns_label(namespace: str) -> None:
    with pytest.raises(InvalidNamespace) as caught:
        check_namespace(namespace)
    assert isinstance(caught.value, ClusterError)
    assert "not a namespace name" in str(caught.value)
    assert check_namespace("team-a1") == "team-a1"


# -- the Slack shape of a report ------------------------------------------------------------


def test_zone_outage_report_loses_nothing() -> None:
    lost = cond("Ready", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")
    nodes = [node(f"zone-b-{i:03d}", conditions=[lost], node_info=info()) for i in range(160)]
    nodes += [node(f"zone-a-{i:03d}", node_info=info()) for i in range(40)]
    nodes += [
        node(f"odd-{i:02d}", conditions=[cond("Ready", "False", f"Reason{i}", "x" * 200)])
        for i in range(25)
    ]
    report = build_report(nodes, NOW)
    table = report.render_table()
    from bot.slack.blocks import report_file_content, report_messages
    from k8s.table import group_problems as group

    summary = group(report.problem_list, ("node", "nodes"))
    assert len(summary) == 26
    messages = report_messages("Nodes", summary, table, "No nodes.", count=len(report.problems))
    if messages is not None:
        text = json.dumps([m.blocks for m in messages])
        for line in summary:
            assert json.dumps(line)[1:-1].split(":")[0] in text
    content = report_file_content("Nodes", list(report.problems), table)
    assert all(p in content for p in report.problems)
    assert content.endswith(table)


def test_slack_layout_never_cuts_a_line_and_says_where_the_rest_is() -> None:
    from bot.slack.blocks import report_file_message, report_messages, with_file_note

    table = "NAME   STATUS\nn1     Ready\n"
    # A problem line no block can hold: the report goes to the file.
    assert report_messages("T", ["x" * 3100], table, "none") is None
    # More problem lines than five blocks hold: the summary says how many wait in the file.
    lines = [f"node-{i:04d}: NotReady ({'r' * 80})" for i in range(400)]
    assert report_messages("T", lines, table, "none") is None
    message = report_file_message("T", lines, "nodes-a.txt", count=400)
    shown = [
        line
        for b in message.blocks
        if b["type"] == "section" and b["text"]["type"] == "plain_text"
        for line in b["text"]["text"].split("\n")
    ]
    assert shown == [f"• {line}" for line in lines[: len(shown)]]  # whole lines, in order
    text = json.dumps(message.blocks)
    assert f"{400 - len(shown)} more problem line(s) in the file" in text
    assert "The full problem list and the table are in the file `nodes-a.txt`" in text
    # Messages that fit but whose grouping hid names point at the file too.
    fits = report_messages("T", ["3 nodes: x: a, b, c and 1 more"], table, "none", count=4)
    assert fits is not None
    (noted,) = with_file_note(fits, "nodes-a.txt", 4)
    kinds = [json.dumps(b) for b in noted.blocks]
    note = next(i for i, k in enumerate(kinds) if "one line each" in k)
    assert note < next(i for i, k in enumerate(kinds) if "```" in k)


def test_helm_problem_lines_are_inert() -> None:
    rel = release_json(status="failed", description="boom\x1b]0;x\x07\nnext\u202e")
    ref = ReleaseRef("apps", "web", 3, "failed", "sh.helm.release.v1.web.v3")
    report = HelmReport.from_rows([row_from_secret(ref, release_secret(rel))])
    (line,) = report.problems
    assert "boom^[]0;x\\x07\\x0anext\\u202e" in line


@pytest.mark.parametrize("element", [b"[]", b"{}", b'"ab"', b"[[]]"])
def test_worst_1_mib_body_stays_under_50_mib(element: bytes) -> None:
    # The largest body json parses whole: tiny containers are its worst case.
    inner = b",".join([element] * ((1 << 20) // (len(element) + 1) - 40))
    body = b'{"name":"x","config":[' + inner + b"]}"
    assert len(body) <= 1 << 20
    tracemalloc.start()
    try:
        assert release_fields(body) == {"name": "x"}
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 << 20
