"""The one paging helper follows continue tokens to the end (real apiserver)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from kubernetes import client

from k8s.clients import ClusterClient, ClusterRegistry, ClusterTarget
from k8s.errors import Conflict
from k8s.list_stream import METADATA_ONLY, each_item
from k8s.paging import continue_token, list_all, pages
from tests.support.cluster import TestCluster, ensure_namespaces

pytestmark = pytest.mark.cluster
NS = "paging-ns"
NAMES = [f"cm-{i}" for i in range(5)]


@pytest.fixture
def admin(cluster: TestCluster) -> Iterator[ClusterClient]:
    ensure_namespaces(cluster, NS)
    registry = ClusterRegistry(
        {"t": ClusterTarget(name="t", context="admin", kubeconfig=str(cluster.kubeconfig))}
    )
    yield registry["t"]
    registry.close()


async def _config_maps(c: ClusterClient) -> None:
    for name in NAMES:
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels={"paging": "yes"}))
        with contextlib.suppress(Conflict):
            await c.call(c.core.create_namespaced_config_map, NS, body)


async def test_every_item_of_every_page(admin: ClusterClient) -> None:
    await _config_maps(admin)
    sizes = [
        len(page.items)
        async for page in pages(
            admin, admin.core.list_namespaced_config_map, NS, page_size=2, label_selector="paging"
        )
    ]
    assert sizes == [2, 2, 1]
    items = await list_all(
        admin, admin.core.list_namespaced_config_map, NS, page_size=2, label_selector="paging"
    )
    assert [i.metadata.name for i in items] == NAMES


async def test_streamed_lists_page_the_same_way(admin: ClusterClient) -> None:
    await _config_maps(admin)
    seen: list[str] = []
    await each_item(
        admin,
        admin.core.list_namespaced_config_map,
        NS,
        handle=lambda item: seen.append(item["metadata"]["name"]),
        page_size=2,
        label_selector="paging",
        _headers=METADATA_ONLY,
    )
    assert seen == NAMES


def test_continue_token_of_each_page_shape() -> None:
    model = client.V1ConfigMapList(items=[], metadata=client.V1ListMeta(_continue="abc"))
    assert continue_token(model) == "abc"
    assert continue_token(client.V1ConfigMapList(items=[], metadata=client.V1ListMeta())) is None
    assert continue_token({"metadata": {"continue": "def"}}) == "def"
    assert continue_token({"metadata": {}}) is None
    assert continue_token("ghi") == "ghi"
    assert continue_token(None) is None
