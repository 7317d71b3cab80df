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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

from bot.durations import DurationError, format_duration, parse_duration
from bot.errors import Rejected
from bot.policy import DNS_LABEL_RULE, is_dns_label

__all__ = [
    "ACCESS_USAGE",
    "K8S_USAGE",
    "USAGE",
    "AccessCommand",
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
    "request": "/access request ROLE [-c CLUSTER] [-n NAMESPACE] [-d DURATION] REASON...",
    "list": "/access list [--all]",
    "revoke": "/access revoke GRANT_ID",
    "extend": "/access extend GRANT_ID -d DURATION",
    "roles": "/access roles [-c CLUSTER]",
    "help": "/access help",
    "nodes": "/k8s nodes [-c CLUSTER]",
    "helm": "/k8s helm [-c CLUSTER] [-n NAMESPACE | -A]",
    "standing": "/k8s standing [-c CLUSTER]",
}
ACCESS_USAGE = "\n".join(USAGE[k] for k in ("request", "list", "revoke", "extend", "roles", "help"))
K8S_USAGE = "\n".join(USAGE[k] for k in ("nodes", "helm", "standing"))

# Anything shaped like an option: "-x", "--word", "--word=value". A lone "-" or
# "-5" is an ordinary word (people write "-" as a dash in reasons).
_OPTION = re.compile(r"--?[A-Za-z][A-Za-z-]*(=.*)?")
_WORD = re.compile(r"\S+")
# Names a user types are checked here, before they reach a Redis key, a policy
# lookup or a Kubernetes API URL: "a%2Fb" or "../x" as a namespace would otherwise
# change the path the bot requests. Namespaces and clusters are RFC 1123 labels
# (Kubernetes' rule for namespaces; bot.policy holds cluster names to it too).
_ROLE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?")  # bot.policy's role rule
_GRANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # bot.models.new_id and margin
_ECHO_LIMIT = 40


class CommandError(Rejected):
    """A command the user got wrong; ``problem`` says what, ``usage`` how to write it."""

    def __init__(self, problem: str, usage: str) -> None:
        self.problem = problem
        self.usage = usage
        super().__init__(f"{problem}\nUsage: {usage}")


# -- parsed commands ----------------------------------------------------------------


@dataclass(frozen=True)
class OpenModal:
    """``/access`` with no text: open the request form."""

    def text(self) -> str:
        return ""


@dataclass(frozen=True)
class Request:
    role: str
    reason: str
    cluster: str | None = None
    namespace: str | None = None
    duration: timedelta | None = None

    def text(self) -> str:
        parts = ["request", self.role]
        if self.cluster is not None:
            parts += ["-c", self.cluster]
        if self.namespace is not None:
            parts += ["-n", self.namespace]
        if self.duration is not None:
            parts += ["-d", format_duration(self.duration)]
        first = self.reason.split(maxsplit=1)[0] if self.reason.split() else ""
        if _OPTION.fullmatch(first) or first == "--":
            parts.append("--")
        return " ".join([*parts, self.reason])


@dataclass(frozen=True)
class ListGrants:
    everyone: bool = False

    def text(self) -> str:
        return "list --all" if self.everyone else "list"


@dataclass(frozen=True)
class Revoke:
    grant_id: str

    def text(self) -> str:
        return f"revoke {self.grant_id}"


@dataclass(frozen=True)
class Extend:
    grant_id: str
    duration: timedelta

    def text(self) -> str:
        return f"extend {self.grant_id} -d {format_duration(self.duration)}"


@dataclass(frozen=True)
class Roles:
    """``/access roles [-c CLUSTER]``: what each role allows (None: every cluster)."""

    cluster: str | None = None

    def text(self) -> str:
        return "roles" if self.cluster is None else f"roles -c {self.cluster}"


@dataclass(frozen=True)
class Help:
    topic: str = "access"  # "access" or "k8s"

    def text(self) -> str:
        return "help"


@dataclass(frozen=True)
class Nodes:
    cluster: str | None = None

    def text(self) -> str:
        return "nodes" if self.cluster is None else f"nodes -c {self.cluster}"


@dataclass(frozen=True)
class Helm:
    cluster: str | None = None
    namespace: str | None = None  # None with all_namespaces False: every namespace too

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
class Standing:
    """``/k8s standing``: privileged access AccessBot did not grant (admins only)."""

    cluster: str | None = None

    def text(self) -> str:
        return "standing" if self.cluster is None else f"standing -c {self.cluster}"


