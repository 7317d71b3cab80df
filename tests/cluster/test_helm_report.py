"""The helm report against a real apiserver, with releases made by the real helm.

Every comparison is with the real ``helm ls`` output, byte for byte.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from k8s.clients import ClusterClient, ClusterRegistry, ClusterTarget
from k8s.helm import CORRUPT, OVERSIZED, helm_report
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


def helm_env(cluster: TestCluster, extra: dict[str, str] | None = None) -> dict[str, str]:
    home = cluster.root / "helm-home"
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        **(extra or {}),
    }
    env.pop("KUBECONFIG", None)
    return env


def kill_helm_at_hook(
    cluster: TestCluster, args: list[str], ns: str, secret: str, status: str, job: str
) -> None:
    """Run helm until the release Secret shows ``status`` and its hook Job exists, then SIGKILL.

    Helm records the revision's new state before running hooks and then waits
    for the hook Job, which no controller here will ever run. SIGKILL, not
    SIGTERM: on SIGTERM helm marks the release failed.
    """
    cmd = [str(cluster.bin_dir / "helm"), f"--kubeconfig={cluster.kubeconfig}", *args]
    env = helm_env(cluster)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            now = secret_label(cluster, ns, secret, "status")
            hook = cluster.kubectl("get", "job", "-n", ns, job, check=False)
            if now == status and hook.returncode == 0:
                break
            assert proc.poll() is None, f"helm {args[0]} ended instead of waiting on its hook"
            time.sleep(0.2)
        else:
            raise AssertionError(f"helm {args[0]} never reached its hook")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


def leave_pending(cluster: TestCluster, release: str, ns: str) -> None:
    """An upgrade killed at its pre-upgrade hook: the release stays pending-upgrade."""
    args = ["upgrade", release, CFG, "-n", ns, "--set", "hangingHook=true"]
    secret = f"sh.helm.release.v1.{release}.v2"
    kill_helm_at_hook(cluster, args, ns, secret, "pending-upgrade", f"{release}-hook-2")


def leave_uninstalling(cluster: TestCluster, release: str, ns: str) -> None:
    """An uninstall killed at its pre-delete hook: the release stays uninstalling."""
    cluster.helm("install", release, CFG, "-n", ns, "--set", "hangingDeleteHook=true")
    secret = f"sh.helm.release.v1.{release}.v1"
    args = ["uninstall", release, "-n", ns]
    kill_helm_at_hook(cluster, args, ns, secret, "uninstalling", f"{release}-delete-hook")


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
            leave_uninstalling(cluster, "halfgone", NS_A)
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
    assert report.render_helm_ls(all_states=True) == expected


async def test_chat_order_states_and_problems(releases: None, cc: ClusterClient) -> None:
    with local_tz("UTC"):
        report = await helm_report(cc, page_size=2)  # several pages of every list
    ours = [r for r in report.rows if r.namespace.startswith("rpt-helm-")]
    assert [(r.namespace, r.name, r.revision, r.status) for r in ours] == [
        # failed, pending, uninstalling and corrupt first ...
        (NS_A, "api", 2, "failed"),
        (NS_A, "halfgone", 1, "uninstalling"),
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
    broken = ours[4]
    assert (broken.error, broken.chart, broken.updated) == (CORRUPT, "MISSING", "-")
    problems = [p for p in report.problems if p.startswith("rpt-helm-")]
    # Each with how long it has been so (seconds here: the fixture just ran).
    since = r" for [0-9]+(s|m[0-9]*s?)"
    assert re.match(
        f'{NS_A}/api: failed{since} \\(revision 2\\): Upgrade "api" failed:', problems[0]
    )
    assert re.match(
        f"{NS_A}/halfgone: uninstalling{since} \\(revision 1\\): "
        "Deletion in progress \\(or silently failed\\); "
        f"way out: finish the uninstall: helm uninstall halfgone -n {NS_A}$",
        problems[1],
    )
    assert re.match(f"{NS_A}/stuck: pending-upgrade{since} \\(revision 2\\)", problems[2])
    assert problems[2].endswith(
        f"way out: helm rollback stuck -n {NS_A} (previous revision), or fix and helm upgrade"
    )
    assert re.match(f'{NS_B}/db: failed{since} \\(revision 1\\): Release "db" failed:', problems[3])
    assert problems[4] == (
        f"{NS_C}/broken: {CORRUPT} (revision 1, status deployed); way out: inspect the "
        f"Secret: kubectl get secret sh.helm.release.v1.broken.v1 -n {NS_C}"
    )
    assert len(problems) == 5
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


# -- hostile cells in planted releases, compared byte for byte with the real helm ----------

NS_H = "rpt-helm-hostile"
HOSTILE = [
    "\x1b]0;owned\x07title",  # OSC sequence: helm prints it raw, measures it as 0 wide
    "\x1b[31mred\x1b[0m",  # ANSI colour
    "en\u2013dash",
    "\u4e2d\u6587\u540d",  # CJK: 2 columns each
    "\U0001f427\U0001f469\u200d\U0001f4bb",  # emoji and a ZWJ sequence
    "e\u0301\u20dd",  # combining marks
    "c1\x9b1m\x85\u202eevil",  # C1 CSI and NEL, bidi override
    "del\x7f\x00\x01\x07",  # DEL, NUL, BEL and other C0
    "tab\there\vv",
    "two\nlines",  # uitable spreads the row over two lines
    "cr\rret",
    "\u00e9\u00b1\u00d7 ambiguous",  # wide only under an East Asian locale
    "x" * 70,  # wider than everything else
]


def plant_release(cluster: TestCluster, ns: str, label_name: str, body: dict[str, Any]) -> None:
    """A release Secret as helm writes it, with a body of our choosing (as any Secret writer)."""
    data = base64.b64encode(gzip.compress(json.dumps(body).encode())).decode()
    secret = f"sh.helm.release.v1.{label_name}.v1"
    cluster.kubectl(
        "create", "secret", "generic", secret, "-n", ns,
        "--type=helm.sh/release.v1", f"--from-literal=release={data}",
    )  # fmt: skip
    cluster.kubectl(
        "label", "secret", "-n", ns, secret,
        "owner=helm", f"name={label_name}", f"status={body['info']['status']}", "version=1",
    )  # fmt: skip


def hostile_body(i: int) -> dict[str, Any]:
    pick = [HOSTILE[(i + k) % len(HOSTILE)] for k in range(5)]
    offsets = ["Z", "+05:30", "-03:30", "+01:00", "+00:00"]
    return {
        "name": f"h{i:02d}-{pick[0]}",  # unique names: helm's order is then fixed
        "namespace": pick[1],
        "version": 1,
        "info": {
            "status": "deployed" if i % 2 == 0 else "failed",
            "last_deployed": f"2026-11-2{i % 10}T0{i % 10}:04:05.{i}00{offsets[i % 5]}",
            "description": pick[2],
        },
        "chart": {"metadata": {"name": pick[2], "version": pick[3], "appVersion": pick[4]}},
    }


@pytest.fixture(scope="module")
def hostile_releases(cluster: TestCluster) -> Iterator[None]:
    cluster.kubectl("create", "namespace", NS_H)
    try:
        for i in range(len(HOSTILE)):
            plant_release(cluster, NS_H, f"h{i:02d}", hostile_body(i))
        yield
    finally:
        cluster.kubectl("delete", "secret", "-n", NS_H, "-l", "owner=helm", check=False)


def helm_bytes(cluster: TestCluster, *args: str, env: dict[str, str] | None = None) -> bytes:
    """helm's stdout as bytes (text mode would turn a CR into a newline)."""
    cmd = [str(cluster.bin_dir / "helm"), f"--kubeconfig={cluster.kubeconfig}", *args]
    proc = subprocess.run(
        cmd, capture_output=True, check=True, timeout=120, env=helm_env(cluster, env)
    )
    return proc.stdout


