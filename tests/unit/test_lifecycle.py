import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.lifecycle import (
    ALLOWED_TRANSITIONS,
    LIVE,
    TERMINAL,
    ExtensionRejected,
    IllegalTransition,
    State,
    Tally,
    Transition,
    can_transition,
    extension_needs_approval,
    is_terminal,
    new_expiry,
    transition,
)
from bot.policy import RoleConfig

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
S = State

EXPECTED = {
    S.PENDING: {S.APPROVED, S.DENIED, S.CANCELLED, S.TIMED_OUT, S.FAILED},
    S.APPROVED: {S.PROVISIONING, S.FAILED, S.REVOKED, S.APPLIED},
    S.PROVISIONING: {S.ACTIVE, S.FAILED, S.REVOKED},
    S.ACTIVE: {S.EXPIRED, S.REVOKED, S.FAILED},
}


def test_state_values_are_lowercase_names() -> None:
    assert [s.value for s in State] == [
        "pending",
        "approved",
        "provisioning",
        "active",
        "expired",
        "revoked",
        "denied",
        "cancelled",
        "timed_out",
        "failed",
        "applied",
    ]
    assert State("timed_out") is State.TIMED_OUT
    assert f"{State.TIMED_OUT}" == "timed_out"


def test_state_sets() -> None:
    assert {
        S.EXPIRED, S.REVOKED, S.DENIED, S.CANCELLED, S.TIMED_OUT, S.FAILED, S.APPLIED
    } == TERMINAL  # fmt: skip
    assert {S.APPROVED, S.PROVISIONING, S.ACTIVE} == LIVE
    assert set(ALLOWED_TRANSITIONS) == set(State)
    assert all(is_terminal(s) == (s in TERMINAL) for s in State)


@pytest.mark.parametrize(("current", "target"), list(itertools.product(State, State)))
def test_every_pair_is_allowed_or_raises(current: State, target: State) -> None:
    allowed = target in EXPECTED.get(current, set())
    assert can_transition(current, target) == allowed
    if allowed:
        record = transition(current, target, "U0ALICE", NOW, "why")
        assert record == Transition(current, target, "U0ALICE", NOW, "why")
    else:
        with pytest.raises(IllegalTransition, match=f"cannot go from {current} to {target}"):
            transition(current, target, "U0ALICE", NOW)


def test_illegal_transition_message_and_type() -> None:
    with pytest.raises(ValueError, match=r"^cannot go from denied to approved$") as info:
        transition(S.DENIED, S.APPROVED, "U0ALICE", NOW)
    assert isinstance(info.value, IllegalTransition)
    assert (info.value.current, info.value.target) == (S.DENIED, S.APPROVED)


@pytest.mark.parametrize("state", sorted(set(State) - TERMINAL))
def test_failed_is_reachable_from_every_non_terminal_state(state: State) -> None:
    assert can_transition(state, S.FAILED)


