"""The issued kubeconfig trusts the cluster exactly as the bot does, or is never sent.

Real apiserver, real Redis, the real kubectl: each way an operator's kubeconfig
can express trust (CA data, a CA file path, insecure-skip-tls-verify with no CA)
must give the requester a file that works with kubectl as it is.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bot.lifecycle import State
from bot.policy import AccessRequestSpec
from k8s import grants as k8s_grants
from tests.support.cluster import TestCluster, ensure_namespaces, free_port, trust_kubeconfig
from tests.support.harness import NAMESPACES, workflow_harness
from tests.support.tls import ForeignTLSServer

pytestmark = pytest.mark.cluster


def policy(server: str | None = None) -> str:
    where = f', server: "{server}"' if server else ""
    return f"""
approvals_channel: C0APPROVALS
admins: ["U0ADMIN"]
clusters:
  a: {{context: a{where}}}
roles:
  view: {{cluster_role: view, scope: namespace, max_duration: 8h, approvals: 0,
          namespaces: ["team-*"]}}
defaults: {{duration: 1h, pending_ttl: 24h, reminder_before: 10m}}
"""


def view_request() -> AccessRequestSpec:
    return AccessRequestSpec(
        requester="U0ALICE",
        role="view",
        cluster="a",
        namespace="team-a",
        duration=dt.timedelta(minutes=30),
        reason="reading logs",
    )


@pytest.mark.parametrize("mode", ["data", "file", "insecure"])
async def test_issued_kubeconfig_works_with_real_kubectl(
    mode: str, redis_url: str, cluster: TestCluster, tmp_path: Path
) -> None:
    ensure_namespaces(cluster, *NAMESPACES)
    bot_config = trust_kubeconfig(cluster, tmp_path / "bot" / "kubeconfig", mode, context="a")
    async with workflow_harness(
        redis_url, {}, tmp_path, policy_text=policy(), kubeconfig=bot_config
    ) as h:
        grant = await h.workflow.submit(view_request())
        active = await h.wait_state(grant.id, State.ACTIVE, State.FAILED)
        assert active.state == State.ACTIVE, active.failure
        (delivery,) = h.notifier.delivered_to(grant.id)

    # The requester's machine: only the delivered file, nothing of the bot's.
    user_file = tmp_path / "alice" / delivery.filename
    user_file.parent.mkdir()
    user_file.write_bytes(delivery.content)
    entry = yaml.safe_load(delivery.content)["clusters"][0]["cluster"]
    if mode == "insecure":
        assert entry.get("insecure-skip-tls-verify") is True
        assert "certificate-authority-data" not in entry
        assert active.tls_insecure
    else:
        assert base64.b64decode(entry["certificate-authority-data"]) == cluster.ca_pem
        assert "insecure-skip-tls-verify" not in entry
        assert not active.tls_insecure
    assert "certificate-authority" not in entry  # a path would name the bot's disk

    can = await asyncio.to_thread(
        cluster.kubectl, "auth", "can-i", "list", "pods", "-n", "team-a", kubeconfig=user_file
    )
    assert can.stdout.strip() == "yes"
    pods = await asyncio.to_thread(cluster.kubectl, "get", "pods", kubeconfig=user_file)
    assert pods.returncode == 0, pods.stderr
    assert "x509" not in pods.stderr


@pytest.fixture
def foreign_tls(tmp_path: Path) -> Iterator[ForeignTLSServer]:
    server = ForeignTLSServer(tmp_path / "foreign-pki")
    yield server
    server.close()


@pytest.mark.parametrize("where", ["foreign-ca", "closed-port"])
async def test_a_kubeconfig_that_cannot_connect_is_never_delivered(
    where: str,
    redis_url: str,
    cluster: TestCluster,
    tmp_path: Path,
    foreign_tls: ForeignTLSServer,
) -> None:
    """The bot reaches the cluster fine, but the server written into users' files
    (the policy's ``server``) is not one its CA covers, or not reachable at all."""
    ensure_namespaces(cluster, *NAMESPACES)
    port = foreign_tls.port if where == "foreign-ca" else free_port()
    bot_config = trust_kubeconfig(cluster, tmp_path / "bot" / "kubeconfig", "data", context="a")
    async with workflow_harness(
        redis_url,
        {},
        tmp_path,
        policy_text=policy(f"https://127.0.0.1:{port}"),
        kubeconfig=bot_config,
    ) as h:
        grant = await h.workflow.submit(view_request())
        failed = await h.wait_state(grant.id, State.FAILED, State.ACTIVE, timeout=60)
        assert failed.state == State.FAILED
        assert h.notifier.delivered_to(grant.id) == []
        reason = failed.failure or ""
        assert f"https://127.0.0.1:{port}" in reason
        if where == "foreign-ca":
            assert "certificate" in reason
            assert "CA" in reason
        else:
            assert "cannot be reached" in reason
        # Rolled back: nothing of the grant is left on the cluster.
        c = h.core.clusters["a"]
        deadline = asyncio.get_running_loop().time() + 30
        while [o for o in await k8s_grants.list_managed(c) if o.grant_id == grant.id]:
            assert asyncio.get_running_loop().time() < deadline, "objects outlived the failure"
            await asyncio.sleep(0.1)
