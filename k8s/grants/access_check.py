"""Proving an issued kubeconfig works, exactly as the requester will use it.

The rendered file is loaded by the client library's own kubeconfig loader, so
its server, CA, ``insecure-skip-tls-verify``, ``tls-server-name`` and
``proxy-url`` are what is tested, not the bot's. Only self-review APIs are
called, which every authenticated identity may use.
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
import yaml
from kubernetes import client, config

from k8s.clients import ClusterClient
from k8s.errors import (
    BadAnswer,
    ClusterError,
    Forbidden,
    Invalid,
    NotPropagated,
    Unreachable,
    Untrusted,
)
from k8s.grants.objects import GrantSpec
from k8s.grants.tokens import IssuedToken
from k8s.kubeconfig import KubeconfigSpec, render_kubeconfig

T = TypeVar("T")


@dataclass(frozen=True)
class Verification:
    username: str
    rules: int


_SELF_REVIEW_RESOURCES = frozenset(
    {"selfsubjectaccessreviews", "selfsubjectrulesreviews", "selfsubjectreviews"}
)


async def verify(
    c: ClusterClient, spec: GrantSpec, token: IssuedToken, kubeconfig: str | None = None
) -> Verification:
    """Prove, with the issued kubeconfig exactly as the requester gets it, that it
    connects, authenticates as the grant's ServiceAccount and holds the role.

    ``kubeconfig`` is the rendered file (YAML text); None renders the one this
    cluster's trust and server make. It is loaded by the client library's own
    kubeconfig loader, so its server, CA, ``insecure-skip-tls-verify``,
    ``tls-server-name`` and ``proxy-url`` are what is tested, not the bot's.
    Uses only self-review APIs every authenticated identity may call, so the
    bot needs no extra RBAC to check its work.

    Raises :class:`~k8s.errors.Untrusted` when the file's TLS trust is wrong (no
    retry fixes that), :class:`~k8s.errors.Unreachable` when its server cannot
    be reached, :class:`~k8s.errors.NotPropagated` when the new token or binding
    is not visible yet, :class:`~k8s.errors.BadAnswer` when the token is someone
    else's; another :class:`~k8s.errors.ClusterError` for any other answer.
    """
    text = kubeconfig if kubeconfig is not None else _default_kubeconfig(c, spec, token)
    api = _kubeconfig_client(c, text)
    server = api.configuration.host
    try:
        authn = client.AuthenticationV1Api(api)
        review = await _as_user(c, server, authn.create_self_subject_review,
                                client.V1SelfSubjectReview())  # fmt: skip
        info = review.status.user_info if review.status else None
        username = info.username if info else None
        if username != spec.sa_user:
            raise BadAnswer(
                f"cluster {c.name}: new token authenticates as {username!r}, not {spec.sa_user}",
                cluster=c.name,
            )
        ns = spec.namespace or spec.sa_namespace
        authz = client.AuthorizationV1Api(api)
        rules_review = await _as_user(
            c,
            server,
            authz.create_self_subject_rules_review,
            client.V1SelfSubjectRulesReview(spec=client.V1SelfSubjectRulesReviewSpec(namespace=ns)),
        )
        granted = [
            r
            for r in (rules_review.status.resource_rules if rules_review.status else None) or []
            if not set(r.resources or []) <= _SELF_REVIEW_RESOURCES
        ]
        if not granted:
            raise NotPropagated(  # RBAC caches can lag a freshly created binding
                f"cluster {c.name}: token for {spec.sa_user} has no permissions from "
                f"ClusterRole {spec.cluster_role} in {ns}",
                cluster=c.name,
            )
        return Verification(username=username, rules=len(granted))
    finally:
        api.close()


async def check_issued_trust(c: ClusterClient) -> None:
    """Connect to the server issued kubeconfigs name, with the trust they carry.

    No token is minted: a placeholder credential is sent and any HTTP answer
    (401 included) proves the TLS handshake and the route work. Raises
    ClusterError saying what a requester's kubectl would fail on.
    """
    spec = GrantSpec("probe", "", "probe", "", "", "cluster", None, c.sa_namespace,
                     dt.datetime.now(dt.UTC))  # fmt: skip
    api = _kubeconfig_client(c, _default_kubeconfig(c, spec, IssuedToken("probe", spec.expires_at)))
    try:
        await _as_user(c, api.configuration.host, client.VersionApi(api).get_code)
    except ClusterError as exc:
        if isinstance(exc, Unreachable | Untrusted):  # no HTTP answer at all
            raise
    finally:
        api.close()


def _default_kubeconfig(c: ClusterClient, spec: GrantSpec, token: IssuedToken) -> str:
    return render_kubeconfig(
        KubeconfigSpec(
            cluster=c.name,
            server=c.server,
            ca_pem=c.trust.ca_pem,
            user=spec.sa_name,
            token=token.token,
            context=c.name,
            namespace=spec.namespace,
            trust=c.trust,
        )
    )


def _kubeconfig_client(c: ClusterClient, text: str) -> client.ApiClient:
    """An API client configured only from ``text``, as kubectl would read it."""
    cfg = client.Configuration()
    try:
        config.load_kube_config_from_dict(
            yaml.safe_load(text), client_configuration=cfg, persist_config=False
        )
    except (config.ConfigException, yaml.YAMLError, ValueError, OSError) as exc:
        raise Invalid(
            f"cluster {c.name}: the issued kubeconfig does not load ({exc})", cluster=c.name
        ) from exc
    return client.ApiClient(configuration=cfg)


async def _as_user(c: ClusterClient, server: str, fn: Callable[..., T], *args: Any) -> T:
    """One call with the requester's kubeconfig, its failures told in the user's terms.

    ``fn`` belongs to the requester's client; it runs through ``c.call`` (the
    one place errors are typed) and only the wording changes here.
    """
    try:
        return await c.call(fn, *args)
    except Forbidden as exc:
        if exc.status != 401:
            raise
        # A fresh token can reach an apiserver replica that has not seen
        # its ServiceAccount yet: worth another try, then a clear failure.
        raise NotPropagated(
            f"cluster {c.name}: {server} rejects the new token (401 Unauthorized)",
            cluster=c.name,
            status=exc.status,
        ) from exc.__cause__
    except Unreachable as exc:
        cause = exc.__cause__
        reason = getattr(cause, "reason", None) or cause or exc
        if isinstance(reason, urllib3.exceptions.SSLError | ssl.SSLError):
            raise Untrusted(
                f"cluster {c.name}: the kubeconfig for {server} cannot verify the API "
                f"server's TLS certificate ({_short(reason)}); the bot's kubeconfig must "
                "name the CA that signed it (certificate-authority-data or "
                "certificate-authority), or the policy's server must be one that CA covers",
                cluster=c.name,
            ) from cause
        raise Unreachable(
            f"cluster {c.name}: the kubeconfig's server {server} cannot be reached "
            f"({_short(reason)}); the policy's server must be reachable from the bot too",
            cluster=c.name,
        ) from cause


def _short(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return text if len(text) <= 200 else text[:197] + "..."
