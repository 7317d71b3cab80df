"""The policy file (who may get which access where) and the pure decisions on it.

Everything here is synchronous and free of I/O apart from reading the policy file
itself, so every access decision can be tested exhaustively without Slack, Redis
or a cluster. Slack usergroup membership is resolved by the caller and passed in.

Design decisions:

* Admins are break-glass approvers: they may approve a request for any role
  (never their own). A role with ``approvals > 0`` and no ``approvers`` is
  therefore valid as long as the policy has admins; it is an error only when
  nobody at all could approve it.
* When every possible approver of a role (its approvers plus the admins) is a
  plain user ID, ``approvals`` may not exceed their number, because such a role
  could never be approved. Usergroups can grow, so they are not counted.
* A request for a role that has since disappeared from the policy can still be
  decided by admins only, so a policy edit never strands a pending request; but
  nothing is ever created or extended against a policy that no longer allows it
  (``recheck_request``): approving such a request ends it as failed, saying why.
* Some namespaces are never grantable (``protected_patterns``): whoever can write
  in a cluster's users' namespace can mint tokens for every grant's
  ServiceAccount, and ``kube-system`` holds the controllers' ServiceAccounts. A
  ``scope: namespace`` role must therefore say where it applies; even ``"*"``
  never matches a protected namespace.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from bot.durations import Duration, format_duration
from bot.errors import PermanentFailure, Rejected
from k8s.rbac import RISKS

__all__ = [
    "ALWAYS_PROTECTED",
    "DEFAULT_NAMESPACE",
    "MAX_REASON_LENGTH",
    "AccessRequestSpec",
    "ClusterConfig",
    "Defaults",
    "Policy",
    "PolicyError",
    "RequestRejected",
    "ResolvedRequest",
    "RoleConfig",
    "Scope",
    "approvers_of",
    "is_admin",
    "is_dns_label",
    "load_policy",
    "may_approve",
    "namespace_allowed",
    "needs_approval",
    "parse_policy",
    "protected_namespace",
    "protected_patterns",
    "recheck_request",
    "resolve_request",
    "role_clusters",
]

Scope = Literal["namespace", "cluster"]
DEFAULT_NAMESPACE = "accessbot-users"
MAX_REASON_LENGTH = 500
# Never grantable on any cluster: the control plane's own namespaces. kube-system
# holds the controllers' ServiceAccounts (edit there reaches cluster-admin through
# them); kube-public and kube-node-lease are written by the control plane only.
ALWAYS_PROTECTED: tuple[str, ...] = ("kube-system", "kube-public", "kube-node-lease")

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
_GROUP_HANDLE = re.compile(r"@[a-z0-9][a-z0-9._-]*")
_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,}")
_CHANNEL_NAME = re.compile(r"#[a-z0-9][a-z0-9_-]{0,79}")
# Role names are typed as a slash-command word and end up in file names.
_ROLE_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?")
# Glob characters plus what a DNS-1123 label may contain.
_NAMESPACE_PATTERN = re.compile(r"[a-z0-9*?\[\]!-]{1,63}")

DNS_LABEL_RULE = "lowercase letters, digits and '-', starting and ending alphanumeric, at most 63"


class PolicyError(PermanentFailure, ValueError):
    """The policy file is unusable; each line reads ``FILE: key.path: problem``."""

    def __init__(self, *problems: str) -> None:
        self.problems: tuple[str, ...] = problems
        super().__init__("\n".join(problems))


class RequestRejected(Rejected):
    """An access request the policy does not allow; the message says what is allowed."""


class _Problems(ValueError):
    """Model-level findings that each belong to a specific key below the model.

    Pydantic reports a model validator's error at the model's own location; carrying
    relative paths lets the policy error point at the exact offending key.
    """

    def __init__(self, items: Sequence[tuple[tuple[str | int, ...], str]]) -> None:
        self.items = tuple(items)
        super().__init__("\n".join(f"{_join_path(path)}: {text}" for path, text in self.items))


def _collect(problems: list[tuple[tuple[str | int, ...], str]]) -> None:
    if problems:
        raise _Problems(problems)


# --- field-level checks -------------------------------------------------------------


def is_dns_label(text: str) -> bool:
    """Kubernetes namespace / object-name rule (RFC 1123 label)."""
    return _DNS_LABEL.fullmatch(text) is not None


def _is_user_id(text: str) -> bool:
    return _USER_ID.fullmatch(text) is not None


def _check_principal(value: str) -> str:
    if _is_user_id(value) or _GROUP_HANDLE.fullmatch(value):
        return value
    raise ValueError(
        f"{value!r} is neither a Slack user ID (like U012AB3CD or W012AB3CD) "
        "nor a lowercase @usergroup handle (like @platform-leads)"
    )


def _check_channel(value: str) -> str:
    if _CHANNEL_ID.fullmatch(value) or _CHANNEL_NAME.fullmatch(value):
        return value
    raise ValueError(f"{value!r} is neither a channel ID (like C012AB3CD) nor a #channel-name")


def _require_value(value: object) -> object:
    if value is None:
        raise ValueError("no value given (quote a '#channel': an unquoted # starts a YAML comment)")
    return value


def _check_dns_label(what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not is_dns_label(value):
            raise ValueError(f"invalid {what} {value!r} ({DNS_LABEL_RULE} characters)")
        return value

    return AfterValidator(check)


def _check_role_name(value: str) -> str:
    if _ROLE_NAME.fullmatch(value) is None:
        raise ValueError(
            f"invalid role name {value!r} (letters, digits, '-', '_' and '.', "
            "starting and ending alphanumeric, at most 63 characters)"
        )
    return value


def _check_cluster_role(value: str) -> str:
    # ClusterRole names may contain ':' (system:aggregate-to-view), so only reject
    # what can never be an object name.
    if not value or value in {".", ".."} or any(c in value for c in "/% \t\n"):
        raise ValueError(f"invalid ClusterRole name {value!r}")
    return value


def _check_namespace_pattern(value: str) -> str:
    if _NAMESPACE_PATTERN.fullmatch(value) is None:
        raise ValueError(
            f"invalid namespace pattern {value!r} "
            "(a namespace name, optionally with glob characters * ? [...])"
        )
    return value


def _check_risk(value: str) -> str:
    if value not in RISKS:
        raise ValueError(f"unknown risk {value!r}; risks: {', '.join(RISKS)}")
    return value


def _check_https_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        parts = None
    if parts is None or parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"{value!r} is not an https:// URL (like https://k8s.example:6443)")
    return value


Principal = Annotated[str, AfterValidator(_check_principal)]
ChannelRef = Annotated[str, AfterValidator(_check_channel)]
ClusterName = Annotated[str, _check_dns_label("cluster name")]
RoleName = Annotated[str, AfterValidator(_check_role_name)]
NamespacePattern = Annotated[str, AfterValidator(_check_namespace_pattern)]
RiskName = Annotated[str, AfterValidator(_check_risk)]


# --- models -------------------------------------------------------------------------


class _Model(BaseModel):
    # Unknown keys are errors so that a typo ("aprovals") never silently falls
    # back to a more permissive default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClusterConfig(_Model):
    """How the bot reaches one cluster and where it puts grant ServiceAccounts."""

    context: Annotated[str, Field(min_length=1)] | None = None
    server: Annotated[str, AfterValidator(_check_https_url)] | None = None
    namespace: Annotated[str, _check_dns_label("namespace")] = DEFAULT_NAMESPACE
    in_cluster: bool = False

    @model_validator(mode="after")
    def _one_way_in(self) -> Self:
        # Both at once would make it depend on where the bot runs which cluster
        # it talks to, so demand a single unambiguous choice.
        if self.context is None and not self.in_cluster:
            _collect([(("context",), "give a kubeconfig context, or set in_cluster: true")])
        if self.context is not None and self.in_cluster:
            _collect([(("in_cluster",), "give either a context or in_cluster: true, not both")])
        return self


class RoleConfig(_Model):
    """One requestable role: what it binds, where, for how long, approved by whom."""

    cluster_role: Annotated[str, AfterValidator(_check_cluster_role)]
    scope: Scope
    max_duration: Duration
    approvals: Annotated[int, Field(ge=0)] = 1
    approvers: list[Principal] = Field(default_factory=list)
    # Required for scope "namespace" (checked below); empty for scope "cluster".
    namespaces: list[NamespacePattern] = Field(default_factory=list)
    clusters: list[str] | None = None
    # Escape paths of the ClusterRole (k8s.rbac.RISKS) the operator knowingly accepts;
    # ``accessbot check`` fails on an unaccepted token-minting, impersonation,
    # escalation or rbac-write.
    accepts_risks: list[RiskName] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if self.scope == "cluster" and "namespaces" in self.model_fields_set:
            problems.append((("namespaces",), "a cluster-scoped role takes no namespaces"))
        if self.scope == "namespace" and "namespaces" not in self.model_fields_set:
            problems.append(
                (
                    ("namespaces",),
                    "required for a namespace-scoped role: list the namespaces it may be "
                    "granted in, like ['team-*'] ('*' still never matches a protected "
                    "namespace)",
                )
            )
        elif self.scope == "namespace" and not self.namespaces:
            problems.append((("namespaces",), "empty: no namespace could be requested"))
        if self.clusters is not None and not self.clusters:
            problems.append((("clusters",), "empty: leave clusters out to allow every cluster"))
        _collect(problems)
        return self


class Defaults(_Model):
    """Fallbacks for values a request or the scheduler does not specify."""

    duration: Duration = timedelta(hours=1)
    pending_ttl: Duration = timedelta(hours=24)
    reminder_before: Duration = timedelta(minutes=10)


class Policy(_Model):
    """The whole policy file."""

    approvals_channel: Annotated[ChannelRef, BeforeValidator(_require_value)]
    audit_channel: ChannelRef | None = None
    admins: list[Principal] = Field(default_factory=list)
    clusters: Annotated[dict[ClusterName, ClusterConfig], Field(min_length=1)]
    roles: Annotated[dict[RoleName, RoleConfig], Field(min_length=1)]
    defaults: Defaults = Field(default_factory=Defaults)
    # Never grantable, in addition to ALWAYS_PROTECTED, every cluster's users'
    # namespace and the namespace the bot runs in (see protected_patterns).
    protected_namespaces: list[NamespacePattern] = Field(default_factory=list)
    # Who may run /k8s nodes and /k8s helm. "everyone" by default: node and
    # release status is not secret, and the person who needs it mid-incident
    # often holds no access yet. "approvers" limits it to admins and approvers.
    reports: Literal["everyone", "approvers"] = "everyone"
    # Where the bot itself runs (not a policy key: given by the process that loads
    # the policy, from ACCESSBOT_NAMESPACE or the pod's ServiceAccount namespace).
    _bot_namespace: str | None = PrivateAttr(default=None)

    @property
    def bot_namespace(self) -> str | None:
        return self._bot_namespace

    @model_validator(mode="after")
    def _cross_check(self) -> Self:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for name, role in self.roles.items():
            problems.extend(_unknown_clusters(self, name, role))
            problems.extend(_unapprovable(self, name, role))
            problems.extend(_protected_literals(self, name, role))
        _collect(problems)
        return self


def _unknown_clusters(
    policy: Policy, name: str, role: RoleConfig
) -> Iterable[tuple[tuple[str | int, ...], str]]:
    known = ", ".join(policy.clusters)
    for index, cluster in enumerate(role.clusters or ()):
        if cluster not in policy.clusters:
            yield (
                ("roles", name, "clusters", index),
                f"unknown cluster {cluster!r}; clusters: {known}",
            )


def _protected_literals(
    policy: Policy, name: str, role: RoleConfig
) -> Iterable[tuple[tuple[str | int, ...], str]]:
    # A plain name (no glob) that is protected can never be granted: say so now
    # rather than refuse every request for it later.
    for index, pattern in enumerate(role.namespaces):
        if any(c in pattern for c in "*?["):
            continue
        for cluster in role.clusters or list(policy.clusters):
            why = protected_namespace(policy, cluster, pattern)
            if why is not None:
                yield (("roles", name, "namespaces", index), f"{why}; it can never be granted")
                break


def _unapprovable(
    policy: Policy, name: str, role: RoleConfig
) -> Iterable[tuple[tuple[str | int, ...], str]]:
    if role.approvals == 0:
        return
    pool = set(role.approvers) | set(policy.admins)
    where = ("roles", name, "approvals")
    if not pool:
        yield (where, f"needs {role.approvals} approval(s) but nobody may approve: add approvers")
    elif all(_is_user_id(p) for p in pool) and len(pool) < role.approvals:
        who = ", ".join(sorted(pool))
        yield (
            where,
            f"needs {role.approvals} approvals but only {len(pool)} people may approve ({who})",
        )


# --- loading ------------------------------------------------------------------------


def load_policy(path: Path, *, bot_namespace: str | None = None) -> Policy:
    """Read and validate the policy file; every problem becomes a ``PolicyError``.

    ``bot_namespace`` is the namespace the bot runs in (None outside a cluster); it
    is protected like the cluster's users' namespace.
    """
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"{source}: file not found") from None
    except IsADirectoryError:
        raise PolicyError(f"{source}: is a directory, not a file") from None
    except UnicodeDecodeError:
        raise PolicyError(f"{source}: not UTF-8 text") from None
    except OSError as exc:
        raise PolicyError(f"{source}: cannot read: {exc.strerror or exc}") from None
    return parse_policy(text, source, bot_namespace=bot_namespace)


def parse_policy(
    text: str, source: str = "<policy>", *, bot_namespace: str | None = None
) -> Policy:
    """Validate policy YAML text; ``source`` names it in error messages.

    ``bot_namespace``: see ``load_policy``.
    """
    data = _load_yaml(text, source)
    if data is None:
        raise PolicyError(f"{source}: the policy is empty")
    if not isinstance(data, dict):
        raise PolicyError(
            f"{source}: expected a mapping of keys at the top level, got {_show(data)}"
        )
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(*(f"{source}: {line}" for line in _describe(exc))) from None
    if bot_namespace is not None:
        policy._bot_namespace = bot_namespace
        problems = [
            f"{source}: {_join_path(path)}: {text}"
            for name, role in policy.roles.items()
            for path, text in _protected_literals(policy, name, role)
        ]
        if problems:
            raise PolicyError(*problems)
    return policy


class _StrictLoader(yaml.SafeLoader):
    """Safe loader that rejects duplicate keys.

    PyYAML silently keeps the last of two equal keys, which would let a second,
    half-edited copy of a role quietly replace the first.
    """


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    first_seen: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # "<<: *base" followed by overrides is legitimate
        key = loader.construct_object(key_node, deep=True)
        try:
            earlier = first_seen.setdefault(key, key_node.start_mark)
        except TypeError:
            continue  # unhashable key: construct_mapping reports it properly
        if earlier is not key_node.start_mark:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first at line {earlier.line + 1})",
                key_node.start_mark,
            )
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _load_yaml(text: str, source: str) -> object:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        raise PolicyError(f"{source}: {_yaml_problem(exc)}") from None
    except yaml.reader.ReaderError as exc:
        # Its str() spans two lines; a problem is reported on one.
        raise PolicyError(
            f"{source}: character {exc.position + 1}: invalid YAML: character "
            f"#x{exc.character if isinstance(exc.character, int) else ord(exc.character):04x} "
            "is not allowed"
        ) from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: invalid YAML: {' '.join(str(exc).split())}") from None


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or exc.context or "invalid YAML"
    if "'@'" in problem:
        problem += ' (quote @usergroup handles: "@platform-leads")'
    if not isinstance(exc, yaml.constructor.ConstructorError):
        problem = f"YAML syntax error: {problem}"
    mark = exc.problem_mark or exc.context_mark
    if mark is None:
        return problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


# --- turning pydantic errors into "key.path: problem" lines ------------------------

_TYPE_WORDS = {
    "string_type": "expected text",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "list_type": "expected a list",
    "dict_type": "expected a mapping of keys",
    "model_type": "expected a mapping of keys",
    "model_attributes_type": "expected a mapping of keys",
}


def _describe(exc: ValidationError) -> list[str]:
    lines: list[str] = []
    for error in exc.errors(include_url=False):
        loc = tuple(part for part in error["loc"] if part != "[key]")
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, _Problems):
            lines.extend(f"{_join_path(loc + path)}: {text}" for path, text in cause.items)
        else:
            lines.append(f"{_join_path(loc) or '(top level)'}: {_problem_text(error, loc, cause)}")
    return lines


def _problem_text(error: Any, loc: tuple[str | int, ...], cause: object) -> str:
    kind: str = error["type"]
    if isinstance(cause, Exception):
        return str(cause)
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind in _TYPE_WORDS:
        return f"{_TYPE_WORDS[kind]}, got {_show(error['input'])}"
    if kind == "too_short":
        return "needs at least one entry"
    if kind == "string_too_short":
        return "must not be empty"
    message: str = error["msg"]
    return message.replace("Input should be", "must be")


def _unknown_key(loc: tuple[str | int, ...]) -> str:
    model = _model_at(loc[:-1])
    if model is None:
        return "unknown key"
    allowed = list(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return f"unknown key (allowed: {', '.join(allowed)})"


def _model_at(parent: tuple[str | int, ...]) -> type[BaseModel] | None:
    if not parent:
        return Policy
    if parent == ("defaults",):
        return Defaults
    if len(parent) == 2 and parent[0] == "clusters":
        return ClusterConfig
    if len(parent) == 2 and parent[0] == "roles":
        return RoleConfig
    return None


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_@#*<.-]+")


def _join_path(parts: Iterable[str | int]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            # A key with spaces, newlines or quotes is shown quoted, so every
            # problem stays on its own line and the path stays unambiguous.
            key = part if _PLAIN_KEY.fullmatch(part) else repr(part)
            text += f".{key}" if text else key
    return text


def _show(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- request decisions --------------------------------------------------------------


@dataclass(frozen=True)
class AccessRequestSpec:
    """What a user asked for; None means "use the policy default"."""

    requester: str
    role: str
    cluster: str | None
    namespace: str | None
    duration: timedelta | None
    reason: str


@dataclass(frozen=True)
class ResolvedRequest:
    """A request with every default filled in and every rule checked."""

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
        raise RequestRejected(f"unknown role {name!r}; roles: {', '.join(sorted(policy.roles))}")
    return role


def role_clusters(policy: Policy, role: str) -> tuple[str, ...]:
    """Clusters a role may be requested on, in policy order."""
    allowed = _role(policy, role).clusters
    return tuple(c for c in policy.clusters if allowed is None or c in allowed)


def namespace_allowed(patterns: Iterable[str], namespace: str) -> bool:
    """Glob match (case-sensitive, like Kubernetes names) against any pattern.

    This is the role's own list only; ``resolve_request`` also refuses a
    protected namespace (``protected_namespace``), whatever the patterns say.
    """
    return any(fnmatchcase(namespace, pattern) for pattern in patterns)


def protected_patterns(policy: Policy, cluster: str) -> tuple[str, ...]:
    """Namespaces (names or globs) nothing may ever be granted in on ``cluster``.

    ``ALWAYS_PROTECTED``, every policy cluster's users' namespace (a write there
    reaches every grant's ServiceAccount; all of them, since one bot identity may
    serve several clusters), the bot's own namespace and the policy's
    ``protected_namespaces``.
    """
    # The same on every cluster today; ``cluster`` is taken so that a per-cluster
    # list needs no change at the call sites.
    own = [c.namespace for c in policy.clusters.values()]
    bot = [policy.bot_namespace] if policy.bot_namespace else []
    return tuple(dict.fromkeys([*ALWAYS_PROTECTED, *own, *bot, *policy.protected_namespaces]))


def protected_namespace(policy: Policy, cluster: str, namespace: str) -> str | None:
    """Why ``namespace`` on ``cluster`` may never be granted, or None if it may be."""
    if namespace in ALWAYS_PROTECTED:
        return f"namespace {namespace} is protected: it belongs to the Kubernetes control plane"
    users = sorted(n for n, c in policy.clusters.items() if c.namespace == namespace)
    if users:
        return (
            f"namespace {namespace} is protected: it holds the ServiceAccounts of every "
            f"AccessBot grant (cluster {', '.join(users)})"
        )
    if namespace == policy.bot_namespace:
        return f"namespace {namespace} is protected: AccessBot itself runs there"
    for pattern in policy.protected_namespaces:
        if fnmatchcase(namespace, pattern):
            return f"namespace {namespace} is protected by the policy ({pattern})"
    return None


def resolve_request(policy: Policy, spec: AccessRequestSpec) -> ResolvedRequest:
    """Apply defaults and check a request against the policy.

    Raises ``RequestRejected`` whose message names what *is* allowed, so the user
    can correct the request without reading the policy file.
    """
    role = _role(policy, spec.role)
    return ResolvedRequest(
        requester=spec.requester,
        role=spec.role,
        cluster=(cluster := _pick_cluster(policy, spec.role, _blank_to_none(spec.cluster))),
        namespace=_pick_namespace(policy, cluster, spec.role, role, _blank_to_none(spec.namespace)),
        duration=_pick_duration(policy, spec.role, role, spec.duration),
        reason=_check_reason(spec.reason),
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
        raise RequestRejected(
            f"role {role_name} is available on several clusters; pick one of: {choices}"
        )
    if cluster not in policy.clusters:
        raise RequestRejected(
            f"unknown cluster {cluster!r}; role {role_name} is available on: {choices}"
        )
    if cluster not in allowed:
        raise RequestRejected(
            f"role {role_name} is not available on cluster {cluster}; it is available on: {choices}"
        )
    return cluster


def _pick_namespace(
    policy: Policy, cluster: str, role_name: str, role: RoleConfig, namespace: str | None
) -> str | None:
    if role.scope == "cluster":
        if namespace is not None:
            raise RequestRejected(f"role {role_name} is cluster-wide; do not give a namespace")
        return None
    patterns = ", ".join(role.namespaces)
    if namespace is None:
        raise RequestRejected(f"role {role_name} needs a namespace matching: {patterns}")
    if not is_dns_label(namespace):
        raise RequestRejected(
            f"{namespace!r} is not a valid namespace name ({DNS_LABEL_RULE} characters)"
        )
    why = protected_namespace(policy, cluster, namespace)
    if why is not None:
        raise RequestRejected(f"{why}; AccessBot never grants access there")
    if not namespace_allowed(role.namespaces, namespace):
        raise RequestRejected(
            f"namespace {namespace} is not allowed for role {role_name}; allowed: {patterns}"
        )
    return namespace


def _pick_duration(
    policy: Policy, role_name: str, role: RoleConfig, duration: timedelta | None
) -> timedelta:
    if duration is None:
        return min(policy.defaults.duration, role.max_duration)
    if duration <= timedelta(0):
        raise RequestRejected("the duration must be longer than zero")
    if duration > role.max_duration:
        raise RequestRejected(
            f"{format_duration(duration)} is above the {format_duration(role.max_duration)} "
            f"maximum for role {role_name}"
        )
    return duration


def _check_reason(reason: str) -> str:
    text = reason.strip()
    if not text:
        raise RequestRejected("give a reason for the access (what you are going to do)")
    if len(text) > MAX_REASON_LENGTH:
        raise RequestRejected(
            f"the reason is {len(text)} characters long; keep it to {MAX_REASON_LENGTH}"
        )
    return text


# --- approval decisions -------------------------------------------------------------


def _split(principals: Iterable[str]) -> tuple[frozenset[str], frozenset[str]]:
    users = frozenset(p for p in principals if not p.startswith("@"))
    groups = frozenset(p[1:] for p in principals if p.startswith("@"))
    return users, groups


def _normalise_groups(user_groups: Collection[str]) -> frozenset[str]:
    # Callers may pass handles with or without "@"; Slack handles are lowercase.
    return frozenset(g.removeprefix("@").lower() for g in user_groups)


def approvers_of(
    policy: Policy, role: str, *, include_admins: bool = True
) -> tuple[frozenset[str], frozenset[str]]:
    """(user IDs, usergroup handles without "@") who may approve requests for ``role``.

    Admins are included by default because they may approve anything; pass
    ``include_admins=False`` for just the role's named approvers (e.g. to mention
    them on an approval card). An unknown role has no approvers of its own.
    """
    config = policy.roles.get(role)
    principals = list(config.approvers) if config is not None else []
    if include_admins:
        principals.extend(policy.admins)
    return _split(principals)


def _member(
    users: frozenset[str], groups: frozenset[str], user_id: str, user_groups: Collection[str]
) -> bool:
    return user_id in users or not groups.isdisjoint(_normalise_groups(user_groups))


def may_approve(
    policy: Policy, role: str, user_id: str, user_groups: Collection[str], requester: str
) -> bool:
    """Whether ``user_id`` (member of ``user_groups``) may approve ``requester``'s request.

    The requester never counts, whichever way they would otherwise qualify.
    """
    if user_id == requester:
        return False
    users, groups = approvers_of(policy, role)
    return _member(users, groups, user_id, user_groups)


def is_admin(policy: Policy, user_id: str, user_groups: Collection[str]) -> bool:
    """Admins may revoke any grant and list everything (and approve any role)."""
    users, groups = _split(policy.admins)
    return _member(users, groups, user_id, user_groups)


def needs_approval(resolved: ResolvedRequest) -> bool:
    """``approvals: 0`` roles are granted without anyone approving."""
    return resolved.approvals_required > 0


# -- who may run the cluster reports ------------------------------------------------------


def may_run_reports(
    policy: Policy,
    access: Literal["everyone", "approvers"],
    user: str,
    groups: frozenset[str],
) -> bool:
    """Whether ``user`` (a member of the usergroup handles ``groups``) may run ``/k8s nodes``
    and ``/k8s helm``.

    ``access`` is the ``reports`` key (``Policy.reports``): ``"everyone"`` lets any
    workspace member run them, because node and release status is operational
    information, not a secret, and the person who needs it mid-incident often holds
    no access yet; ``"approvers"`` keeps them to admins and the approvers of any
    role. ``/k8s standing`` is for admins only whatever this says (it maps who to
    attack), which ``Workflow.require_admin`` enforces.
    """
    if access == "everyone":
        return True
    if is_admin(policy, user, groups):
        return True
    for role in policy.roles:
        users, handles = approvers_of(policy, role, include_admins=False)
        if user in users or not handles.isdisjoint(groups):
            return True
    return False
