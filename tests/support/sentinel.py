"""Real Redis replication and Redis Sentinel: a master, replicas and sentinels as
redis-server processes on localhost TCP ports (Debian's ``redis-sentinel`` is
the same binary as ``redis-server``, started in sentinel mode: ``--sentinel``).

Failover timings are small (``down_after_ms``) so a drill is quick; everything
else is Redis' defaults. Waits are on conditions (replication link up, sentinels
that know each other, the master they agree on), bounded by ``PATIENCE``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from bot.redis_server import RedisUnavailable
from tests.support.cluster import free_port
from tests.support.patience import PATIENCE
from tests.support.pki import TestPKI

SERVICE = "mymaster"
HOST = "127.0.0.1"


def _executable() -> str:
    exe = shutil.which("redis-server")
    if exe is None:
        raise RedisUnavailable("redis-server not found on PATH (apt-get install redis-server)")
    return exe


def wait_until(what: str, ok: Callable[[], bool], timeout: float = PATIENCE) -> None:
    """Poll ``ok`` (errors count as not yet) until it holds; AssertionError after
    ``timeout`` seconds naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ok():
                return
        except (redis.RedisError, OSError):
            pass
        assert time.monotonic() < deadline, f"{what}: not so after {timeout}s"
        time.sleep(0.05)


@dataclass(frozen=True)
class Security:
    """TLS on every port (``pki``'s serving certificate, replication and sentinel links
    included) and a password on the data nodes (the sentinels know it as auth-pass);
    neither by default."""

    pki: TestPKI | None = None
    password: str | None = None

    def options(self, port: int) -> list[tuple[str, str]]:
        """Listening options shared by data nodes and sentinels."""
        if self.pki is None:
            return [("port", str(port))]
        return [
            ("port", "0"), ("tls-port", str(port)),
            ("tls-cert-file", str(self.pki.serving.cert)),
            ("tls-key-file", str(self.pki.serving.key)),
            ("tls-ca-cert-file", str(self.pki.ca.cert)),
            ("tls-auth-clients", "no"), ("tls-replication", "yes"),
        ]  # fmt: skip

    def client_kwargs(self, *, data_node: bool) -> dict[str, Any]:
        tls = {"ssl": True, "ssl_ca_certs": str(self.pki.ca.cert)} if self.pki else {}
        return {**tls, "password": self.password if data_node else None}


@dataclass
class Node:
    """One redis-server (or sentinel) on ``HOST:port``, logging under ``workdir``."""

    workdir: Path
    security: Security = field(default_factory=Security)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    sentinel: bool = False

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def client(self) -> redis.Redis:
        kwargs = self.security.client_kwargs(data_node=not self.sentinel)
        return redis.Redis(HOST, self.port, decode_responses=True, socket_timeout=5, **kwargs)

    def _spawn(self, args: list[str]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers() -> bool:
            assert self.proc is not None
            assert self.proc.poll() is None, self.log_tail()
            with self.client() as c:
                return bool(c.ping())

        wait_until(f"{self.address} answers PING", answers)

    def log_tail(self) -> str:
        log = self.workdir / "redis.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: nothing more is written or sent to replicas."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def start_server(self, replica_of: Node | None = None) -> Node:
        """A data node (no persistence: a replica is the copy), replicating
        ``replica_of`` when given."""
        args = [_executable()]
        for name, value in self.security.options(self.port):
            args += [f"--{name}", value]
        if self.security.password:
            args += ["--requirepass", self.security.password,
                     "--masterauth", self.security.password]  # fmt: skip
        args += [
            "--bind", HOST,
            "--dir", str(self.workdir), "--save", "", "--appendonly", "no",
            "--logfile", str(self.workdir / "redis.log"),
            # The first full sync starts at once, not after the 5 s default delay.
            "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        if replica_of is not None:
            args += ["--replicaof", HOST, str(replica_of.port)]
        self._spawn(args)
        return self

    def start_sentinel(self, master: Node, quorum: int, down_after_ms: int) -> Node:
        self.sentinel = True
        conf = self.workdir / "sentinel.conf"  # a sentinel rewrites its own file
        self.workdir.mkdir(parents=True, exist_ok=True)
        listen = "".join(f"{name} {value}\n" for name, value in self.security.options(self.port))
        auth = self.security.password
        conf.write_text(
            f"{listen}bind {HOST}\ndir {self.workdir}\n"
            f"logfile {self.workdir / 'redis.log'}\n"
            f"sentinel monitor {SERVICE} {HOST} {master.port} {quorum}\n"
            f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}\n"
            f"sentinel failover-timeout {SERVICE} {max(4 * down_after_ms, 3000)}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
            + (f"sentinel auth-pass {SERVICE} {auth}\n" if auth else "")
        )
        self._spawn([_executable(), str(conf), "--sentinel"])
        return self


@dataclass
class SentinelGroup:
    """A master, ``replicas`` replicas and ``sentinels`` sentinels under ``workdir``."""

    workdir: Path
    replicas: int = 1
    sentinels: int = 3
    down_after_ms: int = 1500
    security: Security = field(default_factory=Security)
    nodes: list[Node] = field(default_factory=list)
    watchers: list[Node] = field(default_factory=list)

    def start(self) -> SentinelGroup:
        master = Node(self.workdir / "node0", self.security).start_server()
        self.nodes = [master] + [
            Node(self.workdir / f"node{i + 1}", self.security).start_server(replica_of=master)
            for i in range(self.replicas)
        ]
        for node in self.nodes[1:]:
            wait_until(f"{node.address} in sync", lambda n=node: _link_up(n))
        quorum = self.sentinels // 2 + 1
        self.watchers = [
            Node(self.workdir / f"sentinel{i}", self.security).start_sentinel(
                master, quorum, self.down_after_ms
            )
            for i in range(self.sentinels)
        ]
        # A failover needs sentinels that know each other and the replicas.
        for s in self.watchers:
            wait_until(f"sentinel {s.address} sees the others", lambda s=s: self._knows_all(s))
        return self

    def _knows_all(self, sentinel: Node) -> bool:
        with sentinel.client() as c:
            state = c.sentinel_master(SERVICE)
        return (
            int(state["num-other-sentinels"]) == self.sentinels - 1
            and int(state["num-slaves"]) == self.replicas
        )

    @property
    def sentinels_setting(self) -> str:
        """``REDIS_SENTINELS`` for this group."""
        return ",".join(s.address for s in self.watchers)

    def master(self) -> Node:
        """The data node every sentinel names as master (waits until they agree)."""
        found: list[Node] = []

        def agreed() -> bool:
            named = set()
            for s in self.watchers:
                if s.proc is None:
                    continue
                with s.client() as c:
                    _host, port = c.sentinel_get_master_addr_by_name(SERVICE)
                named.add(int(port))
            found[:] = [n for n in self.nodes if {n.port} == named and n.proc is not None]
            return bool(found)

        wait_until("the sentinels agree on a live master", agreed)
        return found[0]

    def stop(self) -> None:
        for node in self.watchers + self.nodes:
            node.kill()


def _link_up(node: Node) -> bool:
    with node.client() as c:
        return c.info("replication").get("master_link_status") == "up"


def started_group(workdir: Path, security: Security | None = None) -> SentinelGroup:
    """A started :class:`SentinelGroup`; without redis-server the test skips with one
    line, or fails under CI (which must run every test for real)."""
    try:
        return SentinelGroup(workdir, security=security or Security()).start()
    except RedisUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))
