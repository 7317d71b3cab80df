"""Approver reminders and escalation, pure: the agenda's rule (bot.agenda), who is named
(bot.usecases.nudges.targets), the messages, and the policy keys' validation."""

from __future__ import annotations

import datetime as dt

import pytest

from bot.agenda import NextStep, StepKind, Timing, next_step
from bot.lifecycle import State
from bot.models import Grant, MessageRef
from bot.policy import parse_policy
from bot.policy_file import PolicyError
from bot.slack.blocks import approval_card
from bot.slack.blocks.nudges import nudge_message, waiting_md
from bot.usecases.nudges import Nudge, Targets, targets
from tests.support.harness import POLICY

T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)
CARD = MessageRef(channel="C0APPROVALS", ts="1.0")
ESCALATING = POLICY.replace(
    'approvers: ["U0LEAD", "@platform-leads"]',
    'approvers: ["U0LEAD", "@platform-leads"], escalate_to: ["U0BOSS", "@sre"], '
    "escalate_after: 45m",
)
POL = parse_policy(ESCALATING)
PLAIN = parse_policy(POLICY)


def pending(**more: object) -> Grant:
    doc: dict[str, object] = {
        "id": "g1", "requester": "U0ALICE", "handle": "alice", "role": "edit",
        "cluster": "a", "namespace": "team-a", "scope": "namespace", "cluster_role": "edit",
        "duration_s": 3600, "reason": "r", "approvals_required": 1, "created_at": T0,
        "pending_until": T0 + dt.timedelta(hours=24), "card": CARD,
    }  # fmt: skip
    doc.update(more)
    return Grant.model_validate(doc)


def ask(g: Grant, policy: object = POL, now: dt.datetime = T0) -> NextStep | None:
    return next_step(g, policy, now, Timing())  # type: ignore[arg-type]


# -- the agenda -------------------------------------------------------------------------
def test_approvers_are_reminded_remind_approvers_after_the_request() -> None:
    assert ask(pending()) == NextStep(StepKind.REMIND_APPROVERS, T0 + 15 * MIN)


def test_after_the_reminder_the_escalation_is_due_escalate_after_the_request() -> None:
    g = pending(approvers_reminded_at=T0 + 15 * MIN)
    assert ask(g) == NextStep(StepKind.ESCALATE, T0 + 45 * MIN)


def test_once_both_fired_the_request_waits_for_its_timeout() -> None:
    g = pending(approvers_reminded_at=T0 + 15 * MIN, escalated_at=T0 + 45 * MIN)
    assert ask(g) == NextStep(StepKind.TIMEOUT, T0 + dt.timedelta(hours=24))


def test_a_role_without_escalate_to_is_never_escalated() -> None:
    g = pending(approvers_reminded_at=T0 + 15 * MIN)
    assert ask(g, PLAIN) == NextStep(StepKind.TIMEOUT, T0 + dt.timedelta(hours=24))


def test_the_earlier_nudge_comes_first() -> None:
    early = parse_policy(ESCALATING.replace("escalate_after: 45m", "escalate_after: 5m"))
    assert ask(pending(), early) == NextStep(StepKind.ESCALATE, T0 + 5 * MIN)
    g = pending(escalated_at=T0 + 5 * MIN)
    assert ask(g, early) == NextStep(StepKind.REMIND_APPROVERS, T0 + 15 * MIN)


def test_no_nudge_before_the_card_is_posted() -> None:
    g = pending(card=None)
    assert ask(g) == NextStep(StepKind.CARD, T0 + dt.timedelta(seconds=30))


def test_no_nudge_due_after_the_timeout() -> None:
    g = pending(pending_until=T0 + 10 * MIN)
    assert ask(g) == NextStep(StepKind.TIMEOUT, T0 + 10 * MIN)


@pytest.mark.parametrize("end", [State.APPROVED, State.DENIED, State.CANCELLED, State.TIMED_OUT])
def test_no_nudge_once_the_request_is_decided(end: State) -> None:
    g = pending().moved(end, "U0LEAD", T0 + MIN)
    step = ask(g, now=T0 + dt.timedelta(hours=2))
    assert step is None or step.kind not in (StepKind.REMIND_APPROVERS, StepKind.ESCALATE)


def test_the_answer_depends_on_the_record_only() -> None:
    g = pending()
    assert ask(g, now=T0) == ask(g, now=T0 + dt.timedelta(hours=3))


