"""bot.start_times: --at TEXT read, resolved against a clock and held to the window."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bot.policy import RequestRejected
from bot.start_times import (
    TOLERANCE,
    StartRequest,
    check_start,
    next_wall_clock,
    parse_start,
    resolve_start,
)

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata",
         "Pacific/Chatham", "America/St_Johns"]  # fmt: skip
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01T09:00Z", datetime(2026, 12, 1, 9, 0, tzinfo=UTC)),
        ("2026-12-01t09:00:30z", datetime(2026, 12, 1, 9, 0, 30, tzinfo=UTC)),
        ("2026-12-01T10:00:00+01:00", datetime(2026, 12, 1, 9, 0, tzinfo=UTC)),
        ("2026-12-01T04:00:00.123456789-05:00", datetime(2026, 12, 1, 9, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_rfc3339_is_an_instant(text: str, expected: datetime) -> None:
    assert parse_start(text).at == expected


@pytest.mark.parametrize(
    "text",
    ["tomorrow", "2026-12-01T09:00", "2026-02-30T09:00Z", "24:00", "9", "9:60", "", "12:00 pm"],
)
def test_unreadable_start_is_refused_on_the_start_field(text: str) -> None:
    with pytest.raises(RequestRejected) as exc:
        parse_start(text)
    assert set(exc.value.problems) == {"start"}


@given(
    st.integers(0, 9999), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99),
    st.integers(0, 99), st.sampled_from(["+", "-"]), st.integers(0, 99), st.integers(0, 99),
)  # fmt: skip
@example(1, 1, 1, 0, 0, "+", 23, 59)
@example(9999, 12, 31, 23, 59, "-", 23, 59)
def test_any_rfc3339_shaped_text_is_an_instant_or_refused(
    year: int, month: int, day: int, hour: int, minute: int, sign: str, oh: int, om: int
) -> None:
    """Offsets at the ends of the calendar (0001-01-01T00:00+23:59 is in year 0 in UTC)
    are refused like any impossible date, never an OverflowError."""
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}{sign}{oh:02d}:{om:02d}"
    problems: set[str] = set()
    try:
        start = parse_start(text)
    except RequestRejected as exc:
        problems = set(exc.problems)
    else:
        assert start.at is not None
        assert start.at.tzinfo == UTC
        return
    assert problems == {"start"}


def test_wall_clock_is_today_when_still_ahead_else_tomorrow() -> None:
    berlin = ZoneInfo("Europe/Berlin")  # 12:00 UTC is 13:00 in Berlin in November
    assert next_wall_clock(time(14, 0), berlin, NOW) == datetime(2026, 11, 30, 13, 0, tzinfo=UTC)
    assert next_wall_clock(time(9, 0), berlin, NOW) == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    # Within the tolerance a just-passed minute is "now", not tomorrow.
    assert next_wall_clock(time(13, 0), berlin, NOW + timedelta(seconds=30)) == NOW


def test_resolve_uses_the_requesters_zone() -> None:
    start = parse_start("09:00").in_zone("America/New_York")
    assert resolve_start(start, NOW) == datetime(2026, 11, 30, 14, 0, tzinfo=UTC)  # 07:00 there
    assert resolve_start(parse_start("09:00"), NOW) == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    with pytest.raises(RequestRejected):
        resolve_start(parse_start("09:00").in_zone("Mars/Olympus"), NOW)


def test_dst_gap_moves_forward_and_fold_takes_the_next_occurrence() -> None:
    ny = ZoneInfo("America/New_York")
    # 8 March 2026: 02:00 EST jumps to 03:00 EDT; 02:30 is read as 03:30 EDT (07:30Z).
    before_gap = datetime(2026, 3, 8, 5, 0, tzinfo=UTC)  # 00:00 EST
    assert next_wall_clock(time(2, 30), ny, before_gap) == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    # 1 November 2026: 01:30 happens at 05:30Z (EDT) and again at 06:30Z (EST).
    before_fold = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)
    assert next_wall_clock(time(1, 30), ny, before_fold) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    between = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)  # 01:00 EST, after the first 01:30
    assert next_wall_clock(time(1, 30), ny, between) == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)


DST_DAYS = [datetime(2026, m, d, h, tzinfo=UTC) for m, d in ((3, 8), (3, 29), (4, 5), (10, 4),
            (10, 25), (11, 1)) for h in range(0, 24, 3)]  # fmt: skip


@given(
    zone=st.sampled_from(ZONES),
    hour=st.integers(0, 23),
    minute=st.integers(0, 59),
    now=st.one_of(st.sampled_from(DST_DAYS), st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC))),
)  # fmt: skip
def test_every_wall_clock_time_is_the_next_one_showing_it(
    zone: str, hour: int, minute: int, now: datetime
) -> None:
    tz, wall = ZoneInfo(zone), time(hour, minute)
    got = next_wall_clock(wall, tz, now)
    assert now - TOLERANCE <= got <= now + timedelta(hours=26)
    local = got.astimezone(tz)
    if local.time().replace(second=0, microsecond=0) != wall:
        # Only in a gap: the wall time did not exist and was moved forward by the gap.
        naive = datetime.combine(local.date(), wall)
        assert naive.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive
    # Nothing earlier (minute by minute is too slow; a day back and half an hour back
    # of the answer are not later occurrences that we skipped).
    for back in (timedelta(days=1), timedelta(hours=1)):
        earlier = got - back
        if earlier >= now - TOLERANCE:
            assert earlier.astimezone(tz).time().replace(second=0, microsecond=0) != wall


def test_window_past_now_and_too_far() -> None:
    week = timedelta(days=7)
    assert check_start(NOW + timedelta(hours=2), NOW, week) == NOW + timedelta(hours=2)
    assert check_start(NOW + timedelta(seconds=20), NOW, week) is None  # "now"
    assert check_start(NOW - timedelta(seconds=20), NOW, week) is None
    for bad, words in (
        (NOW - timedelta(minutes=5), "has passed"),
        (NOW + week + timedelta(minutes=1), "more than 7d"),
    ):
        with pytest.raises(RequestRejected, match=words) as exc:
            check_start(bad, NOW, week)
        assert set(exc.value.problems) == {"start"}


def test_instant_from_the_picker() -> None:
    at = datetime(2026, 12, 1, 10, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    assert StartRequest.instant(at).at == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_max_schedule_ahead_is_a_validated_policy_key() -> None:
    from bot.policy import PolicyError, parse_policy
    from tests.unit.test_policy import CONTRACT_POLICY

    assert parse_policy(CONTRACT_POLICY).defaults.max_schedule_ahead == timedelta(days=7)
    text = CONTRACT_POLICY.replace("defaults: {", "defaults: {max_schedule_ahead: 36h, ", 1)
    assert parse_policy(text).defaults.max_schedule_ahead == timedelta(hours=36)
    for bad in ("soon", "0s", "-1h"):
        broken = CONTRACT_POLICY.replace(
            "defaults: {", f"defaults: {{max_schedule_ahead: {bad}, ", 1
        )
        with pytest.raises(PolicyError, match=r"defaults\.max_schedule_ahead"):
            parse_policy(broken, "policy.yaml")
