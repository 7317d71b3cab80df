"""Every apiserver answer becomes its typed error in ClusterClient.call (real apiserver).

The classes decide what a caller does next: a permanent failure ends an attempt,
a transient one is retried. Each is checked against the answer the real
kube-apiserver gives, with the client library's exception kept as ``__cause__``.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from k8s.clients import ClusterClient, ClusterRegistry, ClusterTarget, status_of
from k8s.errors import (
    ClusterError,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    PermanentFailure,
    TransientFailure,
    Unreachable,
    is_transient,
)
from k8s.kubeconfig import KubeconfigSpec, render_kubeconfig
from tests.support.cluster import TestCluster, ensure_namespaces

pytestmark = pytest.mark.cluster
NS = "errors-ns"


@pytest.fixture
def admin(cluster: TestCluster) -> Iterator[ClusterClient]:
    ensure_namespaces(cluster, NS)
    registry = ClusterRegistry(
        {"t": ClusterTarget(name="t", context="admin", kubeconfig=str(cluster.kubeconfig))}
    )
    yield registry["t"]
    registry.close()


def _client_with_token(cluster: TestCluster, token: str, tmp: Path) -> ClusterRegistry:
    path = tmp / "token.kubeconfig"
    path.write_text(
        render_kubeconfig(
            KubeconfigSpec(
                cluster="t", server=cluster.server, ca_pem=cluster.ca_pem, user="u",
                token=token, context="t", namespace=NS,
            )
        )
    )  # fmt: skip
    return ClusterRegistry({"t": ClusterTarget(name="t", context="t", kubeconfig=str(path))})


def _assert_typed(exc: ClusterError, cls: type[ClusterError], status: int) -> None:
    assert type(exc) is cls
    assert exc.status == status == status_of(exc)
    assert exc.cluster == "t"
    assert isinstance(exc.__cause__, ApiException)
    assert exc.__cause__.status == status
    assert isinstance(exc, PermanentFailure)
    assert not exc.transient
    assert not is_transient(exc)


async def test_404_is_not_found(admin: ClusterClient) -> None:
    with pytest.raises(NotFound) as caught:
        await admin.call(admin.core.read_namespace, "no-such-namespace")
    _assert_typed(caught.value, NotFound, 404)


async def test_409_already_exists_is_conflict(admin: ClusterClient) -> None:
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="twice"))
    with contextlib.suppress(Conflict):  # left by an earlier run
        await admin.call(admin.core.create_namespaced_config_map, NS, body)
    with pytest.raises(Conflict) as caught:
        await admin.call(admin.core.create_namespaced_config_map, NS, body)
    _assert_typed(caught.value, Conflict, 409)


async def test_409_failed_uid_precondition_is_conflict(admin: ClusterClient) -> None:
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="pinned"))
    with contextlib.suppress(Conflict):
        await admin.call(admin.core.create_namespaced_config_map, NS, body)
    wrong_uid = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="not-its-uid"))
    with pytest.raises(Conflict) as caught:
        await admin.call(admin.core.delete_namespaced_config_map, "pinned", NS, body=wrong_uid)
    _assert_typed(caught.value, Conflict, 409)


async def test_422_invalid_object_is_invalid(admin: ClusterClient) -> None:
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="Not_A_DNS_Name"))
    with pytest.raises(Invalid) as caught:
        await admin.call(admin.core.create_namespaced_config_map, NS, body)
    _assert_typed(caught.value, Invalid, 422)


async def test_400_bad_request_is_invalid(admin: ClusterClient) -> None:
    with pytest.raises(Invalid) as caught:
        await admin.call(admin.core.list_namespaced_config_map, NS, label_selector="a in (")
    _assert_typed(caught.value, Invalid, 400)


async def test_401_and_403_are_forbidden(
    admin: ClusterClient, cluster: TestCluster, tmp_path: Path
) -> None:
    bogus = _client_with_token(cluster, "not-a-token", tmp_path)
    try:
        c = bogus["t"]
        with pytest.raises(Forbidden) as caught:
            await c.call(c.core.list_namespaced_config_map, NS)
        _assert_typed(caught.value, Forbidden, 401)
    finally:
        bogus.close()

    sa = client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody"))
    with contextlib.suppress(Conflict):
        await admin.call(admin.core.create_namespaced_service_account, NS, sa)
    minted: Any = await admin.call(
        admin.core.create_namespaced_service_account_token,
        "nobody",
        NS,
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])),
    )
    nobody = _client_with_token(cluster, str(minted.status.token), tmp_path)
    try:
        c = nobody["t"]
        with pytest.raises(Forbidden) as caught:
            await c.call(c.core.list_namespaced_secret, NS)
        _assert_typed(caught.value, Forbidden, 403)
    finally:
        nobody.close()


async def test_no_answer_is_unreachable(cluster: TestCluster, tmp_path: Path) -> None:
    # A port nobody listens on: the connection is refused, there is no HTTP status.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "closed.kubeconfig"
    path.write_text(
        render_kubeconfig(
            KubeconfigSpec(
                cluster="t", server=f"https://127.0.0.1:{port}", ca_pem=cluster.ca_pem,
                user="u", token="x", context="t", namespace=None,
            )
        )
    )  # fmt: skip
    registry = ClusterRegistry({"t": ClusterTarget(name="t", context="t", kubeconfig=str(path))})
    try:
        c = registry["t"]
        c.api_client.configuration.retries = 0
        with pytest.raises(Unreachable) as caught:
            await c.call(c.core.list_namespace)
    finally:
        registry.close()
    exc = caught.value
    assert exc.status == 0 == status_of(exc)
    assert exc.cluster == "t"
    assert isinstance(exc.__cause__, urllib3.exceptions.HTTPError | OSError)
    assert isinstance(exc, TransientFailure)
    assert exc.transient
    assert is_transient(exc)
    assert "cannot reach the API server" in str(exc)
