"""What a TokenRequest really grants, read from the apiserver's answer and the token."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import jwt
import pytest

from k8s import grants
from k8s.clients import ClusterRegistry, ClusterTarget
from tests.support.cluster import TestCluster, ensure_namespaces

pytestmark = pytest.mark.cluster
SA_NS = "accessbot-users"


@pytest.fixture
def registry(cluster: TestCluster, cluster_capped: TestCluster) -> Iterator[ClusterRegistry]:
    targets = {}
    for name, c in (("plain", cluster), ("capped", cluster_capped)):
        ensure_namespaces(c, SA_NS, "team-a")
        targets[name] = ClusterTarget(name=name, context="admin", kubeconfig=str(c.kubeconfig))
    reg = ClusterRegistry(targets)
    yield reg
    reg.close()


def spec(gid: str, length: dt.timedelta, now: dt.datetime) -> grants.GrantSpec:
    return grants.GrantSpec(
        grant_id=gid,
        requester="U0ALICE",
        handle="alice",
        role="view",
        cluster_role="view",
        scope="namespace",
        namespace="team-a",
        sa_namespace=SA_NS,
        expires_at=(now + length).replace(microsecond=0),
    )


async def test_capped_token_ends_the_grant_and_its_objects(registry: ClusterRegistry) -> None:
    c, now = registry["capped"], dt.datetime.now(dt.UTC)
    s = spec("capped3h", dt.timedelta(hours=3), now)
    try:
        token = await grants.provision(c, s, now=now)
        claims = jwt.decode(token.token, options={"verify_signature": False})
        assert token.shortened
        assert token.lifetime_seconds == claims["exp"] - claims["iat"] == 3600
        assert token.expires_at.timestamp() == claims["exp"]
        assert token.ends_at == token.expires_at < s.expires_at
        objs = [o for o in await grants.list_managed(c) if o.grant_id == s.grant_id]
        assert len(objs) == 2
        assert {o.expires_at for o in objs} == {token.ends_at}
    finally:
        await grants.revoke(c, s.grant_id)


@pytest.mark.parametrize("cluster_name", ["plain", "capped"])
async def test_short_grant_gets_the_api_minimum_and_keeps_its_own_end(
    registry: ClusterRegistry, cluster_name: str
) -> None:
    """Under 600 s the token outlives the grant; the grant's end stays what was asked
    (the bot deletes the ServiceAccount then, which kills the token)."""
    c, now = registry[cluster_name], dt.datetime.now(dt.UTC)
    s = spec(f"short{cluster_name}", dt.timedelta(minutes=2), now)
    try:
        token = await grants.provision(c, s, now=now)
        claims = jwt.decode(token.token, options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == grants.MIN_TOKEN_SECONDS
        assert not token.shortened
        assert token.ends_at == s.expires_at
        objs = [o for o in await grants.list_managed(c) if o.grant_id == s.grant_id]
        assert {o.expires_at for o in objs} == {s.expires_at}
    finally:
        await grants.revoke(c, s.grant_id)
