"""Approvers are reminded, then escalated (issue 15.1), end to end: signed Slack requests,
the Slack emulator, real Redis and apiservers, and a clock the test moves.

The clock is one offset added to wall time, shared by the workflow (request times, the
agenda), the scheduler (when steps are due) and the notifier (the card's "waiting"
line), so moving it forward is time passing for the whole bot.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.core import build_core
from bot.lifecycle import State
from bot.models import Grant, utcnow
from bot.policy import parse_policy
from bot.slack import SlackDirectory, SlackNotifier, build_slack_app, make_slack_client
from tests.slack.support import (
    APPROVALS,
    BOT_TOKEN,
    POLICY,
    SECRET,
    SlackBed,
    blocks_text,
    populate,
    serve_bolt,
)
from tests.support.cluster import TestCluster
from tests.support.harness import (
    FAST_BACKOFF,
    FAST_SCHEDULER,
    prepare_clusters,
    until_step_done,
    wipe_managed,
)
from tests.support.patience import PATIENCE
from tests.support.slack_emulator import SlackEmulator

MIN = dt.timedelta(minutes=1)
ESCALATING = POLICY.replace(
    'approvers: ["U0LEAD", "@platform-leads"],',
    'approvers: ["U0LEAD", "@platform-leads"], escalate_to: ["U0BOSS", "@sre"],',
)
assert ESCALATING != POLICY


class ManualClock:
    """Wall time plus ``offset``: ``now()`` for the workflow, ``epoch()`` for the scheduler."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def now(self) -> dt.datetime:
        return utcnow() + self.offset

    def epoch(self) -> float:
        return time.time() + self.offset.total_seconds()


@asynccontextmanager
async def clocked_bed(
    redis_url: str, clusters: dict[str, TestCluster], tmp: Path, clock: ManualClock,
    emu: SlackEmulator, *, wipe: bool = True,
) -> AsyncIterator[SlackBed]:  # fmt: skip
    """tests.slack.support.slack_bed with every clock of the bot on ``clock``."""
    kubeconfig = prepare_clusters(clusters, tmp)
    policy = parse_policy(ESCALATING)
    client = make_slack_client(BOT_TOKEN, emu.base_url)
    directory = SlackDirectory(client)
    notifier = SlackNotifier(client, policy, directory=directory, clock=clock.now)
    core = await build_core(
        policy,
        redis_url,
        notifier=notifier,
        directory=directory,
        kubeconfig=str(kubeconfig),
        reconcile_interval=3600.0,
        backoff=FAST_BACKOFF,
        scheduler_options={**FAST_SCHEDULER, "clock": clock.epoch},
    )
    core.workflow.clock = clock.now
    if wipe:
        await wipe_managed(core)
    app = build_slack_app(core=core, client=client, signing_secret=SECRET)
    runner, url = await serve_bolt(app)
    core.start()
    http = aiohttp.ClientSession()
    try:
        yield SlackBed(emu, core, app, url, kubeconfig, http)
    finally:
        await http.close()
        await runner.cleanup()
        await core.close()


@pytest.fixture
async def emu() -> AsyncIterator[SlackEmulator]:
    emulator = await SlackEmulator().start()
    populate(emulator)
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def bed(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path,
    clock: ManualClock, emu: SlackEmulator,
) -> AsyncIterator[SlackBed]:  # fmt: skip
    async with clocked_bed(redis_url, {"a": cluster, "b": cluster_b}, tmp_path, clock, emu) as b:
        yield b


def thread(bed: SlackBed, grant: Grant) -> list[dict[str, Any]]:
    """The replies in the thread of the grant's card."""
    assert grant.card is not None
    return [
        m
        for m in bed.emu.messages(APPROVALS)
        if m.get("thread_ts") == grant.card.ts and m.get("ts") != grant.card.ts
    ]


async def carded(bed: SlackBed, text: str, user: str) -> Grant:
    """Send ``/access <text>`` and return the pending request once its card is recorded."""
    grant = await bed.request(text, user)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while grant.card is None:
        assert loop.time() < deadline, f"no card recorded for {grant.id}"
        await asyncio.sleep(0.05)
        grant = await bed.core.workflow.get(grant.id)
    return grant


async def due(bed: SlackBed, grant: Grant) -> tuple[str, float] | None:
    entry = await bed.core.scheduler.get(grant.id)
    return None if entry is None else (entry.kind, entry.due)


async def pass_time(bed: SlackBed, clock: ManualClock, span: dt.timedelta, *kinds: str) -> None:
    """Move the clock by ``span`` (the bot idle first), then wait for steps of ``kinds``."""
    await bed.settled()
    clock.offset += span
    for kind in kinds:
        for grant in await bed.core.store.by_state(State.PENDING):
            await until_step_done(bed.core, grant.id, kind)


