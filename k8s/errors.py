"""Errors raised by cluster operations, classified for the caller's retry policy."""

from __future__ import annotations


class ClusterError(Exception):
    """A cluster operation failed; ``transient`` says whether retrying may help."""

    def __init__(self, message: str, *, cluster: str = "", transient: bool = False) -> None:
        super().__init__(message)
        self.cluster = cluster
        self.transient = transient


class NotManagedError(ClusterError):
    """An object with our name exists but AccessBot did not create it."""


class MissingNamespaceError(ClusterError):
    """The namespace a grant needs does not exist."""
