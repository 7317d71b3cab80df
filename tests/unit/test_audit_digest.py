"""The audit channel's sender (bot/slack/audit_digest.py) and its digests, on a clock
the test drives: sleeping advances it at once, so a 60-second window costs nothing.

Slack itself is a recording function here; tests/slack/test_audit_burst.py runs the
same sender against the Slack emulator's per-channel limit and real revocations.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError

from bot.lifecycle import State
from bot.models import Receipt, Step
from bot.slack.audit_digest import AuditPace, AuditPost, AuditSender, audit_posts
from bot.slack.blocks import Message
from bot.slack.blocks.digests import audit_digests
from bot.slack.text import MESSAGE_BLOCK_LIMIT, SECTION_TEXT_LIMIT
from tests.slack.test_blocks import grant

NOW = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)


class VirtualTime:
    """Monotonic seconds that move only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


class _Response:
    def __init__(self, status: int, error: str, headers: dict[str, str]) -> None:
        self.status_code = status
        self.data = {"ok": False, "error": error}
        self.headers = headers

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


def api_error(error: str, status: int = 200, **headers: str) -> SlackApiError:
    return SlackApiError(error, _Response(status, error, headers))


class Channel:
    """Records what the sender posted; fails the next calls as told."""

    def __init__(self) -> None:
        self.posted: list[Message] = []
        self.failures: list[Exception] = []
        self.refused: list[SlackClientError] = []

    async def post(self, message: Message) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.posted.append(message)

    async def refuse(self, exc: SlackClientError) -> None:
        self.refused.append(exc)

    def text(self) -> str:
        return json.dumps([m.blocks for m in self.posted])


def sender(channel: Channel, time: VirtualTime, **pace: Any) -> AuditSender:
    return AuditSender(
        channel.post, channel.refuse, pace=AuditPace(**pace), clock=time, sleep=time.sleep
    )


def post(grant_id: str, event: str = "expired", *, alone: bool = False) -> AuditPost:
    return AuditPost(grant_id, event, Message(f"{grant_id} {event}", []), alone)


async def drained(s: AuditSender) -> None:
    while s.waiting:
        await asyncio.sleep(0)


async def test_a_calm_channel_gets_one_post_per_change() -> None:
    channel, time = Channel(), VirtualTime()
    s = sender(channel, time)
    s.add([post("g1", "requested"), post("g1", "active")])
    await drained(s)
    s.add([post("g1", "expired")])
    await drained(s)
    assert [m.text for m in channel.posted] == ["g1 requested", "g1 active", "g1 expired"]


async def test_a_burst_becomes_digests_naming_every_id() -> None:
    channel, time = Channel(), VirtualTime()
    s = sender(channel, time)
    ids = [f"g{i:03d}" for i in range(60)]
    s.add([post(g, "expired") for g in ids] + [post(g, "verified") for g in ids])
    await drained(s)
    # 120 changes: one digest message (both groups fit) instead of 120 posts.
    assert len(channel.posted) == 1
    (digest,) = channel.posted
    assert digest.text.startswith("Audit digest: 60 grants expired, 60 revocations verified")
    body = channel.text()
    assert "*60 grants expired* in the last minute:" in body
    for g in ids:
        assert body.count(f"`{g}`") == 2


async def test_a_failed_verification_is_never_digested_and_goes_first() -> None:
    channel, time = Channel(), VirtualTime()
    s = sender(channel, time)
    s.add([post(f"g{i:03d}") for i in range(30)])
    await asyncio.sleep(0)  # the burst is gathering for its window
    s.add([post("bad", "verification_failed", alone=True)])
    await drained(s)
    assert channel.posted[0].text == "bad verification_failed"
    assert "bad" not in json.dumps([m.blocks for m in channel.posted[1:]])


