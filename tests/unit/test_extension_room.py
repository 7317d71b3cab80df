"""The room left to extend a grant: one pure rule (bot.lifecycle.room_to_extend)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.lifecycle import ExtensionRejected, new_expiry, room_to_extend

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
MAX = timedelta(hours=4)


def test_the_room_is_the_role_maximum_less_the_time_left() -> None:
    assert room_to_extend(NOW + timedelta(hours=1), NOW, MAX) == timedelta(hours=3)


def test_the_room_is_whole_seconds_and_never_negative() -> None:
    assert room_to_extend(NOW + timedelta(hours=1, microseconds=1), NOW, MAX) == timedelta(
        hours=2, minutes=59, seconds=59
    )
    assert room_to_extend(NOW + timedelta(hours=5), NOW, MAX) == timedelta(0)


def test_exactly_the_room_extends_and_a_second_more_is_refused_naming_the_room() -> None:
    expiry = NOW + timedelta(hours=3, minutes=30)
    room = room_to_extend(expiry, NOW, MAX)
    assert new_expiry(expiry, room, NOW, MAX) == NOW + MAX
    with pytest.raises(ExtensionRejected, match="extend by at most 30m"):
        new_expiry(expiry, room + timedelta(seconds=1), NOW, MAX)


def test_no_room_says_so() -> None:
    with pytest.raises(ExtensionRejected, match="no extension is possible yet"):
        new_expiry(NOW + MAX, timedelta(minutes=1), NOW, MAX)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        room_to_extend(datetime(2026, 1, 1, 13, 0), NOW, MAX)
