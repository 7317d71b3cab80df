"""The kubeconfig handed to a requester: one cluster, one user, one context."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import yaml

from k8s.clients import ClusterTrust


@dataclass(frozen=True)
class KubeconfigSpec:
    """Everything one issued kubeconfig holds.

    ``trust`` is the bot's own trust in the cluster (see
    :class:`k8s.clients.ClusterTrust`); ``ca_pem`` is kept for callers that
    only have a CA and is used when ``trust`` is None.
    """

    cluster: str
    server: str
    ca_pem: bytes
    user: str
    token: str = field(repr=False)
    context: str
    namespace: str | None = None
    trust: ClusterTrust | None = None

    @property
    def effective_trust(self) -> ClusterTrust:
        return self.trust if self.trust is not None else ClusterTrust(ca_pem=self.ca_pem)


def cluster_entry(server: str, trust: ClusterTrust) -> dict[str, Any]:
    """A kubeconfig ``clusters[].cluster`` carrying ``trust``, as ``kubectl config set-cluster``
    writes it (field names from client-go ``clientcmd/api/v1`` ``Cluster``).

    A CA is always inlined as ``certificate-authority-data``: a file path would
    name a file only the bot's machine has.
    """
    cluster: dict[str, Any] = {"server": server}
    if trust.insecure:
        # kubectl refuses a cluster with both a CA and insecure-skip-tls-verify.
        cluster["insecure-skip-tls-verify"] = True
    elif trust.ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(trust.ca_pem).decode()
    if trust.tls_server_name:
        cluster["tls-server-name"] = trust.tls_server_name
    if trust.proxy_url:
        cluster["proxy-url"] = trust.proxy_url
    return cluster


def render_kubeconfig(spec: KubeconfigSpec) -> str:
    """YAML equal to what set-cluster/set-credentials/set-context/use-context write."""
    context: dict[str, str] = {"cluster": spec.cluster, "user": spec.user}
    if spec.namespace:
        context["namespace"] = spec.namespace
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": spec.cluster, "cluster": cluster_entry(spec.server, spec.effective_trust)}
        ],
        "users": [{"name": spec.user, "user": {"token": spec.token}}],
        "contexts": [{"name": spec.context, "context": context}],
        "current-context": spec.context,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def kubeconfig_names(cluster: str, role: str, handle: str) -> tuple[str, str]:
    """(user, context) names a person can read: ``alice@prod``, ``prod-edit``."""
    return f"{handle}@{cluster}", f"{cluster}-{role}"