AccessCommand = OpenModal | Request | ListGrants | Revoke | Extend | Roles | Help
K8sCommand = Nodes | Helm | Standing | Help


# -- tokenising ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Word:
    text: str
    start: int


@dataclass
class _Scan:
    """Options and positional words of one command, with the verbatim tail kept."""

    source: str
    usage: str
    options: dict[str, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    positional: list[str] = field(default_factory=list)
    rest: str | None = None  # verbatim text after the last positional word taken


def _words(text: str) -> list[_Word]:
    return [_Word(m.group(), m.start()) for m in _WORD.finditer(text)]


def _scan(
    text: str,
    usage: str,
    *,
    valued: dict[str, str],
    flags: dict[str, str],
    positional: int,
    tail: bool = False,
) -> _Scan:
    """Split ``text`` into options and positional words.

    ``valued``/``flags`` map every accepted spelling to a canonical name. At most
    ``positional`` positional words are taken; with ``tail`` the text from the
    next non-option word on is kept verbatim in ``rest``.
    """
    scan = _Scan(text, usage)
    words = iter(_words(text))
    for word in words:
        if word.text == "--" and tail:
            scan.rest = text[word.start + 2 :].strip()
            return scan
        if _OPTION.fullmatch(word.text):
            _take_option(scan, word.text, words, valued, flags)
            continue
        if len(scan.positional) < positional:
            scan.positional.append(word.text)
            continue
        if tail:
            scan.rest = text[word.start :].strip()
            return scan
        raise CommandError(f"unexpected {word.text!r}", usage)
    return scan


def _take_option(
    scan: _Scan, spelled: str, words: Iterator[_Word], valued: dict[str, str], flags: dict[str, str]
) -> None:
    name, eq, inline = spelled.partition("=")
    if name in flags and not eq:
        canonical = flags[name]
        if canonical in scan.flags:
            raise CommandError(f"{name} given twice", scan.usage)
        scan.flags.add(canonical)
        return
    if name not in valued:
        raise CommandError(f"unknown option {name!r}", scan.usage)
    canonical = valued[name]
    if canonical in scan.options:
        raise CommandError(f"{name} given twice", scan.usage)
    value = inline if eq else _option_value(name, words, scan.usage)
    if not value:
        raise CommandError(f"{name} needs a value", scan.usage)
    scan.options[canonical] = value


def _option_value(name: str, words: Iterator[_Word], usage: str) -> str:
    word = next(words, None)
    if word is None or _OPTION.fullmatch(word.text) or word.text == "--":
        raise CommandError(f"{name} needs a value", usage)
    return word.text


def _shown(value: str) -> str:
    """``value`` quoted for an error message, cut short so the reply stays readable."""
    shown = repr(value)
    return shown if len(shown) <= _ECHO_LIMIT else shown[: _ECHO_LIMIT - 1] + "…"


def _label(value: str | None, what: str, usage: str) -> str | None:
    if value is not None and not is_dns_label(value):
        raise CommandError(f"invalid {what} {_shown(value)} ({DNS_LABEL_RULE} characters)", usage)
    return value


def _named(value: str, what: str, pattern: re.Pattern[str], rule: str, usage: str) -> str:
    if pattern.fullmatch(value) is None:
        raise CommandError(f"invalid {what} {_shown(value)} ({rule})", usage)
    return value


def _role(value: str, usage: str) -> str:
    return _named(value, "role", _ROLE, "letters, digits, '.', '_' and '-'", usage)


def _grant_id(value: str, usage: str) -> str:
    return _named(value, "grant id", _GRANT_ID, "letters and digits, e.g. k3q7vx2mpa", usage)


def _duration(text: str, usage: str) -> timedelta:
    try:
        return parse_duration(text)
    except DurationError as exc:
        raise CommandError(str(exc), usage) from None


def _split_verb(text: str) -> tuple[str, str]:
    """The first word (lower-cased) and the verbatim rest."""
    stripped = text.strip()
    match = _WORD.match(stripped)
    if match is None:
        return "", ""
    return match.group().lower(), stripped[match.end() :]


# -- /access --------------------------------------------------------------------------

_CLUSTER = {"-c": "cluster", "--cluster": "cluster"}
_NAMESPACE = {"-n": "namespace", "--namespace": "namespace"}
_DURATION = {"-d": "duration", "--duration": "duration"}


def parse_access(text: str) -> AccessCommand:
    """Parse the text after ``/access``; raises :class:`CommandError`."""
    verb, rest = _split_verb(text)
    if not verb:
        return OpenModal()
    parser = _ACCESS_VERBS.get(verb)
    if parser is None:
        raise CommandError(f"unknown subcommand {verb!r}", ACCESS_USAGE)
    return parser(rest)


def _parse_request(text: str) -> Request:
    usage = USAGE["request"]
    scan = _scan(
        text,
        usage,
        valued={**_CLUSTER, **_NAMESPACE, **_DURATION},
        flags={},
        positional=1,
        tail=True,
    )
    if not scan.positional:
        raise CommandError("give the role you need", usage)
    if not scan.rest:
        raise CommandError("give a reason (what you are going to do)", usage)
    duration = scan.options.get("duration")
    return Request(
        role=_role(scan.positional[0], usage),
        reason=scan.rest,
        cluster=_label(scan.options.get("cluster"), "cluster", usage),
        namespace=_label(scan.options.get("namespace"), "namespace", usage),
        duration=_duration(duration, usage) if duration is not None else None,
    )


def _parse_list(text: str) -> ListGrants:
    scan = _scan(text, USAGE["list"], valued={}, flags={"--all": "all", "-a": "all"}, positional=0)
    return ListGrants(everyone="all" in scan.flags)


def _parse_revoke(text: str) -> Revoke:
    usage = USAGE["revoke"]
    scan = _scan(text, usage, valued={}, flags={}, positional=1)
    if not scan.positional:
        raise CommandError("give the id of the grant or request to revoke", usage)
    return Revoke(_grant_id(scan.positional[0], usage))


def _parse_extend(text: str) -> Extend:
    usage = USAGE["extend"]
    scan = _scan(text, usage, valued=_DURATION, flags={}, positional=1)
    if not scan.positional:
        raise CommandError("give the id of the grant to extend", usage)
    if "duration" not in scan.options:
        raise CommandError("say by how much with -d, e.g. -d 1h", usage)
    grant_id = _grant_id(scan.positional[0], usage)
    return Extend(grant_id, _duration(scan.options["duration"], usage))


def _parse_roles(text: str) -> Roles:
    usage = USAGE["roles"]
    scan = _scan(text, usage, valued=_CLUSTER, flags={}, positional=0)
    return Roles(_label(scan.options.get("cluster"), "cluster", usage))


def _parse_help(text: str) -> Help:
    _scan(text, USAGE["help"], valued={}, flags={}, positional=0)
    return Help("access")


_ACCESS_VERBS: dict[str, Callable[[str], AccessCommand]] = {
    "request": _parse_request,
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
    verb, rest = _split_verb(text)
    if verb in ("", "help"):
        if rest.strip():
            raise CommandError(f"unexpected {rest.split()[0]!r}", K8S_USAGE)
        return Help("k8s")
    if verb == "nodes":
        usage = USAGE["nodes"]
        scan = _scan(rest, usage, valued=_CLUSTER, flags={}, positional=0)
        return Nodes(_label(scan.options.get("cluster"), "cluster", usage))
    if verb == "helm":
        return _parse_helm(rest)
    if verb == "standing":
        usage = USAGE["standing"]
        scan = _scan(rest, usage, valued=_CLUSTER, flags={}, positional=0)
        return Standing(_label(scan.options.get("cluster"), "cluster", usage))
    raise CommandError(f"unknown subcommand {verb!r}", K8S_USAGE)


def _parse_helm(text: str) -> Helm:
    usage = USAGE["helm"]
    scan = _scan(
        text,
        usage,
        valued={**_CLUSTER, **_NAMESPACE},
        flags={"-A": "all", "--all-namespaces": "all"},
        positional=0,
    )
    if "all" in scan.flags and "namespace" in scan.options:
        raise CommandError("give either -n NAMESPACE or -A, not both", usage)
    return Helm(
        _label(scan.options.get("cluster"), "cluster", usage),
        _label(scan.options.get("namespace"), "namespace", usage),
    )
