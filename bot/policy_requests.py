"""Requests against the policy: defaults filled in, every rule checked, field by field.

``resolve_request`` turns what a user asked for (``AccessRequestSpec``) into a
``ResolvedRequest`` or a ``RequestRejected`` whose ``problems`` say what is wrong
with each field at fault, so a form can show each beside its field while a slash
command shows the first as one sentence. ``recheck_request`` holds a request
decided earlier to the policy in force now. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from fnmatch import fnmatchcase
from typing import Literal, ParamSpec, TypeVar

from bot.durations import format_duration
from bot.errors import Rejected
from bot.policy_protected import protected_namespace
from bot.policy_rules import reason_problem
from bot.policy_schema import Policy, RoleConfig, Scope
from k8s.names import DNS_LABEL_RULE, is_dns_label

__all__ = [
    "MAX_REASON_LENGTH",
    "AccessRequestSpec",
    "RequestField",
    "RequestRejected",
    "ResolvedRequest",
    "namespace_allowed",
    "recheck_request",
    "requestable_clusters",
    "resolve_request",
    "role_clusters",
    "roles_on",
]

MAX_REASON_LENGTH = 500
"""Characters a request's reason may have (after surrounding whitespace is dropped)."""

RequestField = Literal["role", "cluster", "namespace", "duration", "reason", "start"]
"""A field of a request that a problem can be about."""

_T = TypeVar("_T")
_P = ParamSpec("_P")


class RequestRejected(Rejected):
    """An access request the policy does not allow; the message says what is allowed.

    ``problems`` maps each field at fault (:data:`RequestField`) to a sentence worded
    to stand beside that field in a form (capitalised, ending with a full stop);
    ``str(exc)`` is the first problem as one sentence of its own. A rejection not
    about a single field (``recheck_request``) has no ``problems``.
    """

    def __init__(self, message: str, problems: Mapping[RequestField, str] | None = None) -> None:
        super().__init__(message)
        self.problems: dict[RequestField, str] = dict(problems or {})


def _rejected(field: RequestField, message: str, beside: str | None = None) -> RequestRejected:
    """A problem with ``field``; ``beside`` defaults to ``message`` as a form sentence."""
    return RequestRejected(message, {field: beside or f"{message[0].upper()}{message[1:]}."})


@dataclass(frozen=True)
class AccessRequestSpec:
    """What a user asked for; None means "use the policy default".

    ``requester``: Slack user ID; ``cluster``/``namespace``: names as typed (blank
    counts as None); ``duration``: how long, a timedelta (None: the policy's
    default duration, clamped to the role's maximum); ``reason``: free text.
    """

    requester: str
    role: str
    cluster: str | None
    namespace: str | None
    duration: timedelta | None
    reason: str


@dataclass(frozen=True)
class ResolvedRequest:
    """A request with every default filled in and every rule checked.

    ``duration`` is a timedelta; ``namespace`` is None exactly when ``scope`` is
    ``"cluster"``; ``approvals_required`` is the role's ``approvals`` (0: none).
    """

    requester: str
    role: str
    cluster: str
    namespace: str | None  # None exactly when scope == "cluster"
    duration: timedelta
    reason: str
    scope: Scope
    cluster_role: str
    approvals_required: int


def _role(policy: Policy, name: str) -> RoleConfig:
    role = policy.roles.get(name)
    if role is None:
        roles = ", ".join(sorted(policy.roles))
        raise _rejected(
            "role",
            f"unknown role {name!r}; roles: {roles}",
            # Beside a field the name is not echoed: the user sees what they gave there.
            f"Unknown role; roles: {roles}." if name.strip() else "Pick a role.",
        )
    return role


def role_clusters(policy: Policy, role: str) -> tuple[str, ...]:
    """Clusters a role may be requested on, in policy order; raises ``RequestRejected``
    for an unknown role."""
    allowed = _role(policy, role).clusters
    return tuple(c for c in policy.clusters if allowed is None or c in allowed)


def roles_on(policy: Policy, cluster: str) -> list[str]:
    """Roles that may be requested on ``cluster``, in policy order."""
    return [r for r in policy.roles if cluster in role_clusters(policy, r)]