@contextmanager
def local_env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.mark.parametrize(
    ("tz", "lang"),
    [
        ("UTC", "C.UTF-8"),
        ("Asia/Kolkata", "en_US.UTF-8"),
        ("America/St_Johns", "ja_JP.UTF-8"),  # go-runewidth: ambiguous characters are wide
    ],
)
async def test_hostile_cells_equal_helm_ls_byte_for_byte(
    cluster: TestCluster, hostile_releases: None, cc: ClusterClient, tz: str, lang: str
) -> None:
    locale = {"LANG": lang, "LC_ALL": "", "LC_CTYPE": "", "RUNEWIDTH_EASTASIAN": ""}
    with local_tz(tz), local_env(**locale):
        theirs = helm_bytes(cluster, "ls", "-n", NS_H, "--max", "0", env=locale)
        report = await helm_report(cc, NS_H)
        ours = report.render_helm_ls().encode()
        all_theirs = helm_bytes(cluster, "ls", "-n", NS_H, "-a", "--max", "0", env=locale)
        all_ours = report.render_helm_ls(all_states=True).encode()
    assert ours == theirs, "\n".join(
        f"{a!r}\n{b!r}"
        for a, b in zip(theirs.split(b"\n"), ours.split(b"\n"), strict=False)
        if a != b
    )
    assert all_ours == all_theirs
    # helm escapes nothing: neither do we, in its table.
    assert b"\x1b]0;owned\x07" in ours
    assert len(report.rows) == len(HOSTILE)


