"""Slack's acknowledgement never waits for the apiserver.

A TCP proxy sits in front of cluster ``a``; the bot's kubeconfig context for ``a``
points at it. The test holds every apiserver request at the proxy and sends a
command or click: its answer arriving at all, while the apiserver has answered
nothing, shows the ack does not depend on the apiserver, on any machine and under
any load. Then the proxy lets the requests through and the slow work is shown to
finish (after the answer). How fast the ack is (Slack's 3 s) is measured by
``bench/ack.py``, not asserted here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from bot.lifecycle import State
from tests.slack.support import APPROVALS, Reply, SlackBed, slack_bed
from tests.support.cluster import TestCluster, combined_kubeconfig
from tests.support.patience import PATIENCE
from tests.support.slow_proxy import SlowProxy

pytestmark = pytest.mark.cluster


@pytest.fixture
async def proxy(cluster: TestCluster) -> AsyncIterator[SlowProxy]:
    parts = urlsplit(cluster.server)
    async with SlowProxy(parts.hostname or "127.0.0.1", parts.port or 443, delay=0) as p:
        yield p


@pytest.fixture
async def slow_bed(
    redis_url: str,
    cluster: TestCluster,
    cluster_b: TestCluster,
    proxy: SlowProxy,
    tmp_path: Path,
) -> AsyncIterator[SlackBed]:
    kubeconfig = combined_kubeconfig(tmp_path / "slow.kubeconfig", {"a": cluster, "b": cluster_b})
    doc = yaml.safe_load(kubeconfig.read_text())
    for entry in doc["clusters"]:
        if entry["name"] == cluster.name:
            entry["cluster"]["server"] = proxy.url
    kubeconfig.write_text(yaml.safe_dump(doc))
    async with slack_bed(
        redis_url,
        {"a": cluster, "b": cluster_b},
        tmp_path,
        kubeconfig=kubeconfig,
        wipe=False,  # cleaning up through the slow proxy would only cost time
    ) as bed:
        yield bed
        proxy.release()  # let background work finish before teardown


async def answered_while_held(proxy: SlowProxy, send: Awaitable[Reply]) -> Reply:
    """Send with the apiserver held; the answer must come without it.

    The deadline only bounds how long a bot that does wait for the apiserver keeps the
    test waiting: held requests never get through on their own.
    """
    assert proxy.holding, "hold the apiserver first"
    try:
        reply = await asyncio.wait_for(send, PATIENCE)
    except TimeoutError:
        raise AssertionError("the answer waited for the (held) apiserver") from None
    assert reply.status == 200, reply
    return reply


async def until(check: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while not check():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.05)


async def test_answers_never_wait_for_the_apiserver(slow_bed: SlackBed, proxy: SlowProxy) -> None:
    bed = slow_bed

    def told(needle: str) -> bool:
        return any(needle in json.dumps(c.params) for c in bed.responses())

    # /k8s nodes: answered at once, the report itself comes when the apiserver answers.
    proxy.hold()
    await answered_while_held(proxy, bed.command("nodes -c a", "U0BOB", command="/k8s"))
    await until(lambda: proxy.held_requests >= 1, "the report never asked the apiserver")
    assert not told("Nodes on a")
    proxy.release()
    await bed.wait_response("Nodes on a")

    # Approve: answered at once, provisioning waits for the apiserver.
    grant = await bed.request("request edit -n team-a -d 1h slow day", "U0ALICE")
    card = await bed.wait_card(grant.id)
    held = proxy.held_requests
    proxy.hold()
    await answered_while_held(
        proxy, bed.click("access_approve", grant.id, "U0LEAD", card, APPROVALS)
    )
    await until(lambda: proxy.held_requests > held, "provisioning never asked the apiserver")
    stored = await bed.core.store.get(grant.id)
    assert stored is not None
    assert stored.state in (State.APPROVED, State.PROVISIONING), stored.state
    proxy.release()
    await bed.wait_grant(grant.id, State.ACTIVE)

    # list and revoke: answered at once, the cleanup waits for the apiserver.
    held = proxy.held_requests
    proxy.hold()
    await answered_while_held(proxy, bed.command("list", "U0ALICE"))
    await bed.wait_response(grant.id)  # listing needs Redis only
    await answered_while_held(proxy, bed.command(f"revoke {grant.id}", "U0ALICE"))
    await until(lambda: proxy.held_requests > held, "revoking never asked the apiserver")
    assert not told("is revoked")
    proxy.release()
    await bed.wait_grant(grant.id, State.REVOKED)
    await bed.wait_response("revoked")  # after the slow cleanup
