"""k8s grant operations against the real apiserver, checked with the real kubectl."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from kubernetes import client

from k8s import grants
from k8s.clients import ClusterClient, ClusterRegistry, ClusterTarget
from k8s.errors import MissingNamespaceError, NotManagedError
from k8s.kubeconfig import KubeconfigSpec, render_kubeconfig
from tests.support.cluster import TestCluster, ensure_namespaces
from tests.support.patience import PATIENCE

pytestmark = pytest.mark.cluster
SA_NS = "accessbot-users"


@pytest.fixture
def kc(cluster: TestCluster) -> Iterator[ClusterClient]:
    ensure_namespaces(cluster, SA_NS, "team-a", "team-b")
    registry = ClusterRegistry(
        {"t": ClusterTarget(name="t", context="admin", kubeconfig=str(cluster.kubeconfig))}
    )
    yield registry["t"]
    registry.close()


def spec(
    gid: str,
    role: str = "view",
    scope: str = "namespace",
    ns: str | None = "team-a",
    minutes: int = 30,
) -> grants.GrantSpec:
    return grants.GrantSpec(
        grant_id=gid,
        requester="U0ALICE",
        handle="Alice.Example",
        role=role,
        cluster_role=role,
        scope=scope,  # type: ignore[arg-type]
        namespace=ns,
        sa_namespace=SA_NS,
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes),
        approved_by=("U0LEAD", "U0BOSS"),
    )


def write_kubeconfig(
    kc: ClusterClient, s: grants.GrantSpec, token: grants.IssuedToken, tmp: Path
) -> Path:
    path = tmp / f"{s.grant_id}.kubeconfig"
    path.write_text(
        render_kubeconfig(
            KubeconfigSpec(
                cluster="t",
                server=kc.server,
                ca_pem=kc.ca_data,
                user="alice@t",
                token=token.token,
                context=f"t-{s.role}",
                namespace=s.namespace,
            )
        )
    )
    return path


async def test_view_grant_scope_then_revoke(
    kc: ClusterClient, cluster: TestCluster, tmp_path: Path
) -> None:
    view, admin = spec("viewgrant1"), spec("admingrant1", "cluster-admin", "cluster", None)
    paths = {}
    for s in (view, admin):
        token = await grants.provision(kc, s)
        await grants.verify(kc, s, token)
        paths[s.grant_id] = write_kubeconfig(kc, s, token, tmp_path)

    v = paths["viewgrant1"]
    assert cluster.kubectl("get", "pods", "-n", "team-a", kubeconfig=v).returncode == 0
    # Namespace comes from the kubeconfig's context.
    assert cluster.kubectl("get", "configmaps", kubeconfig=v).returncode == 0
    denied = cluster.kubectl("create", "configmap", "x", "-n", "team-a", kubeconfig=v, check=False)
    assert "forbidden" in denied.stderr
    other = cluster.kubectl("get", "pods", "-n", "team-b", kubeconfig=v, check=False)
    assert "Forbidden" in other.stderr
    assert cluster.kubectl("get", "nodes", kubeconfig=paths["admingrant1"]).returncode == 0

    deleted = await grants.revoke(kc, "viewgrant1") + await grants.revoke(kc, "admingrant1")
    assert sorted(d.split()[0] for d in deleted) == [
        "ClusterRoleBinding",
        "RoleBinding",
        "ServiceAccount",
        "ServiceAccount",
    ]
    assert await grants.revoke(kc, "viewgrant1") == []
    for path in paths.values():
        deadline = asyncio.get_running_loop().time() + PATIENCE
        while True:
            r = cluster.kubectl("get", "pods", "-n", "team-a", kubeconfig=path, check=False)
            if "Unauthorized" in r.stderr:
                break
            assert asyncio.get_running_loop().time() < deadline, f"{path.name} still works"
            await asyncio.sleep(0.25)


async def test_provision_is_idempotent_and_completes_half_done(kc: ClusterClient) -> None:
    s = spec("twicegrant")
    await grants.provision(kc, s)
    await grants.provision(kc, s)
    half = spec("halfgrant")
    assert (await grants.ensure_service_account(kc, half)).created
    await grants.provision(kc, half)
    objs = await grants.list_managed(kc, page_size=1)
    for gid in ("twicegrant", "halfgrant"):
        mine = sorted(o.kind for o in objs if o.grant_id == gid)
        assert mine == ["RoleBinding", "ServiceAccount"]
    sa = next(o for o in objs if o.grant_id == "halfgrant" and o.kind == "ServiceAccount")
    assert sa.requester == "U0ALICE"
    assert sa.expires_at == half.expires_at.replace(microsecond=0)
    core = client.CoreV1Api(kc.api_client)
    meta = core.read_namespaced_service_account(half.sa_name, SA_NS).metadata
    assert meta.labels == {
        "app.kubernetes.io/managed-by": "accessbot",
        "accessbot.io/grant-id": "halfgrant",
    }
    assert meta.annotations["accessbot.io/approved-by"] == "U0LEAD,U0BOSS"
    assert meta.annotations["accessbot.io/role"] == "view"
    assert dt.datetime.strptime(meta.annotations["accessbot.io/expires-at"], "%Y-%m-%dT%H:%M:%SZ")
    for gid in ("twicegrant", "halfgrant"):
        await grants.revoke(kc, gid)


async def test_token_expiration_covers_grant(kc: ClusterClient) -> None:
    long_one, short_one = spec("longtoken", minutes=90), spec("shorttoken", minutes=2)
    for s, want in ((long_one, 90 * 60), (short_one, grants.MIN_TOKEN_SECONDS)):
        token = await grants.provision(kc, s)
        claims = jwt.decode(token.token, options={"verify_signature": False})
        assert abs((claims["exp"] - claims["iat"]) - want) <= 2
        assert claims["sub"] == s.sa_user
        await grants.revoke(kc, s.grant_id)


async def test_refuses_objects_it_does_not_manage(kc: ClusterClient) -> None:
    s = spec("squatted1")
    core = client.CoreV1Api(kc.api_client)
    core.create_namespaced_service_account(
        SA_NS, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=s.sa_name))
    )
    with pytest.raises(NotManagedError, match="not managed by accessbot"):
        await grants.provision(kc, s)
    assert core.read_namespaced_service_account(s.sa_name, SA_NS).metadata.labels is None
    core.delete_namespaced_service_account(s.sa_name, SA_NS)


async def test_missing_namespace_is_named(kc: ClusterClient) -> None:
    with pytest.raises(MissingNamespaceError, match="'nope'"):
        await grants.provision(kc, spec("nsmissing", ns="nope"))


async def test_revoke_by_uid_deletes_only_what_it_made(kc: ClusterClient) -> None:
    s = spec("pinnedgrant")
    token = await grants.provision(kc, s)
    assert sorted(r.kind for r in token.objects) == ["RoleBinding", "ServiceAccount"]
    core = client.CoreV1Api(kc.api_client)
    # Someone deletes our ServiceAccount and makes an unrelated one with its name.
    core.delete_namespaced_service_account(s.sa_name, SA_NS)
    core.create_namespaced_service_account(
        SA_NS, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=s.sa_name))
    )
    deleted = await grants.revoke_objects(kc, token.objects)
    assert deleted == [f"RoleBinding team-a/{s.binding_name}"]
    assert core.read_namespaced_service_account(s.sa_name, SA_NS).metadata.labels is None
    assert await grants.revoke_objects(kc, token.objects) == []
    core.delete_namespaced_service_account(s.sa_name, SA_NS)
