"""Scheduled access: when a grant starts, read from what the requester gave (pure, no I/O).

A start is given as RFC 3339 (``2026-12-01T09:00Z``, ``2026-12-01T10:00:00+01:00``: an
offset or ``Z`` is required, a bare local date-time is ambiguous) or as ``HH:MM`` in the
requester's own time zone (their Slack profile's ``tz``, an IANA name), or as an instant
(the modal's date-time picker). :func:`parse_start` reads the text into a
:class:`StartRequest`, :func:`resolve_start` turns it into an instant against the bot's
clock, and :func:`check_start` holds it to the policy's window: not in the past (beyond
:data:`TOLERANCE`) and not more than ``defaults.max_schedule_ahead`` away.

``HH:MM`` is the next occurrence of that wall-clock time: today if it is still ahead (or
within :data:`TOLERANCE` past, which then means "now"), else tomorrow. Daylight saving:

- a time that does not exist that day (the spring-forward gap, ``02:30`` in New York on
  8 March 2026) is moved forward by the gap, as a wall clock is: ``03:30`` local;
- a time that exists twice (the autumn fold, ``01:30`` in New York on 1 November 2026) is
  its first occurrence, unless that one has passed and the second is still ahead.

Problems are :class:`bot.policy.RequestRejected` keyed by the field ``start``, so the
modal shows them beside its start field and the command as one sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.durations import format_duration
from bot.policy_requests import RequestRejected

__all__ = [
    "START_FORMS",
    "TOLERANCE",
    "StartRequest",
    "check_start",
    "next_wall_clock",
    "parse_start",
    "resolve_start",
]

TOLERANCE = timedelta(minutes=1)
"""How far in the past a start may be and still mean "now" (typing takes time)."""

START_FORMS = "RFC 3339 like 2026-12-01T09:00Z (with Z or an offset), or HH:MM"

_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)([Zz]|[+-]\d{2}:\d{2})"
)
_WALL = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")


def _rejected(message: str) -> RequestRejected:
    return RequestRejected(message, {"start": f"{message[0].upper()}{message[1:]}."})


@dataclass(frozen=True)
class StartRequest:
    """A start as given: an instant (``at``, timezone-aware), or a wall-clock time
    (``wall``) in ``tz`` (the requester's IANA zone; None: unknown, read as UTC)."""

    text: str
    at: datetime | None = None
    wall: time | None = None
    tz: str | None = None

    def in_zone(self, tz: str | None) -> StartRequest:
        """This start with the requester's zone (meaningful for a wall-clock time)."""
        return StartRequest(self.text, self.at, self.wall, tz)

    @classmethod
    def instant(cls, at: datetime) -> StartRequest:
        """An instant (the modal's picker); ``at`` must be timezone-aware."""
        if at.tzinfo is None:
            raise ValueError("a start instant must be timezone-aware")
        return cls(at.astimezone(UTC).isoformat(), at=at.astimezone(UTC))


def parse_start(text: str) -> StartRequest:
    """Read ``--at TEXT``; raises RequestRejected (field ``start``) naming the forms."""
    given = text.strip()
    if _WALL.fullmatch(given):
        hour, minute = (int(part) for part in given.split(":"))
        return StartRequest(given, wall=time(hour, minute))
    match = _RFC3339.fullmatch(given)
    if match is not None:
        day, clock, offset = match.groups()
        offset = "+00:00" if offset in ("Z", "z") else offset
        try:
            at = datetime.fromisoformat(f"{day}T{_micro(clock)}{offset}").astimezone(UTC)
        except (ValueError, OverflowError):  # Overflow: 0001-01-01T00:00+23:59 is in year 0
            raise _rejected(f"{given!r} is not a real date and time") from None
        return StartRequest(given, at=at)
    shown = given if len(given) <= 40 else f"{given[:40]}…"
    raise _rejected(f"cannot read the start time {shown!r}: give {START_FORMS}")


def _micro(clock: str) -> str:
    # fromisoformat takes at most 6 fraction digits; RFC 3339 allows more.
    head, dot, fraction = clock.partition(".")
    return f"{head}.{fraction[:6]}" if dot else head


def resolve_start(start: StartRequest, now: datetime) -> datetime:
    """The instant (UTC) ``start`` means at ``now``; raises RequestRejected for an
    unknown time zone."""
    if start.at is not None:
        return start.at
    assert start.wall is not None
    try:
        zone = ZoneInfo(start.tz) if start.tz else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise _rejected(
            f"your Slack time zone {start.tz!r} is unknown: give an RFC 3339 time"
        ) from None
    return next_wall_clock(start.wall, zone, now)


def next_wall_clock(
    wall: time, zone: ZoneInfo, now: datetime, tolerance: timedelta = TOLERANCE
) -> datetime:
    """The first instant at or after ``now - tolerance`` whose wall clock in ``zone``
    shows ``wall`` (a gap time moved forward by the gap; see the module docstring)."""
    earliest = now - tolerance
    today = now.astimezone(zone).date()
    candidates = [
        instant
        for day in (
            today - timedelta(days=1),
            today,
            today + timedelta(days=1),
            today + timedelta(days=2),
        )
        for instant in _occurrences(day, wall, zone)
        if instant >= earliest
    ]
    return min(candidates)


def _occurrences(day: date, wall: time, zone: ZoneInfo) -> list[datetime]:
    """The instants (UTC) ``day`` shows ``wall`` in ``zone``: one, two in a fold, and in
    a gap the instant a clock moved forward by the gap shows (fold=0's offset)."""
    first = datetime.combine(day, wall, tzinfo=zone).astimezone(UTC)
    second = datetime.combine(day, wall, tzinfo=zone).replace(fold=1).astimezone(UTC)
    naive = datetime.combine(day, wall)
    if first.astimezone(zone).replace(tzinfo=None) != naive:  # a gap: fold=0 moves forward
        return [first]
    return sorted({first, second})


def check_start(starts_at: datetime, now: datetime, max_ahead: timedelta) -> datetime | None:
    """The start to record: None for "now" (within :data:`TOLERANCE` of ``now``, or
    past it by less), else ``starts_at`` (UTC, whole seconds); raises RequestRejected
    for a start in the past or more than ``max_ahead`` away."""
    if starts_at < now - TOLERANCE:
        raise _rejected(f"the start time {_shown(starts_at)} has passed: give a time still to come")
    if starts_at - now > max_ahead:
        raise _rejected(
            f"the start time {_shown(starts_at)} is more than {_ahead(max_ahead)} away "
            "(the policy's max_schedule_ahead)"
        )
    if starts_at <= now + TOLERANCE:
        return None
    return starts_at.astimezone(UTC).replace(microsecond=0)


def _shown(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _ahead(span: timedelta) -> str:
    return format_duration(span)
