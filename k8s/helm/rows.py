"""Helm releases as ``helm ls`` rows: which Secret holds the newest revision, and its columns.

Rows match ``helm ls`` column for column (Helm 3.22 ``cmd/helm/list.go``),
UPDATED included (Go's ``time.Time.String()``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from k8s.errors import CorruptRelease
from k8s.helm.decode import CORRUPT, decode_release_fields

OWNER_SELECTOR = "owner=helm"
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
