"""The agenda (bot.agenda.next_step), state by state: every state, both kinds, and the edges."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.agenda import NextStep, StepKind, Timing, next_step
from bot.lifecycle import State
from bot.models import Grant, MessageRef, Receipt
from bot.policy import parse_policy
from tests.support.harness import POLICY

POL = parse_policy(POLICY)  # reminder_before: 10m
T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)
RETENTION = dt.timedelta(days=90)  # defaults.retention's default
TIMING = Timing(card_retry=dt.timedelta(seconds=30), cleanup_grace=dt.timedelta(seconds=30))


def pending(kind: str = "access", **more: object) -> Grant:
    doc: dict[str, object] = {
        "id": "g1", "kind": kind, "requester": "U0ALICE", "handle": "alice", "role": "edit",
        "cluster": "a", "namespace": "team-a", "scope": "namespace", "cluster_role": "edit",
        "duration_s": 3600, "reason": "r", "approvals_required": 1, "created_at": T0,
        "pending_until": T0 + dt.timedelta(hours=24),
        "extends": "g0" if kind == "extend" else None,
    }  # fmt: skip
    doc.update(more)
    return Grant.model_validate(doc)


def approved(kind: str = "access", at: dt.datetime = T0 + MIN) -> Grant:
    card = MessageRef(channel="C", ts="1.0")
    return pending(kind, card=card).moved(State.APPROVED, "U0LEAD", at)


def active(expires_in: dt.timedelta = dt.timedelta(hours=1), at: dt.datetime = T0) -> Grant:
    g = approved(at=at).moved(State.PROVISIONING, "accessbot", at)
    return g.moved(State.ACTIVE, "accessbot", at).model_copy(update={"expires_at": at + expires_in})


def ask(g: Grant, now: dt.datetime = T0) -> NextStep | None:
    return next_step(g, POL, now, TIMING)


# -- pending ---------------------------------------------------------------------------
def test_pending_without_card_posts_it_after_card_retry() -> None:
    assert ask(pending()) == NextStep(StepKind.CARD, T0 + dt.timedelta(seconds=30))


def test_pending_with_card_times_out_at_pending_until() -> None:
    # Once its approvers were reminded (tests/unit/test_nudges.py: the nudges' rules).
    g = pending(card=MessageRef(channel="C", ts="1.0"), approvers_reminded_at=T0)
    assert ask(g) == NextStep(StepKind.TIMEOUT, T0 + dt.timedelta(hours=24))


def test_pending_past_its_time_times_out_even_without_card() -> None:
    g = pending()
    assert ask(g, T0 + dt.timedelta(hours=25)) == NextStep(StepKind.TIMEOUT, g.pending_until)


def test_pending_whose_time_ends_before_the_card_retry_times_out_first() -> None:
    g = pending(pending_until=T0 + dt.timedelta(seconds=10))
    assert ask(g) == NextStep(StepKind.TIMEOUT, T0 + dt.timedelta(seconds=10))


def test_pending_extension_request_has_the_same_steps() -> None:
    assert ask(pending("extend")) == NextStep(StepKind.CARD, T0 + dt.timedelta(seconds=30))


# -- approved / provisioning -------------------------------------------------------------
def test_approved_provisions_from_when_it_was_approved() -> None:
    assert ask(approved(at=T0 + MIN)) == NextStep(StepKind.PROVISION, T0 + MIN)


def test_provisioning_keeps_the_same_step_so_the_index_is_left_alone() -> None:
    g = approved(at=T0 + MIN)
    assert ask(g.moved(State.PROVISIONING, "accessbot", T0 + 2 * MIN)) == ask(g)


def test_approved_extension_request_is_applied() -> None:
    assert ask(approved("extend", T0 + MIN)) == NextStep(StepKind.EXTEND, T0 + MIN)


# -- active ----------------------------------------------------------------------------
def test_active_is_reminded_before_expiry_then_expires() -> None:
    g = active(dt.timedelta(hours=1))
    assert g.expires_at is not None
    assert ask(g) == NextStep(StepKind.REMIND, g.expires_at - 10 * MIN)
    reminded = g.model_copy(update={"reminded_for": g.expires_at})
    assert ask(reminded) == NextStep(StepKind.EXPIRE, g.expires_at)


def test_short_grant_gets_no_reminder_as_today() -> None:
    # The lead time rule: the reminder's time must still be to come when the expiry is set.
    g = active(dt.timedelta(minutes=10))
    assert ask(g) == NextStep(StepKind.EXPIRE, T0 + 10 * MIN)
    assert ask(active(dt.timedelta(minutes=5))) == NextStep(StepKind.EXPIRE, T0 + 5 * MIN)


def test_extension_owes_a_new_reminder_for_the_new_expiry() -> None:
    g = active(dt.timedelta(hours=1))
    assert g.expires_at is not None
    reminded = g.model_copy(update={"reminded_for": g.expires_at})
    later = g.expires_at + dt.timedelta(hours=1)
    ext = reminded.model_copy(update={"expires_at": later}).noted(
        "extended", "U0ALICE", T0 + 55 * MIN, "by 1h"
    )
    assert ask(ext) == NextStep(StepKind.REMIND, later - 10 * MIN)


def test_extension_close_to_the_new_end_owes_no_reminder() -> None:
    g = active(dt.timedelta(hours=1))
    assert g.expires_at is not None
    later = g.expires_at + 5 * MIN
    ext = g.model_copy(update={"expires_at": later}).noted("extended", "U0A", later - 9 * MIN, "x")
    assert ask(ext) == NextStep(StepKind.EXPIRE, later)


def test_an_approval_note_does_not_count_as_setting_the_expiry() -> None:
    g = active(dt.timedelta(hours=1)).noted("approval", "U0LEAD", T0 + 55 * MIN, "late note")
    assert ask(g) == NextStep(StepKind.REMIND, T0 + 50 * MIN)


# -- ended -----------------------------------------------------------------------------
@pytest.mark.parametrize("end", [State.EXPIRED, State.REVOKED, State.FAILED])
def test_ended_after_provisioning_is_cleaned_up_after_the_grace(end: State) -> None:
    g = active().moved(end, "accessbot", T0 + 2 * MIN)
    assert ask(g) == NextStep(StepKind.CLEANUP, T0 + 2 * MIN + dt.timedelta(seconds=30))


def test_revoked_before_provisioning_is_still_cleaned_up() -> None:
    # An approved grant may have had a provisioning attempt in flight.
    g = approved().moved(State.REVOKED, "U0ALICE", T0 + 2 * MIN)
    assert ask(g) == NextStep(StepKind.CLEANUP, T0 + 2 * MIN + dt.timedelta(seconds=30))


def test_failed_receipt_keeps_the_cleanup_verified_ends_it() -> None:
    g = active().moved(State.REVOKED, "U0ALICE", T0 + 2 * MIN)
    failed = g.model_copy(update={"receipt": Receipt(verified=False, at=T0 + 3 * MIN)})
    assert ask(failed) is not None
    assert ask(failed).kind == StepKind.CLEANUP  # type: ignore[union-attr]
    done = failed.model_copy(update={"objects_gone_at": T0 + 4 * MIN})
    assert ask(done) == NextStep(StepKind.FORGET, T0 + 2 * MIN + RETENTION)


def test_forgotten_retention_after_the_end_never_while_objects_may_remain() -> None:
    ended = active().moved(State.EXPIRED, "accessbot", T0 + 60 * MIN)
    assert ask(ended).kind == StepKind.CLEANUP  # type: ignore[union-attr]
    # A failed receipt (objects still there) keeps the cleanup, however long ago it ended.
    failed = ended.model_copy(update={"receipt": Receipt(verified=False, at=T0 + 61 * MIN)})
    assert ask(failed, T0 + 2 * RETENTION).kind == StepKind.CLEANUP  # type: ignore[union-attr]
    gone = failed.model_copy(update={"objects_gone_at": T0 + 62 * MIN})
    assert ask(gone, T0 + 2 * RETENTION) == NextStep(StepKind.FORGET, T0 + 60 * MIN + RETENTION)
    short = parse_policy(
        POLICY.replace("reminder_before: 10m", "reminder_before: 10m, retention: 2d")
    )
    assert next_step(gone, short, T0, TIMING) == NextStep(
        StepKind.FORGET, T0 + 60 * MIN + dt.timedelta(days=2)
    )


@pytest.mark.parametrize("end", [State.DENIED, State.CANCELLED, State.TIMED_OUT])
def test_ended_while_pending_is_only_forgotten(end: State) -> None:
    forget = NextStep(StepKind.FORGET, T0 + MIN + RETENTION)
    assert ask(pending().moved(end, "U0LEAD", T0 + MIN)) == forget


def test_extension_request_never_cleans_up_its_parent() -> None:
    forget = NextStep(StepKind.FORGET, T0 + 2 * MIN + RETENTION)
    g = approved("extend").moved(State.APPLIED, "accessbot", T0 + 2 * MIN)
    assert ask(g) == forget
    assert ask(approved("extend").moved(State.REVOKED, "U0A", T0 + 2 * MIN)) == forget


# -- properties over every state ----------------------------------------------------------
def _any_grant() -> st.SearchStrategy[Grant]:
    builders = [
        st.builds(pending, st.sampled_from(["access", "extend"])),
        st.builds(approved, st.sampled_from(["access", "extend"])),
        st.builds(active, st.timedeltas(dt.timedelta(seconds=1), dt.timedelta(hours=8))),
    ]
    base = st.one_of(*builders)

    def end(g: Grant, target: State) -> Grant:
        try:
            return g.moved(target, "x", T0 + 3 * MIN)
        except ValueError:
            return g

    return st.one_of(base, st.builds(end, base, st.sampled_from(list(State))))


@settings(max_examples=300, deadline=None)
@given(_any_grant(), st.timedeltas(dt.timedelta(0), dt.timedelta(days=3)))
def test_the_answer_depends_on_the_record_not_the_hour(g: Grant, later: dt.timedelta) -> None:
    # Asked again later about the same record, the step is the same (the one exception:
    # a pending request past its time stops waiting for its card).
    first, again = ask(g), ask(g, T0 + later)
    if g.state == State.PENDING and T0 + later >= g.pending_until:
        assert again == NextStep(StepKind.TIMEOUT, g.pending_until)
    else:
        assert first == again


@settings(max_examples=300, deadline=None)
@given(_any_grant())
def test_every_state_has_its_step_kind(g: Grant) -> None:
    step = ask(g)
    allowed: dict[State, set[StepKind | None]] = {
        State.PENDING: {StepKind.CARD, StepKind.TIMEOUT},
        State.APPROVED: {StepKind.EXTEND if g.kind == "extend" else StepKind.PROVISION},
        State.PROVISIONING: {StepKind.PROVISION},
        State.ACTIVE: {StepKind.REMIND, StepKind.EXPIRE},
    }
    expected = allowed.get(g.state, {StepKind.CLEANUP, StepKind.FORGET})
    if g.kind == "extend" and g.state != State.PENDING:
        expected = {StepKind.EXTEND} if g.state == State.APPROVED else {None}  # never made
        expected = {StepKind.FORGET} if g.ended else expected
    assert (step.kind if step else None) in expected
    if g.ended and g.may_have_objects:
        assert step is not None
        assert step.kind == StepKind.CLEANUP  # never forgotten while objects may exist
    if g.ended and g.kind == "extend":
        assert step is not None
        assert step.kind == StepKind.FORGET  # never made objects
