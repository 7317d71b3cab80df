"""``accessbot serve`` as a subprocess: HTTP and Socket Mode end to end, SIGTERM,
embedded Redis across restarts, and readiness while dependencies are down."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from bot.lifecycle import State
from bot.models import Grant
from bot.redis_server import RedisProcess
from k8s import grants as k8s_grants
from k8s.clients import ClusterRegistry, ClusterTarget
from tests.support.cluster import TestCluster
from tests.support.fault_proxy import FaultProxy
from tests.support.harness import prepare_clusters
from tests.support.patience import PATIENCE
from tests.support.serve_proc import SECRET, ServeProcess, serve_env
from tests.support.slack_emulator import SlackEmulator
from tests.support.slack_signing import (
    block_actions_body,
    block_actions_payload,
    sign,
    slash_command_body,
    slash_command_payload,
)

pytestmark = pytest.mark.cluster
APP_TOKEN = "xapp-1-serve-test"


@pytest.fixture
async def emu() -> AsyncIterator[SlackEmulator]:
    async with SlackEmulator() as emulator:
        emulator.add_user("U0ALICE", name="alice", email="alice@example.com")
        emulator.add_user("U0LEAD", name="lead", email="lead@example.com")
        emulator.add_usergroup("S0LEADS", "platform-leads", users=["U0PL1"])
        emulator.add_usergroup("S0SRE", "sre", users=["U0SRE1"])
        yield emulator


@pytest.fixture
def clusters(cluster: TestCluster, cluster_b: TestCluster) -> dict[str, TestCluster]:
    return {"a": cluster, "b": cluster_b}


async def post_signed(serve: ServeProcess, body: bytes) -> int:
    """POST a signed body; the answer's status. (How fast: bench/ack.py measures it.)"""
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{serve.url}/slack/events", data=body, headers=sign(SECRET, body)) as resp,
    ):
        await resp.read()
        return resp.status


def button_value(message: dict[str, Any], action_id: str) -> str:
    for block in message.get("blocks", []):
        for element in block.get("elements", []) or []:
            if element.get("action_id") == action_id:
                return str(element["value"])
    raise AssertionError(f"no {action_id} button in {json.dumps(message)[:500]}")


async def approval_card(emu: SlackEmulator) -> dict[str, Any]:
    await emu.wait_for("chat.postMessage", predicate=lambda c: c.params["channel"] == "C0APPROVALS")
    return emu.messages("C0APPROVALS")[-1]


async def kubeconfig_file(emu: SlackEmulator, tmp: Path, name: str, count: int = 1) -> Path:
    await emu.wait_for("files.completeUploadExternal", count=count)
    files = [f for f in emu.uploaded_files if f.filename == name]
    assert len(files) == count, [f.filename for f in emu.uploaded_files]
    assert files[-1].channel_id == emu.dm_channel("U0ALICE")
    path = tmp / name
    path.write_bytes(files[-1].content)
    return path


EDIT_REQUEST = "request edit -c a -n team-a -d 2h fixing checkout"


def request_edit(emu: SlackEmulator) -> bytes:
    return slash_command_body(
        "/access", EDIT_REQUEST, "U0ALICE", response_url=emu.new_response_url()
    )


async def test_http_mode_request_approve_dm(
    emu: SlackEmulator, clusters: dict[str, TestCluster], redis_url: str, tmp_path: Path
) -> None:
    kubeconfig = prepare_clusters(clusters, tmp_path)
    serve = ServeProcess(serve_env(emu, tmp_path, kubeconfig, REDIS_URL=redis_url), tmp_path)
    await asyncio.to_thread(serve.start)
    try:
        assert await post_signed(serve, request_edit(emu)) == 200
        card = await approval_card(emu)
        request_id = button_value(card, "access_approve")
        click = block_actions_body("access_approve", request_id, "U0LEAD", "C0APPROVALS",
                                   card["ts"], message=card,
                                   response_url=emu.new_response_url())  # fmt: skip
        assert await post_signed(serve, click) == 200
        path = await kubeconfig_file(emu, tmp_path, "a-edit.kubeconfig")
        ok = await asyncio.to_thread(clusters["a"].kubectl, "get", "pods", "-n", "team-a",
                                     kubeconfig=path)  # fmt: skip
        assert ok.returncode == 0
        forged = dict(sign("wrong-secret", request_edit(emu)))
        async with (
            aiohttp.ClientSession() as s,
            s.post(f"{serve.url}/slack/events", data=request_edit(emu), headers=forged) as resp,
        ):
            assert resp.status == 401
    finally:
        serve.kill()


