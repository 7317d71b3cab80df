"""Human durations such as ``30m``, ``2h``, ``1d`` and ``1h30m``.

One grammar is shared by Slack commands, the request modal and the policy file so
that whatever a user sees printed (``format_duration``) they can type back in.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

from bot.errors import Rejected

__all__ = ["Duration", "DurationError", "format_duration", "parse_duration"]

ACCEPTED_FORMAT = "use e.g. 30m, 2h, 1d, 1h30m"

# Units must appear at most once and largest first, so "1h30m" is accepted while
# the ambiguous-looking "30m1h" and "1h1h" are not. ASCII digits only: ``\d`` and
# ``int()`` would also take Arabic-Indic or full-width digits.
_PATTERN = re.compile(
    r"(?:(?P<d>[0-9]+)d)?(?:(?P<h>[0-9]+)h)?(?:(?P<m>[0-9]+)m)?(?:(?P<s>[0-9]+)s)?"
)
_UNIT_SECONDS = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
# timedelta tops out near 8.6e13 s (999,999,999 days): a number with more digits can
# only be "far too long". Checking the length first also keeps int() away from
# Python's 4,300-digit conversion limit, whose ValueError is not a DurationError.
_MAX_DIGITS = 15
# Error messages echo what was typed; a pasted novel is cut short so the reply
# still fits a Slack message.
_ECHO_LIMIT = 40


class DurationError(Rejected):
    """A duration the user typed (or wrote in the policy) cannot be understood."""


def _invalid(text: object, why: str = "") -> DurationError:
    detail = f"{why}; {ACCEPTED_FORMAT}" if why else ACCEPTED_FORMAT
    try:
        shown = repr(text)
    except ValueError:  # an int past Python's digit limit cannot even be printed
        shown = "a number of over 4,300 digits"
    if len(shown) > _ECHO_LIMIT:
        shown = shown[: _ECHO_LIMIT - 1] + "…"
    return DurationError(f"invalid duration {shown} ({detail})")


def parse_duration(text: str) -> timedelta:
    """Parse ``1d2h30m15s``-style text; units are optional but ordered d, h, m, s.

    Surrounding whitespace and upper case are tolerated because people type these
    into Slack by hand; anything else is an error rather than a guess.

    Raises :class:`DurationError` (and nothing else) for any text that is not a
    positive duration timedelta can hold; its message quotes at most the first
    ~40 characters of the input.
    """
    match = _PATTERN.fullmatch(text.strip().lower())
    if match is None or not any(match.groupdict().values()):
        raise _invalid(text)
    if any(len(digits) > _MAX_DIGITS for digits in match.groupdict().values() if digits):
        raise _invalid(text, "far too long")
    seconds = sum(int(match[unit] or 0) * size for unit, size in _UNIT_SECONDS)
    return _positive(seconds, text)


def _positive(seconds: int, shown: object) -> timedelta:
    """``seconds`` as a timedelta; raises ``DurationError`` (quoting ``shown``) unless it
    is a positive duration timedelta can hold."""
    if seconds <= 0:
        raise _invalid(shown, "must be longer than zero")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise _invalid(shown, "far too long") from None


def format_duration(td: timedelta) -> str:
    """Shortest canonical spelling, e.g. ``1h30m``, ``1d``; zero units are omitted.

    Sub-second parts are dropped (rounded down): grants are second-granular and a
    fraction would not survive a round trip through ``parse_duration``.
    """
    if td < timedelta(0):
        raise ValueError(f"cannot format a negative duration ({td})")
    remaining = int(td.total_seconds())
    if remaining == 0:
        return "0s"
    parts: list[str] = []
    for unit, size in _UNIT_SECONDS:
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _coerce_duration(value: object) -> timedelta:
    """Accept duration text, whole seconds, or an existing positive timedelta."""
    if isinstance(value, str):
        return parse_duration(value)
    # bool is an int subclass; ``true`` in YAML is never meant as one second.
    if isinstance(value, int) and not isinstance(value, bool):
        return _positive(value, value)
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise _invalid(str(value), "must be longer than zero")
        return value
    raise _invalid(value, "expected text like 2h or a whole number of seconds")


Duration = Annotated[
    timedelta,
    BeforeValidator(_coerce_duration),
    # JSON dumps use the same spelling people write, not ISO 8601 "PT2H".
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
"""Positive duration field for pydantic models: ``"1h30m"``, ``5400`` or a timedelta."""