async def test_429s_and_outages_delay_posts_and_lose_none() -> None:
    channel, time = Channel(), VirtualTime()
    s = sender(channel, time, backlog=100)
    channel.failures = [
        api_error("ratelimited", 429, **{"Retry-After": "30"}),
        api_error("internal_error"),
        api_error("ratelimited", 429, **{"Retry-After": "1"}),
        OSError("connection reset"),
    ]
    started = time.now
    s.add([post(f"g{i}") for i in range(5)])
    await drained(s)
    assert [m.text for m in channel.posted] == [f"g{i} expired" for i in range(5)]
    assert time.now - started >= 31  # the sender waited what Slack said
    assert channel.refused == []


async def test_a_refusal_no_retry_fixes_is_told_and_the_rest_go_on() -> None:
    channel, time = Channel(), VirtualTime()
    s = sender(channel, time)
    channel.failures = [api_error("channel_not_found")]
    s.add([post("g1"), post("g2")])
    await drained(s)
    assert [m.text for m in channel.posted] == ["g2 expired"]
    assert len(channel.refused) == 1


async def test_flush_posts_a_gathering_digest_at_once() -> None:
    channel, time = Channel(), VirtualTime()
    s = sender(channel, time, window_seconds=3600)
    s.add([post(f"g{i:02d}") for i in range(20)])
    await asyncio.sleep(0)
    assert channel.posted == []  # gathering for an hour
    await s.flush(5.0)
    assert s.waiting == 0
    assert "*20 grants expired*" in channel.text()


def test_digests_stay_within_slacks_limits_and_never_drop_an_id() -> None:
    expired = [f"id{i:08d}" for i in range(20_000)]
    revoked = [f"rv{i:08d}" for i in range(37)]
    digests = audit_digests([("expired", expired), ("revoked", revoked)], 50)
    assert len(digests) > 1  # 20,037 ids do not fit one message
    named: list[str] = []
    for d in digests:
        blocks = d.message.blocks
        assert len(blocks) <= MESSAGE_BLOCK_LIMIT
        for block in blocks:
            assert len(block.get("text", {}).get("text", "")) <= SECTION_TEXT_LIMIT
        found = re.findall(
            r"`([a-z0-9]+)`", json.dumps([b for b in blocks if b["type"] == "section"])
        )
        assert len(found) == d.count
        named += found
    assert named == expired + revoked
    assert "*20000 grants expired* in the last minute" in json.dumps(digests[0].message.blocks)
    assert "37 grants revoked" in digests[-1].message.text
    assert "in the last 3 minutes" in audit_digests([("expired", ["x"])], 150)[0].message.text


def test_every_change_becomes_one_post_and_only_a_failed_receipt_stands_alone() -> None:
    created = grant(card=None)
    (requested,) = audit_posts(created, created)
    assert (requested.event, requested.alone) == ("requested", False)
    active = grant(State.ACTIVE, version=1)
    ended = active.model_copy(
        update={
            "state": State.REVOKED,
            "version": 2,
            "history": (
                *active.history,
                Step(from_state=State.ACTIVE, to_state=State.REVOKED, actor="U0LEAD", at=NOW),
                Step(
                    from_state=State.REVOKED, to_state=State.REVOKED, actor="accessbot",
                    at=NOW, event="verification_failed",
                ),
            ),
            "receipt": Receipt(at=NOW, verified=False, checks=("RoleBinding: still exists",)),
        }
    )  # fmt: skip
    revoked, receipt = audit_posts(active, ended)
    assert (revoked.event, revoked.alone) == ("revoked", False)
    assert (receipt.event, receipt.alone) == ("verification_failed", True)
    assert "NOT verified" in json.dumps(receipt.message.blocks)


async def test_flush_past_its_budget_keeps_the_rest_for_later() -> None:
    channel, time = Channel(), VirtualTime()
    s = sender(channel, time)
    stalled = asyncio.Event()

    async def stuck(message: Message) -> None:
        await stalled.wait()

    s._post = stuck  # Slack never answers
    s.add([post("g1"), post("g2")])
    await asyncio.sleep(0)
    await s.flush(0.05)
    assert s.waiting == 2  # kept, not dropped
    s._post = channel.post
    s.add([post("g3")])
    await drained(s)
    assert [m.text for m in channel.posted] == ["g1 expired", "g2 expired", "g3 expired"]
