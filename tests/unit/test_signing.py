"""Signature checks of Slack requests and the offboarding webhook never raise."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.http.signing import sign, sign_slack, verify, verify_slack

SECRET = "s3cret"
NOW = 1_700_000_000.0
BODY = b"command=%2Faccess&text=list"

header_text = st.one_of(st.none(), st.text(), st.from_regex(r"-?[0-9]{0,40}(\.[0-9]*)?"))


@settings(deadline=None)  # a loaded CI machine is no finding
@given(timestamp=header_text, signature=header_text, body=st.binary(max_size=200))
def test_any_headers_are_just_invalid(
    timestamp: str | None, signature: str | None, body: bytes
) -> None:
    for check in (verify_slack, verify):
        assert check(SECRET, timestamp, signature, body, NOW) in (True, False)


@settings(deadline=None)  # a loaded CI machine is no finding
@given(skew=st.integers(min_value=-300, max_value=300))
def test_right_signatures_within_the_window_pass(skew: int) -> None:
    ts = str(int(NOW) + skew)
    assert verify_slack(SECRET, ts, sign_slack(SECRET, ts, BODY), BODY, NOW)
    assert verify(SECRET, ts, sign(SECRET, ts, BODY), BODY, NOW)


@settings(deadline=None)  # a loaded CI machine is no finding
@given(skew=st.integers(min_value=301, max_value=10**15))
def test_stale_or_future_timestamps_fail(skew: int) -> None:
    for ts in (str(int(NOW) + skew), str(max(0, int(NOW) - skew))):
        assert not verify_slack(SECRET, ts, sign_slack(SECRET, ts, BODY), BODY, NOW)


def test_lookalike_timestamps_fail_even_when_signed() -> None:
    for ts in ["+1700000000", " 1700000000", "1_700_000_000", "1700000000.0", "\u0661" * 10]:
        assert not verify_slack(SECRET, ts, sign_slack(SECRET, ts, BODY), BODY, NOW)
        assert not verify(SECRET, ts, sign(SECRET, ts, BODY), BODY, NOW)


def test_the_other_scheme_or_another_body_fails() -> None:
    ts = str(int(NOW))
    assert not verify_slack(SECRET, ts, sign(SECRET, ts, BODY), BODY, NOW)
    assert not verify(SECRET, ts, sign_slack(SECRET, ts, BODY), BODY, NOW)
    assert not verify_slack(SECRET, ts, sign_slack(SECRET, ts, BODY), BODY + b"&x=1", NOW)
    assert not verify_slack("other", ts, sign_slack(SECRET, ts, BODY), BODY, NOW)
