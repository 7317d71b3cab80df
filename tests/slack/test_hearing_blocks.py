"""What requesters and approvers read at each change (issue 15.7), checked on the pure
builders: names of actors, the next step after a failure, App Home within Slack's limits."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from bot.lifecycle import State
from bot.models import Grant, Step
from bot.slack import SlackNotifier, make_slack_client
from bot.slack.blocks import HomeData, approval_card, home_view, requester_update
from bot.slack.blocks.outcomes import actor_md, people_md
from bot.slack.text import VIEW_BLOCK_LIMIT
from tests.slack.support import BOT_TOKEN, populate
from tests.slack.test_blocks import NOW, POL, assert_valid, grant
from tests.support.slack_emulator import SlackEmulator, view_errors


def _moved(state: State, actor: str, reason: str = "", **over: Any) -> Grant:
    step = Step(from_state=State.PENDING, to_state=state, actor=actor, at=NOW, reason=reason)
    return grant(state, version=3, history=(step,), **over)


@pytest.mark.parametrize(
    ("actor", "shown"),
    [
        ("U0LEAD", "<@U0LEAD>"),
        ("accessbot", "AccessBot"),
        ("slack", "Slack (the account was deactivated)"),
        ("hr-webhook", "the HR offboarding webhook"),
        ("reconciler", "AccessBot's reconciler"),
        ("cli:root", "an operator (`root`) on the command line"),
        ("<!channel>", "&lt;!channel&gt;"),
    ],
)
def test_actors_read_as_people_or_words(actor: str, shown: str) -> None:
    assert actor_md(actor) == shown


def test_people_lists() -> None:
    assert people_md(["U0A"]) == "<@U0A>"
    assert people_md(["U0A", "U0B"]) == "<@U0A> and <@U0B>"
    assert people_md(["U0A", "U0B", "U0C"]) == "<@U0A>, <@U0B> and <@U0C>"


def test_approved_names_every_approver() -> None:
    after = _moved(State.APPROVED, "U0BOSS", approvals=("U0LEAD", "U0BOSS"))
    message = requester_update(grant(), after, POL, NOW)
    assert message is not None
    assert "approved by <@U0LEAD> and <@U0BOSS>" in message.text


def test_an_approval_that_does_not_complete_the_tally_is_told() -> None:
    before = grant(approvals_required=2)
    counted = before.model_copy(update={"approvals": ("U0LEAD",), "version": 1}).noted(
        "approval", "U0LEAD", NOW, "approval 1 of 2"
    )
    message = requester_update(before, counted, POL, NOW)
    assert message is not None
    assert_valid(message)
    assert "<@U0LEAD> approved your request" in message.text
    assert "1 of 2" in message.text
    assert "waiting for 1 more" in message.text


def test_cancelled_by_oneself_or_by_someone_else() -> None:
    mine = requester_update(grant(), _moved(State.CANCELLED, "U0ALICE"), POL, NOW)
    assert mine is not None
    assert mine.text.startswith("You cancelled your request `abcdefgh23`")
    offboarded = _moved(State.CANCELLED, "slack", "Slack account deactivated")
    theirs = requester_update(grant(), offboarded, POL, NOW)
    assert theirs is not None
    assert "cancelled by Slack (the account was deactivated)" in theirs.text
    assert "Slack account deactivated" in json.dumps(theirs.blocks)


def test_failure_says_what_to_do() -> None:
    failed = _moved(State.FAILED, "accessbot", failure="cluster a: API answered 403 Forbidden")
    message = requester_update(grant(State.PROVISIONING), failed, POL, NOW)
    assert message is not None
    assert_valid(message)
    shown = json.dumps(message.blocks)
    assert "API answered 403 Forbidden" in shown
    assert "ask <@U0ADMIN>" in shown
    assert "quote `abcdefgh23`" in shown
    extension = _moved(State.FAILED, "accessbot", failure="no", kind="extend", extends="g1")
    told = requester_update(grant(State.APPROVED), extension, POL, NOW)
    assert told is not None
    assert "Your grant `g1` is unchanged" in json.dumps(told.blocks)


def test_timed_out_says_how_to_ask_again() -> None:
    timed_out = _moved(State.TIMED_OUT, "accessbot", "nobody decided in time")
    message = requester_update(grant(), timed_out, POL, NOW)
    assert message is not None
    shown = json.dumps(message.blocks)
    assert "Ask again with `/access`" in shown
    assert "Why" not in shown  # the sentence says it already
    ext = _moved(State.TIMED_OUT, "accessbot", kind="extend", extends="g1")
    told = requester_update(grant(), ext, POL, NOW)
    assert told is not None
    assert "`/access extend g1 -d DURATION`" in json.dumps(told.blocks)


def test_extended_by_someone_else_says_who() -> None:
    before = grant(State.ACTIVE, version=5)
    after = before.model_copy(update={"version": 6, "expires_at": NOW + timedelta(hours=3)}).noted(
        "extended", "U0ADMIN", NOW, "extended by 1h"
    )
    message = requester_update(before, after, POL, NOW)
    assert message is not None
    assert "Extended by <@U0ADMIN>" in json.dumps(message.blocks)
    own = before.model_copy(update={"version": 6, "expires_at": NOW + timedelta(hours=3)}).noted(
        "extended", "U0ALICE", NOW, "extended by 1h"
    )
    mine = requester_update(before, own, POL, NOW)
    assert mine is not None
    assert "Extended by" not in json.dumps(mine.blocks)


@pytest.mark.parametrize(
    ("state", "actor", "needle"),
    [
        (State.REVOKED, "U0ADMIN", "Approved by <@U0LEAD>, then revoked by <@U0ADMIN>"),
        (State.EXPIRED, "accessbot", "Approved by <@U0LEAD>; the access has expired"),
        (State.FAILED, "accessbot", "Approved by <@U0LEAD>; then it failed"),
        (State.ACTIVE, "accessbot", "Approved by <@U0LEAD>; access is active"),
    ],
)
def test_card_names_the_approvers_at_every_end(state: State, actor: str, needle: str) -> None:
    card = approval_card(_moved(state, actor, approvals=("U0LEAD",)), POL)
    assert_valid(card)
    assert needle in json.dumps(card.blocks)


def test_card_of_a_denial_names_earlier_approvals() -> None:
    denied = _moved(State.DENIED, "U0BOSS", "too broad", approvals=("U0LEAD",))
    card = approval_card(denied, POL)
    shown = json.dumps(card.blocks)
    assert "Denied by <@U0BOSS> (approved so far by <@U0LEAD>)" in shown
    assert "too broad" in shown


def test_home_caps_each_list_and_says_how_many_more() -> None:
    waiting = [grant(id=f"req{i:07d}", requester="U0BOB") for i in range(60)]
    live = [grant(State.ACTIVE, id=f"act{i:07d}") for i in range(40)]
    view = home_view(HomeData(mine=live, awaiting=waiting), NOW)
    assert view_errors(view) == []
    assert len(view["blocks"]) <= VIEW_BLOCK_LIMIT
    shown = json.dumps(view)
    assert "more: see `/access list`" in shown
    approvable = shown.count('"action_id": "access_approve"')
    revocable = shown.count('"action_id": "access_revoke"')
    assert 0 < approvable < 60
    assert 0 < revocable < 40
    assert f"and {60 - approvable} more" in shown
    assert f"and {40 - revocable} more" in shown


async def test_a_card_recorded_after_the_request_moved_on_is_redrawn() -> None:
    async with SlackEmulator() as emu:
        populate(emu)
        notifier = SlackNotifier(make_slack_client(BOT_TOKEN, emu.base_url), POL)
        pending = grant(card=None)
        ref = await notifier.post_card(pending)
        assert ref is not None
        # Denied while the card was on its way: that change had no card to update...
        denied = _moved(State.DENIED, "U0LEAD", "no", card=None).model_copy(update={"version": 1})
        await notifier.grant_changed(pending, denied)
        await notifier.flush()
        assert emu.calls_to("chat.update") == []
        # ...so recording the card redraws it, once.
        recorded = denied.model_copy(update={"card": ref, "version": 2})
        await notifier.grant_changed(denied, recorded)
        await notifier.flush()
        (update,) = emu.calls_to("chat.update")
        assert "Denied by <@U0LEAD>" in json.dumps(update.params["blocks"])
        # The usual order (card recorded while pending, as posted) redraws nothing.
        other = grant(id="otherreq23", card=None)
        other_ref = await notifier.post_card(other)
        placed = other.model_copy(update={"card": other_ref, "version": 1})
        await notifier.grant_changed(other, placed)
        assert len(emu.calls_to("chat.update")) == 1