async def test_socket_mode_request_approve_dm(
    emu: SlackEmulator, clusters: dict[str, TestCluster], redis_url: str, tmp_path: Path
) -> None:
    kubeconfig = prepare_clusters(clusters, tmp_path)
    env = serve_env(emu, tmp_path, kubeconfig, REDIS_URL=redis_url, SLACK_APP_TOKEN=APP_TOKEN)
    env.pop("SLACK_SIGNING_SECRET")
    serve = ServeProcess(env, tmp_path)
    await asyncio.to_thread(serve.start)
    try:
        await emu.wait_socket_connected()
        envelope = await emu.socket_send(
            "slash_commands",
            slash_command_payload(
                "/access", EDIT_REQUEST, "U0ALICE", response_url=emu.new_response_url()
            ),
        )
        await emu.wait_socket_ack(envelope)
        card = await approval_card(emu)
        request_id = button_value(card, "access_approve")
        payload = block_actions_payload("access_approve", request_id, "U0LEAD", "C0APPROVALS",
                                        card["ts"], message=card,
                                   response_url=emu.new_response_url())  # fmt: skip
        envelope = await emu.socket_send("interactive", payload)
        await emu.wait_socket_ack(envelope)
        path = await kubeconfig_file(emu, tmp_path, "a-edit.kubeconfig")
        ok = await asyncio.to_thread(clusters["a"].kubectl, "get", "pods", "-n", "team-a",
                                     kubeconfig=path)  # fmt: skip
        assert ok.returncode == 0
        status, _ = await asyncio.to_thread(serve.get, "/slack/events")
        assert status in (404, 405), "Socket Mode must not expose the HTTP events endpoint"
    finally:
        serve.kill()


async def shutdown_redis(socket: Path) -> None:
    """Stop an embedded redis-server a killed serve left behind (none, normally)."""
    from redis.asyncio import Redis

    if not socket.exists():
        return
    r = Redis.from_url(f"unix://{socket}")
    try:
        await r.shutdown(nosave=True)
    except Exception:  # gone already: the normal case
        return
    finally:
        await r.aclose()


async def _step_done(redis_url: str, grant_id: str, kind: str) -> None:
    """Until the grant's due-index entry is no longer step ``kind`` and nobody holds it."""
    from redis.asyncio import Redis

    r = Redis.from_url(redis_url, decode_responses=True)
    try:
        deadline = time.monotonic() + PATIENCE
        while True:
            raw = await r.hget("ab:sched:jobs", grant_id)  # type: ignore[misc]
            leased = await r.zscore("ab:sched:leases", grant_id)
            if (raw is None or json.loads(raw)["kind"] != kind) and leased is None:
                return
            assert time.monotonic() < deadline, f"step {kind} of {grant_id} never finished"
            await asyncio.sleep(0.1)
    finally:
        await r.aclose()


async def grant_in_redis(redis_url: str, requester: str) -> Grant | None:
    from redis.asyncio import Redis

    r = Redis.from_url(redis_url, decode_responses=True)
    try:
        for key in await r.keys("ab:grant:*"):
            grant = Grant.model_validate_json(await r.get(key))
            if grant.requester == requester and grant.kind == "access":
                return grant
        return None
    finally:
        await r.aclose()


