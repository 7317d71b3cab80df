"""Block Kit builders: Slack's limits, escaping, and which buttons each state shows.

Limits are checked with the emulator's own validators, which mirror Slack's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.lifecycle import State
from bot.models import Grant, MessageRef, Step
from bot.policy import parse_policy
from bot.slack import ids
from bot.slack.blocks import (
    HomeData,
    Message,
    active_message,
    approval_card,
    audit_message,
    error_message,
    grant_list_message,
    help_message,
    home_view,
    reminder_message,
    report_messages,
    requester_update,
    table_chunks,
)
from bot.slack.text import clip, escape, slack_date, time_left
from tests.slack.support import POLICY
from tests.support.slack_emulator import MESSAGE_BLOCK_LIMIT, block_errors, view_errors

NOW = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
POL = parse_policy(POLICY)
HOSTILE = "<!channel> *bold* <https://evil.example|click>"
ESCAPED = "&lt;!channel&gt; *bold* &lt;https://evil.example|click&gt;"


def grant(state: State = State.PENDING, **over: Any) -> Grant:
    base: dict[str, Any] = {
        "id": "abcdefgh23",
        "requester": "U0ALICE",
        "handle": "alice",
        "role": "edit",
        "cluster": "a",
        "namespace": "team-a",
        "scope": "namespace",
        "cluster_role": "edit",
        "duration_s": 7200,
        "reason": HOSTILE,
        "approvals_required": 1,
        "created_at": NOW,
        "pending_until": NOW + timedelta(hours=24),
        "state": state,
        "card": MessageRef(channel="C0APPROVALS", ts="1.0"),
    }
    if state in (State.ACTIVE, State.EXPIRED, State.REVOKED):
        base["expires_at"] = NOW + timedelta(hours=2)
    if state != State.PENDING:
        base["history"] = (
            Step(
                from_state=State.PENDING, to_state=state, actor="U0LEAD", at=NOW, reason="nope <b>"
            ),
        )
        base["approvals"] = (
            ("U0LEAD",) if state not in (State.DENIED, State.CANCELLED, State.TIMED_OUT) else ()
        )
    base.update(over)
    return Grant(**base)


def buttons(message: Message | dict[str, Any]) -> dict[str, str]:
    blocks = message.blocks if isinstance(message, Message) else message["blocks"]
    return {
        e["action_id"]: e["value"]
        for b in blocks
        for e in b.get("elements") or []
        if e.get("type") == "button"
    }


def assert_valid(message: Message) -> None:
    assert block_errors(message.blocks, MESSAGE_BLOCK_LIMIT) == []
    assert message.text
    assert len(message.as_kwargs()["text"]) <= 3000
    _assert_literal(message.blocks)
    assert "<!channel>" not in message.text


def _assert_literal(node: Any) -> None:
    """User text appears only escaped, and only in plain_text (never formatted)."""
    if isinstance(node, dict):
        text = node.get("text")
        if isinstance(text, str) and node.get("type") in ("plain_text", "mrkdwn"):
            assert "<!channel>" not in text
            assert "<https://evil" not in text
            if "evil.example" in text:
                assert node["type"] == "plain_text"
                assert ESCAPED in text
        for value in node.values():
            _assert_literal(value)
    elif isinstance(node, list):
        for value in node:
            _assert_literal(value)


@pytest.mark.parametrize("state", list(State))
def test_card_in_every_state(state: State) -> None:
    card = approval_card(grant(state, failure="boom" if state == State.FAILED else None), POL)
    assert_valid(card)
    decisions = (ids.APPROVE, ids.NARROW, ids.DENY)
    expected = dict.fromkeys(decisions, "abcdefgh23") if state == State.PENDING else {}
    assert buttons(card) == expected
    shown = json.dumps(card.blocks)
    for fact in ("<@U0ALICE>", "`a`", "`team-a`", "`edit`", "2h", ESCAPED):
        assert fact in shown
    assert ("1 of 1" if grant(state).approvals else "0 of 1") in shown


def test_card_names_approvers_and_extension() -> None:
    ext = grant(kind="extend", extends="zzzzzzzz22", reason="extend zzzzzzzz22 by 3600s: x")
    shown = json.dumps(approval_card(ext, POL).blocks)
    assert "Extension request" in shown
    assert "zzzzzzzz22" in shown
    assert "<@U0LEAD>" in shown
    assert "@platform-leads" in shown


def test_cluster_scoped_card() -> None:
    g = grant(
        role="cluster-admin",
        cluster="b",
        namespace=None,
        scope="cluster",
        cluster_role="cluster-admin",
    )
    shown = json.dumps(approval_card(g, POL).blocks)
    assert "cluster-wide" in shown


def test_active_dm_has_usage_expiry_and_buttons() -> None:
    message = active_message(grant(State.ACTIVE), NOW)
    assert_valid(message)
    shown = json.dumps(message.blocks)
    assert "export KUBECONFIG=~/Downloads/a-edit.kubeconfig" in shown
    assert "kubectl get pods" in shown
    epoch = int((NOW + timedelta(hours=2)).timestamp())
    assert f"<!date^{epoch}^{{date_short_pretty}} at {{time}}|2025-03-04 14:00 UTC>" in shown
    assert buttons(message) == {ids.REVOKE: "abcdefgh23", ids.EXTEND: "abcdefgh23"}


@pytest.mark.parametrize(
    ("before", "after", "needle", "has_buttons"),
    [
        (State.PENDING, State.APPROVED, "approved by <@U0LEAD>", False),
        (State.PENDING, State.DENIED, "denied by <@U0LEAD>", False),
        (State.PENDING, State.TIMED_OUT, "timed out", False),
        (State.PENDING, State.CANCELLED, "cancelled by", False),
        (State.ACTIVE, State.REVOKED, "revoked by <@U0LEAD>", False),
        (State.ACTIVE, State.EXPIRED, "has expired", False),
        (State.PROVISIONING, State.FAILED, "failed", False),
        (State.PROVISIONING, State.ACTIVE, "export KUBECONFIG", True),
    ],
)
def test_requester_hears_each_change(
    before: State, after: State, needle: str, has_buttons: bool
) -> None:
    message = requester_update(grant(before), grant(after, version=3), POL, NOW)
    assert message is not None
    assert_valid(message)
    assert needle in json.dumps(message.blocks)
    assert bool(buttons(message)) == has_buttons


def test_denial_reason_is_shown_literally() -> None:
    denied = grant(
        State.DENIED,
        version=2,
        history=(
            Step(
                from_state=State.PENDING,
                to_state=State.DENIED,
                actor="U0LEAD",
                at=NOW,
                reason=HOSTILE,
            ),
        ),
    )
    message = requester_update(grant(), denied, POL, NOW)
    assert message is not None
    assert_valid(message)
    assert ESCAPED in json.dumps(message.blocks)


def test_quiet_changes() -> None:
    pending = grant()
    assert (
        requester_update(
            pending, pending.model_copy(update={"version": 1, "approvals": ("U0X",)}), POL, NOW
        )
        is None
    )
    provisioning = grant(State.PROVISIONING, version=4)
    assert requester_update(grant(State.APPROVED, version=3), provisioning, POL, NOW) is None


def test_new_request_and_auto_approval_messages() -> None:
    created = grant()
    submitted = requester_update(created, created, POL, NOW)
    assert submitted is not None
    assert "waiting for" in submitted.text
    assert buttons(submitted) == {ids.REVOKE: "abcdefgh23"}
    auto = grant(State.APPROVED, version=0)
    message = requester_update(auto, auto, POL, NOW)
    assert message is not None
    assert "automatically" in message.text


def test_extension_applied_and_reminder() -> None:
    before = grant(State.ACTIVE, version=5)
    after = before.model_copy(update={"version": 6, "expires_at": NOW + timedelta(hours=3)})
    message = requester_update(before, after, POL, NOW)
    assert message is not None
    assert "extended" in message.text
    reminder = reminder_message(after, NOW + timedelta(hours=2, minutes=50))
    assert_valid(reminder)
    assert "in 10m" in reminder.text
    assert buttons(reminder) == {ids.REVOKE: "abcdefgh23", ids.EXTEND: "abcdefgh23"}


def test_audit_messages() -> None:
    g = grant(State.DENIED)
    created = audit_message(g, None)
    assert_valid(created)
    assert "requested by <@U0ALICE>" in created.text
    step = audit_message(g, g.history[0])
    assert_valid(step)
    assert "pending → *denied* by <@U0LEAD>" in step.text
    assert "nope &lt;b&gt;" in json.dumps(step.blocks)


def test_list_stays_within_the_block_limit() -> None:
    grants = [grant(State.ACTIVE, id=f"id{i:08d}", requester=f"U0U{i}") for i in range(200)]
    message = grant_list_message(grants, NOW, everyone=True)
    assert_valid(message)
    assert "…and 152 more" in json.dumps(message.blocks, ensure_ascii=False)
    empty = grant_list_message([], NOW, everyone=False)
    assert "no grants" in empty.text


def test_home_view_within_limits() -> None:
    mine = [grant(State.ACTIVE, id=f"m{i:09d}") for i in range(60)] + [
        grant(id=f"p{i:09d}") for i in range(60)
    ]
    waiting = [grant(id=f"w{i:09d}", requester="U0BOB") for i in range(60)]
    view = home_view(HomeData(mine=mine, awaiting=waiting), NOW)
    assert view_errors(view) == []
    _assert_literal(view)
    shown = json.dumps(view)
    assert ids.OPEN_MODAL in shown
    assert "Waiting for your decision" in shown
    assert "more" in shown
    empty = home_view(HomeData(mine=[], awaiting=[]), NOW)
    assert view_errors(empty) == []
    assert "No active access." in json.dumps(empty)


def test_error_and_help_messages() -> None:
    message = error_message(f"unknown role {HOSTILE!r}", "/access request ROLE ...")
    assert_valid(message)
    assert "/access request ROLE" in json.dumps(message.blocks)
    for topic in ("access", "k8s"):
        assert_valid(help_message(topic))


# -- reports -------------------------------------------------------------------------------


def table(rows: int, width: int = 120) -> str:
    header = "NAME".ljust(width) + "STATUS"
    return (
        "\n".join([header, *(f"node-{i:05d}".ljust(width) + "Ready" for i in range(rows))]) + "\n"
    )


def test_small_report_is_one_message_problems_first() -> None:
    messages = report_messages("Nodes on a", ["n1: NotReady <x>"], table(3), "No nodes.")
    assert messages is not None
    assert len(messages) == 1
    (message,) = messages
    assert_valid(message)
    texts = [json.dumps(b) for b in message.blocks]
    problem = next(i for i, t in enumerate(texts) if "NotReady" in t)
    first_table = next(i for i, t in enumerate(texts) if "```" in t)
    assert problem < first_table
    assert "n1: NotReady &lt;x&gt;" in texts[problem]


def test_longer_report_is_split_into_valid_messages() -> None:
    messages = report_messages("Nodes on a", [], table(200), "No nodes.")
    assert messages is not None
    assert len(messages) > 1
    for message in messages:
        assert_valid(message)
    rows = [
        line
        for m in messages
        for b in m.blocks
        if "```" in json.dumps(b)
        for line in b["text"]["text"].splitlines()
    ]
    assert sum(1 for r in rows if r.startswith("node-")) == 200


def test_huge_report_asks_for_a_file() -> None:
    assert report_messages("Nodes on a", [], table(2000), "No nodes.") is None


def test_empty_report() -> None:
    messages = report_messages("Helm releases", [], "", "No releases.")
    assert messages is not None
    assert "No releases." in json.dumps(messages[0].blocks)


def test_table_chunks_escape_and_split_only_at_line_ends() -> None:
    lines = [f"node-{i:04d} <{'x' * (i % 90)}> & more" for i in range(400)]
    chunks = table_chunks("\n".join(lines) + "\n")
    assert chunks is not None
    assert all(len(c) <= 3000 for c in chunks)
    inner = [c.removeprefix("```\n").removesuffix("\n```") for c in chunks]
    # Every line whole, in order, escaped: nothing cut between blocks.
    assert "\n".join(inner).split("\n") == [escape(line) for line in lines]
    # A line no block can hold, or a fence that would end the block: a file instead.
    assert table_chunks("a\n" + "x" * 7000) is None
    assert table_chunks("a ``` b\n") is None
    assert table_chunks("a\x07b\n") is None  # BEL, as kubectl prints it: file only
    assert table_chunks("a\x1b[31mb\n") is None  # ESC, as helm prints it
    assert table_chunks("a\tb\n") is not None  # helm's separator


# -- text helpers ----------------------------------------------------------------------------


@given(st.text(), st.integers(min_value=2, max_value=300))
def test_clip_never_breaks_an_entity(text: str, limit: int) -> None:
    clipped = clip(text, limit)
    assert len(clipped) <= limit
    body = clipped.removesuffix("…")
    assert escape(text).startswith(body)
    assert "<" not in clipped
    assert ">" not in clipped


def test_dates_and_time_left() -> None:
    at = datetime(2025, 1, 2, 3, 4, tzinfo=UTC)
    assert (
        slack_date(at)
        == f"<!date^{int(at.timestamp())}^{{date_short_pretty}} at {{time}}|2025-01-02 03:04 UTC>"
    )
    assert time_left(at, at - timedelta(minutes=90, seconds=30)) == "1h30m"
    assert time_left(at, at) == "less than a minute"


def test_unescape_inverts_escape() -> None:
    from bot.slack.text import unescape

    for text in ("a <b> & c", "&lt;", "&amp;lt;", HOSTILE):
        assert unescape(escape(text)) == text
