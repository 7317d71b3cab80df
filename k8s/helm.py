"""The ``/k8s helm`` report: the latest revision of every Helm 3 release.

Helm 3 keeps one Secret per release revision (type ``helm.sh/release.v1``,
labels ``owner=helm``, ``name``, ``status``, ``version``) whose ``release``
value is base64(gzip(JSON)). ``helm ls`` decodes every revision of every
release and only then keeps the newest; we pick the newest revision from the
labels and decode that body alone, which is what makes the report fast on
clusters with long release histories.

Rows match ``helm ls`` column for column (Helm 3.22 ``cmd/helm/list.go``);
:meth:`HelmReport.rows_like_helm_ls` also filters and sorts like it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import codecs
import json
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from k8s.clients import ClusterClient
from k8s.errors import BadAnswer, CorruptRelease, InvalidNamespace, NotFound, OversizedRelease
from k8s.names import DNS1123_LABEL
from k8s.nodes import human_duration
from k8s.table import Problem, helm_table

HEADER = ("NAME", "NAMESPACE", "REVISION", "UPDATED", "STATUS", "CHART", "APP VERSION")
OWNER_SELECTOR = "owner=helm"
CORRUPT = CorruptRelease.kind
OVERSIZED = OversizedRelease.kind
GZIP_MAGIC = b"\x1f\x8b\x08"
# A release body larger than this once decompressed is reported, not read:
# Secrets hold at most 1 MiB, so only a crafted gzip inflates past it, and
# reading one must not take the bot's memory with it.
MAX_RELEASE_BYTES = 16 * 1024 * 1024
# What `helm ls` shows without state flags.
HELM_LS_STATES = frozenset({"deployed", "failed"})
# The states `helm ls -a` knows (action.ListStates.FromName); others are never listed.
KNOWN_STATES = frozenset(
    {
        "deployed",
        "uninstalled",
        "superseded",
        "failed",
        "uninstalling",
        "pending-install",
        "pending-upgrade",
        "pending-rollback",
    }
)
# States a release rests in. Anything else (failed, pending-*, uninstalling,
# or a status helm does not know) needs a person, so it is a problem.
SETTLED_STATES = frozenset({"deployed", "superseded", "uninstalled"})
PENDING_STATES = frozenset({"pending-install", "pending-upgrade", "pending-rollback"})
# helm prints this for a release stored without chart metadata (helm/helm#1347).
MISSING = "MISSING"

_SECRET_NAME = re.compile(r"^sh\.helm\.release\.v1\.(?P<name>.+)\.v(?P<version>\d+)$")


def check_namespace(namespace: str) -> str:
    """``namespace`` unchanged when it is a DNS-1123 label; raises :class:`InvalidNamespace`.

    Kubernetes namespace names are DNS labels (1-63 of ``a-z0-9-``, alphanumeric
    at both ends); anything else, an encoded ``/`` above all, would change the
    path the bot requests instead of naming a namespace.
    """
    if not DNS1123_LABEL.fullmatch(namespace):
        raise InvalidNamespace(
            f"{namespace!r} is not a namespace name: namespaces are 1-63 lowercase "
            "letters, digits and '-', starting and ending with a letter or digit"
        )
    return namespace


# -- which Secret holds each release's newest revision ----------------------------


@dataclass(frozen=True)
class ReleaseRef:
    """One release revision as its Secret's metadata describes it."""

    namespace: str
    name: str
    revision: int
    status: str
    secret: str
    # Unix seconds of the Secret's last write (helm's modifiedAt, else createdAt label).
    changed_at: int | None = None