async def test_sigterm_while_provisioning_then_converges(
    emu: SlackEmulator, clusters: dict[str, TestCluster], redis_url: str, tmp_path: Path
) -> None:
    kubeconfig = prepare_clusters(clusters, tmp_path)
    serve = ServeProcess(serve_env(emu, tmp_path, kubeconfig, REDIS_URL=redis_url), tmp_path)
    await asyncio.to_thread(serve.start)
    emu.delay("files.getUploadURLExternal", 4.0)  # the DM upload is in flight at SIGTERM
    try:
        await post_signed(serve, request_edit(emu))
        card = await approval_card(emu)
        click = block_actions_body("access_approve", button_value(card, "access_approve"),
                                   "U0LEAD", "C0APPROVALS", card["ts"], message=card,
                                   response_url=emu.new_response_url())  # fmt: skip
        await post_signed(serve, click)
        deadline = time.monotonic() + PATIENCE
        while (g := await grant_in_redis(redis_url, "U0ALICE")) is None or (
            g.state != State.PROVISIONING
        ):
            assert time.monotonic() < deadline, g
            await asyncio.sleep(0.05)
        code, _ = await asyncio.to_thread(serve.terminate)  # killed (-9) if it hangs
        assert code == 0, serve.logs()
        emu.delay("files.getUploadURLExternal", 0)
        await asyncio.to_thread(serve.start)
        deadline = time.monotonic() + PATIENCE
        while (g := await grant_in_redis(redis_url, "U0ALICE")) is None or (
            not g.ended and (g.state != State.ACTIVE)
        ):
            assert time.monotonic() < deadline, g
            await asyncio.sleep(0.1)
        # A second delivery could only come from the provision step running again: wait
        # until that step is done for good before counting uploads.
        await _step_done(redis_url, g.id, "provision")
        uploads = [f for f in emu.uploaded_files if f.filename == "a-edit.kubeconfig"]
        registry = ClusterRegistry(
            {"a": ClusterTarget("a", context="a", kubeconfig=str(kubeconfig))}
        )
        try:
            objs = [o for o in await k8s_grants.list_managed(registry["a"]) if o.grant_id == g.id]
        finally:
            registry.close()
        if g.state == State.ACTIVE:
            assert len(uploads) == 1
            assert sorted(o.kind for o in objs) == ["RoleBinding", "ServiceAccount"]
        else:
            assert g.state == State.FAILED
            assert objs == []
    finally:
        serve.kill()


async def test_embedded_redis_survives_restart_and_expiry_still_fires(
    emu: SlackEmulator, clusters: dict[str, TestCluster], tmp_path: Path
) -> None:
    kubeconfig = prepare_clusters(clusters, tmp_path)
    serve = ServeProcess(serve_env(emu, tmp_path, kubeconfig), tmp_path)  # no REDIS_URL
    await asyncio.to_thread(serve.start)
    registry = ClusterRegistry({"a": ClusterTarget("a", context="a", kubeconfig=str(kubeconfig))})
    try:
        body = slash_command_body(
            "/access",
            "request view -c a -n team-a -d 25s look at logs",
            "U0ALICE",
            response_url=emu.new_response_url(),
        )
        assert await post_signed(serve, body) == 200
        await kubeconfig_file(emu, tmp_path, "a-view.kubeconfig")
        assert "single-instance" in serve.logs()
        code, _ = await asyncio.to_thread(serve.terminate)
        assert code == 0
        stopped_at = datetime.now(UTC)
        await asyncio.to_thread(serve.start)
        socket = tmp_path / "data" / "redis.sock"
        grant = await grant_in_redis(f"unix://{socket}", "U0ALICE")
        assert grant is not None
        assert grant.expires_at is not None
        # On a busy machine the restart may end after expires-at: then the restarted
        # process finds the expiry overdue and runs it at once. Either way it is the
        # restarted process that must run it (checked below).
        assert grant.state in (State.ACTIVE, State.EXPIRED), grant.state
        # How late after its expiry the grant goes is bench/expiry.py's business; here it
        # must go, and not before its time.
        while [o for o in await k8s_grants.list_managed(registry["a"]) if o.grant_id == grant.id]:
            assert time.time() < grant.expires_at.timestamp() + PATIENCE, "outlived its expiry"
            await asyncio.sleep(0.2)
        assert time.time() >= grant.expires_at.timestamp() - 0.5, "revoked before its expiry"
        ended = await grant_in_redis(f"unix://{socket}", "U0ALICE")
        assert ended is not None
        assert ended.state == State.EXPIRED
        # The revocation receipt is recorded as an event on the ended grant; only the
        # transition itself must happen once.
        expired = [s for s in ended.history if s.to_state == State.EXPIRED and s.event is None]
        assert len(expired) == 1
        assert expired[0].at >= stopped_at, (
            "the first process ran the expiry: the restart was not shown"
        )
    finally:
        registry.close()
        await asyncio.to_thread(serve.terminate)  # serve stops the redis-server it owns
        await shutdown_redis(tmp_path / "data" / "redis.sock")


