"""Errors raised by cluster operations, classified for the caller's retry policy.

The roots of AccessBot's error tree live here, at the lowest layer, so that a
cluster error can be a permanent or a transient failure without ``k8s`` knowing
anything above it. :mod:`bot.errors` draws the whole tree.
"""

from __future__ import annotations


class Failure(Exception):
    """An operation failed for a reason that is not the user's input."""


class PermanentFailure(Failure):
    """Retrying the same operation will fail the same way (a denial, a bad object)."""


class TransientFailure(Failure):
    """Retrying later may succeed (a timeout, a 5xx, a 429, a lost connection)."""


class ClusterError(Failure):
    """A cluster operation failed; ``transient`` says whether retrying may help."""

    def __init__(self, message: str, *, cluster: str = "", transient: bool = False) -> None:
        super().__init__(message)
        self.cluster = cluster
        self.transient = transient


class NotManagedError(ClusterError):
    """An object with our name exists but AccessBot did not create it."""


class MissingNamespaceError(ClusterError):
    """The namespace a grant needs does not exist."""


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the operation that raised ``exc`` may succeed."""
    if isinstance(exc, TransientFailure):
        return True
    return isinstance(exc, ClusterError) and exc.transient