def requestable_clusters(policy: Policy) -> list[str]:
    """Clusters on which at least one role may be requested, in policy order."""
    return [c for c in policy.clusters if roles_on(policy, c)]


def namespace_allowed(patterns: Iterable[str], namespace: str) -> bool:
    """Glob match (case-sensitive, like Kubernetes names) against any pattern.

    This is the role's own list only; ``resolve_request`` also refuses a
    protected namespace (``protected_namespace``), whatever the patterns say.
    """
    return any(fnmatchcase(namespace, pattern) for pattern in patterns)


class _Findings:
    """The problems found so far while checking one request, in field order."""

    def __init__(self) -> None:
        self.first: RequestRejected | None = None
        self.problems: dict[RequestField, str] = {}

    def check(self, decide: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T | None:
        """``decide(*args, **kwargs)``, or None after noting the problem it raised."""
        try:
            return decide(*args, **kwargs)
        except RequestRejected as exc:
            self.first = self.first or exc
            for field, text in exc.problems.items():
                self.problems.setdefault(field, text)
            return None

    def raise_any(self) -> None:
        if self.first is not None:
            raise RequestRejected(str(self.first), self.problems)


def resolve_request(policy: Policy, spec: AccessRequestSpec) -> ResolvedRequest:
    """Apply defaults and check a request against the policy.

    Every field is checked (those that depend on the role only when the role is
    known). Raises ``RequestRejected`` whose message names what *is* allowed, so the
    user can correct the request without reading the policy file, and whose
    ``problems`` hold one sentence per field at fault.
    """
    found = _Findings()
    role = found.check(_role, policy, spec.role)
    cluster = namespace = duration = None
    if role is not None:
        given = _blank_to_none(spec.cluster)
        cluster = found.check(_pick_cluster, policy, spec.role, given)
        # The namespace rules do not depend on the cluster, so a wrong cluster does
        # not hide a wrong namespace.
        where = cluster or given or ""
        ns = _blank_to_none(spec.namespace)
        namespace = found.check(_pick_namespace, policy, where, spec.role, role, ns)
        duration = found.check(_pick_duration, policy, spec.role, role, spec.duration)
    required = role is None or role.reason is None or role.reason.required
    reason = found.check(_check_reason, spec.reason, required=required)
    if role is not None and reason is not None:
        found.check(_check_reason_rule, role, reason)
    found.raise_any()
    # Nothing was found, so every check returned its value.
    assert role is not None
    assert cluster is not None
    assert duration is not None
    assert reason is not None
    return ResolvedRequest(
        requester=spec.requester,
        role=spec.role,
        cluster=cluster,
        namespace=namespace,
        duration=duration,
        reason=reason,
        scope=role.scope,
        cluster_role=role.cluster_role,
        approvals_required=role.approvals,
    )


def recheck_request(
    policy: Policy, decided: ResolvedRequest, *, approvals_given: int | None = None
) -> None:
    """Check a request decided under an earlier policy against today's policy.

    The policy may have changed between a request and the moment its objects
    are made or its grant is extended (an operator narrows a role, protects a
    namespace, removes a cluster, raises the approvals). What is created must
    satisfy the policy in force *now*: the role still exists and still binds
    the same ClusterRole at the same scope, on a cluster and in a namespace it
    still allows, for no longer than its maximum, with enough approvals
    (``approvals_given``; None skips that check, e.g. for an extension, whose
    own approval is decided separately).

    Raises ``RequestRejected`` saying what changed.
    """
    changed = "the policy changed since this was requested"
    try:
        role = _role(policy, decided.role)
        _pick_cluster(policy, decided.role, decided.cluster)
        _pick_namespace(policy, decided.cluster, decided.role, role, decided.namespace)
        _pick_duration(policy, decided.role, role, decided.duration)
        _check_reason_rule(role, decided.reason)
    except RequestRejected as exc:
        raise RequestRejected(f"{changed}: {exc}") from None
    if (role.cluster_role, role.scope) != (decided.cluster_role, decided.scope):
        raise RequestRejected(
            f"{changed}: role {decided.role} now binds ClusterRole {role.cluster_role} "
            f"({role.scope} scope), not {decided.cluster_role} ({decided.scope} scope); "
            "request it again"
        )
    if approvals_given is not None and approvals_given < role.approvals:
        raise RequestRejected(
            f"{changed}: role {decided.role} now needs {role.approvals} approval(s) and this "
            f"request has {approvals_given}; request it again"
        )


def _blank_to_none(value: str | None) -> str | None:
    # An empty modal field means "not given", exactly like an omitted flag.
    if value is None or not value.strip():
        return None
    return value.strip()


def _pick_cluster(policy: Policy, role_name: str, cluster: str | None) -> str:
    allowed = role_clusters(policy, role_name)
    choices = ", ".join(allowed)
    if cluster is None:
        if len(allowed) == 1:
            return allowed[0]
        raise _rejected(
            "cluster",
            f"role {role_name} is available on several clusters; pick one of: {choices}",
        )
    if cluster not in policy.clusters:
        raise _rejected(
            "cluster",
            f"unknown cluster {cluster!r}; role {role_name} is available on: {choices}",
            f"Unknown cluster; role {role_name} is available on: {choices}.",
        )
    if cluster not in allowed:
        # A form offers the roles of the cluster picked first, so it is the role that
        # does not fit.
        raise _rejected(
            "role",
            f"role {role_name} is not available on cluster {cluster}; "
            f"it is available on: {choices}",
            f"Role {role_name} is not available on {cluster}; it is on: {choices}.",
        )
    return cluster


def _pick_namespace(
    policy: Policy, cluster: str, role_name: str, role: RoleConfig, namespace: str | None
) -> str | None:
    if role.scope == "cluster":
        if namespace is not None:
            raise _rejected(
                "namespace", f"role {role_name} is cluster-wide; do not give a namespace"
            )
        return None
    patterns = ", ".join(role.namespaces)
    if namespace is None:
        raise _rejected("namespace", f"role {role_name} needs a namespace matching: {patterns}")
    if not is_dns_label(namespace):
        raise _rejected(
            "namespace",
            f"{namespace!r} is not a valid namespace name ({DNS_LABEL_RULE} characters)",
            # Not echoed beside the field: the user sees what they typed right there.
            f"Not a valid namespace name ({DNS_LABEL_RULE} characters).",
        )
    why = protected_namespace(policy, cluster, namespace)
    if why is not None:
        raise _rejected("namespace", f"{why}; AccessBot never grants access there")
    if not namespace_allowed(role.namespaces, namespace):
        raise _rejected(
            "namespace",
            f"namespace {namespace} is not allowed for role {role_name}; allowed: {patterns}",
            f"Not allowed for role {role_name}; allowed: {patterns}.",
        )
    return namespace


def _pick_duration(
    policy: Policy, role_name: str, role: RoleConfig, duration: timedelta | None
) -> timedelta:
    if duration is None:
        return min(policy.defaults.duration, role.max_duration)
    if duration <= timedelta(0):
        raise _rejected("duration", "the duration must be longer than zero")
    if duration > role.max_duration:
        raise _rejected(
            "duration",
            f"{format_duration(duration)} is above the {format_duration(role.max_duration)} "
            f"maximum for role {role_name}",
        )
    return duration


def _check_reason_rule(role: RoleConfig, reason: str) -> None:
    # bot.policy_rules: the role's pattern, searched for (re.search) in the reason.
    problem = reason_problem(role.reason, reason)
    if problem is not None:
        raise _rejected("reason", problem, f"{problem}.")


def _check_reason(reason: str, *, required: bool = True) -> str:
    text = reason.strip()
    if not text and required:
        raise _rejected(
            "reason",
            "give a reason for the access (what you are going to do)",
            "Say what you are going to do.",
        )
    if len(text) > MAX_REASON_LENGTH:
        raise _rejected(
            "reason",
            f"the reason is {len(text)} characters long; keep it to {MAX_REASON_LENGTH}",
            f"Keep it to {MAX_REASON_LENGTH} characters (it has {len(text)}).",
        )
    return text
