"""The accessbot command line as an operator runs it: a real subprocess."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cluster import REPO, TestCluster, combined_kubeconfig, ensure_namespaces
from tests.support.harness import POLICY
from tests.support.patience import PATIENCE


def accessbot(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ACCESSBOT_"))}
    clean.pop("REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        env={**clean, "PYTHONPATH": str(REPO), **env},
        cwd=cwd,
        check=False,
    )


def test_serve_without_bot_token_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY)
    r = accessbot("serve", env={}, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "accessbot: SLACK_BOT_TOKEN is not set (the bot token, xoxb-…)"
    ]


def test_bad_setting_names_the_variable(tmp_path: Path) -> None:
    r = accessbot("check", env={"ACCESSBOT_HTTP_PORT": "eighty"}, cwd=tmp_path)
    assert r.returncode == 2
    assert "ACCESSBOT_HTTP_PORT" in r.stderr
    assert "Traceback" not in r.stderr


def test_check_broken_policy_prints_key_path_and_exits_1(tmp_path: Path, redis_url: str) -> None:
    broken = POLICY.replace("max_duration: 4h", "max_duration: 4x")
    (tmp_path / "policy.yaml").write_text(broken)
    r = accessbot(
        "check",
        env={"REDIS_URL": redis_url, "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "s"},
        cwd=tmp_path,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "roles.edit.max_duration" in r.stdout
    assert "invalid duration '4x'" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr


def test_check_protects_the_namespace_accessbot_namespace_names(
    tmp_path: Path, redis_url: str
) -> None:
    """The chart sets ACCESSBOT_NAMESPACE to the release namespace; a role naming it
    is refused by the real process, as is every other protected name."""
    policy = POLICY.replace('namespaces: ["team-*"]', 'namespaces: ["team-*", "ops"]', 1)
    assert policy != POLICY
    (tmp_path / "policy.yaml").write_text(policy)
    env = {"REDIS_URL": redis_url, "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "s"}
    r = accessbot("check", env={**env, "ACCESSBOT_NAMESPACE": "ops"}, cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "namespace ops is protected: AccessBot itself runs there" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr


@pytest.mark.cluster
def test_check_all_good_reaches_redis_and_clusters(
    tmp_path: Path, redis_url: str, cluster: TestCluster, cluster_b: TestCluster
) -> None:
    for c in (cluster, cluster_b):
        ensure_namespaces(c, "accessbot-users")
    kubeconfig = combined_kubeconfig(tmp_path / "kubeconfig", {"a": cluster, "b": cluster_b})
    (tmp_path / "policy.yaml").write_text(POLICY)
    env = {
        "REDIS_URL": redis_url,
        "KUBECONFIG": str(kubeconfig),
        "SLACK_BOT_TOKEN": "xoxb-t",
        "SLACK_SIGNING_SECRET": "s",
    }
    r = accessbot("check", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "cluster a: reachable" in r.stdout
    assert "cluster b: reachable" in r.stdout
    cluster_b_down = {**env, "KUBECONFIG": str(tmp_path / "missing")}
    r = accessbot("check", env=cluster_b_down, cwd=tmp_path)
    assert r.returncode == 1


def test_help_lists_commands(tmp_path: Path) -> None:
    r = accessbot("--help", env={}, cwd=tmp_path)
    assert r.returncode == 0
    for command in ("serve", "check", "grants", "offboard", "standing", "audit"):
        assert command in r.stdout


@pytest.mark.cluster
async def test_operator_commands_list_revoke_offboard(
    tmp_path: Path, redis_url: str, cluster: TestCluster, cluster_b: TestCluster
) -> None:
    from bot.lifecycle import State
    from bot.policy import AccessRequestSpec
    from k8s import grants as k8s_grants
    from tests.support.harness import workflow_harness

    async with workflow_harness(redis_url, {"a": cluster, "b": cluster_b}, tmp_path) as h:
        made = []
        for c, ns in (("a", "team-a"), ("b", "team-b"), ("a", "team-b")):
            spec = AccessRequestSpec(requester="U0ALICE", role="view", cluster=c, namespace=ns,
                                     duration=None, reason="on call")  # fmt: skip
            made.append(await h.workflow.submit(spec))
        for g in made:
            await h.wait_state(g.id, State.ACTIVE)
        (tmp_path / "policy.yaml").write_text(POLICY)
        env = {"REDIS_URL": redis_url, "KUBECONFIG": str(h.kubeconfig)}

        listed = await asyncio.to_thread(accessbot, "grants", "list", env=env, cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert all(g.id in listed.stdout for g in made)

        revoked = await asyncio.to_thread(
            accessbot, "grants", "revoke", made[2].id, env=env, cwd=tmp_path
        )
        assert revoked.returncode == 0, revoked.stderr
        assert f"{made[2].id}: revoked" in revoked.stdout
        assert "access gone: verified at " in revoked.stdout

        off = await asyncio.to_thread(
            accessbot, "offboard", "--slack-user", "U0ALICE", env=env, cwd=tmp_path
        )
        assert off.returncode == 0, off.stderr
        assert "2 live grants on a, b cluster(s)" in off.stdout
        assert f"a/{made[0].id} (view): revoked" in off.stdout
        assert f"b/{made[1].id} (view): revoked" in off.stdout
        assert "revoked 2" in off.stdout
        for name in ("a", "b"):
            assert not await k8s_grants.list_managed(h.core.clusters[name])
        everything = await asyncio.to_thread(
            accessbot, "grants", "list", "--all", env=env, cwd=tmp_path
        )
        assert everything.stdout.count("revoked") == 3

        unknown = await asyncio.to_thread(
            accessbot, "grants", "revoke", "zzzzzzzz", env=env, cwd=tmp_path
        )
        assert unknown.returncode == 1
        assert "no request or grant with id 'zzzzzzzz'" in unknown.stderr


@pytest.mark.cluster
async def test_audit_tells_a_grants_whole_life_and_says_when_it_is_gone(
    tmp_path: Path, redis_url: str, cluster: TestCluster, cluster_b: TestCluster
) -> None:
    import datetime as dt

    from redis.asyncio import Redis

    from bot.lifecycle import State
    from bot.policy import AccessRequestSpec
    from tests.support.harness import workflow_harness

    async with workflow_harness(redis_url, {"a": cluster, "b": cluster_b}, tmp_path) as h:
        wf = h.workflow
        spec = AccessRequestSpec(requester="U0ALICE", role="cluster-admin", cluster="b",
                                 namespace=None, duration=dt.timedelta(minutes=20),
                                 reason="incident 42")  # fmt: skip
        grant = await wf.submit(spec)
        await wf.approve(grant.id, "U0LEAD")
        await wf.approve(grant.id, "U0BOSS")
        await h.wait_state(grant.id, State.ACTIVE)
        ext = await wf.extend(grant.id, "U0ALICE", dt.timedelta(minutes=10))
        await wf.approve(ext.id, "U0LEAD")
        await wf.approve(ext.id, "U0BOSS")
        await h.wait_state(ext.id, State.APPLIED)
        await wf.revoke(grant.id, "U0ALICE", "done")
        ended = await h.wait_state(grant.id, State.REVOKED)
        assert ended.receipt is not None
        assert ended.receipt.verified
        (tmp_path / "policy.yaml").write_text(POLICY)
        env = {"REDIS_URL": redis_url, "KUBECONFIG": str(h.kubeconfig)}

        life = await asyncio.to_thread(accessbot, "audit", grant.id, env=env, cwd=tmp_path)
        assert life.returncode == 0, life.stderr
        lines = life.stdout.splitlines()
        assert lines[0] == f"{grant.id}: cluster-admin on b for U0ALICE"
        events = [line.split()[1:3] for line in lines[1:]]
        assert [e[0] for e in events] == [
            "requested", "approval", "approved", "provisioning", "delivered", "extended",
            "revoked", "receipt:",
        ]  # fmt: skip
        who = [line.split()[2] for line in lines[1:]]
        assert who[:3] == ["U0ALICE", "U0LEAD", "U0BOSS"]
        assert "asked by U0ALICE; approved by U0LEAD, U0BOSS" in lines[6]
        assert "receipt: verified" in lines[-1]
        assert "SubjectAccessReview" in lines[-1]
        assert "token cache" in lines[-1]

        unknown = await asyncio.to_thread(accessbot, "audit", "zzzzzzzz", env=env, cwd=tmp_path)
        assert unknown.returncode == 1
        assert "no history kept for zzzzzzzz: no such grant, or it ended long ago" in unknown.stderr
        assert "records are kept for 90d after a grant ends (defaults.retention)" in unknown.stderr

        # The stream is capped: once trimmed away, the CLI says the history is gone.
        r = Redis.from_url(redis_url, decode_responses=True)
        try:
            await r.xtrim("ab:audit", maxlen=0)
        finally:
            await r.aclose()
        gone = await asyncio.to_thread(accessbot, "audit", grant.id, env=env, cwd=tmp_path)
        assert gone.returncode == 1
        assert f"no history kept for {grant.id}" in gone.stderr
        assert "audit stream keeps about 100000 entries, none older than 90d" in gone.stderr