def _unix_label(labels: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        try:
            return int(labels.get(key) or "")
        except ValueError:
            continue
    return None


def release_ref(meta: Mapping[str, Any]) -> ReleaseRef | None:
    """Read a release Secret's metadata; None when it is not recognisably Helm's.

    The labels are authoritative; the Secret's own name
    (``sh.helm.release.v1.<name>.v<revision>``) fills in for missing labels.
    """
    labels = meta.get("labels") or {}
    secret = str(meta.get("name", ""))
    by_name = _SECRET_NAME.match(secret)
    name = labels.get("name") or (by_name["name"] if by_name else "")
    version = labels.get("version") or (by_name["version"] if by_name else "")
    try:
        revision = int(version)
    except ValueError:
        return None
    if not name:
        return None
    return ReleaseRef(
        namespace=str(meta.get("namespace", "")),
        name=name,
        revision=revision,
        status=labels.get("status", ""),
        secret=secret,
        changed_at=_unix_label(labels, "modifiedAt", "createdAt"),
    )


def latest_refs(metas: Iterable[Mapping[str, Any]]) -> list[ReleaseRef]:
    """The highest revision of each (namespace, name), from Secret metadata alone."""
    return _latest(ref for meta in metas if (ref := release_ref(meta)) is not None)


def _latest(refs: Iterable[ReleaseRef]) -> list[ReleaseRef]:
    latest: dict[tuple[str, str], ReleaseRef] = {}
    for ref in refs:
        key = (ref.namespace, ref.name)
        if key not in latest or ref.revision > latest[key].revision:
            latest[key] = ref
    return list(latest.values())


# -- decoding one release body -----------------------------------------------------


def _b64(data: str | bytes) -> bytes:
    # Go's StdEncoding skips CR/LF and is otherwise strict; so are we.
    raw = data.encode() if isinstance(data, str) else data
    try:
        return base64.b64decode(raw.replace(b"\r", b"").replace(b"\n", b""), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CorruptRelease(f"bad base64: {exc}") from exc


def gunzip_bounded(body: bytes, limit: int = MAX_RELEASE_BYTES) -> bytearray:
    """Decompress like Go's ``gzip.Reader`` (members back to back), to at most ``limit`` bytes.

    Output grows 1 MiB at a time and stops one byte past ``limit``, so a gzip
    bomb costs ``limit`` bytes of memory, never what it would inflate to.
    Raises :class:`OversizedRelease` past the limit, :class:`CorruptRelease` on
    bad or truncated data (Go checks each member's CRC and length; so does zlib).
    """
    out = bytearray()
    data = body
    while True:
        member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        pending = data
        try:
            while not member.eof:
                room = min(1 << 20, limit + 1 - len(out))
                chunk = member.decompress(pending, room)
                pending = member.unconsumed_tail
                out += chunk
                if len(out) > limit:
                    raise OversizedRelease(f"more than {limit} bytes decompressed")
                if not chunk and not pending:
                    raise CorruptRelease("bad gzip: truncated")
        except zlib.error as exc:
            raise CorruptRelease(f"bad gzip: {exc}") from exc
        data = member.unused_data
        if not data:
            return out
        if not data.startswith(GZIP_MAGIC[:2]):
            raise CorruptRelease("bad gzip: data after the last member")


# -- reading the few fields a row needs, without building the rest --------------------
#
# A release JSON is mostly manifest, templates and values. ``json.loads`` would
# build all of it: a 16 MiB body of tiny arrays becomes hundreds of MiB of
# Python objects, and one emoji makes a 16 MiB string 64 MiB. So the body is
# walked as bytes with a few regular expressions; only the fields below are
# decoded, every other value is skipped over. Keys match case-insensitively
# and the last duplicate wins, as in Go's encoding/json, which is what helm
# decodes with; a wrong type for a field we read is corrupt, as it is for helm.

_WS = re.compile(rb"[ \t\n\r]*")
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_LITERAL = re.compile(rb"true|false|null")
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{]|[\]}]|[^"\[\]{}]+', re.S)
_SURROGATE = re.compile("[\ud800-\udfff]")
# Skipping stops (as corrupt) after this many tokens: real releases have far
# fewer, and a crafted one must not cost seconds of CPU either.
MAX_SKIP_TOKENS = 2_000_000
# A field we decode longer than this is not a name, version or message.
MAX_FIELD_BYTES = 256 * 1024

Spec = dict[str, "str | Spec"]
_METADATA: Spec = {"name": "str", "version": "str", "appversion": "str"}
_INFO: Spec = {"status": "str", "last_deployed": "str", "deleted": "str", "description": "str"}
_RELEASE: Spec = {
    "name": "str",
    "namespace": "str",
    "version": "int",
    "info": _INFO,
    "chart": {"metadata": _METADATA},
}
_SPEC_KEYS = {"appversion": "appVersion"}


class _Walker:
    def __init__(self, body: bytes | bytearray) -> None:
        self.body = body
        self.tokens = 0

    def ws(self, pos: int) -> int:
        match = _WS.match(self.body, pos)
        return match.end() if match else pos

    def expect(self, pos: int, char: bytes) -> int:
        pos = self.ws(pos)
        if self.body[pos : pos + 1] != char:
            raise CorruptRelease(f"bad JSON: expected {char.decode()} at {pos}")
        return pos + 1

    def string(self, pos: int) -> tuple[str, int]:
        match = _STRING.match(self.body, pos)
        if match is None:
            raise CorruptRelease(f"bad JSON: unterminated string at {pos}")
        if match.end() - pos > MAX_FIELD_BYTES:
            raise OversizedRelease("a field longer than 256 KiB")
        raw = bytes(match[0]).decode("utf-8", "go-replace")
        try:
            text = json.loads(raw)
        except ValueError as exc:
            raise CorruptRelease(f"bad JSON: {exc}") from exc
        # Go decodes an unpaired surrogate escape as U+FFFD.
        return _SURROGATE.sub("\ufffd", text), match.end()

    def skip(self, pos: int) -> int:
        """The position after the value starting at ``pos``."""
        pos = self.ws(pos)
        first = self.body[pos : pos + 1]
        if first not in (b"{", b"["):
            match = _STRING.match(self.body, pos) or _NUMBER.match(self.body, pos)
            match = match or _LITERAL.match(self.body, pos)
            if match is None:
                raise CorruptRelease(f"bad JSON: no value at {pos}")
            return match.end()
        depth = 0
        while True:
            match = _TOKEN.match(self.body, pos)
            if match is None:
                raise CorruptRelease("bad JSON: unterminated value")
            self.tokens += 1
            if self.tokens > MAX_SKIP_TOKENS:
                raise OversizedRelease("too many JSON values")
            token = match[0]
            if token in (b"{", b"["):
                depth += 1
            elif token in (b"}", b"]"):
                depth -= 1
                if depth == 0:
                    return match.end()
            pos = match.end()

    def value(self, pos: int, kind: str | Spec) -> tuple[Any, int]:
        pos = self.ws(pos)
        if self.body[pos : pos + 4] == b"null":
            return None, pos + 4
        if isinstance(kind, dict):
            return self.object(pos, kind)
        if kind == "str":
            if self.body[pos : pos + 1] != b'"':
                raise CorruptRelease("bad JSON: a string field holds another type")
            return self.string(pos)
        match = _NUMBER.match(self.body, pos)
        if match is None or match[1] or match[2] or match.end() - pos > 20:
            raise CorruptRelease("bad JSON: the version is not an integer")
        return int(match[0]), match.end()

    def object(self, pos: int, spec: Spec) -> tuple[dict[str, Any], int]:
        pos = self.expect(pos, b"{")
        found: dict[str, Any] = {}
        pos = self.ws(pos)
        if self.body[pos : pos + 1] == b"}":
            return found, pos + 1
        while True:
            pos = self.ws(pos)
            if self.body[pos : pos + 1] != b'"':
                raise CorruptRelease(f"bad JSON: expected a key at {pos}")
            key, pos = self.string(pos)
            pos = self.expect(pos, b":")
            folded = key.lower().replace("\u212a", "k").replace("\u017f", "s")
            kind = spec.get(folded)
            if kind is None:
                pos = self.skip(pos)
            else:
                found[_SPEC_KEYS.get(folded, folded)], pos = self.value(pos, kind)
            pos = self.ws(pos)
            nxt = self.body[pos : pos + 1]
            if nxt == b"}":
                return found, pos + 1
            if nxt != b",":
                raise CorruptRelease(f"bad JSON: expected , or }} at {pos}")
            pos += 1


def _go_replace(exc: UnicodeError) -> tuple[str, int]:
    # Go's UTF-8 decoding: each invalid byte becomes one U+FFFD.
    assert isinstance(exc, UnicodeDecodeError)
    return "\ufffd", exc.start + 1


codecs.register_error("go-replace", _go_replace)


# Bodies up to this size are parsed by the C ``json`` module, which is ten
# times faster than walking; the worst a crafted 1 MiB JSON costs that way
# (hundreds of thousands of tiny containers) is about 30 MB. Larger bodies,
# rare and mostly one long manifest string, are walked.
FAST_PARSE_BYTES = 1 << 20


class _Obj(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs in document order, duplicates kept."""


class _Ambiguous(Exception):
    """Two keys of one object fold to the same field: document order decides."""


def _fold(key: str) -> str:
    return key.lower().replace("\u212a", "k").replace("\u017f", "s")


def _pairs(value: dict[str, Any] | _Obj) -> list[tuple[str, Any]]:
    if isinstance(value, _Obj):
        return value
    # A dict lost the order of repeated keys; fine unless two spell one field.
    folded = {_fold(key) for key in value}
    if len(folded) != len(value):
        raise _Ambiguous
    return list(value.items())


def _pick(value: Any, kind: str | Spec) -> Any:
    """What :meth:`_Walker.value` reads, from an already parsed value (same rules)."""
    if value is None:
        return None
    if isinstance(kind, dict):
        if not isinstance(value, dict | _Obj):
            raise CorruptRelease("bad JSON: an object field holds another type")
        found: dict[str, Any] = {}
        for key, item in _pairs(value):
            folded = _fold(key)
            sub = kind.get(folded)
            if sub is not None:
                found[_SPEC_KEYS.get(folded, folded)] = _pick(item, sub)
        return found
    if kind == "str":
        if not isinstance(value, str):
            raise CorruptRelease("bad JSON: a string field holds another type")
        if len(value) > MAX_FIELD_BYTES // 4 and len(value.encode("utf-8", "surrogatepass")) > (
            MAX_FIELD_BYTES
        ):
            raise OversizedRelease("a field longer than 256 KiB")
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
        raise CorruptRelease("bad JSON: the version is not an integer")
    return value


def _parsed(text: str, keep_pairs: bool) -> Any:
    try:
        return json.loads(
            text,
            object_pairs_hook=_Obj if keep_pairs else None,
            parse_constant=_no_constant,
        )
    except (ValueError, RecursionError) as exc:
        raise CorruptRelease(f"bad JSON: {exc}") from exc


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Go refuses them.
    raise ValueError(f"{name} is not JSON")


def release_fields(body: bytes | bytearray) -> dict[str, Any]:
    """name, namespace, version, info and chart.metadata of a release JSON, nothing else."""
    if len(body) <= FAST_PARSE_BYTES:
        text = bytes(body).decode("utf-8", "go-replace")
        parsed = _parsed(text, keep_pairs=False)
        if not isinstance(parsed, dict):
            raise CorruptRelease("release JSON is not an object")
        try:
            release: dict[str, Any] = _pick(parsed, _RELEASE)
        except _Ambiguous:
            # Rare: parse again keeping every key in document order, as Go reads it.
            release = _pick(_parsed(text, keep_pairs=True), _RELEASE)
        return release
    walker = _Walker(body)
    pos = walker.ws(0)
    if body[pos : pos + 1] != b"{":
        raise CorruptRelease("release JSON is not an object")
    release, pos = walker.object(pos, _RELEASE)
    if walker.ws(pos) != len(body):
        raise CorruptRelease("bad JSON: data after the release")
    return release


def _release_bytes(secret_data: str) -> bytes | bytearray:
    body = _b64(_b64(secret_data))
    if len(body) > len(GZIP_MAGIC) and body.startswith(GZIP_MAGIC):
        return gunzip_bounded(body)
    return body


def decode_release_fields(secret_data: str) -> dict[str, Any]:
    """The fields of a release a row needs, from a Secret's ``data.release`` as the API returns it.

    The API base64-encodes Secret data, and Helm stored base64(gzip(JSON)), so:
    base64, base64 again, gunzip (bounded) when the gzip magic is there (Helm <
    3.0.0-beta stored plain JSON), then read the fields (:func:`release_fields`).
    Raises :class:`OversizedRelease` or :class:`CorruptRelease`.
    """
    return release_fields(_release_bytes(secret_data))


def decode_release(secret_data: str) -> dict[str, Any]:
    """The whole release JSON (bounded gunzip, then ``json.loads``): for tools and tests.

    The report never builds whole bodies (see :func:`decode_release_fields`).
    """
    try:
        release = json.loads(_release_bytes(secret_data))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptRelease(f"bad JSON: {exc}") from exc
    if not isinstance(release, dict):
        raise CorruptRelease("release JSON is not an object")
    return release


# -- Go's time.Time.String() ---------------------------------------------------------

_RFC3339 = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})T(?P<clock>\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d+))?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})$"
)
_GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)


def _local_zone_at(instant: datetime) -> tuple[int, str]:
    """(UTC offset in seconds, abbreviation) of the local zone at an instant."""
    try:
        local = time.localtime(instant.timestamp())
    except (OverflowError, OSError, ValueError):
        return 0, ""
    return local.tm_gmtoff, local.tm_zone


def go_time_string(value: str | None) -> str:
    """UPDATED as ``helm ls`` prints it: Go's ``time.Time.String()`` of the stored time.

    Go parses ``Z`` as UTC; any other offset becomes the local zone when the
    local zone has that offset at that instant, else a nameless fixed zone
    that Go prints as the offset again ("+0530 +0530"). The wall clock is
    printed as stored. Nanoseconds lose trailing zeros; Helm prints "-" for a
    missing (zero) time. A value Go could not parse is shown as stored.
    """
    if not value:
        return "-"
    match = _RFC3339.match(value)
    if match is None:
        return value
    frac = (match["frac"] or "")[:9].rstrip("0")
    wall = f"{match['date']} {match['clock']}" + (f".{frac}" if frac else "")
    zone = match["zone"]
    if zone == "Z":
        offset, name = 0, "UTC"
    else:
        sign = -1 if zone[0] == "-" else 1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
        name = ""
    try:
        utc_wall = datetime.fromisoformat(f"{match['date']}T{match['clock']}+00:00")
        instant = utc_wall - timedelta(seconds=offset)
    except (ValueError, OverflowError):
        return value
    if instant == _GO_ZERO_TIME and not frac:
        return "-"
    if zone != "Z":
        local_offset, local_name = _local_zone_at(instant)
        name = local_name if local_offset == offset else ""
    numeric = f"{'-' if offset < 0 else '+'}{abs(offset) // 3600:02d}{abs(offset) // 60 % 60:02d}"
    return f"{wall} {numeric} {name or numeric}"


# -- one row -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseRow:
    """One release at its newest revision, in ``helm ls`` columns."""

    name: str
    namespace: str
    revision: int
    updated: str
    status: str
    chart: str
    app_version: str
    error: str | None = None
    description: str = ""
    # When the newest revision entered its status (None when nothing says).
    since: datetime | None = None
    secret: str = ""

    def as_tuple(self) -> tuple[str, ...]:
        return (
            self.name,
            self.namespace,
            str(self.revision),
            self.updated,
            self.status,
            self.chart,
            self.app_version,
        )

    @property
    def in_trouble(self) -> bool:
        """Unreadable, or in any state but a settled one: what the chat report lists first."""
        return self.error is not None or self.status not in SETTLED_STATES


def _chart_columns(release: Mapping[str, Any]) -> tuple[str, str]:
    """CHART (name-version) and APP VERSION, "MISSING" without chart metadata like helm."""
    chart = release.get("chart")
    meta = chart.get("metadata") if isinstance(chart, dict) else None
    if not isinstance(meta, dict):
        return MISSING, MISSING
    return f"{meta.get('name') or ''}-{meta.get('version') or ''}", meta.get("appVersion") or ""


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def _since(ref: ReleaseRef, status: str, info: Mapping[str, Any]) -> datetime | None:
    """When the revision got its status: helm's modifiedAt/createdAt label, else the body."""
    if ref.changed_at is not None:
        try:
            return datetime.fromtimestamp(ref.changed_at, UTC)
        except (OverflowError, OSError, ValueError):
            pass
    # uninstall stamps info.deleted when it starts; the others last_deployed.
    stamp = info.get("deleted") if status == "uninstalling" else info.get("last_deployed")
    return _parse_time(stamp if isinstance(stamp, str) else None)


def release_row(ref: ReleaseRef, release: Mapping[str, Any]) -> ReleaseRow:
    """A row from a decoded release body; the body wins over labels, as in helm."""
    info = release.get("info")
    info = info if isinstance(info, dict) else {}
    chart, app_version = _chart_columns(release)
    version = release.get("version")
    status = str(info.get("status") or ref.status)
    return ReleaseRow(
        name=str(release.get("name") or ref.name),
        namespace=str(release.get("namespace") or ref.namespace),
        revision=version if isinstance(version, int) else ref.revision,
        updated=go_time_string(info.get("last_deployed")),
        status=status,
        chart=chart,
        app_version=str(app_version),
        description=str(info.get("description") or ""),
        since=_since(ref, status, info),
        secret=ref.secret,
    )


def corrupt_row(ref: ReleaseRef, error: str = CORRUPT) -> ReleaseRow:
    """What we can still say about a release whose newest body cannot be read."""
    return ReleaseRow(
        name=ref.name,
        namespace=ref.namespace,
        revision=ref.revision,
        updated="-",
        status=ref.status or "unknown",
        chart=MISSING,
        app_version=MISSING,
        error=error,
        since=_since(ref, "", {}),
        secret=ref.secret,
    )


def row_from_secret(ref: ReleaseRef, secret: Mapping[str, Any]) -> ReleaseRow:
    """Decode one Secret (as JSON from the API) into a row; never raises on bad data."""
    data = secret.get("data") or {}
    try:
        return release_row(ref, decode_release_fields(data.get("release") or ""))
    except CorruptRelease as exc:
        return corrupt_row(ref, exc.kind)


# -- the report ------------------------------------------------------------------------


def chat_order(row: ReleaseRow) -> tuple[int, str, str]:
    """Releases in trouble first, then by namespace and name."""
    return (0 if row.in_trouble else 1, row.namespace, row.name)


def way_out(row: ReleaseRow) -> str:
    """The usual way out of a release's state, as the helm (or kubectl) command to run.

    From Helm's own behaviour: an interrupted install leaves ``pending-install``
    (uninstall, then install again); an interrupted upgrade or rollback leaves
    ``pending-*`` and a failed one ``failed`` (``helm rollback`` to the previous
    revision); an interrupted uninstall leaves ``uninstalling`` (running the
    uninstall again finishes it).
    """
    ref = f"{row.name} -n {row.namespace}"
    if row.error is not None:
        return f"inspect the Secret: kubectl get secret {row.secret or '?'} -n {row.namespace}"
    if row.status == "uninstalling":
        return f"finish the uninstall: helm uninstall {ref}"
    if row.status == "pending-install":
        return f"helm uninstall {ref}, then install again"
    if row.status in PENDING_STATES or row.status == "failed":
        return f"helm rollback {ref} (previous revision), or fix and helm upgrade"
    return f"see helm history {ref}"


def problem_subject(row: ReleaseRow) -> str:
    return f"{row.namespace}/{row.name}"


def problem_detail(row: ReleaseRow, now: datetime) -> str:
    """What is wrong with a release, without its name: status, for how long, way out."""
    since = ""
    if row.since is not None:
        since = f" for {human_duration((now - row.since).total_seconds())}"
    if row.error is not None:
        what = f"{row.error} (revision {row.revision}, status {row.status}{since})"
    else:
        detail = f": {row.description}" if row.description else ""
        what = f"{row.status}{since} (revision {row.revision}){detail}"
    return f"{what}; way out: {way_out(row)}"


def problem_text(row: ReleaseRow, now: datetime | None = None) -> str:
    """One problem line, cluster-quoted text made inert (see :func:`k8s.table.safe_line`)."""
    return Problem(problem_subject(row), problem_detail(row, now or datetime.now(UTC))).line


@dataclass(frozen=True)
class HelmReport:
    """Every release at its newest revision, in chat order, with what is wrong."""

    rows: tuple[ReleaseRow, ...]
    namespace: str | None = None
    # The moment "for how long" is measured to.
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[ReleaseRow],
        namespace: str | None = None,
        now: datetime | None = None,
    ) -> HelmReport:
        return cls(
            rows=tuple(sorted(rows, key=chat_order)),
            namespace=namespace,
            now=now or datetime.now(UTC),
        )

    @property
    def problems(self) -> tuple[str, ...]:
        """One line per release in trouble: ``ns/name: status for 3h (revision N)...``."""
        return tuple(p.line for p in self.problem_list)

    @property
    def problem_list(self) -> tuple[Problem, ...]:
        """The same problems, subject and detail apart, for grouping."""
        return tuple(
            Problem(problem_subject(row), problem_detail(row, self.now))
            for row in self.rows
            if row.in_trouble
        )

    def render_table(self) -> str:
        """All releases, troubled ones first, laid out like ``helm ls``."""
        return helm_table(HEADER, (row.as_tuple() for row in self.rows))

    def rows_like_helm_ls(self, *, all_states: bool = False) -> list[ReleaseRow]:
        """The rows ``helm ls`` (``-a`` with ``all_states``) would print, in its order.

        Deployed and failed only (``-a``: every state helm knows); sorted by
        name. Helm silently skips bodies it cannot decode, so corrupt rows are
        left out (helm would show an older readable revision instead, which we
        deliberately never decode). Helm's
        order among equal names from different namespaces is map order, i.e.
        random; we break the tie by namespace. No ``--max`` cut: compare with
        ``helm ls --max 0`` beyond 256 releases.
        """
        states = KNOWN_STATES if all_states else HELM_LS_STATES
        shown = [r for r in self.rows if r.error is None and r.status in states]
        return sorted(shown, key=lambda r: (r.name, r.namespace))

    def render_helm_ls(self, *, all_states: bool = False) -> str:
        """Exactly the text of ``helm ls`` (``-A`` or ``-n NS``; ``-a``) for these releases."""
        rows = self.rows_like_helm_ls(all_states=all_states)
        return helm_table(HEADER, (row.as_tuple() for row in rows))


# -- fetching ----------------------------------------------------------------------------
#
# How the newest bodies are fetched was measured on the test apiserver with
# 1,000 releases x 10 revisions (10,000 Secrets), median of 3-5 runs, page
# size 500; "tiny" bodies are a one-ConfigMap chart (~1.5 KB per Secret),
# "15 KB" ones carry a larger manifest, closer to real charts:
#
#   strategy                                           tiny      15 KB
#   A  list whole Secrets, decode newest only          0.63 s    1.73 s
#   B  list metadata only, GET each newest Secret      1.72 s    2.72 s
#   C  list metadata only, then whole Secrets with     0.49 s    0.91 s
#      label status!=superseded, GET any newest missing
#   helm ls -A (decodes every revision)                0.62 s    5.06 s
#
# B pays one round trip per release. A moves every revision's body over the
# wire. C wins: Helm relabels a revision "superseded" once a newer one is
# deployed, so the second list carries about one body per release whatever
# the history length, while the metadata list (no Secret data at all) says
# which revision really is the newest.

# Ask the apiserver for metadata only: no Secret data crosses the wire.
METADATA_ONLY = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}
LIVE_SELECTOR = f"{OWNER_SELECTOR},status!=superseded"
# GETs of newest revisions the live list lacked (rare: hand-edited labels, or
# a revision superseded between our two lists); few at once, to leave the
# shared client pool to other work.
GET_CONCURRENCY = 8


