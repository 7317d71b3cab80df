from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from bot.durations import Duration, DurationError, format_duration, parse_duration

# Up to ~30 years: far beyond any grant, well inside timedelta's range.
positive_seconds = st.integers(min_value=1, max_value=10**9)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("1d2h", timedelta(days=1, hours=2)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("0h5m", timedelta(minutes=5)),
        (" 2H ", timedelta(hours=2)),
        ("90m", timedelta(minutes=90)),
    ],
)
def test_parse_accepts(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", " ", "4x", "30", "h", "1h1h", "30m1h", "1.5h", "-1h", "1 h", "1h 30m", "2w", "0m", "0d0h"],
)
def test_parse_rejects_with_input_and_format_in_message(text: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text)
    message = str(info.value)
    assert repr(text) in message
    assert "30m, 2h, 1d, 1h30m" in message


def test_duration_error_is_a_value_error() -> None:
    assert issubclass(DurationError, ValueError)


def test_absurdly_long_duration_is_an_error_not_a_crash() -> None:
    with pytest.raises(DurationError, match="far too long"):
        parse_duration("99999999999999d")


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(minutes=45), "45m"),
        (timedelta(days=1), "1d"),
        (timedelta(hours=2), "2h"),
        (timedelta(hours=24), "1d"),
        (timedelta(days=1, seconds=1), "1d1s"),
        (timedelta(0), "0s"),
        (timedelta(seconds=59, microseconds=999_999), "59s"),
    ],
)
def test_format_is_shortest_canonical(td: timedelta, text: str) -> None:
    assert format_duration(td) == text


def test_format_rejects_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_duration(timedelta(seconds=-1))


@given(positive_seconds)
def test_parse_inverts_format(seconds: int) -> None:
    td = timedelta(seconds=seconds)
    assert parse_duration(format_duration(td)) == td


@given(positive_seconds)
def test_format_round_trips_canonical_text(seconds: int) -> None:
    canonical = format_duration(timedelta(seconds=seconds))
    assert format_duration(parse_duration(canonical)) == canonical
    assert not canonical.startswith("0")  # zero-valued units are omitted


@given(
    st.integers(0, 400),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
)
def test_any_ordered_combination_parses(d: int, h: int, m: int, s: int) -> None:
    text = "".join(f"{n}{u}" for n, u in ((d, "d"), (h, "h"), (m, "m"), (s, "s")) if n)
    total = timedelta(days=d, hours=h, minutes=m, seconds=s)
    if total:
        assert parse_duration(text) == total
        assert format_duration(total) == text
    else:
        with pytest.raises(DurationError):
            parse_duration(text or "0s")


@given(st.text(alphabet="dhms0123456789 .-xw", max_size=12))
def test_parse_only_ever_raises_duration_error(text: str) -> None:
    try:
        parsed = parse_duration(text)
    except DurationError as exc:
        error = exc
    else:
        assert parsed > timedelta(0)
        return
    assert repr(text) in str(error)


class _Model(BaseModel):
    value: Duration


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1h30m", timedelta(minutes=90)),
        (600, timedelta(minutes=10)),
        (timedelta(hours=3), timedelta(hours=3)),
    ],
)
def test_pydantic_field_accepts(raw: object, expected: timedelta) -> None:
    assert _Model.model_validate({"value": raw}).value == expected


@pytest.mark.parametrize("raw", ["4x", 0, -5, True, 1.5, None, timedelta(0), [1]])
def test_pydantic_field_rejects(raw: object) -> None:
    with pytest.raises(ValidationError, match="invalid duration"):
        _Model.model_validate({"value": raw})


def test_pydantic_field_dumps_as_human_text_in_json() -> None:
    assert _Model(value=timedelta(minutes=90)).model_dump_json() == '{"value":"1h30m"}'


# -- hostile input: always a DurationError, never another exception ------------------


@pytest.mark.parametrize(
    "text",
    [
        "9" * 4301,
        "9" * 4301 + "h",
        "1" * 5000 + "d" + "2" * 5000 + "h",
        "0" * 10_000 + "1h",
        "\u0661h",  # Arabic-Indic digit one: int() would accept it
        "\uff11h",  # full-width digit one
        "1h" + " " * 10_000 + "x",
        "\x00",
        "1_000s",
    ],
)
def test_hostile_text_is_an_invalid_duration(text: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text)
    message = str(info.value)
    assert message.startswith("invalid duration")
    assert len(message) < 200  # fits any Slack reply


@settings(deadline=None)  # a loaded CI machine is no finding
@given(st.text())
def test_any_text_parses_or_is_an_invalid_duration(text: str) -> None:
    outcome: timedelta | DurationError
    try:
        outcome = parse_duration(text)
    except DurationError as exc:
        outcome = exc
    if isinstance(outcome, DurationError):
        assert str(outcome).startswith("invalid duration")
    else:
        assert outcome > timedelta(0)


@settings(deadline=None)
@given(
    st.lists(st.sampled_from("0123456789"), min_size=16, max_size=6000).map("".join),
    st.sampled_from(["", "d", "h", "m", "s", "1d", "h1m"]),
)
def test_huge_digit_strings_are_far_too_long(digits: str, unit: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(digits + unit)


def test_huge_integer_in_policy_is_a_validation_error() -> None:
    class Model(BaseModel):
        d: Duration

    with pytest.raises(ValidationError, match="far too long"):
        Model(d=10**30)
    with pytest.raises(ValidationError, match="far too long"):
        Model(d=10**5000)
