"""A cluster trusted without TLS verification: the file still works, and people are told.

Approvers see it on the card before they approve; the requester in the DM
with the file; the operator in ``accessbot check``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.lifecycle import State
from tests.slack.support import APPROVALS, SlackBed, blocks_text, slack_bed
from tests.support.cluster import REPO, TestCluster, ensure_namespaces, trust_kubeconfig
from tests.support.harness import NAMESPACES, POLICY
from tests.support.tls import ForeignTLSServer

pytestmark = pytest.mark.cluster

WARNING = "without TLS verification"


@pytest.fixture
async def insecure_bed(
    redis_url: str, cluster: TestCluster, tmp_path: Path
) -> AsyncIterator[SlackBed]:
    bot_config = trust_kubeconfig(cluster, tmp_path / "bot" / "kubeconfig", "insecure", "a", "b")
    async with slack_bed(redis_url, {"a": cluster}, tmp_path, kubeconfig=bot_config) as b:
        yield b


async def test_card_and_dm_warn_and_the_file_still_works(
    insecure_bed: SlackBed, cluster: TestCluster, tmp_path: Path
) -> None:
    bed = insecure_bed
    await bed.command("request edit -n team-a -d 1h fixing checkout", "U0ALICE")
    grant = await bed.only_grant("U0ALICE")
    await bed.emu.wait_for(
        "chat.postMessage",
        timeout=30,
        predicate=lambda c: c.ok and c.params.get("channel") == APPROVALS,
    )
    card = bed.card_for(grant.id)
    assert WARNING in blocks_text(card)

    await bed.click("access_approve", grant.id, "U0LEAD", card, APPROVALS)
    active = await bed.wait_grant(grant.id, State.ACTIVE, State.FAILED)
    assert active.state == State.ACTIVE, active.failure
    dm = await bed.wait_dm("U0ALICE", "export KUBECONFIG")
    assert WARNING in blocks_text(dm)

    (upload,) = bed.emu.uploaded_files
    path = tmp_path / "alice" / upload.filename
    path.parent.mkdir()
    path.write_bytes(upload.content or b"")
    pods = await asyncio.to_thread(cluster.kubectl, "get", "pods", kubeconfig=path)
    assert pods.returncode == 0, pods.stderr


def accessbot_check(tmp: Path, kubeconfig: Path, redis_url: str, policy: str) -> str:
    (tmp / "policy.yaml").write_text(policy)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ACCESSBOT_"))}
    env = {
        **clean,
        "PYTHONPATH": str(REPO),
        "REDIS_URL": redis_url,
        "KUBECONFIG": str(kubeconfig),
        "SLACK_BOT_TOKEN": "xoxb-t",
        "SLACK_SIGNING_SECRET": "s",
    }
    r = subprocess.run(
        [sys.executable, "-m", "bot", "check"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp,
        check=False,
    )
    assert "Traceback" not in r.stdout + r.stderr
    return f"exit={r.returncode}\n{r.stdout}"


def test_check_warns_about_insecure_trust_and_fails_on_a_server_users_cannot_verify(
    tmp_path: Path, redis_url: str, cluster: TestCluster
) -> None:
    foreign = ForeignTLSServer(tmp_path / "foreign-pki")
    ensure_namespaces(cluster, *NAMESPACES)
    insecure = trust_kubeconfig(cluster, tmp_path / "insecure" / "kc", "insecure", "a", "b")
    out = accessbot_check(tmp_path, insecure, redis_url, POLICY)
    assert out.startswith("exit=0"), out
    assert "WITHOUT TLS verification" in out
    assert "OK, 2 warning(s)" in out  # one per policy cluster
    assert "insecure-skip-tls-verify" in out

    good = trust_kubeconfig(cluster, tmp_path / "good" / "kc", "file", "a", "b")
    out = accessbot_check(tmp_path, good, redis_url, POLICY)
    assert out.startswith("exit=0"), out
    assert "verified with the CA from the bot's kubeconfig" in out

    # Users get "localhost" (covered by the serving cert) on a, but on b a server
    # whose certificate the cluster's CA did not sign: kubectl there would say x509.
    port = cluster.server.rsplit(":", 1)[1]
    policy = POLICY.replace(
        "a: {context: a}", f'a: {{context: a, server: "https://localhost:{port}"}}'
    ).replace("b: {context: b}", f'b: {{context: b, server: "https://127.0.0.1:{foreign.port}"}}')
    try:
        out = accessbot_check(tmp_path, good, redis_url, policy)
    finally:
        foreign.close()
    assert out.startswith("exit=1"), out
    assert "cluster a kubeconfigs: https://localhost" in out
    assert "✗ cluster b kubeconfigs" in out
    assert "certificate" in out
