"""Approve with changes: what an approver may narrow on a pending request, pure.

Never wider than asked: the duration may only get shorter (and stays above zero),
the cluster and the role never change, and the namespace may only be one of those
the request already covers that the role's patterns still allow. A request names
exactly one namespace (or none, for a cluster-wide role), so today the namespace
choice is the asked one or nothing; a cluster-wide request is never turned into a
namespaced one either (that would change the binding's kind and the role's scope,
which the policy fixes). "Asked" means the request as it stands: once an approver
narrowed it, later approvals (and later narrowing) start from the narrowed values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from bot.durations import format_duration
from bot.lifecycle import State
from bot.models import Grant
from bot.policy import (
    Policy,
    RequestField,
    RequestRejected,
    namespace_allowed,
    protected_namespace,
)

__all__ = ["Narrowed", "NarrowingAsk", "narrow", "narrower_namespaces"]


@dataclass(frozen=True)
class NarrowingAsk:
    """What an approver's "Approve with changes" form said (None: left as it is).

    ``cluster`` and ``role`` are never on the form: they are read only to refuse a
    submission that carries them with another value.
    """

    duration: timedelta | None = None
    namespace: str | None = None
    cluster: str | None = None
    role: str | None = None


@dataclass(frozen=True)
class Narrowed:
    """The request's values after narrowing, and the changes in words (empty: none)."""

    duration: timedelta
    namespace: str | None
    changes: tuple[str, ...]

    def applied_to(self, grant: Grant) -> Grant:
        return grant.model_copy(
            update={"duration_s": int(self.duration.total_seconds()), "namespace": self.namespace}
        )


def narrower_namespaces(policy: Policy, grant: Grant) -> list[str]:
    """The namespaces no wider than asked that the role still allows (empty: cluster-wide,
    or the asked namespace is no longer allowed)."""
    role = policy.roles.get(grant.role)
    if grant.namespace is None or role is None:
        return []
    asked = [grant.namespace]
    return [
        n
        for n in asked
        if namespace_allowed(role.namespaces, n)
        and protected_namespace(policy, grant.cluster, n) is None
    ]


def _refused(field: RequestField, problem: str) -> RequestRejected:
    return RequestRejected(problem, {field: f"{problem[0].upper()}{problem[1:]}."})


def narrow(policy: Policy, grant: Grant, ask: NarrowingAsk) -> Narrowed:
    """The narrowed values of the pending ``grant``; raises RequestRejected (problems keyed
    by field: duration, namespace, cluster, role) for anything wider than asked."""
    if grant.state != State.PENDING:
        raise RequestRejected(f"request {grant.id} is already {grant.state}; nothing changed")
    if ask.cluster is not None and ask.cluster != grant.cluster:
        raise _refused("cluster", "the cluster cannot be changed when approving")
    if ask.role is not None and ask.role != grant.role:
        raise _refused("role", "the role cannot be changed when approving")
    asked = grant.duration
    duration = asked if ask.duration is None else ask.duration
    if duration <= timedelta(0):
        raise _refused("duration", "the duration must be longer than zero")
    if duration > asked:
        raise _refused(
            "duration",
            f"{format_duration(duration)} is longer than the {format_duration(asked)} asked for; "
            "approving with changes can only shorten it",
        )
    namespace = grant.namespace if ask.namespace is None else ask.namespace
    if namespace != grant.namespace:
        if grant.namespace is None:
            raise _refused("namespace", "this role is cluster-wide; no namespace can be picked")
        raise _refused(
            "namespace",
            f"only {grant.namespace} (what was asked) can be picked; a different namespace "
            "needs a request of its own",
        )
    if namespace is not None and namespace not in narrower_namespaces(policy, grant):
        raise _refused("namespace", f"role {grant.role} no longer allows namespace {namespace}")
    changes = []
    if duration != asked:
        what = "extend by" if grant.kind == "extend" else "duration"
        changes.append(f"{what} {format_duration(asked)} → {format_duration(duration)}")
    return Narrowed(duration, namespace, tuple(changes))
