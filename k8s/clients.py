"""One Kubernetes API client per policy cluster, shared, off the event loop.

The official client is synchronous. Rather than adopt a second client library,
every call runs in one bounded thread pool, so a slow apiserver can tie up at
most ``max_workers`` threads and never the event loop. Every call carries a
request timeout.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from k8s.errors import TRANSIENT_STATUSES, ClusterError, UnknownCluster, error_for

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_TIMEOUT_SECONDS",
    "TRANSIENT_STATUSES",
    "ClusterClient",
    "ClusterRegistry",
    "ClusterTarget",
    "ClusterTrust",
    "api_error",
    "status_of",
    "trust_of",
]

P = ParamSpec("P")
T = TypeVar("T")

# (connect, read) seconds. Reads of large lists get more time than writes.
DEFAULT_TIMEOUT_SECONDS: tuple[float, float] = (5.0, 30.0)
DEFAULT_TIMEOUT = DEFAULT_TIMEOUT_SECONDS  # the former name


@dataclass(frozen=True)
class ClusterTarget:
    """How to reach one cluster: a kubeconfig context, or in-cluster config.

    ``name``: the policy's cluster name. ``context``: the kubeconfig context
    (None: the file's current context). ``in_cluster``: use the pod's
    ServiceAccount mount instead of a kubeconfig (default False).
    ``kubeconfig``: the file's path (None: ``$KUBECONFIG`` or
    ``~/.kube/config``). ``server_override``: the API server URL issued
    kubeconfigs name (None: the one the bot connects to). ``sa_namespace``:
    where grant ServiceAccounts live (default ``accessbot-users``).
    """

    name: str
    context: str | None = None
    in_cluster: bool = False
    kubeconfig: str | None = None
    server_override: str | None = None
    # Where grant ServiceAccounts live; the bot's RBAC covers only this namespace.
    sa_namespace: str = "accessbot-users"


@dataclass(frozen=True)
class ClusterTrust:
    """How a client decides to trust the API server, as the bot's own config says.

    The issued kubeconfig carries exactly this, so a requester trusts what the
    bot trusts: the CA (inlined, whether the bot's config held it as
    ``certificate-authority-data``, a ``certificate-authority`` file, or the
    in-cluster ServiceAccount mount), ``insecure-skip-tls-verify``,
    ``tls-server-name`` and ``proxy-url`` (kubeconfig field names, as in
    client-go's ``clientcmd/api/v1`` ``Cluster``). An empty ``ca_pem`` with
    ``insecure`` False means the system's trust roots.
    """

    ca_pem: bytes = b""
    insecure: bool = False
    tls_server_name: str | None = None
    proxy_url: str | None = None


def trust_of(cfg: client.Configuration) -> ClusterTrust:
    """The trust a loaded client ``Configuration`` uses; OSError if its CA file is unreadable."""
    ca = b""
    if cfg.ssl_ca_cert:
        with open(cfg.ssl_ca_cert, "rb") as fh:
            ca = fh.read()
    return ClusterTrust(
        ca_pem=ca,
        insecure=not cfg.verify_ssl,
        tls_server_name=getattr(cfg, "tls_server_name", None) or None,
        # Only a kubeconfig's proxy-url: a proxy the client took from the bot's
        # own environment (HTTPS_PROXY) says nothing about the requester's network.
        proxy_url=None if getattr(cfg, "_proxy_from_env", False) else (cfg.proxy or None),
    )


@dataclass
class ClusterClient:
    """A configured API client for one cluster plus the pool its calls run in.

    ``name``: the policy's cluster name. ``api_client``: the configured client
    library client (owned: :meth:`close` closes it). ``pool``: the thread pool
    every call runs in (shared, not owned). ``server``: the API server URL
    issued kubeconfigs name. ``trust``: how issued kubeconfigs trust it.
    ``sa_namespace``: where grant ServiceAccounts live (default
    ``accessbot-users``). ``timeout_seconds``: (connect, read) timeout of every
    call in seconds (default :data:`DEFAULT_TIMEOUT_SECONDS`, (5, 30)).
    """

    name: str
    api_client: client.ApiClient
    pool: ThreadPoolExecutor
    server: str
    trust: ClusterTrust
    sa_namespace: str = "accessbot-users"
    timeout_seconds: tuple[float, float] = DEFAULT_TIMEOUT_SECONDS
    core: client.CoreV1Api = field(init=False)
    rbac: client.RbacAuthorizationV1Api = field(init=False)
    authn: client.AuthenticationV1Api = field(init=False)
    authz: client.AuthorizationV1Api = field(init=False)

    def __post_init__(self) -> None:
        self.core = client.CoreV1Api(self.api_client)
        self.rbac = client.RbacAuthorizationV1Api(self.api_client)
        self.authn = client.AuthenticationV1Api(self.api_client)
        self.authz = client.AuthorizationV1Api(self.api_client)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one blocking client call in the pool, with a timeout, mapping errors.

        ``fn`` is any client method (of this cluster's ``api_client`` or of a
        requester's, see :func:`k8s.grants.verify`); ``_request_timeout``
        defaults to ``self.timeout_seconds``. This is the one place an apiserver answer
        becomes an error: raises the :mod:`k8s.errors` class of its status
        (``NotFound``, ``Conflict``, ``Forbidden``, ``Invalid``, ``Refused``,
        ``TooManyRequests``, ``ServerError``) or ``Unreachable`` when no answer
        came (urllib3 errors, ``OSError``, timeouts), the original as ``__cause__``.
        """
        kwargs.setdefault("_request_timeout", self.timeout_seconds)
        bound = functools.partial(fn, *args, **kwargs)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.pool, bound)
        except ApiException as exc:
            raise api_error(self.name, exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise error_for(
                self.name,
                0,
                f"cluster {self.name}: cannot reach the API server ({exc.__class__.__name__})",
            ) from exc

    @property
    def ca_data(self) -> bytes:
        """The CA bundle issued kubeconfigs carry (empty: system roots or insecure)."""
        return self.trust.ca_pem

    def close(self) -> None:
        self.api_client.close()


def api_error(cluster: str, exc: ApiException) -> ClusterError:
    """The typed error (:func:`k8s.errors.error_for`) for an ApiException, in the apiserver's words.

    Status 0 (the client got no HTTP answer) is ``Unreachable``. The caller
    raises it ``from exc``; :meth:`ClusterClient.call` is that caller.
    """
    status = int(exc.status or 0)
    reason = exc.reason or "error"
    return error_for(cluster, status, f"cluster {cluster}: API answered {status} {reason}")


def status_of(exc: BaseException) -> int:
    """HTTP status of a mapped API error, 0 when there was none."""
    if isinstance(exc, ClusterError):
        return exc.status
    return 0


def _configuration(target: ClusterTarget) -> client.Configuration:
    cfg = client.Configuration()
    if target.in_cluster:
        config.load_incluster_config(client_configuration=cfg)
    else:
        config.load_kube_config(
            config_file=target.kubeconfig,
            context=target.context,
            client_configuration=cfg,
            persist_config=False,
        )
    return cfg


class ClusterRegistry:
    """Owns one client per cluster, created once, and the shared thread pool.

    ``targets``: cluster name to :class:`ClusterTarget`; each is configured at
    construction (a bad kubeconfig or unknown context raises the client
    library's ``ConfigException``). ``max_workers``: threads in the pool, hence
    concurrent API calls across all clusters (default 16). ``timeout_seconds``:
    (connect, read) timeout of every call in seconds (default (5, 30)).
    Indexing an unknown name raises :class:`~k8s.errors.UnknownCluster`.
    """

    def __init__(
        self,
        targets: Mapping[str, ClusterTarget],
        *,
        max_workers: int = 16,
        timeout_seconds: tuple[float, float] = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="k8s")
        self._clients: dict[str, ClusterClient] = {}
        for name, target in targets.items():
            cfg = _configuration(target)
            # The pool bounds concurrency; let urllib3 keep as many connections.
            cfg.connection_pool_maxsize = max_workers
            api = client.ApiClient(configuration=cfg)
            self._clients[name] = ClusterClient(
                name=name,
                api_client=api,
                pool=self._pool,
                server=target.server_override or cfg.host,
                trust=trust_of(cfg),
                sa_namespace=target.sa_namespace,
                timeout_seconds=timeout_seconds,
            )

    def __getitem__(self, name: str) -> ClusterClient:
        try:
            return self._clients[name]
        except KeyError:
            raise UnknownCluster(f"unknown cluster {name!r}", cluster=name) from None

    def __iter__(self) -> Any:
        return iter(self._clients.values())

    @property
    def names(self) -> list[str]:
        return list(self._clients)

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
