"""The ``/access`` and ``/k8s`` command language: a pure parser and its canonical spelling.

Slash command text is whatever a person typed, so parsing never guesses: every
mistake becomes a :class:`CommandError` that says what was wrong and carries the
usage line of the command being attempted. Each parsed command can spell itself
back (``text()``), which is what the round-trip tests rely on and what help
messages show.

Options may come before or between the positional words; the free-text reason of
``request`` starts at the first word that is neither an option nor the role, and
runs to the end verbatim (so it may contain ``-n`` or quotes). ``--`` ends the
options explicitly, for a reason that starts with a dash.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import ClassVar

from bot.durations import DurationError, format_duration, parse_duration
from bot.policy import (
    DNS_LABEL_RULE,
    ROLE_NAME_RULE,
    RequestRejected,
    is_dns_label,
    is_role_name,
)
from bot.slack.command_scan import OPTION, CommandError, scan, shown, split_verb
from bot.start_times import StartRequest, parse_start

__all__ = [
    "ACCESS_USAGE",
    "K8S_USAGE",
    "USAGE",
    "AccessCommand",
    "BreakGlass",
    "CommandError",
    "Extend",
    "Helm",
    "Help",
    "K8sCommand",
    "ListGrants",
    "Nodes",
    "OpenModal",
    "Request",
    "Revoke",
    "Roles",
    "Standing",
    "parse_access",
    "parse_k8s",
]

USAGE: dict[str, str] = {
    "request": (
        "/access request ROLE [-c CLUSTER] [-n NAMESPACE] [-d DURATION] [--at TIME] REASON..."
    ),
    "breakglass": "/access breakglass ROLE [-c CLUSTER] [-n NAMESPACE] [-d DURATION] REASON...",
    "list": "/access list [--all]",
    "revoke": "/access revoke GRANT_ID",
    "extend": "/access extend GRANT_ID -d DURATION",
    "roles": "/access roles [-c CLUSTER]",
    "help": "/access help",
    "nodes": "/k8s nodes [-c CLUSTER]",
    "helm": "/k8s helm [-c CLUSTER] [-n NAMESPACE | -A]",
    "standing": "/k8s standing [-c CLUSTER]",
}
ACCESS_USAGE = "\n".join(
    USAGE[k] for k in ("request", "breakglass", "list", "revoke", "extend", "roles", "help")
)
K8S_USAGE = "\n".join(USAGE[k] for k in ("nodes", "helm", "standing"))

# Names a user types are checked here, before they reach a Redis key, a policy
# lookup or a Kubernetes API URL: "a%2Fb" or "../x" as a namespace would otherwise
# change the path the bot requests. Namespaces and clusters are RFC 1123 labels
# (Kubernetes' rule for namespaces; bot.policy holds cluster names to it too), roles
# follow the policy's role-name rule.
_GRANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # bot.models.new_id and margin


# -- parsed commands ----------------------------------------------------------------


@dataclass(frozen=True)
class OpenModal:
    """``/access`` with no text: open the request form."""

    def text(self) -> str:
        return ""


@dataclass(frozen=True)
class Request:
    """``/access request``: ``role`` with ``reason``; None for ``cluster``, ``namespace``
    or ``duration`` (a timedelta) means "not given" (the policy decides)."""

    role: str
    reason: str
    cluster: str | None = None
    namespace: str | None = None
    duration: timedelta | None = None
    # ``--at TIME``: a scheduled start (bot.start_times); None: at approval.
    start: StartRequest | None = None

    def text(self) -> str:
        parts = ["request", self.role]
        if self.cluster is not None:
            parts += ["-c", self.cluster]
        if self.namespace is not None:
            parts += ["-n", self.namespace]
        if self.duration is not None:
            parts += ["-d", format_duration(self.duration)]
        if self.start is not None:
            parts += ["--at", self.start.text]
        first = self.reason.split(maxsplit=1)[0] if self.reason.split() else ""
        if OPTION.fullmatch(first) or first == "--":
            parts.append("--")
        return " ".join([*parts, self.reason])


@dataclass(frozen=True)
class BreakGlass(Request):
    """``/access breakglass``: a ``request`` for a role with ``break_glass``, granted at
    once and revoked unless ratified in time."""

    def text(self) -> str:
        return "breakglass" + super().text().removeprefix("request")


@dataclass(frozen=True)
class ListGrants:
    """``/access list``: the caller's grants, or with ``everyone`` (``--all``) all."""

    everyone: bool = False

    def text(self) -> str:
        return "list --all" if self.everyone else "list"