async def test_approvers_are_reminded_in_the_thread_after_15m_but_not_the_requester(
    bed: SlackBed, clock: ManualClock
) -> None:
    # U0PL1 is in @platform-leads, an approver group of edit: asking, they are not pinged.
    g = await carded(bed, "request edit -n team-a -d 1h fix the deploy", "U0PL1")
    assert await due(bed, g) == ("remind_approvers", (g.created_at + 15 * MIN).timestamp())
    # U0LEAD, an approver, is deactivated meanwhile: offboarded, not pinged either.
    await bed.event({"type": "user_change", "user": {"id": "U0LEAD", "name": "lead",
                                                     "deleted": True}})  # fmt: skip
    while await bed.core.store.offboarding("U0LEAD") is None:
        await asyncio.sleep(0.05)

    await pass_time(bed, clock, 14 * MIN)
    assert thread(bed, g) == []  # not yet

    await pass_time(bed, clock, MIN + dt.timedelta(seconds=1), "remind_approvers")
    [reminder] = thread(bed, g)
    text = blocks_text(reminder)
    assert "<@U0PL2>" in text  # the group's other member, one by one
    assert "<!subteam^S0PLATFORM>" not in text  # the group as a whole would ping U0PL1
    assert "<@U0PL1>" not in text
    assert "<@U0LEAD>" not in text
    assert "@pl1 has been waiting 15m" in text
    # The card says how long the request has waited, redrawn when the reminder fired.
    card = await bed.wait_card(g.id, lambda m: "(15m)" in blocks_text(m))
    assert f"Waiting since <!date^{int(g.created_at.timestamp())}^" in blocks_text(card)
    # Recorded on the grant and in the audit trail; next comes the escalation at 1h.
    after = await bed.core.workflow.get(g.id)
    assert after.approvers_reminded_at is not None
    history = await bed.core.store.audit_history(g.id)
    assert [e["event"] for e in history].count("approvers_reminded") == 1
    assert await due(bed, g) == ("escalate", (g.created_at + 60 * MIN).timestamp())


async def test_escalation_after_1h_names_who_waits_and_nobody_left_is_said(
    bed: SlackBed, clock: ManualClock
) -> None:
    g = await carded(bed, "request edit -n team-a -d 1h hotfix", "U0ALICE")
    await pass_time(bed, clock, 15 * MIN + dt.timedelta(seconds=1), "remind_approvers")
    [reminder] = thread(bed, g)
    assert "<@U0LEAD>" in blocks_text(reminder)
    assert "<!subteam^S0PLATFORM>" in blocks_text(reminder)  # nobody in it is left out
    assert thread(bed, g) == [reminder]

    await pass_time(bed, clock, 45 * MIN, "escalate")
    first, escalation = thread(bed, g)
    assert first == reminder
    text = blocks_text(escalation)
    assert "Escalation to <@U0BOSS>, <!subteam^S0SRE>" in text
    assert "@alice has been waiting 1h" in text
    assert "<@U0ALICE>" not in text
    await bed.wait_card(g.id, lambda m: "(1h)" in blocks_text(m))
    assert await due(bed, g) == ("timeout", g.pending_until.timestamp())


async def test_no_reminder_once_approved_not_even_from_a_late_step(
    bed: SlackBed, clock: ManualClock
) -> None:
    g = await carded(bed, "request edit -n team-a -d 2h deploy", "U0ALICE")
    card = bed.card_for(g.id)
    reply = await bed.click("access_approve", g.id, "U0LEAD", card, APPROVALS)
    assert reply.status == 200
    await bed.wait_grant(g.id, State.ACTIVE)
    await pass_time(bed, clock, 61 * MIN)
    await bed.settled()
    assert thread(bed, g) == []
    step = await due(bed, g)
    assert step is not None
    assert step[0] not in ("remind_approvers", "escalate")
    # A step claimed before the approval and run after it (stale record) posts nothing.
    await bed.core.workflow.nudges.on_remind_approvers(g)
    await bed.core.workflow.nudges.on_escalate(g)
    assert thread(bed, g) == []
    after = await bed.core.workflow.get(g.id)
    assert after.approvers_reminded_at is None
    assert after.escalated_at is None


async def test_a_retried_step_or_a_restart_never_posts_twice(
    bed: SlackBed,
    clock: ManualClock,
    emu: SlackEmulator,
    redis_url: str,
    cluster: TestCluster,
    cluster_b: TestCluster,
    tmp_path: Path,
) -> None:
    g = await carded(bed, "request edit -n team-a -d 1h hotfix", "U0ALICE")
    await pass_time(bed, clock, 15 * MIN + dt.timedelta(seconds=1), "remind_approvers")
    assert len(thread(bed, g)) == 1
    # The same step again, with the record as it was when it was claimed: nothing.
    await bed.core.workflow.nudges.on_remind_approvers(g)
    assert len(thread(bed, g)) == 1

    # A restart: a new bot on the same Redis and Slack, its due index intact.
    await bed.core.stop()  # this bot's scheduler stops; its records stay in Redis
    (tmp_path / "again").mkdir()
    async with clocked_bed(
        redis_url, {"a": cluster, "b": cluster_b}, tmp_path / "again", clock, emu, wipe=False
    ) as again:
        await again.settled()
        assert len(thread(again, g)) == 1
        assert await due(again, g) == ("escalate", (g.created_at + 60 * MIN).timestamp())
        await pass_time(again, clock, 45 * MIN, "escalate")
        await again.core.workflow.nudges.on_escalate(g)
        assert len(thread(again, g)) == 2
        history = await again.core.store.audit_history(g.id)
        events = [e["event"] for e in history]
        assert events.count("approvers_reminded") == 1
        assert events.count("escalated") == 1
