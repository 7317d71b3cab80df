"""kubectl's short human duration ("3h5m", "2d3h"): AGE columns and "for how long"."""

from __future__ import annotations

from datetime import datetime

UNKNOWN = "<unknown>"


def human_duration(seconds: float) -> str:
    """Port of ``k8s.io/apimachinery/pkg/util/duration.HumanDuration``.

    Two to three significant figures: "90s", "5m30s", "45m", "3h5m", "20h",
    "2d3h", "30d", "2y100d", "9y". Go truncates towards zero at every step,
    which ``int()`` reproduces; up to 2 s in the future counts as now, to
    tolerate clock skew between the client and the apiserver.
    """
    secs = int(seconds)
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 60 * 2:
        return f"{secs}s"
    minutes = secs // 60
    if minutes < 10:
        return _two_units(minutes, "m", secs % 60, "s")
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return _two_units(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return _two_units(hours // 24, "d", hours % 24, "h")
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        return _two_units(hours // 24 // 365, "y", (hours // 24) % 365, "d")
    return f"{hours // 24 // 365}y"


def _two_units(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big}{big_unit}" if small == 0 else f"{big}{big_unit}{small}{small_unit}"


def age(created: datetime | None, now: datetime) -> str:
    """AGE column: time since creation, "<unknown>" without a timestamp."""
    if created is None:
        return UNKNOWN
    return human_duration((now - created).total_seconds())