@dataclass(frozen=True)
class Revoke:
    """``/access revoke GRANT_ID``: end a grant or withdraw a request."""

    grant_id: str

    def text(self) -> str:
        return f"revoke {self.grant_id}"


@dataclass(frozen=True)
class Extend:
    """``/access extend GRANT_ID -d DURATION``: ``duration`` (a timedelta) more."""

    grant_id: str
    duration: timedelta

    def text(self) -> str:
        return f"extend {self.grant_id} -d {format_duration(self.duration)}"


@dataclass(frozen=True)
class _OnCluster:
    """A command taking nothing but ``[-c CLUSTER]`` (None: every cluster)."""

    cluster: str | None = None
    verb: ClassVar[str]

    def text(self) -> str:
        return self.verb if self.cluster is None else f"{self.verb} -c {self.cluster}"


@dataclass(frozen=True)
class Roles(_OnCluster):
    """``/access roles [-c CLUSTER]``: what each role allows."""

    verb: ClassVar[str] = "roles"


@dataclass(frozen=True)
class Help:
    """``/access help`` or ``/k8s help``: the usage of ``topic`` ("access" or "k8s")."""

    topic: str = "access"

    def text(self) -> str:
        return "help"


@dataclass(frozen=True)
class Nodes(_OnCluster):
    """``/k8s nodes [-c CLUSTER]``: the nodes and their problems."""

    verb: ClassVar[str] = "nodes"


@dataclass(frozen=True)
class Helm:
    """``/k8s helm``: the releases on ``cluster`` (None: every cluster) in ``namespace``
    (None, also spelled ``-A``: every namespace)."""

    cluster: str | None = None
    namespace: str | None = None

    @property
    def all_namespaces(self) -> bool:
        return self.namespace is None

    def text(self) -> str:
        parts = ["helm"]
        if self.cluster is not None:
            parts += ["-c", self.cluster]
        parts += ["-A"] if self.namespace is None else ["-n", self.namespace]
        return " ".join(parts)


@dataclass(frozen=True)
class Standing(_OnCluster):
    """``/k8s standing``: privileged access AccessBot did not grant (admins only)."""

    verb: ClassVar[str] = "standing"


AccessCommand = OpenModal | Request | BreakGlass | ListGrants | Revoke | Extend | Roles | Help
K8sCommand = Nodes | Helm | Standing | Help


def _checked_label(value: str | None, what: str, usage: str) -> str | None:
    if value is not None and not is_dns_label(value):
        raise CommandError(f"invalid {what} {shown(value)} ({DNS_LABEL_RULE} characters)", usage)
    return value


def _role_name(value: str, usage: str) -> str:
    if not is_role_name(value):
        raise CommandError(f"invalid role {shown(value)} ({ROLE_NAME_RULE} characters)", usage)
    return value


def _grant_id(value: str, usage: str) -> str:
    if _GRANT_ID.fullmatch(value) is None:
        raise CommandError(
            f"invalid grant id {shown(value)} (letters and digits, e.g. k3q7vx2mpa)", usage
        )
    return value


def _duration_option(text: str, usage: str) -> timedelta:
    try:
        return parse_duration(text)
    except DurationError as exc:
        raise CommandError(str(exc), usage) from None


def _start_option(text: str, usage: str) -> StartRequest:
    try:
        return parse_start(text)
    except RequestRejected as exc:
        raise CommandError(str(exc), usage) from None


# -- /access --------------------------------------------------------------------------

_CLUSTER = {"-c": "cluster", "--cluster": "cluster"}
_NAMESPACE = {"-n": "namespace", "--namespace": "namespace"}
_DURATION = {"-d": "duration", "--duration": "duration"}
_AT = {"--at": "at"}


def parse_access(text: str) -> AccessCommand:
    """Parse the text after ``/access``; raises :class:`CommandError`."""
    verb, rest = split_verb(text)
    if not verb:
        return OpenModal()
    parser = _ACCESS_VERBS.get(verb)
    if parser is None:
        raise CommandError(f"unknown subcommand {verb!r}", ACCESS_USAGE)
    return parser(rest)