# -- a gzip bomb costs bounded memory ------------------------------------------------------

NS_BOMB = "rpt-helm-bomb"
PROBE = Path(__file__).parent / "helm_rss_probe.py"


@pytest.fixture(scope="module")
def bomb(cluster: TestCluster) -> Iterator[None]:
    """The issue's Secret: ~150 KiB of gzip that inflates to 150 MiB, next to a real release."""
    cluster.kubectl("create", "namespace", NS_BOMB)
    try:
        cluster.helm("install", "fine", PLAIN, "-n", NS_BOMB)
        manifest = b"A" * (150 << 20)
        body = (
            b'{"name":"bomb","namespace":"' + NS_BOMB.encode() + b'","version":1,'
            b'"info":{"status":"deployed","last_deployed":"2026-11-26T01:02:03Z"},'
            b'"chart":{"metadata":{"name":"bomb","version":"1.0.0"}},"manifest":"'
            + manifest
            + b'"}'
        )
        del manifest
        data = base64.b64encode(gzip.compress(body, 9)).decode()
        del body
        assert len(data) < 250_000
        secret = "sh.helm.release.v1.bomb.v1"
        manifest_file = cluster.root / "bomb.yaml"
        manifest_file.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "type": "helm.sh/release.v1",
                    "metadata": {
                        "name": secret,
                        "namespace": NS_BOMB,
                        "labels": {
                            "owner": "helm",
                            "name": "bomb",
                            "status": "deployed",
                            "version": "1",
                        },
                    },
                    "data": {"release": base64.b64encode(data.encode()).decode()},
                }
            )
        )
        cluster.kubectl("create", "-f", str(manifest_file))
        yield
    finally:
        cluster.kubectl("delete", "secret", "-n", NS_BOMB, "-l", "owner=helm", check=False)


def test_gzip_bomb_is_a_problem_row_within_50_mib(cluster: TestCluster, bomb: None) -> None:
    # The report runs in a process of its own, so its peak RSS is its alone.
    proc = subprocess.run(
        [sys.executable, str(PROBE), str(cluster.kubeconfig), NS_BOMB],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["rows"] == [["bomb", OVERSIZED], ["fine", None]]
    assert result["problems"][0].startswith(f"{NS_BOMB}/bomb: {OVERSIZED}")
    grown = result["peak_kib"] - result["idle_kib"]
    assert grown < 50 * 1024, f"peak RSS grew by {grown} KiB during the report"


NS_BIG = "rpt-helm-big"
BIG_RELEASES = 40


@pytest.fixture(scope="module")
def big_releases(cluster: TestCluster) -> Iterator[None]:
    """40 release Secrets near the 1 MiB Secret limit: one list page is ~45 MB of JSON."""
    cluster.kubectl("create", "namespace", NS_BIG)
    try:
        items = []
        for i in range(BIG_RELEASES):
            body = {
                "name": f"big{i:02d}",
                "namespace": NS_BIG,
                "version": 1,
                "info": {"status": "deployed", "last_deployed": "2026-11-26T01:02:03Z"},
                "chart": {"metadata": {"name": "big", "version": "1.0.0"}},
                # Incompressible, so the stored body stays near the limit.
                "manifest": base64.b64encode(os.urandom(540_000)).decode(),
            }
            stored = base64.b64encode(gzip.compress(json.dumps(body).encode())).decode()
            items.append(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "type": "helm.sh/release.v1",
                    "metadata": {
                        "name": f"sh.helm.release.v1.big{i:02d}.v1",
                        "namespace": NS_BIG,
                        "labels": {
                            "owner": "helm",
                            "name": f"big{i:02d}",
                            "status": "deployed",
                            "version": "1",
                        },
                    },
                    "data": {"release": base64.b64encode(stored.encode()).decode()},
                }
            )
        for start in range(0, BIG_RELEASES, 10):
            path = cluster.root / f"big-{start}.json"
            path.write_text(
                json.dumps({"apiVersion": "v1", "kind": "List", "items": items[start : start + 10]})
            )
            cluster.kubectl("create", "-f", str(path))
        yield
    finally:
        cluster.kubectl("delete", "secret", "-n", NS_BIG, "-l", "owner=helm", check=False)


def test_big_release_secrets_are_read_one_at_a_time(
    cluster: TestCluster, big_releases: None
) -> None:
    proc = subprocess.run(
        [sys.executable, str(PROBE), str(cluster.kubeconfig), NS_BIG],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["rows"] == [[f"big{i:02d}", None] for i in range(BIG_RELEASES)]
    grown = result["peak_kib"] - result["idle_kib"]
    # The page of whole Secrets is ~45 MB of JSON; held whole it would double.
    assert grown < 50 * 1024, f"peak RSS grew by {grown} KiB during the report"
