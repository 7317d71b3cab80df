"""The kubeconfig handed to a requester: one cluster, one user, one context."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import yaml


@dataclass(frozen=True)
class KubeconfigSpec:
    cluster: str
    server: str
    ca_pem: bytes
    user: str
    token: str
    context: str
    namespace: str | None = None


def render_kubeconfig(spec: KubeconfigSpec) -> str:
    """YAML equal to what set-cluster/set-credentials/set-context/use-context write."""
    context: dict[str, str] = {"cluster": spec.cluster, "user": spec.user}
    if spec.namespace:
        context["namespace"] = spec.namespace
    cluster: dict[str, str] = {"server": spec.server}
    if spec.ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(spec.ca_pem).decode()
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": spec.cluster, "cluster": cluster}],
        "users": [{"name": spec.user, "user": {"token": spec.token}}],
        "contexts": [{"name": spec.context, "context": context}],
        "current-context": spec.context,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def kubeconfig_names(cluster: str, role: str, handle: str) -> tuple[str, str]:
    """(user, context) names a person can read: ``alice@prod``, ``prod-edit``."""
    return f"{handle}@{cluster}", f"{cluster}-{role}"