def _parse_request(text: str, verb: str = "request") -> Request:
    usage = USAGE[verb]
    given = scan(
        text,
        usage,
        valued={**_CLUSTER, **_NAMESPACE, **_DURATION, **_AT},
        flags={},
        positional=1,
        tail=True,
    )
    if not given.positional:
        raise CommandError("give the role you need", usage)
    if not given.rest:
        raise CommandError("give a reason (what you are going to do)", usage)
    duration = given.options.get("duration")
    at = given.options.get("at")
    return Request(
        role=_role_name(given.positional[0], usage),
        reason=given.rest,
        cluster=_checked_label(given.options.get("cluster"), "cluster", usage),
        namespace=_checked_label(given.options.get("namespace"), "namespace", usage),
        duration=_duration_option(duration, usage) if duration is not None else None,
        start=_start_option(at, usage) if at is not None else None,
    )


def _parse_breakglass(text: str) -> BreakGlass:
    return BreakGlass(**asdict(_parse_request(text, "breakglass")))


def _parse_list(text: str) -> ListGrants:
    given = scan(text, USAGE["list"], valued={}, flags={"--all": "all", "-a": "all"}, positional=0)
    return ListGrants(everyone="all" in given.flags)


def _parse_revoke(text: str) -> Revoke:
    usage = USAGE["revoke"]
    given = scan(text, usage, valued={}, flags={}, positional=1)
    if not given.positional:
        raise CommandError("give the id of the grant or request to revoke", usage)
    return Revoke(_grant_id(given.positional[0], usage))


def _parse_extend(text: str) -> Extend:
    usage = USAGE["extend"]
    given = scan(text, usage, valued=_DURATION, flags={}, positional=1)
    if not given.positional:
        raise CommandError("give the id of the grant to extend", usage)
    if "duration" not in given.options:
        raise CommandError("say by how much with -d, e.g. -d 1h", usage)
    grant_id = _grant_id(given.positional[0], usage)
    return Extend(grant_id, _duration_option(given.options["duration"], usage))


def _parse_roles(text: str) -> Roles:
    usage = USAGE["roles"]
    given = scan(text, usage, valued=_CLUSTER, flags={}, positional=0)
    return Roles(_checked_label(given.options.get("cluster"), "cluster", usage))


def _parse_help(text: str) -> Help:
    scan(text, USAGE["help"], valued={}, flags={}, positional=0)
    return Help("access")


_ACCESS_VERBS: dict[str, Callable[[str], AccessCommand]] = {
    "request": _parse_request,
    "breakglass": _parse_breakglass,
    "list": _parse_list,
    "ls": _parse_list,
    "revoke": _parse_revoke,
    "extend": _parse_extend,
    "roles": _parse_roles,
    "help": _parse_help,
}


# -- /k8s ------------------------------------------------------------------------------


def parse_k8s(text: str) -> K8sCommand:
    """Parse the text after ``/k8s``; raises :class:`CommandError`."""
    verb, rest = split_verb(text)
    if verb in ("", "help"):
        if rest.strip():
            raise CommandError(f"unexpected {rest.split()[0]!r}", K8S_USAGE)
        return Help("k8s")
    if verb == "nodes":
        usage = USAGE["nodes"]
        given = scan(rest, usage, valued=_CLUSTER, flags={}, positional=0)
        return Nodes(_checked_label(given.options.get("cluster"), "cluster", usage))
    if verb == "helm":
        return _parse_helm(rest)
    if verb == "standing":
        usage = USAGE["standing"]
        given = scan(rest, usage, valued=_CLUSTER, flags={}, positional=0)
        return Standing(_checked_label(given.options.get("cluster"), "cluster", usage))
    raise CommandError(f"unknown subcommand {verb!r}", K8S_USAGE)


def _parse_helm(text: str) -> Helm:
    usage = USAGE["helm"]
    given = scan(
        text,
        usage,
        valued={**_CLUSTER, **_NAMESPACE},
        flags={"-A": "all", "--all-namespaces": "all"},
        positional=0,
    )
    if "all" in given.flags and "namespace" in given.options:
        raise CommandError("give either -n NAMESPACE or -A, not both", usage)
    return Helm(
        _checked_label(given.options.get("cluster"), "cluster", usage),
        _checked_label(given.options.get("namespace"), "namespace", usage),
    )
