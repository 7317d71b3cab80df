"""The requester's credentials: what the cluster objects say, the kubeconfig, and its delivery.

Shared by first provisioning (:mod:`bot.usecases.provisioning`) and extensions
(:mod:`bot.usecases.extensions`): a kubeconfig is always proven to connect and
act as the grant before anyone gets it.
"""

from __future__ import annotations

from bot.models import Grant
from bot.retry import retrying
from bot.usecases.deps import Deps
from k8s import grants as k8s_grants
from k8s.kubeconfig import KubeconfigSpec, kubeconfig_names, render_kubeconfig


def grant_spec(deps: Deps, grant: Grant) -> k8s_grants.GrantSpec:
    """What the cluster objects of ``grant`` say (its ``expires_at`` must be set)."""
    assert grant.expires_at is not None
    return k8s_grants.GrantSpec(
        grant_id=grant.id,
        requester=grant.requester,
        handle=grant.handle,
        role=grant.role,
        cluster_role=grant.cluster_role,
        scope=grant.scope,
        namespace=grant.namespace,
        sa_namespace=deps.policy.clusters[grant.cluster].namespace,
        expires_at=grant.expires_at,
        approved_by=grant.approvals,
    )


async def verified_kubeconfig(
    deps: Deps, grant: Grant, spec: k8s_grants.GrantSpec, token: k8s_grants.IssuedToken
) -> str:
    """The requester's file, proven to connect and act as the grant before anyone gets it."""
    content = _kubeconfig(deps, grant, token)
    await retrying(
        f"verify {grant.id}",
        lambda: k8s_grants.verify(deps.clusters[grant.cluster], spec, token, content),
        deps.backoff,
    )
    return content


def _kubeconfig(deps: Deps, grant: Grant, token: k8s_grants.IssuedToken) -> str:
    """The file the requester gets: the bot's own trust in the cluster, their token."""
    cluster = deps.clusters[grant.cluster]
    user, context = kubeconfig_names(grant.cluster, grant.role, grant.handle)
    return render_kubeconfig(
        KubeconfigSpec(
            cluster=grant.cluster,
            server=cluster.server,
            ca_pem=cluster.trust.ca_pem,
            user=user,
            token=token.token,
            context=context,
            namespace=grant.namespace,
            trust=cluster.trust,
        )
    )


async def deliver(deps: Deps, grant: Grant, content: str) -> str:
    """Send the kubeconfig to the requester's DM; returns the delivery (file) id."""
    if deps.on_provision_step is not None:
        deps.on_provision_step("before_delivery")
    return await deps.notifier.deliver_kubeconfig(
        grant, grant.kubeconfig_filename, content.encode()
    )