def test_transition_time_is_normalised_to_utc() -> None:
    local = datetime(2025, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    record = transition(S.PENDING, S.APPROVED, "U0BOB", local)
    assert record.at == NOW
    assert record.at.utcoffset() == timedelta(0)


def test_transition_rejects_naive_time_and_missing_actor() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        transition(S.PENDING, S.APPROVED, "U0BOB", datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="actor"):
        transition(S.PENDING, S.APPROVED, "", NOW)


@given(st.lists(st.sampled_from(list(State)), max_size=30))
def test_random_walks_never_leave_terminal_states(targets: list[State]) -> None:
    state = S.PENDING
    for target in targets:
        try:
            record = transition(state, target, "scheduler", NOW)
        except IllegalTransition:
            assert target not in EXPECTED.get(state, set())
            continue
        assert not is_terminal(state), f"left terminal state {state}"
        assert record.from_state == state
        state = record.to_state


@given(st.sampled_from(sorted(TERMINAL)), st.sampled_from(list(State)))
def test_terminal_states_have_no_exits(state: State, target: State) -> None:
    assert ALLOWED_TRANSITIONS[state] == frozenset()
    with pytest.raises(IllegalTransition):
        transition(state, target, "U0ADMIN", NOW)


# --- tally --------------------------------------------------------------------------


def test_tally_counts_each_approver_once() -> None:
    tally = Tally(required=2)
    assert (tally.satisfied, tally.remaining) == (False, 2)
    tally = tally.add("U0BOB").add("U0BOB")
    assert tally.approvers == ("U0BOB",)
    assert (tally.satisfied, tally.remaining) == (False, 1)
    tally = tally.add("U0CAROL")
    assert (tally.satisfied, tally.remaining) == (True, 0)
    assert "U0CAROL" in tally


def test_tally_with_zero_required_is_satisfied() -> None:
    assert Tally(0).satisfied


def test_tally_folds_duplicates_from_storage_and_rejects_negative() -> None:
    assert Tally(3, ("U1", "U2", "U1")).approvers == ("U1", "U2")
    with pytest.raises(ValueError, match="negative"):
        Tally(-1)


@given(st.integers(0, 5), st.lists(st.sampled_from(["U1", "U2", "U3", "U4"]), max_size=20))
def test_tally_is_idempotent_and_order_preserving(required: int, clicks: list[str]) -> None:
    tally = Tally(required)
    for user in clicks:
        again = tally.add(user).add(user)
        assert again == tally.add(user)
        tally = again
    distinct = list(dict.fromkeys(clicks))
    assert tally.approvers == tuple(distinct)
    assert tally.remaining == max(0, required - len(distinct))
    assert tally.satisfied == (len(distinct) >= required)


# --- extensions ---------------------------------------------------------------------


def role(approvals: int) -> RoleConfig:
    return RoleConfig.model_validate(
        {
            "cluster_role": "edit",
            "scope": "namespace",
            "max_duration": "4h",
            "approvals": approvals,
            "approvers": ["@leads"],
            "namespaces": ["team-*"],
        }
    )


def test_extension_follows_role_approval_rule() -> None:
    assert not extension_needs_approval(role(0))
    assert extension_needs_approval(role(1))
    assert extension_needs_approval(role(2))


def test_new_expiry_within_max() -> None:
    expiry = NOW + timedelta(hours=1)
    assert new_expiry(expiry, timedelta(hours=3), NOW, timedelta(hours=4)) == NOW + timedelta(
        hours=4
    )


def test_new_expiry_above_max_says_what_is_possible() -> None:
    expiry = NOW + timedelta(hours=1, minutes=30)
    with pytest.raises(ExtensionRejected) as info:
        new_expiry(expiry, timedelta(hours=3), NOW, timedelta(hours=4))
    assert str(info.value) == (
        "extending by 3h would leave 4h30m of access, above the role's 4h maximum; "
        "extend by at most 2h30m"
    )
    assert isinstance(info.value, ValueError)


def test_new_expiry_when_already_at_max() -> None:
    with pytest.raises(ExtensionRejected, match="no extension is possible yet"):
        new_expiry(NOW + timedelta(hours=4), timedelta(minutes=1), NOW, timedelta(hours=4))


@pytest.mark.parametrize(
    ("expiry", "extend_by", "message"),
    [
        (NOW + timedelta(hours=1), timedelta(0), "longer than zero"),
        (NOW, timedelta(hours=1), "already expired"),
        (NOW - timedelta(minutes=1), timedelta(hours=1), "already expired"),
    ],
)
def test_new_expiry_rejects_nonsense(expiry: datetime, extend_by: timedelta, message: str) -> None:
    with pytest.raises(ExtensionRejected, match=message):
        new_expiry(expiry, extend_by, NOW, timedelta(hours=4))


def test_new_expiry_needs_aware_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        new_expiry(datetime(2025, 1, 1, 13), timedelta(hours=1), NOW, timedelta(hours=4))


@given(
    st.integers(1, 10 * 3600),
    st.integers(1, 10 * 3600),
    st.integers(60, 10 * 3600),
)
def test_new_expiry_never_exceeds_max_from_now(left: int, extend: int, maximum: int) -> None:
    expiry = NOW + timedelta(seconds=left)
    try:
        result = new_expiry(expiry, timedelta(seconds=extend), NOW, timedelta(seconds=maximum))
    except ExtensionRejected:
        assert left + extend > maximum
    else:
        assert result == expiry + timedelta(seconds=extend)
        assert result - NOW <= timedelta(seconds=maximum)


def test_tally_without_offboarded_approvers() -> None:
    tally = Tally(2, ("U1", "U2"))
    assert tally.satisfied
    less = tally.without({"U2"})
    assert less.approvers == ("U1",)
    assert not less.satisfied
    assert less.remaining == 1