async def test_readyz_follows_redis_and_apiserver(
    emu: SlackEmulator, clusters: dict[str, TestCluster], tmp_path: Path
) -> None:
    prepare_clusters(clusters, tmp_path)
    redis = RedisProcess(tmp_path / "redis", appendonly=True).start(PATIENCE)
    proxy = await FaultProxy(clusters["a"]).start()
    kubeconfig = proxied_kubeconfig(proxy, clusters["b"], tmp_path / "kubeconfig")
    serve = ServeProcess(serve_env(emu, tmp_path, kubeconfig, REDIS_URL=redis.url), tmp_path)
    try:
        await asyncio.to_thread(serve.start)
        assert (await ready(serve))[0] == 200
        redis.stop()
        status, text = await ready(serve)
        assert status == 503
        assert "redis" in text
        assert (await asyncio.to_thread(serve.get, "/healthz"))[0] == 200
        await asyncio.to_thread(redis.start, PATIENCE)
        await _eventually_ready(serve)
        proxy.faults.reset = 1.0
        status, text = await ready(serve)
        assert status == 503
        assert "cluster a" in text
        proxy.faults.off()
        await _eventually_ready(serve)
    finally:
        serve.kill()
        redis.stop()
        await proxy.stop()


def proxied_kubeconfig(proxy: FaultProxy, other: TestCluster, path: Path) -> Path:
    """Context "a" through the fault proxy, context "b" straight to the other cluster."""
    doc = yaml.safe_load(proxy.kubeconfig(path, "a").read_text())
    b = other.kubeconfig_dict(contexts={"b": other.name})
    doc["clusters"] += b["clusters"]
    doc["users"] += b["users"]
    doc["contexts"] += [c for c in b["contexts"] if c["name"] == "b"]
    path.write_text(yaml.safe_dump(doc))
    return path


async def ready(serve: ServeProcess) -> tuple[int, str]:
    # Off the event loop: the fault proxy answering the bot runs on it.
    return await asyncio.to_thread(serve.get, "/readyz")


async def _eventually_ready(serve: ServeProcess, timeout: float = PATIENCE) -> None:
    deadline = time.monotonic() + timeout
    while (await ready(serve))[0] != 200:
        assert time.monotonic() < deadline, await ready(serve)
        await asyncio.sleep(0.2)


async def test_slack_events_answered_while_redis_is_stopped(
    emu: SlackEmulator, clusters: dict[str, TestCluster], tmp_path: Path
) -> None:
    """kill -STOP on redis-server: /readyz says 503, Slack still gets its answers."""
    import os
    import signal

    from tests.support.slack_signing import event_callback_body

    kubeconfig = prepare_clusters(clusters, tmp_path)
    redis = RedisProcess(tmp_path / "r", appendonly=False).start()
    assert redis._proc is not None
    pid = redis._proc.pid
    serve = ServeProcess(serve_env(emu, tmp_path, kubeconfig, REDIS_URL=redis.url), tmp_path)
    try:
        await asyncio.to_thread(serve.start)
        os.kill(pid, signal.SIGSTOP)
        try:
            change = emu.deactivate_user("U0ALICE")
            for body in (event_callback_body(change), request_edit(emu)):
                # A detector of "never answered", not a speed check (bench/ack.py).
                status = await asyncio.wait_for(post_signed(serve, body), 60)
                assert status == 200, serve.logs()
            assert (await ready(serve))[0] == 503
        finally:
            os.kill(pid, signal.SIGCONT)
        await _eventually_ready(serve)
        assert await asyncio.wait_for(post_signed(serve, request_edit(emu)), 60) == 200
    finally:
        serve.kill()
        redis.stop()
