"""The helm report against a real apiserver, with releases made by the real helm.

Every comparison is with the real ``helm ls`` output, byte for byte.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from k8s.clients import ClusterClient, ClusterRegistry, ClusterTarget
from k8s.helm import CORRUPT, HEADER, helm_report
from k8s.table import helm_table
from tests.support.cluster import TestCluster
from tests.support.patience import PATIENCE

pytestmark = pytest.mark.cluster

CHARTS = Path(__file__).parent / "charts"
CFG, PLAIN = str(CHARTS / "cfg"), str(CHARTS / "plain")
NS_A, NS_B, NS_C = "rpt-helm-a", "rpt-helm-b", "rpt-helm-c"


@contextmanager
def local_tz(tz: str) -> Iterator[None]:
    """Set TZ for this process (our formatting) and the helm it starts."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = tz
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


def secret_label(cluster: TestCluster, ns: str, secret: str, label: str) -> str:
    out = cluster.kubectl(
        "get",
        "secret",
        "-n",
        ns,
        secret,
        "-o",
        f"jsonpath={{.metadata.labels.{label}}}",
        check=False,
    )
    return out.stdout if out.returncode == 0 else ""


def leave_pending(cluster: TestCluster, release: str, ns: str) -> None:
    """Start an upgrade whose pre-upgrade hook never completes, then SIGKILL helm.

    Helm records the new revision as pending-upgrade before running hooks and
    then waits for the hook Job, which no controller here will ever run.
    SIGKILL, not SIGTERM: on SIGTERM helm marks the release failed.
    """
    home = cluster.root / "helm-home"
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    env.pop("KUBECONFIG", None)
    cmd = [str(cluster.bin_dir / "helm"), f"--kubeconfig={cluster.kubeconfig}"]
    cmd += ["upgrade", release, CFG, "-n", ns, "--set", "hangingHook=true"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            pending = secret_label(cluster, ns, f"sh.helm.release.v1.{release}.v2", "status")
            hook = cluster.kubectl("get", "job", "-n", ns, f"{release}-hook-2", check=False)
            if pending == "pending-upgrade" and hook.returncode == 0:
                break
            assert proc.poll() is None, "helm upgrade ended instead of waiting on its hook"
            time.sleep(0.2)
        else:
            raise AssertionError("helm never reached its pre-upgrade hook")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


def corrupt_release_secret(cluster: TestCluster, ns: str, name: str) -> None:
    garbage = base64.b64encode(b"H4sI-this-is-not-a-release").decode()
    cluster.kubectl(
        "create", "secret", "generic", f"sh.helm.release.v1.{name}.v1", "-n", ns,
        "--type=helm.sh/release.v1", f"--from-literal=release={garbage}",
    )  # fmt: skip
    cluster.kubectl(
        "label", "secret", "-n", ns, f"sh.helm.release.v1.{name}.v1",
        "owner=helm", f"name={name}", "status=deployed", "version=1",
    )  # fmt: skip


@pytest.fixture(scope="module")
def releases(cluster: TestCluster) -> Iterator[None]:
    """Releases in every state helm can leave them in, made by the real helm."""
    for ns in (NS_A, NS_B, NS_C):
        cluster.kubectl("create", "namespace", ns)
    try:
        with local_tz("UTC"):
            helm = cluster.helm
            # rpt-helm-a: history, a failed upgrade, a pending upgrade, an uninstall.
            helm("install", "web", CFG, "-n", NS_A)
            helm("upgrade", "web", CFG, "-n", NS_A, "--set", "greeting=v2")
            with local_tz("Europe/Berlin"):  # stored with a +01:00 offset, not Z
                helm("upgrade", "web", CFG, "-n", NS_A, "--set", "greeting=v3")
            helm("install", "api", PLAIN, "-n", NS_A)
            bad = helm("upgrade", "api", PLAIN, "-n", NS_A, "--set", "name=Bad_Name", check=False)
            assert bad.returncode != 0  # the apiserver rejects the ConfigMap name
            helm("install", "stuck", CFG, "-n", NS_A)
            leave_pending(cluster, "stuck", NS_A)
            helm("install", "gone", CFG, "-n", NS_A)
            helm("uninstall", "gone", "-n", NS_A, "--keep-history")
            # rpt-helm-b: a name also used in rpt-helm-a, a failed install, a
            # rollback, and a newest revision hand-labelled "superseded".
            helm("install", "web", PLAIN, "-n", NS_B)
            failed = helm("install", "db", CFG, "-n", NS_B, "--set", "name=Bad_Name", check=False)
            assert failed.returncode != 0
            helm("install", "rolled", CFG, "-n", NS_B)
            helm("upgrade", "rolled", CFG, "-n", NS_B, "--set", "greeting=v2")
            helm("rollback", "rolled", "1", "-n", NS_B)
            helm("install", "relabelled", CFG, "-n", NS_B)
            helm("upgrade", "relabelled", CFG, "-n", NS_B, "--set", "greeting=v2")
            cluster.kubectl(
                "label", "secret", "-n", NS_B, "sh.helm.release.v1.relabelled.v2",
                "status=superseded", "--overwrite",
            )  # fmt: skip
            # rpt-helm-c: a release Secret whose body is garbage.
            corrupt_release_secret(cluster, NS_C, "broken")
        yield
    finally:
        # No namespace controller runs here, so delete what helm ls -A would see.
        for ns in (NS_A, NS_B, NS_C):
            cluster.kubectl("delete", "secret", "-n", ns, "-l", "owner=helm", check=False)


@pytest.fixture
async def cc(cluster: TestCluster) -> AsyncIterator[ClusterClient]:
    target = ClusterTarget(name="test", context="admin", kubeconfig=str(cluster.kubeconfig))
    registry = ClusterRegistry({"test": target})
    yield registry["test"]
    registry.close()


def helm_ls(cluster: TestCluster, *args: str) -> str:
    """``helm ls`` with its rows ordered by (name, namespace).

    Helm sorts by name only, after collecting releases in a Go map: equal
    names from different namespaces come out in random order.
    """
    out = cluster.helm("ls", "--max", "0", *args).stdout
    header, *rows = out.splitlines(keepends=True)

    def key(line: str) -> tuple[str, str]:
        cells = line.split("\t")
        return cells[0].rstrip(), cells[1].rstrip()

    return header + "".join(sorted(rows, key=key))


async def test_all_namespaces_equal_helm_ls(
    cluster: TestCluster, releases: None, cc: ClusterClient
) -> None:
    with local_tz("UTC"):
        expected = helm_ls(cluster, "-A")
        report = await helm_report(cc)
    assert report.render_helm_ls() == expected
    # The +01:00 revision prints as Go prints a foreign fixed offset.
    assert "+0100 +0100" in expected


@pytest.mark.parametrize("ns", [NS_A, NS_B])
@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", "Asia/Kolkata"])
async def test_one_namespace_equals_helm_ls(
    cluster: TestCluster, releases: None, cc: ClusterClient, ns: str, tz: str
) -> None:
    with local_tz(tz):
        expected = helm_ls(cluster, "-n", ns)
        report = await helm_report(cc, ns)
        assert report.render_helm_ls() == expected
    assert {r.namespace for r in report.rows} == {ns}


async def test_every_state_equals_helm_ls_all(
    cluster: TestCluster, releases: None, cc: ClusterClient
) -> None:
    with local_tz("UTC"):
        expected = helm_ls(cluster, "-A", "-a")
        report = await helm_report(cc)
    readable = sorted(
        (r for r in report.rows if r.error is None), key=lambda r: (r.name, r.namespace)
    )
    assert helm_table(HEADER, (r.as_tuple() for r in readable)) == expected


async def test_chat_order_states_and_problems(releases: None, cc: ClusterClient) -> None:
    with local_tz("UTC"):
        report = await helm_report(cc, page_size=2)  # several pages of every list
    ours = [r for r in report.rows if r.namespace.startswith("rpt-helm-")]
    assert [(r.namespace, r.name, r.revision, r.status) for r in ours] == [
        # failed, pending and corrupt first ...
        (NS_A, "api", 2, "failed"),
        (NS_A, "stuck", 2, "pending-upgrade"),
        (NS_B, "db", 1, "failed"),
        (NS_C, "broken", 1, "deployed"),
        # ... then the rest by namespace and name, whatever their state.
        (NS_A, "gone", 1, "uninstalled"),
        (NS_A, "web", 3, "deployed"),
        (NS_B, "relabelled", 2, "deployed"),  # newest found despite its label
        (NS_B, "rolled", 3, "deployed"),
        (NS_B, "web", 1, "deployed"),
    ]
    broken = ours[3]
    assert (broken.error, broken.chart, broken.updated) == (CORRUPT, "MISSING", "-")
    problems = [p for p in report.problems if p.startswith("rpt-helm-")]
    assert problems[0].startswith(f'{NS_A}/api: failed (revision 2): Upgrade "api" failed:')
    assert problems[1].startswith(f"{NS_A}/stuck: pending-upgrade (revision 2)")
    assert problems[2].startswith(f'{NS_B}/db: failed (revision 1): Release "db" failed:')
    assert problems[3] == f"{NS_C}/broken: {CORRUPT} (revision 1, status deployed)"
    assert len(problems) == 4
    table = report.render_table()
    assert table.startswith("NAME")
    assert "\nbroken" in table  # the corrupt release is listed, not dropped
    web = next(r for r in ours if (r.namespace, r.name) == (NS_A, "web"))
    assert (web.chart, web.app_version) == ("cfg-0.1.0", "1.0.0")
    plain = next(r for r in ours if (r.namespace, r.name) == (NS_B, "web"))
    assert (plain.chart, plain.app_version) == ("plain-2.3.4", "")


async def test_corrupt_only_namespace(releases: None, cc: ClusterClient) -> None:
    report = await helm_report(cc, NS_C)
    assert [(r.name, r.error) for r in report.rows] == [("broken", CORRUPT)]
    assert report.rows_like_helm_ls() == []  # helm skips what it cannot decode
