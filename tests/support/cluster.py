"""A real kube-apiserver with etcd for tests, started the way envtest starts it.

No controller-manager runs: tests create the namespaces and Node objects they
need themselves, and nothing is garbage-collected behind their backs.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from tests.support.pki import TestPKI

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tests" / "testenv" / "build.sh"
NO_GO_EXIT = 3


class TestenvUnavailable(RuntimeError):
    """The Kubernetes test binaries cannot be had on this machine."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def testenv_bin_dir() -> Path:
    """Directory with kube-apiserver, etcd, kubectl and helm; builds them if needed."""
    preset = os.environ.get("ACCESSBOT_TESTENV_BIN")
    if preset:
        return Path(preset)
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False, timeout=3600
    )
    if proc.returncode == NO_GO_EXIT:
        raise TestenvUnavailable(proc.stderr.strip().splitlines()[-1])
    if proc.returncode != 0:
        raise RuntimeError(f"tests/testenv/build.sh failed:\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


# etcd and kube-apiserver start in seconds on an idle machine; with both cores busy
# the apiserver's post-start hooks alone can take over a minute.
STARTUP_PATIENCE = 240.0


def _wait_until(check: Any, what: str, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:
            last = exc
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{what} not ready after {timeout}s ({last!r})\n{tail}")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class TestCluster:
    """One etcd + kube-apiserver pair and the credentials to drive it."""

    __test__ = False

    name: str
    root: Path
    bin_dir: Path
    server: str = ""
    pki: TestPKI = field(init=False)
    kubeconfig: Path = field(init=False)
    context: str = "admin"
    # More kube-apiserver flags, e.g. "--service-account-max-token-expiration=1h".
    extra_args: tuple[str, ...] = ()
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> TestCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        self.pki = TestPKI(self.root / "pki")
        etcd_port = self._start_etcd()
        self._start_apiserver(etcd_port)
        self.kubeconfig = self.write_kubeconfig(self.root / "admin.kubeconfig")
        aggregate_cluster_roles(self.api_client())
        return self

    def stop(self) -> None:
        # Test data is disposable: no graceful shutdown to wait for.
        for proc in reversed(self._procs):
            proc.kill()
            proc.wait()
        self._procs.clear()

    def _spawn(self, name: str, args: list[str]) -> Path:
        log = self.root / f"{name}.log"
        with log.open("wb") as fh:
            self._procs.append(
                subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, cwd=self.root)
            )
        return log

    def _start_etcd(self) -> int:
        client_port, peer_port = free_port(), free_port()
        log = self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                f"--data-dir={self.root / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{client_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            ],
        )
        _wait_until(lambda: _port_open(client_port), "etcd", STARTUP_PATIENCE, log)
        return client_port

    def _start_apiserver(self, etcd_port: int) -> None:
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        pki = self.pki
        log = self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                f"--cert-dir={self.root / 'certs'}",
                f"--tls-cert-file={pki.serving.cert}",
                f"--tls-private-key-file={pki.serving.key}",
                f"--client-ca-file={pki.ca.cert}",
                f"--secure-port={port}",
                "--bind-address=127.0.0.1",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={self.server}/",
                f"--service-account-key-file={pki.sa_public}",
                f"--service-account-signing-key-file={pki.sa_private}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--disable-admission-plugins=ServiceAccount",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=0",
                *self.extra_args,
            ],
        )
        _wait_until(self._ready, "kube-apiserver /readyz", STARTUP_PATIENCE, log)

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca.cert))
        ctx.load_cert_chain(str(self.pki.admin.cert), str(self.pki.admin.key))
        return ctx

    def _ready(self) -> bool:
        with urllib.request.urlopen(
            f"{self.server}/readyz", context=self._ssl_context(), timeout=2
        ) as resp:
            return bool(resp.status == 200)

    # -- credentials ---------------------------------------------------------
    @property
    def ca_pem(self) -> bytes:
        return self.pki.ca_pem

    def kubeconfig_dict(self, contexts: dict[str, str] | None = None) -> dict[str, Any]:
        """An admin kubeconfig; ``contexts`` maps extra context names to this cluster."""
        names = [self.context, *(contexts or {})]
        b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": self.name,
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": b64(self.pki.ca_pem),
                    },
                }
            ],
            "users": [
                {
                    "name": f"{self.name}-admin",
                    "user": {
                        "client-certificate-data": b64(self.pki.admin.cert_pem),
                        "client-key-data": b64(self.pki.admin.key_pem),
                    },
                }
            ],
            "contexts": [
                {"name": n, "context": {"cluster": self.name, "user": f"{self.name}-admin"}}
                for n in names
            ],
            "current-context": self.context,
        }

    def write_kubeconfig(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump(self.kubeconfig_dict()))
        path.chmod(0o600)
        return path

    def api_client(self) -> client.ApiClient:
        return config.new_client_from_config(config_file=str(self.kubeconfig))

    # -- real binaries -------------------------------------------------------
    def kubectl(
        self, *args: str, kubeconfig: Path | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / "kubectl"), f"--kubeconfig={kubeconfig or self.kubeconfig}"]
        return _run([*cmd, *args], check=check, timeout=timeout)

    def helm(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        home = self.root / "helm-home"
        env = {
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }
        cmd = [str(self.bin_dir / "helm"), f"--kubeconfig={self.kubeconfig}", *args]
        return _run(cmd, check=check, timeout=timeout, env=env)


def _run(
    cmd: list[str], *, check: bool, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("KUBECONFIG", None)
    proc = subprocess.run(
        cmd, capture_output=True, text=True, check=False, timeout=timeout, env=full_env
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{Path(cmd[0]).name} {' '.join(cmd[2:])} exited {proc.returncode}:\n"
            f"{proc.stdout}\n{proc.stderr}"
        )
    return proc


def aggregate_cluster_roles(api: client.ApiClient) -> None:
    """Do what kube-controller-manager's aggregation controller does continually.

    ``view``, ``edit`` and ``admin`` are built by aggregation (``admin`` takes
    ``edit`` which takes ``view``); with no controller-manager running they
    would stay empty. Repeat until nothing changes so the chain fills in.
    """
    rbac = client.RbacAuthorizationV1Api(api)
    for _ in range(5):
        roles = {r.metadata.name: r for r in rbac.list_cluster_role().items}
        changed = False
        for role in roles.values():
            rules = _aggregated_rules(role, roles.values())
            if rules is not None and rules != (role.rules or []):
                role.rules = rules
                rbac.replace_cluster_role(role.metadata.name, role)
                changed = True
        if not changed:
            return


def _aggregated_rules(role: Any, roles: Any) -> list[Any] | None:
    selectors = role.aggregation_rule.cluster_role_selectors if role.aggregation_rule else None
    if not selectors:
        return None
    rules: list[Any] = []
    for other in sorted(roles, key=lambda r: r.metadata.name):
        labels = other.metadata.labels or {}
        if other.metadata.name != role.metadata.name and any(
            all(labels.get(k) == v for k, v in (sel.match_labels or {}).items())
            for sel in selectors
        ):
            rules.extend(r for r in other.rules or [] if r not in rules)
    return rules


def start_cluster(
    name: str, root: Path, bin_dir: Path, extra_args: tuple[str, ...] = ()
) -> TestCluster:
    if root.exists():
        shutil.rmtree(root)
    return TestCluster(name=name, root=root, bin_dir=bin_dir, extra_args=extra_args).start()


TrustMode = str  # "data" | "file" | "insecure"


def trust_kubeconfig(c: TestCluster, path: Path, mode: TrustMode, context: str, *also: str) -> Path:
    """An admin kubeconfig whose one context trusts ``c`` the way ``mode`` says.

    ``data``: certificate-authority-data; ``file``: a certificate-authority path
    relative to the kubeconfig (as kubectl resolves it); ``insecure``:
    insecure-skip-tls-verify and no CA at all. ``also``: more context names for
    the same cluster.
    """
    doc = c.kubeconfig_dict()
    entry = doc["clusters"][0]["cluster"]
    del entry["certificate-authority-data"]
    if mode == "data":
        entry["certificate-authority-data"] = base64.b64encode(c.ca_pem).decode()
    elif mode == "file":
        ca = path.parent / "pki" / f"{c.name}-ca.crt"
        ca.parent.mkdir(parents=True, exist_ok=True)
        ca.write_bytes(c.ca_pem)
        entry["certificate-authority"] = str(ca.relative_to(path.parent))
    elif mode == "insecure":
        entry["insecure-skip-tls-verify"] = True
    else:
        raise ValueError(f"unknown trust mode {mode!r}")
    first = doc["contexts"][0]
    doc["contexts"] = [{**first, "name": name} for name in (context, *also)]
    doc["current-context"] = context
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


def combined_kubeconfig(path: Path, contexts: dict[str, TestCluster]) -> Path:
    """One kubeconfig with a context per cluster, as an operator's would look."""
    merged: dict[str, Any] = {"apiVersion": "v1", "kind": "Config"}
    for key in ("clusters", "users"):
        seen: dict[str, Any] = {}
        for c in contexts.values():
            for entry in c.kubeconfig_dict()[key]:
                seen[entry["name"]] = entry
        merged[key] = list(seen.values())
    merged["contexts"] = [
        {"name": ctx, "context": {"cluster": c.name, "user": f"{c.name}-admin"}}
        for ctx, c in contexts.items()
    ]
    merged["current-context"] = next(iter(contexts))
    path.write_text(yaml.safe_dump(merged))
    path.chmod(0o600)
    return path


def ensure_namespaces(c: TestCluster, *names: str) -> None:
    core = client.CoreV1Api(c.api_client())
    existing = {n.metadata.name for n in core.list_namespace().items}
    for name in names:
        if name not in existing:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
