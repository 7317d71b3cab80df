"""Errors raised by cluster operations, typed by the apiserver's answer.

The roots of AccessBot's error tree live here, at the lowest layer, so that a
cluster error can be a permanent or a transient failure without ``k8s`` knowing
anything above it. :mod:`bot.errors` draws the whole tree; this module's part::

    Failure
    ├── PermanentFailure               retrying fails the same way
    │   ├── NotFound (404)             ┐
    │   │   └── MissingNamespaceError  │
    │   ├── Conflict (409)             │ ClusterError too: an apiserver answer
    │   ├── Forbidden (401/403)        │ (``status``), or a fact about one
    │   ├── Invalid (400/422)          │
    │   ├── Refused (any other 4xx)    │
    │   ├── Untrusted (TLS)            │
    │   ├── BadAnswer                  │
    │   ├── NotManagedError            │
    │   ├── UnknownCluster             │
    │   ├── InvalidNamespace           ┘
    │   └── CorruptRelease             a Helm release body we cannot read
    │       └── OversizedRelease
    ├── TransientFailure               retrying later may succeed
    │   ├── TooManyRequests (429/425)  ┐
    │   ├── ServerError (5xx)          │ ClusterError too
    │   ├── Unreachable (no answer)    │
    │   └── NotPropagated              ┘ accepted, not visible everywhere yet
    └── ClusterError                   the cluster-side root (``cluster``, ``status``)

Every apiserver answer is turned into its class in one place,
:func:`error_for` (called by :meth:`k8s.clients.ClusterClient.call`), with
the client library's exception as ``__cause__``. ``transient`` is derived
from the class.
"""

from __future__ import annotations

from typing import ClassVar


class Failure(Exception):
    """An operation failed for a reason that is not the user's input."""


class PermanentFailure(Failure):
    """Retrying the same operation will fail the same way (a denial, a bad object)."""


class TransientFailure(Failure):
    """Retrying later may succeed (a timeout, a 5xx, a 429, a lost connection)."""


class ClusterError(Failure):
    """A cluster operation failed.

    ``cluster``: the policy's cluster name ("" when none applies). ``status``:
    the apiserver's HTTP status, 0 when there was no answer or none applies.
    ``transient``: whether retrying may help, derived from the class (a
    :class:`TransientFailure` subclass). The ``transient`` argument exists for
    callers that raise a bare ``ClusterError``; inside ``k8s`` every error is
    one of the typed subclasses below.
    """

    def __init__(
        self,
        message: str,
        *,
        cluster: str = "",
        status: int = 0,
        transient: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.cluster = cluster
        self.status = status
        self._transient = transient

    @property
    def transient(self) -> bool:
        if self._transient is not None:
            return self._transient
        return isinstance(self, TransientFailure)


# -- the apiserver said no: retrying fails the same way ------------------------------


class NotFound(ClusterError, PermanentFailure):
    """404: the object (or its namespace) does not exist."""


class Conflict(ClusterError, PermanentFailure):
    """409: AlreadyExists, or a precondition (UID, resourceVersion) did not hold."""


class Forbidden(ClusterError, PermanentFailure):
    """401 Unauthorized or 403 Forbidden: the credentials may not do this."""


class Invalid(ClusterError, PermanentFailure):
    """400 Bad Request or 422 Unprocessable Entity: the request or object is refused as written."""


class Refused(ClusterError, PermanentFailure):
    """Any other 4xx answer (405, 410, 413, 415 ...)."""


class Untrusted(ClusterError, PermanentFailure):
    """The TLS handshake failed: the configured trust does not cover the server."""


class BadAnswer(ClusterError, PermanentFailure):
    """The apiserver answered, but not what the API promises (no token, malformed list)."""


class NotManagedError(ClusterError, PermanentFailure):
    """An object with our name exists but AccessBot did not create it."""


class UnknownCluster(ClusterError, PermanentFailure):
    """A cluster name the policy does not configure."""


class MissingNamespaceError(NotFound):
    """The namespace a grant needs does not exist."""


class InvalidNamespace(ClusterError, PermanentFailure, ValueError):
    """A namespace that is not a DNS-1123 label, refused before it reaches a URL."""


class CorruptRelease(PermanentFailure, ValueError):
    """A Helm release Secret whose body is not base64(base64(gzip?(JSON object))).

    ``kind`` is what a report row shows instead of the release's columns.
    """

    kind: ClassVar[str] = "corrupt release data"


class OversizedRelease(CorruptRelease):
    """A release body that inflates past what the report reads (``k8s.helm.MAX_RELEASE_BYTES``)."""

    kind: ClassVar[str] = "oversized release data"


# -- no usable answer yet: retrying later may succeed --------------------------------


class TooManyRequests(ClusterError, TransientFailure):
    """429 Too Many Requests (API priority and fairness) or 425 Too Early."""


class ServerError(ClusterError, TransientFailure):
    """5xx: the apiserver (or what is behind it, etcd, a webhook) failed."""


class Unreachable(ClusterError, TransientFailure):
    """No HTTP answer: connection refused or reset, DNS, a timeout (408 included)."""


class NotPropagated(ClusterError, TransientFailure):
    """The cluster accepted a change that is not visible everywhere yet.

    A fresh token reaching an apiserver replica that has not seen its
    ServiceAccount (401), or an RBAC cache that lags a new binding.
    """


# HTTP statuses worth retrying: throttling, server-side trouble, timeouts.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

_BY_STATUS: dict[int, type[ClusterError]] = {
    400: Invalid,
    401: Forbidden,
    403: Forbidden,
    404: NotFound,
    408: Unreachable,
    409: Conflict,
    422: Invalid,
    425: TooManyRequests,
    429: TooManyRequests,
}


def error_class(status: int) -> type[ClusterError]:
    """The class of an apiserver answer with HTTP ``status`` (0: no answer)."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ServerError
    if 400 <= status < 500:
        return Refused
    return Unreachable


def error_for(cluster: str, status: int, message: str) -> ClusterError:
    """The typed error for an answer with ``status`` (0: none); raise it ``from`` the cause."""
    return error_class(status)(message, cluster=cluster, status=status)


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the operation that raised ``exc`` may succeed."""
    if isinstance(exc, TransientFailure):
        return True
    return isinstance(exc, ClusterError) and exc.transient