# -- who is named ----------------------------------------------------------------------
GROUPS = {"platform-leads": frozenset({"U0PL1", "U0PL2"}), "sre": frozenset({"U0SRE1"})}


def test_groups_are_named_whole_when_nobody_in_them_is_left_out() -> None:
    who = targets(["U0LEAD"], GROUPS, frozenset({"U0ALICE"}))
    assert who == Targets(("U0LEAD",), ("platform-leads", "sre"))


def test_a_group_holding_the_requester_is_replaced_by_its_other_members() -> None:
    who = targets(["U0LEAD"], GROUPS, frozenset({"U0PL1"}))
    assert who == Targets(("U0LEAD", "U0PL2"), ("sre",))


def test_nobody_left_but_the_requester() -> None:
    who = targets(["U0PL1"], {"platform-leads": frozenset({"U0PL1"})}, frozenset({"U0PL1"}))
    assert who.nobody


def test_a_group_of_unknown_members_is_not_named() -> None:
    assert targets([], {"ghosts": frozenset()}, frozenset()).nobody


def test_a_user_in_a_named_group_is_not_named_twice() -> None:
    assert targets(["U0SRE1"], GROUPS, frozenset()) == Targets((), ("platform-leads", "sre"))


# -- messages --------------------------------------------------------------------------
def test_the_reminder_mentions_users_and_groups_and_names_the_requester() -> None:
    nudge = Nudge("remind", Targets(("U0LEAD",), ("platform-leads",)), 25 * MIN, T0 + 25 * MIN)
    text = nudge_message(pending(), nudge, {"platform-leads": "S0PL"}).text
    assert "<@U0LEAD>" in text
    assert "<!subteam^S0PL>" in text
    assert "@alice has been waiting 25m" in text
    assert "<@U0ALICE>" not in text


def test_with_nobody_left_the_reminder_says_so_without_pinging_the_requester() -> None:
    nudge = Nudge("remind", Targets(), 15 * MIN, T0 + 15 * MIN)
    text = nudge_message(pending(), nudge, {}).text
    assert "nobody but the requester may approve it" in text
    assert "<@U0ALICE>" not in text  # named as the one waiting, never pinged


def test_the_card_says_how_long_the_request_has_waited() -> None:
    card = approval_card(pending(), POL, now=T0 + 25 * MIN)
    assert f"Waiting since <!date^{int(T0.timestamp())}^" in str(card.blocks)
    assert "(25m)" in str(card.blocks)
    assert "(" not in waiting_md(pending(), T0 + dt.timedelta(seconds=59))
    decided = pending().moved(State.DENIED, "U0LEAD", T0 + MIN)
    assert "Waiting since" not in str(approval_card(decided, POL, now=T0 + 25 * MIN).blocks)


# -- the policy keys -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "where"),
    [
        ('escalate_to: ["bob"]', "roles.edit.escalate_to[0]"),
        ('escalate_to: ["U0BOSS"], escalate_after: 0m', "roles.edit.escalate_after"),
        ('escalate_to: ["U0BOSS"], escalate_after: -5m', "roles.edit.escalate_after"),
        ('escalate_to: ["U0BOSS"], escalate_aftr: 5m', "roles.edit.escalate_aftr"),
    ],
)
def test_role_escalation_keys_are_validated(change: str, where: str) -> None:
    text = POLICY.replace("approvals: 1,", f"approvals: 1, {change},", 1)
    with pytest.raises(PolicyError) as err:
        parse_policy(text)
    assert where in str(err.value)


@pytest.mark.parametrize("value", ["0s", "-1m", "soon"])
def test_remind_approvers_after_must_be_a_positive_duration(value: str) -> None:
    text = POLICY.replace(
        "reminder_before: 10m", f"reminder_before: 10m, remind_approvers_after: {value}"
    )
    with pytest.raises(PolicyError) as err:
        parse_policy(text)
    assert "defaults.remind_approvers_after" in str(err.value)


def test_the_defaults() -> None:
    assert PLAIN.defaults.remind_approvers_after == 15 * MIN
    role = PLAIN.roles["edit"]
    assert role.escalate_to == []
    assert role.escalate_after == dt.timedelta(hours=1)
    assert POL.roles["edit"].escalate_to == ["U0BOSS", "@sre"]
