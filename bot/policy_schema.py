"""The policy file's schema: its keys, the rule for each value, and the checks across them.

The models are frozen pydantic models that refuse unknown keys, so a typo
("aprovals") never silently falls back to a more permissive default. A model
validator reports problems below its own key through :class:`KeyProblems`, so
that the policy error (``bot.policy_file``) points at the exact offending key.

The rules that shape it (admins as break-glass approvers, protected namespaces)
are described in ``bot.policy``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    model_validator,
)

from bot.durations import Duration
from bot.policy_rules import BreakGlassConfig, ReasonRule
from k8s.names import DNS_LABEL_RULE, Scope, is_dns_label
from k8s.rbac import RISKS

__all__ = [
    "DEFAULT_NAMESPACE",
    "ROLE_NAME_RULE",
    "ClusterConfig",
    "Defaults",
    "KeyProblems",
    "Policy",
    "RoleConfig",
    "Scope",
    "is_role_name",
    "key_path",
]

DEFAULT_NAMESPACE = "accessbot-users"

_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
# A Slack user ID or a lowercase @usergroup handle.
_PRINCIPAL = re.compile(r"[UW][A-Z0-9]{2,}|@[a-z0-9][a-z0-9._-]*")
# A channel ID or a #channel-name.
_CHANNEL = re.compile(r"[CG][A-Z0-9]{2,}|#[a-z0-9][a-z0-9_-]{0,79}")
# Role names are typed as a slash-command word and end up in file names.
_ROLE_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?")
ROLE_NAME_RULE = "letters, digits, '-', '_' and '.', starting and ending alphanumeric, at most 63"
"""The role-name rule in words, to follow "... (" and precede " characters)" in a message."""
# Glob characters plus what a DNS-1123 label may contain.
# A namespace glob: DNS-label characters, * and ?, and whole sets [...] / [!...] of them.
# Stricter than fnmatch on purpose: the chart's admission policy turns each pattern into
# an RE2 regex (accessbot.globToRegex), and only well-formed sets (closed, non-empty,
# ranges in order) mean the same to both: a stray bracket or "[!]" would break the guard.
# A set's members: characters and ranges ("a-c"); "-" alone only first or last.
_GLOB_SET = re.compile(r"\[!?(-?(?:[a-z0-9](?:-[a-z0-9])?)+-?|-)\]")
_NAMESPACE_PATTERN = re.compile(rf"(?:[a-z0-9*?-]|{_GLOB_SET.pattern}){{1,63}}")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_@#*<.-]+")

KeyPath = tuple[str | int, ...]
"""Where a value sits in the policy file, e.g. ``("roles", "edit", "namespaces", 0)``."""


def key_path(parts: Iterable[str | int]) -> str:
    """``roles.edit.namespaces[0]``: a key path as the policy error prints it."""
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


class KeyProblems(ValueError):
    """Model-level findings that each belong to a specific key below the model.

    Pydantic reports a model validator's error at the model's own location; carrying
    relative paths (``items``: (KeyPath, problem) pairs) lets the policy error point
    at the exact offending key.
    """

    def __init__(self, items: Sequence[tuple[KeyPath, str]]) -> None:
        self.items = tuple(items)
        super().__init__("\n".join(f"{key_path(path)}: {text}" for path, text in self.items))


def _collect(problems: Sequence[tuple[KeyPath, str]]) -> None:
    if problems:
        raise KeyProblems(problems)


# --- the rule for each value ----------------------------------------------------------


def is_role_name(text: str) -> bool:
    """Whether ``text`` may name a role (:data:`ROLE_NAME_RULE`)."""
    return _ROLE_NAME.fullmatch(text) is not None


def _is_user_id(text: str) -> bool:
    return _USER_ID.fullmatch(text) is not None


def _rule(test: Callable[[str], bool], problem: str) -> AfterValidator:
    """A validator passing what ``test`` accepts; ``problem`` ("... {!r} ...") words a refusal."""

    def check(value: str) -> str:
        if not test(value):
            raise ValueError(problem.format(value))
        return value

    return AfterValidator(check)


def _matches(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda value: pattern.fullmatch(value) is not None


def is_namespace_pattern(value: str) -> bool:
    """A namespace name or glob both fnmatch and the chart's guard read the same way:
    at most 63 characters, sets closed and non-empty, every range ``a-z`` in order."""
    if len(value) > 63 or _NAMESPACE_PATTERN.fullmatch(value) is None:
        return False
    return all(_ranges_in_order(m.group(1)) for m in _GLOB_SET.finditer(value))


def _ranges_in_order(members: str) -> bool:
    # "-" first or last is itself a member; between two characters it is a range.
    return all(
        members[i - 1] <= members[i + 1] for i in range(1, len(members) - 1) if members[i] == "-"
    )


def _is_object_name(value: str) -> bool:
    # ClusterRole names may contain ':' (system:aggregate-to-view), so only reject
    # what can never be an object name.
    return bool(value) and value not in {".", ".."} and not any(c in value for c in "/% \t\n")


def _is_https_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return False
    return parts.scheme == "https" and bool(parts.hostname)


def _require_value(value: object) -> object:
    if value is None:
        raise ValueError("no value given (quote a '#channel': an unquoted # starts a YAML comment)")
    return value


def _label_field(what: str) -> AfterValidator:
    return _rule(is_dns_label, f"invalid {what} {{!r}} ({DNS_LABEL_RULE} characters)")


Principal = Annotated[
    str,
    _rule(
        _matches(_PRINCIPAL),
        "{!r} is neither a Slack user ID (like U012AB3CD or W012AB3CD) "
        "nor a lowercase @usergroup handle (like @platform-leads)",
    ),
]
ChannelRef = Annotated[
    str,
    _rule(_matches(_CHANNEL), "{!r} is neither a channel ID (like C012AB3CD) nor a #channel-name"),
]
ClusterName = Annotated[str, _label_field("cluster name")]
RoleName = Annotated[
    str,
    _rule(is_role_name, f"invalid role name {{!r}} ({ROLE_NAME_RULE} characters)"),
]
ClusterRoleName = Annotated[str, _rule(_is_object_name, "invalid ClusterRole name {!r}")]
NamespacePattern = Annotated[
    str,
    _rule(
        is_namespace_pattern,
        "invalid namespace pattern {!r} (a namespace name, optionally with glob "
        "characters * ? and closed sets [a-c] [!x])",
    ),
]
RiskName = Annotated[
    str, _rule(RISKS.__contains__, "unknown risk {!r}; risks: " + ", ".join(RISKS))
]
HttpsUrl = Annotated[
    str, _rule(_is_https_url, "{!r} is not an https:// URL (like https://k8s.example:6443)")
]


# --- models -------------------------------------------------------------------------


class _Model(BaseModel):
    # Unknown keys are errors so that a typo ("aprovals") never silently falls
    # back to a more permissive default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClusterConfig(_Model):
    """How the bot reaches one cluster and where it puts grant ServiceAccounts.

    ``context``: the kubeconfig context to use (exactly one of it and
    ``in_cluster: true``); ``server``: the https URL written into issued
    kubeconfigs (default: the context's); ``namespace``: where grant
    ServiceAccounts live (default ``accessbot-users``).
    """

    context: Annotated[str, Field(min_length=1)] | None = None
    server: HttpsUrl | None = None
    namespace: Annotated[str, _label_field("namespace")] = DEFAULT_NAMESPACE
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
    """One requestable role: what it binds, where, for how long, approved by whom.

    ``max_duration`` (a timedelta; ``"4h"`` or seconds in the file) caps a grant
    and the time left after an extension; ``approvals`` (default 1) are needed
    from ``approvers`` or admins; ``clusters`` None means every cluster.
    """

    cluster_role: ClusterRoleName
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
    reason: ReasonRule | None = None  # bot.policy_rules: what the reason must say
    break_glass: BreakGlassConfig | None = None  # bot.policy_rules: take now, ratify later
    escalate_to: list[Principal] = Field(default_factory=list)  # see bot.usecases.nudges
    escalate_after: Duration = timedelta(hours=1)
    # Extension rules (bot.extension_rules): None is unlimited; a fraction of the grant.
    max_extensions: Annotated[int, Field(ge=0, strict=True)] | None = None
    extend_after: Annotated[float, Field(ge=0, le=1, strict=True)] = 0.0

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems: list[tuple[KeyPath, str]] = []
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
    """Fallbacks for values a request or the scheduler does not specify.

    ``duration`` (default 1h) of a request that names none, clamped to the role's
    maximum; ``pending_ttl`` (24h) before an undecided request times out;
    ``reminder_before`` (10m) the expiry, when the holder is reminded; ``retention`` (90d)
    from a grant's end until Redis forgets it (bot.retention; also the audit stream's cap);
    ``max_schedule_ahead`` (7d) the furthest a scheduled start may be.
    """

    duration: Duration = timedelta(hours=1)
    pending_ttl: Duration = timedelta(hours=24)
    reminder_before: Duration = timedelta(minutes=10)
    remind_approvers_after: Duration = timedelta(minutes=15)  # see bot.usecases.nudges
    retention: Duration = timedelta(days=90)
    # How far ahead a scheduled start (--at, the modal's start field) may be.
    max_schedule_ahead: Duration = timedelta(days=7)


class Policy(_Model):
    """The whole policy file (see CONTRACT.md, "Policy file")."""

    approvals_channel: Annotated[ChannelRef, BeforeValidator(_require_value)]
    audit_channel: ChannelRef | None = None
    admins: list[Principal] = Field(default_factory=list)
    clusters: Annotated[dict[ClusterName, ClusterConfig], Field(min_length=1)]
    roles: Annotated[dict[RoleName, RoleConfig], Field(min_length=1)]
    defaults: Defaults = Field(default_factory=Defaults)
    # Never grantable, in addition to bot.policy_protected.ALWAYS_PROTECTED, every cluster's users'
    # namespace and the namespace the bot runs in (bot.policy_protected).
    protected_namespaces: list[NamespacePattern] = Field(default_factory=list)
    # Who may run /k8s nodes and /k8s helm. "everyone" by default: node and
    # release status is not secret, and the person who needs it mid-incident
    # often holds no access yet. "approvers" limits it to admins and approvers.
    reports: Literal["everyone", "approvers"] = "everyone"
    # Where the bot runs (not a policy key: from ACCESSBOT_NAMESPACE or the pod's SA).
    _bot_namespace: str | None = PrivateAttr(default=None)

    @property
    def bot_namespace(self) -> str | None:
        return self._bot_namespace

    @model_validator(mode="after")
    def _cross_check(self) -> Self:
        problems: list[tuple[KeyPath, str]] = []
        for name, role in self.roles.items():
            problems.extend(_unknown_clusters(self, name, role))
            problems.extend(_unapprovable(self, name, role))
        _collect(problems)
        return self


# --- checks across keys -------------------------------------------------------------


def _unknown_clusters(policy: Policy, name: str, role: RoleConfig) -> Iterable[tuple[KeyPath, str]]:
    known = ", ".join(policy.clusters)
    for index, cluster in enumerate(role.clusters or ()):
        if cluster not in policy.clusters:
            yield (
                ("roles", name, "clusters", index),
                f"unknown cluster {cluster!r}; clusters: {known}",
            )


def _unapprovable(policy: Policy, name: str, role: RoleConfig) -> Iterable[tuple[KeyPath, str]]:
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