def _read_json(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Call a client method and parse its body ourselves (runs in the client's pool).

    The client's model deserialisation costs far more than the HTTP transfer
    on thousands of Secrets, and we need only a few fields of each.
    """
    resp = fn(*args, _preload_content=False, **kwargs)
    try:
        parsed: dict[str, Any] = json.loads(resp.data)
        return parsed
    finally:
        resp.release_conn()


class _ListStream:
    """A list response read item by item off the socket: one item in memory at a time.

    A page of 500 whole Secrets can be 500 MiB when someone plants big ones
    (or 128 MiB of metadata with 256 KiB annotations each); parsing the page
    whole would hold all of it. The body is the apiserver's JSON list, an
    object whose ``items`` array is handed out one element at a time.
    """

    READ = 64 * 1024

    def __init__(self, resp: Any) -> None:
        self.resp = resp
        self.text = ""
        self.pos = 0
        self.eof = False
        self.utf8 = codecs.getincrementaldecoder("utf-8")("go-replace")
        self.json = json.JSONDecoder()

    def _more(self, at_least: int) -> None:
        if self.eof:
            raise ValueError("list response ended early")
        if self.pos > (1 << 20) or self.pos > len(self.text) // 2:
            self.text, self.pos = self.text[self.pos :], 0
        data = self.resp.read(max(self.READ, at_least))
        if not data:
            self.eof = True
        self.text += self.utf8.decode(data, final=not data)

    def peek(self) -> str:
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.text):
                return self.text[self.pos]
            self._more(0)

    def expect(self, chars: str) -> str:
        char = self.peek()
        if char not in chars:
            raise ValueError(f"expected one of {chars!r} in the list response")
        self.pos += 1
        return char

    def value(self) -> Any:
        """The next JSON value, reading on until it is complete (reads grow, so linear)."""
        self.peek()
        while True:
            try:
                value, end = self.json.raw_decode(self.text, self.pos)
            except ValueError:
                if self.eof:
                    raise
                self._more(len(self.text) - self.pos)
                continue
            # A number at the end of what arrived so far may go on: read on.
            if end == len(self.text) and not self.eof and isinstance(value, int | float):
                self._more(0)
                continue
            self.pos = end
            return value

    def each_item(self, handle: Callable[[dict[str, Any]], None]) -> str | None:
        """Give every item to ``handle``; returns ``metadata.continue``, if any."""
        token: str | None = None
        self.expect("{")
        if self.peek() == "}":
            return None
        while True:
            key = self.value()
            self.expect(":")
            if key == "items" and self.peek() == "[":
                self.expect("[")
                if self.peek() == "]":
                    self.pos += 1
                else:
                    while True:
                        item = self.value()
                        if isinstance(item, dict):
                            handle(item)
                        del item
                        if self.expect(",]") == "]":
                            break
            else:
                value = self.value()
                if key == "metadata" and isinstance(value, dict):
                    token = value.get("continue") or None
            if self.expect(",}") == "}":
                return token


def _stream_list(
    fn: Callable[..., Any], *args: Any, handle: Callable[[dict[str, Any]], None], **kwargs: Any
) -> str | None:
    """Call a list method (in the client's pool), handing each item to ``handle``.

    Returns the continue token. The client's model deserialisation costs far
    more than the transfer on thousands of Secrets, and would hold them all.
    """
    resp = fn(*args, _preload_content=False, **kwargs)
    try:
        return _ListStream(resp).each_item(handle)
    except ValueError as exc:
        raise BadAnswer(f"malformed list response from the API server: {exc}") from exc
    finally:
        resp.release_conn()


async def _each_secret(
    client: ClusterClient,
    namespace: str | None,
    handle: Callable[[dict[str, Any]], None],
    *,
    page_size: int,
    label_selector: str,
    headers: dict[str, str] | None = None,
) -> None:
    """Hand each of Helm's release Secrets to ``handle`` (in the pool), page after page."""
    if namespace:
        fn: Callable[..., Any] = client.core.list_namespaced_secret
        args: tuple[str, ...] = (namespace,)
    else:
        fn, args = client.core.list_secret_for_all_namespaces, ()
    token: str | None = None
    while True:
        token = await client.call(
            _stream_list,
            fn,
            *args,
            handle=handle,
            label_selector=label_selector,
            limit=page_size,
            _continue=token,
            _headers=headers,
        )
        if not token:
            return


async def newest_revisions(
    client: ClusterClient, namespace: str | None, *, page_size: int = 500
) -> list[ReleaseRef]:
    """The newest revision of every release, from Secret metadata alone."""
    refs: list[ReleaseRef] = []

    def keep(item: dict[str, Any]) -> None:
        # Only the ref is kept: metadata can be large (labels, annotations).
        ref = release_ref(item.get("metadata") or {})
        if ref is not None:
            refs.append(ref)

    await _each_secret(
        client,
        namespace,
        keep,
        page_size=page_size,
        label_selector=OWNER_SELECTOR,
        headers=METADATA_ONLY,
    )
    return _latest(refs)


# One body decoded at a time, whichever coroutine asked: each may hold up to
# MAX_RELEASE_BYTES while it is read, and the pool has many threads.
_DECODE_ONE_AT_A_TIME = threading.Lock()


def _decode(pairs: list[tuple[ReleaseRef, dict[str, Any]]]) -> list[ReleaseRow]:
    rows = []
    for ref, secret in pairs:
        with _DECODE_ONE_AT_A_TIME:
            rows.append(row_from_secret(ref, secret))
    return rows


async def _decoded(
    client: ClusterClient, pairs: list[tuple[ReleaseRef, dict[str, Any]]]
) -> list[ReleaseRow]:
    """Decode bodies off the event loop: gunzip and parsing are CPU work."""
    if not pairs:
        return []
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(client.pool, _decode, pairs)


async def _live_rows(
    client: ClusterClient,
    namespace: str | None,
    wanted: dict[tuple[str, str], ReleaseRef],
    *,
    page_size: int,
) -> list[ReleaseRow]:
    """Rows of the wanted newest revisions among the Secrets not superseded.

    Each Secret is decoded as it comes off the wire and then dropped, so one
    Secret (and one decoded body) is held at a time. Takes the found ones out
    of ``wanted``.
    """
    rows: list[ReleaseRow] = []

    def decode(item: dict[str, Any]) -> None:
        meta = item.get("metadata") or {}
        ref = wanted.pop((str(meta.get("namespace", "")), str(meta.get("name", ""))), None)
        if ref is not None:
            with _DECODE_ONE_AT_A_TIME:
                rows.append(row_from_secret(ref, item))

    await _each_secret(client, namespace, decode, page_size=page_size, label_selector=LIVE_SELECTOR)
    return rows


async def _fetched_rows(client: ClusterClient, refs: Iterable[ReleaseRef]) -> list[ReleaseRow]:
    """GET the given Secrets (a few at a time) and decode each; deleted ones are dropped."""
    gate = asyncio.Semaphore(GET_CONCURRENCY)

    async def one(ref: ReleaseRef) -> list[ReleaseRow]:
        async with gate:
            try:
                secret = await client.call(
                    _read_json, client.core.read_namespaced_secret, ref.secret, ref.namespace
                )
            except NotFound:
                # Uninstalled between our list and this read: nothing to report.
                return []
            return await _decoded(client, [(ref, secret)])

    got = await asyncio.gather(*(one(ref) for ref in refs))
    return [row for rows in got for row in rows]


async def helm_report(
    client: ClusterClient,
    namespace: str | None = None,
    *,
    page_size: int = 500,
    now: datetime | None = None,
) -> HelmReport:
    """Every release of one namespace (all when None) at its newest revision.

    Strategy C above: metadata list, live list, GETs for whatever is missing.
    A revision written between the lists is simply not seen yet: the result
    is the metadata list's snapshot, as fresh as one ``helm ls`` would be.
    ``now`` fixes "for how long" in tests. Raises :class:`InvalidNamespace`
    for a namespace that is not a DNS label, :class:`ClusterError` otherwise.
    """
    if namespace is not None:
        check_namespace(namespace)
    refs = await newest_revisions(client, namespace, page_size=page_size)
    wanted = {(ref.namespace, ref.secret): ref for ref in refs}
    rows = await _live_rows(client, namespace, wanted, page_size=page_size)
    rows += await _fetched_rows(client, list(wanted.values()))
    return HelmReport.from_rows(rows, namespace=namespace, now=now)
