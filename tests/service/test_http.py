"""The HTTP service over real HTTP: offboarding webhook, health, readiness, metrics."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.http import signing
from bot.http.app import HttpService
from bot.lifecycle import State
from bot.metrics import Metrics
from bot.policy import AccessRequestSpec
from k8s import grants as k8s_grants
from tests.support.cluster import TestCluster
from tests.support.harness import Harness, workflow_harness

pytestmark = pytest.mark.cluster
SECRET = "offboard-test-secret"


class Client:
    def __init__(self, server: TestServer, session: aiohttp.ClientSession) -> None:
        self.server, self.session = server, session

    async def offboard(
        self, body: bytes, *, age: int = 0, secret: str = SECRET, signature: str | None = None
    ) -> tuple[int, dict[str, object]]:
        ts = str(int(time.time()) - age)
        headers = {
            "Content-Type": "application/json",
            "X-AccessBot-Timestamp": ts,
            "X-AccessBot-Signature": signature or signing.sign(secret, ts, body),
        }
        async with self.session.post(
            self.server.make_url("/hooks/offboard"), data=body, headers=headers
        ) as resp:
            return resp.status, await resp.json()

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(self.server.make_url(path)) as resp:
            return resp.status, await resp.text()


@pytest.fixture
async def service(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> AsyncIterator[tuple[Harness, Client, Metrics]]:
    async with workflow_harness(redis_url, {"a": cluster, "b": cluster_b}, tmp_path) as h:
        metrics = Metrics()
        metrics.attach(h.core.store, h.core.policy)
        app = HttpService(h.core, metrics, offboard_secret=SECRET).build()
        async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as s:
            yield h, Client(server, s), metrics


def view(cluster: str = "a", ns: str = "team-a") -> AccessRequestSpec:
    return AccessRequestSpec(
        requester="U0ALICE",
        role="view",
        cluster=cluster,
        namespace=ns,
        duration=None,
        reason="incident 42",
    )


async def test_offboard_webhook_contract(service: tuple[Harness, Client, Metrics]) -> None:
    h, client, _ = service
    grants = [await h.workflow.submit(view()), await h.workflow.submit(view("b", "team-b"))]
    for g in grants:
        await h.wait_state(g.id, State.ACTIVE)
    body = json.dumps({"email": "alice@example.com", "reason": "left"}).encode()

    assert (await client.offboard(body, age=301))[0] == 401
    assert (await client.offboard(body, signature="v1=" + "0" * 64))[0] == 401
    assert (await client.offboard(body, secret="wrong"))[0] == 401
    for g in grants:
        assert (await h.workflow.get(g.id)).state == State.ACTIVE, "a refused call did something"

    status, result = await client.offboard(body)
    assert status == 200
    assert result["user"] == "U0ALICE"
    assert sorted(result["revoked"]) == sorted(g.id for g in grants)  # type: ignore[arg-type]
    assert result["cancelled"] == []
    for name in ("a", "b"):
        assert not await k8s_grants.list_managed(h.core.clusters[name])

    assert set(result["verified"]) == {"a", "b"}  # type: ignore[arg-type]
    # Repeating a finished call is harmless: the same answer, nothing touched.
    assert await client.offboard(body) == (200, result)
    by_id = json.dumps({"slack_user_id": "U0ALICE"}).encode()
    assert (await client.offboard(by_id))[0] == 200


async def test_offboard_webhook_rejects_bad_input(service: tuple[Harness, Client, Metrics]) -> None:
    _, client, _ = service
    status, err = await client.offboard(json.dumps({"email": "nobody@example.com"}).encode())
    assert status == 404
    assert "nobody@example.com" in str(err["error"])
    assert (await client.offboard(json.dumps({"slack_user_id": "U0GHOST"}).encode()))[0] == 404
    big = json.dumps({"email": "alice@example.com", "reason": "x" * (1 << 20)}).encode()
    assert (await client.offboard(big))[0] == 413
    assert (await client.offboard(b"{not json"))[0] == 400
    both = json.dumps({"email": "alice@example.com", "slack_user_id": "U0ALICE"}).encode()
    status, err = await client.offboard(both)
    assert status == 400
    assert "exactly one" in str(err["error"])


async def test_offboard_webhook_is_404_without_a_secret(
    service: tuple[Harness, Client, Metrics],
) -> None:
    h, client, metrics = service
    app = HttpService(h.core, metrics, offboard_secret=None).build()
    async with TestServer(app, host="127.0.0.1") as server:
        other = Client(server, client.session)
        assert (await other.offboard(b'{"email": "alice@example.com"}'))[0] == 404


async def test_health_ready_metrics_openapi(service: tuple[Harness, Client, Metrics]) -> None:
    h, client, _ = service
    assert (await client.get("/healthz"))[0] == 200
    status, text = await client.get("/readyz")
    assert status == 200, text
    grant = await h.workflow.submit(view())
    await h.wait_state(grant.id, State.ACTIVE)
    status, text = await client.get("/metrics")
    assert status == 200
    assert 'accessbot_active_grants{cluster="a",role="view"} 1.0' in text
    assert "accessbot_provisioning_seconds_count 1.0" in text
    assert "U0ALICE" not in text
    assert "incident" not in text
    status, text = await client.get("/openapi.json")
    assert status == 200
    assert "/hooks/offboard" in json.loads(text)["paths"]


# Signed (so past the signature check) but hostile: the parser's own limits
# (nesting, integer digits, encodings) must end in a 4xx, never a 5xx.
HOSTILE_BODIES = {
    "deep-array": b"[" * 40000,
    "deep-object": b'{"a":' * 20000,
    "deep-in-field": b'{"email": ' + b"[" * 30000 + b"}",
    "huge-int": b'{"slack_user_id": ' + b"9" * 5000 + b"}",
    "nul-email": b'{"email": "a\\u0000@b"}',
    "lone-surrogate": b'{"email": "\\ud800@b"}',
    "bad-utf8": b'{"email": "\xff@b"}',
}


@pytest.mark.parametrize("name", sorted(HOSTILE_BODIES))
async def test_signed_hostile_body_is_a_4xx(
    name: str, service: tuple[Harness, Client, Metrics]
) -> None:
    _, client, _ = service
    status, body = await client.offboard(HOSTILE_BODIES[name])
    assert 400 <= status < 500, (status, body)
    assert "error" in body
